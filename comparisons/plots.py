"""Plotly figures shared by the benchmark reports and the app."""

from __future__ import annotations

import plotly.graph_objects as go


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
        xaxis={"title": "seconds per image (log)", "type": "log"},
        yaxis={"title": "PSNR-Y (dB)"},
        template="plotly_white",
    )
    return fig
