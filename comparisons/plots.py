"""Plotly figures shared by the benchmark reports and the app."""

from __future__ import annotations

import math
from pathlib import Path

import plotly.graph_objects as go

STEPS_1_2_5 = (1, 2, 5)


def log_axis(values, title: str) -> dict:
    """A log axis labelled at 1-2-5 steps with whole numbers ("0.2", "5", "10"), never plotly's bare
    minor digits ("5 6 7 8 9 1"); the values are what will be drawn (positive)."""
    positive = [v for v in values if v and v > 0]
    if not positive:
        return {"title": title, "type": "log"}
    low, high = math.floor(math.log10(min(positive))), math.ceil(math.log10(max(positive)))
    ticks = [m * 10.0**e for e in range(low, high + 1) for m in STEPS_1_2_5]
    ticks = [t for t in ticks if min(positive) / 2 <= t <= max(positive) * 2]
    return {"title": title, "type": "log", "tickvals": ticks, "ticktext": [f"{t:g}" for t in ticks]}


def tidy_log_axes(fig: go.Figure) -> go.Figure:
    """Every log axis of ``fig`` (subplots too) labelled by ``log_axis`` from the values drawn on it."""
    for name in fig.layout.to_plotly_json():
        if not name.startswith(("xaxis", "yaxis")) or fig.layout[name].type != "log":
            continue
        letter, ref = name[0], name[0] + name[5:]  # "xaxis2" -> "x2"
        values = []
        for trace in fig.data:
            if (getattr(trace, f"{letter}axis", None) or letter) == ref and getattr(trace, letter, None) is not None:
                values += [v for v in getattr(trace, letter) if isinstance(v, (int, float))]
        ticks = log_axis(values, "")
        fig.layout[name].update(tickvals=ticks.get("tickvals"), ticktext=ticks.get("ticktext"))
    return fig


def rename_traces(fig: go.Figure, names: dict[str, str]) -> go.Figure:
    """Legend entries renamed (e.g. the cascade study's "reference" group, which means the baselines)."""
    for trace in fig.data:
        if trace.name in names:
            trace.name = names[trace.name]
            if trace.legendgroup in names:
                trace.legendgroup = names[trace.legendgroup]
    return fig


def column_trace(rows: list[dict], x: str, y: str, **style) -> go.Scatter:
    """A trace of two columns of result rows, in the rows' order; ``style``: go.Scatter's other arguments."""
    return go.Scatter(x=[r[x] for r in rows], y=[r[y] for r in rows], **style)


def benchmark_figure(summary: list[dict], title: str = "") -> go.Figure:
    """PSNR-Y against seconds per image, one marker per model and dataset: quality vs cost at a glance."""
    fig = go.Figure()
    for dataset in dict.fromkeys(r["dataset"] for r in summary):
        rows = [r for r in summary if r["dataset"] == dataset]
        fig.add_trace(
            go.Scatter(
                x=[max(r["seconds_per_image"], 1e-4) for r in rows],
                y=[r["psnr_y"] for r in rows],
                mode="markers+text",
                text=[r["model"] for r in rows],
                textposition="top center",
                name=dataset,
                customdata=[[r["ssim_y"], r["lr_psnr"], r["nfe"]] for r in rows],
                hovertemplate="%{text}<br>PSNR-Y %{y:.2f} dB<br>SSIM-Y %{customdata[0]:.4f}"
                "<br>LR-PSNR %{customdata[1]:.2f} dB<br>NFE %{customdata[2]}<br>%{x:.3g} s/image<extra></extra>",
            )
        )
    fig.update_layout(
        title={"text": title, "font": {"size": 11}},
        xaxis=log_axis([max(r["seconds_per_image"], 1e-4) for r in summary], "seconds per image (log)"),
        yaxis={"title": "PSNR-Y (dB)"},
        template="plotly_white",
    )
    return fig


def write_page(path, title: str, figures, plotly_js: str | bool = "cdn") -> None:
    """One HTML page of ``figures`` under a ``title`` heading: plotly.js loaded once (``plotly_js``: "cdn",
    True to embed it, False for a page that loads it elsewhere). Every study and benchmark writes its page so."""
    import html

    parts = [f.to_html(full_html=False, include_plotlyjs=plotly_js if i == 0 else False) for i, f in enumerate(figures)]
    head = f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head><body>"
    Path(path).write_text(f"{head}<h1>{html.escape(title)}</h1>" + "".join(parts) + "</body></html>\n")
