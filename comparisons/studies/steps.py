"""The steps study: quality and time against the number of sampling steps, without retraining.

    python -m comparisons.studies steps --models ldm-x4,sr3-x4 --scale 4 --steps-list 1,2,5,10,20 \
        --data ../shared/data/test/Set5 --crop 128 --out results/steps-x4

Each step count is one benchmark run (same degradation and metrics, ``comparisons.benchmark``,
written under ``steps-N/``); the study writes ``study.csv`` (one row per step count x model x
dataset) and ``study.html`` (PSNR-Y and seconds against the steps, one line per model).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from comparisons import distributed
from comparisons.benchmark import run_benchmark
from comparisons.plots import write_page
from comparisons.records import write_csv
from sr_models.types import SamplingSettings

COLUMNS = ["steps", "dataset", "model", "scale", "n_images", "psnr_y", "ssim_y", "lr_psnr", "seconds_per_image", "nfe"]


def steps_study(
    models,
    scale,
    datasets,
    out: Path,
    steps_list,
    settings: SamplingSettings | None = None,
    crop=None,
    limit=None,
    split="all",
) -> list[dict]:
    rows = []
    settings = settings or SamplingSettings()
    for steps in steps_list:
        summary = run_benchmark(
            models,
            scale,
            datasets,
            out / f"steps-{steps}",
            limit=limit,
            crop=crop,
            settings=replace(settings, steps=steps),
            split=split,
        )
        rows += [{"steps": steps, **r} for r in summary]
    if not distributed.is_main():
        return rows
    write_csv(out / "study.csv", rows, COLUMNS)
    write_page(out / "study.html", "Steps study", [steps_figure(rows)])
    return rows


def steps_figure(rows: list[dict]) -> go.Figure:
    fig = make_subplots(rows=1, cols=2, subplot_titles=("PSNR-Y (dB)", "seconds per image"))
    for key in dict.fromkeys((r["model"], r["dataset"]) for r in rows):
        sel = [r for r in rows if (r["model"], r["dataset"]) == key]
        name = f"{key[0]} / {key[1]}"
        fig.add_trace(
            go.Scatter(x=[r["steps"] for r in sel], y=[r["psnr_y"] for r in sel], name=name, legendgroup=name), 1, 1
        )
        fig.add_trace(
            go.Scatter(
                x=[r["steps"] for r in sel],
                y=[r["seconds_per_image"] for r in sel],
                name=name,
                legendgroup=name,
                showlegend=False,
            ),
            1,
            2,
        )
    fig.update_xaxes(title="sampling steps", type="log")
    fig.update_layout(template="plotly_white")
    return fig
