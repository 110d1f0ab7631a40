"""The uncertainty study: does a sampler's spread say where its errors are?

    python -m comparisons.studies uncertainty --models ldm-x4,sr3-x4 --scale 4 --data ../shared/data/train/BSDS200 \
        --split val --crop 128 --k 8 --steps-list 10 --eta 1 --out results/uncertainty

For every image, K posterior samples (``comparisons.posterior.explore_posterior``: seeds 0..K-1) give
a per-pixel std map; its Spearman correlation with the |error| of their mean, and the AUSE of its
sparsification curve against the oracle's, say how well the spread predicts the error (AUSE of a
random order: the no-information baseline). Writes ``uncertainty.csv`` (per image),
``uncertainty_summary.csv`` (per model and dataset: means over images), ``uncertainty.html`` (AUSE
against the random order's, Spearman on each bar) and a run card.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
import plotly.graph_objects as go

from comparisons import distributed
from comparisons.plots import write_page
from comparisons.posterior import explore_posterior
from comparisons.provenance import run_header, start_run
from comparisons.records import write_csv
from sr_models.data import eval_pairs
from sr_models.types import SamplingSettings

NUMBERS = [
    "spearman",
    "ause",
    "ause_random",
    "mean_spread",
    "diversity",
    "mean_abs_error",
    "psnr_y_mean_image",
    "psnr_y_samples",
    "nfe",
    "seconds",
]
COLUMNS = ["dataset", "model", "image", "k", "steps", "eta", *NUMBERS]


def uncertainty_study(
    models,
    scale: int,
    datasets,
    out: Path,
    settings: SamplingSettings,
    k: int = 8,
    *,
    crop=None,
    limit=None,
    split="all",
    progress=print,
    command: str = "",
) -> list[dict]:
    """Per-image calibration rows for every model and dataset; writes both CSVs, the page and the run card;
    returns the summary rows."""
    start_run(out)
    rows, started = [], time.perf_counter()
    for data in datasets:
        pairs = list(eval_pairs(data, scale, limit=limit, crop=crop, split=split))
        for model in models:
            run = partial(_image_row, model, Path(data).name, scale, replace(settings, seed=settings.seed or 0), k)
            rows += distributed.map_images(run, pairs)  # each process its share of the images
            if distributed.is_main():
                progress(f"{Path(data).name} {model.name}: " + summary_line(summarize(rows[-len(pairs) :])[0]))
    summary = summarize(rows)
    if not distributed.is_main():
        return summary
    write_csv(out / "uncertainty.csv", rows, COLUMNS)
    write_csv(out / "uncertainty_summary.csv", summary, ["n_images", *COLUMNS[:2], *COLUMNS[3:]])
    write_page(out / "uncertainty.html", "Uncertainty study", [figure(summary)])
    write_card(out, summary, command, time.perf_counter() - started)
    return summary


def _image_row(model, dataset: str, scale: int, settings: SamplingSettings, k: int, pair) -> dict:
    """One image's calibration numbers from its K posterior samples."""
    post = explore_posterior(model, pair.lr, scale, settings, k, pair.hr)
    return {"dataset": dataset, "model": model.name, "image": pair.name, **post.summary}


def figure(summary: list[dict]) -> go.Figure:
    """AUSE of each model's spread against a random order's (lower: the spread ranks the errors better),
    one group per model and dataset, Spearman(std, |error|) written on the bar."""
    labels = [f"{r['model']}<br>{r['dataset']}" for r in summary]
    fig = go.Figure()
    fig.add_bar(
        x=labels,
        y=[float(r["ause"]) for r in summary],
        name="AUSE of the spread",
        text=[f"Spearman {float(r['spearman']):.2f}" for r in summary],
    )
    fig.add_bar(x=labels, y=[float(r["ause_random"]) for r in summary], name="AUSE of a random order")
    fig.update_layout(
        template="plotly_white",
        barmode="group",
        title="Does the spread of the samples say where the error is?",
        yaxis_title="AUSE (lower is better)",
    )
    return fig


def write_card(out: Path, summary: list[dict], command: str, seconds: float) -> None:
    card = {
        **run_header(command, seconds),
        "answer": [f"{r['dataset']} {r['model']} ({r['n_images']} images): {summary_line(r)}" for r in summary],
    }
    (out / "run_card.json").write_text(json.dumps(card, indent=2, default=str) + "\n")
    md = ["# Uncertainty study run card", "", *[f"- **{k}**: {v}" for k, v in card.items() if k != "answer"]]
    (out / "run_card.md").write_text("\n".join(md + ["", "## Answer", "", *[f"- {a}" for a in card["answer"]]]) + "\n")


def summarize(rows: list[dict]) -> list[dict]:
    """Means over images per (dataset, model)."""
    keys = dict.fromkeys((r["dataset"], r["model"]) for r in rows)
    out = []
    for dataset, model in keys:
        sel = [r for r in rows if (r["dataset"], r["model"]) == (dataset, model)]
        means = {n: float(np.nanmean([float(r[n]) for r in sel])) for n in NUMBERS}
        out.append(
            {
                "dataset": dataset,
                "model": model,
                "n_images": len(sel),
                "k": sel[0]["k"],
                "steps": sel[0]["steps"],
                "eta": sel[0]["eta"],
                **means,
            }
        )
    return out


def summary_line(row: dict) -> str:
    return (
        f"Spearman(std, |error|) {row['spearman']:.3f}, AUSE {row['ause']:.3f} vs random {row['ause_random']:.3f}, "
        f"spread {row['mean_spread']:.2f} grey levels"
    )
