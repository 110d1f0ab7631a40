"""Why more sampling steps can cost PSNR: the spread of samples against the error of their mean.

    python -m comparisons.studies spread --models ldm-x4,sr3-x4 --scale 4 --steps-list 1,20 --seeds 8 \
        --data ../shared/data/train --split val --crop 128 --out results/spread

For each model, step count and image, K seeds give K outputs s_k of one LR. Their mean squared
error to the HR x (BT.601 Y, ``scale`` px shaved, as PSNR) splits exactly:

    mean_k ||s_k - x||² = ||s̄ - x||² + mean_k ||s_k - s̄||²      (error of the mean + spread)

A sampler that draws from the posterior p(x | LR) is centred on the posterior mean, the
PSNR-optimal answer (which a 1-step x0 prediction from pure noise approximates), and spreads by
the posterior variance, so its single samples score up to 3 dB under the mean while showing
detail the mean cannot: the perception-distortion trade-off (Blau & Michaeli 2018). If the
mean of K many-step samples scores like the 1-step output, what the extra steps cost is spread
(detail drawn from the posterior), not bias (a denoiser that drifts).
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
from tqdm.auto import tqdm

from comparisons import distributed
from comparisons.evaluate import evaluate
from comparisons.plots import write_page
from comparisons.records import write_csv
from sr_models.data import eval_pairs, list_images
from sr_models.metrics import detail_ratio, mse
from sr_models.types import SamplingSettings

COLUMNS = [
    "dataset",
    "model",
    "scale",
    "steps",
    "eta",
    "seeds",
    "n_images",
    "psnr_y_single",
    "psnr_y_of_mean",
    "psnr_y_of_expectation",
    "spread_rms",
    "hf_ratio_single",
    "hf_ratio_of_mean",
    "settings",
]


def _db(error: float) -> float:
    return float(10 * np.log10(255.0**2 / max(error, 1e-10)))


def spread_study(
    models,
    scale: int,
    datasets,
    out: Path | None,
    steps_list,
    seeds: int = 8,
    settings: SamplingSettings | None = None,
    crop=None,
    limit=None,
    split="all",
) -> list[dict]:
    """One row per dataset x model x step count: PSNR-Y of single samples, of their mean over
    ``seeds`` seeds, of the sampler's expectation (the mean's error less its finite-K spread share,
    an unbiased estimate) and the samples' RMS spread around their mean in Y grey levels; each is
    the mean over images of the per-image value, the dB ones from per-image mean squared errors."""
    if seeds < 2:
        raise ValueError("the spread needs at least 2 seeds")
    settings = settings or SamplingSettings()
    rows = []
    runs = sum(len(list_images(d, split)[:limit]) for d in datasets) * seeds
    runs *= sum(len(steps_list) if m.is_diffusion else 1 for m in models)
    bar = tqdm(total=runs, desc="spread", unit="run", dynamic_ncols=True, disable=not distributed.is_main())
    for data in datasets:
        pairs = list(eval_pairs(data, scale, limit=limit, crop=crop, split=split))
        for model in models:
            for steps in steps_list:
                run = replace(settings, steps=steps if model.is_diffusion else None)
                bar.set_postfix_str(f"{Path(data).name}/{model.name}/{steps} steps", refresh=False)
                work = partial(_image_spread, model, scale=scale, run=run, seeds=seeds, bar=bar)
                per_image = distributed.map_images(work, pairs)  # each process its share of the images
                rows.append(_spread_row(Path(data).name, model, scale, seeds, model.resolve(run), per_image))
                if not model.is_diffusion:
                    break  # one row: the step count means nothing to it
    bar.close()
    if out is not None and distributed.is_main():
        out.mkdir(parents=True, exist_ok=True)
        write_csv(out / "spread.csv", rows, COLUMNS)
        write_page(out / "spread.html", "Spread study: samples around the posterior mean", [spread_figure(rows)])
    return rows


def _image_spread(model, pair, scale: int, run: SamplingSettings, seeds: int, bar) -> dict:
    """The mean squared errors of one image's ``seeds`` samples: of each sample, of their mean, the spread."""
    evaluations = []
    for k in range(seeds):
        seeded = replace(run, seed=(run.seed or 0) + k)
        evaluations.append(evaluate(model, pair.lr, scale, seeded, pair.hr, name=pair.name))
        bar.update(distributed.progress_step())
    samples = [e.image for e in evaluations]
    mean = np.mean(np.stack(samples).astype(np.float64), axis=0)
    single = float(np.mean([mse(s, pair.hr, scale) for s in samples]))
    of_mean = mse(mean, pair.hr, scale)
    spread = max(single - of_mean, 0.0)  # the identity in the module doc, on the same Y pixels
    return {
        "single": single,
        "of_mean": of_mean,
        "spread": spread,
        "expectation": max(of_mean - spread / (seeds - 1), 1e-10),
        "hf_single": float(np.mean([e.scores["hf_ratio"] for e in evaluations])),
        "hf_mean": detail_ratio(np.round(mean).astype(np.uint8), pair.hr, scale),
    }


def _spread_row(dataset: str, model, scale: int, seeds: int, resolved: SamplingSettings, per_image: list[dict]) -> dict:
    return {
        "dataset": dataset,
        "model": model.name,
        "scale": scale,
        "steps": resolved.steps or "",
        "eta": "" if resolved.eta is None else resolved.eta,
        "seeds": seeds,
        "n_images": len(per_image),
        "psnr_y_single": float(np.mean([_db(r["single"]) for r in per_image])),
        "psnr_y_of_mean": float(np.mean([_db(r["of_mean"]) for r in per_image])),
        "psnr_y_of_expectation": float(np.mean([_db(r["expectation"]) for r in per_image])),
        "spread_rms": float(np.mean([np.sqrt(r["spread"]) for r in per_image])),
        "hf_ratio_single": float(np.mean([r["hf_single"] for r in per_image])),
        "hf_ratio_of_mean": float(np.mean([r["hf_mean"] for r in per_image])),
        "settings": resolved.describe(),
    }


def spread_figure(rows: list[dict]) -> go.Figure:
    """PSNR-Y against steps per model and set, one colour each: single samples (solid), the mean of the
    seeds (dashed) and the sampler's estimated expectation (dotted)."""
    import plotly.colors

    palette = plotly.colors.qualitative.Plotly
    fig = go.Figure()
    for i, key in enumerate(dict.fromkeys((r["model"], r["dataset"]) for r in rows)):
        sel = [r for r in rows if (r["model"], r["dataset"]) == key]
        name, color = f"{key[0]} / {key[1]}", palette[i % len(palette)]
        x = [r["steps"] or 1 for r in sel]
        for column, label, dash in (
            ("psnr_y_single", "one sample", "solid"),
            ("psnr_y_of_mean", "mean of seeds", "dash"),
            ("psnr_y_of_expectation", "expectation", "dot"),
        ):
            fig.add_trace(
                go.Scatter(
                    x=x,
                    y=[r[column] for r in sel],
                    name=f"{name}: {label}",
                    legendgroup=name,
                    mode="lines+markers",
                    line=dict(color=color, dash=dash),
                )
            )
    fig.update_xaxes(title="sampling steps", type="log")
    fig.update_yaxes(title="PSNR-Y (dB)")
    fig.update_layout(template="plotly_white", title="One sample vs the mean of several seeds: spread, not bias")
    return fig
