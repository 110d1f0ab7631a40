"""The uncertainty study: does a sampler's spread say where its errors are?

    python -m comparisons.studies uncertainty --models ldm-x4,sr3-x4 --scale 4 --data ../shared/data/train/BSDS200 \
        --split val --crop 128 --k 8 --steps-list 10 --eta 1 --out results/uncertainty

For every image, K posterior samples (``comparisons.posterior.explore_posterior``: seeds 0..K-1) give
a per-pixel std map; its Spearman correlation with the |error| of their mean, and the AUSE of its
sparsification curve against the oracle's, say how well the spread predicts the error (AUSE of a
random order: the no-information baseline). Writes ``uncertainty.csv`` (per image) and
``uncertainty_summary.csv`` (per model and dataset: means over images).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from comparisons.posterior import explore_posterior
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
) -> list[dict]:
    """Per-image calibration rows for every model and dataset; writes both CSVs; returns the summary rows."""
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for data in datasets:
        pairs = list(eval_pairs(data, scale, limit=limit, crop=crop, split=split))
        for model in models:
            for pair in pairs:
                post = explore_posterior(model, pair.lr, scale, replace(settings, seed=settings.seed or 0), k, pair.hr)
                s = post.summary
                rows.append({"dataset": Path(data).name, "model": model.name, "image": pair.name, **s})
            progress(f"{Path(data).name} {model.name}: " + _line(summarize(rows[-len(pairs) :])[0]))
    summary = summarize(rows)
    write_csv(out / "uncertainty.csv", rows, COLUMNS)
    write_csv(out / "uncertainty_summary.csv", summary, ["n_images", *COLUMNS[:2], *COLUMNS[3:]])
    return summary


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


def _line(row: dict) -> str:
    return (
        f"Spearman(std, |error|) {row['spearman']:.3f}, AUSE {row['ause']:.3f} vs random {row['ause_random']:.3f}, "
        f"spread {row['mean_spread']:.2f} grey levels"
    )
