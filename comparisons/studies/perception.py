"""The perception-distortion study: where each family sits on both axes of quality.

    python -m comparisons.studies perception --data ../shared/data/test/Set14 --data ../shared/data/test/BSD100 \
        --scale 4 --crop 128 --out results/perception-x4

Every 4x model (bicubic, regression, gan, the diffusion models; Hub models when cached) is scored on
distortion (PSNR-Y, SSIM-Y, LR-PSNR) and on the distribution of its outputs against the references
(SWD on Laplacian-pyramid patches, ``sr_models.swd``: no pretrained weights), with detail (HF ratio)
and diversity (mean pairwise RMS of two seeds, ``sr_models.uncertainty.diversity``). Diffusion models
run over a grid of steps x DDIM eta, plus the pixel mean of K seeds (the posterior mean estimate) at
chosen points. Blau & Michaeli (2018): no method can be best on both axes; the Pareto front shows the
trade-off each family offers. Writes ``perception.csv`` (one row per dataset x model x setting, and the
datasets pooled as ``all``), ``perception.html`` (the P-D plane per dataset with its Pareto front) and a
run card.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import plotly.graph_objects as go

from comparisons import distributed
from comparisons.evaluate import IMAGE_SCORES, evaluate, image_scores, mean_scores
from comparisons.plots import column_trace, write_page
from comparisons.provenance import run_header, start_run
from comparisons.records import SWD_COLUMNS, write_csv
from sr_models.data import eval_pairs
from sr_models.swd import SWDProtocol, swd
from sr_models.types import SamplingSettings
from sr_models.uncertainty import diversity, pixel_mean

COLUMNS = [
    "dataset",
    "model",
    "family",
    "scale",
    "steps",
    "eta",
    "seeds",
    "nfe",
    "n_images",
    *IMAGE_SCORES,
    *SWD_COLUMNS,
    "diversity",
    "seconds_per_image",
    "pareto",
]


@dataclass(frozen=True)
class Point:
    """One place on the plane: a model at a setting; ``seeds`` > 1 is the pixel mean of that many seeds."""

    model: object
    steps: int | None = None
    eta: float | None = None
    seeds: int = 1

    @property
    def label(self) -> str:
        if self.steps is None:
            return self.model.name
        mean = f", mean of {self.seeds}" if self.seeds > 1 else ""
        return f"{self.model.name} [{self.steps} steps, eta {self.eta:g}{mean}]"


def study_points(models, steps_list, etas, mean_seeds: int, mean_at, steps_for=None) -> list[Point]:
    """Deterministic models once; diffusion models over steps x eta (eta is moot at 1 step: run once),
    and the mean of ``mean_seeds`` seeds at each (steps, eta) of ``mean_at``. ``steps_for`` maps a model
    name to its own step list (a pixel-space model's long runs cost 10x a latent one's)."""
    points = []
    for model in models:
        if not model.is_diffusion:
            points.append(Point(model))
            continue
        steps = (steps_for or {}).get(model.name, steps_list)
        grid = [(s, e) for s in steps for e in etas if s > 1 or e == etas[0]]
        points += [Point(model, s, e) for s, e in grid]
        if mean_seeds > 1:
            points += [Point(model, s, e, mean_seeds) for s, e in mean_at]
    return points


def _settings(point: Point, base: SamplingSettings, seed: int) -> SamplingSettings:
    if point.steps is None:
        return replace(base, seed=seed)
    return replace(base, steps=point.steps, eta=point.eta, sampler="ddim", seed=seed)


def run_point(point: Point, pairs, scale: int, base: SamplingSettings, diversity_images: int) -> dict:
    """Output images and per-image numbers of one point over one dataset. A single-sample diffusion
    point also runs seed 1 on its first ``diversity_images`` images, for diversity only (not timed)."""
    per_image = distributed.map_images(
        lambda job: _run_image(point, job[1], scale, base, job[0] < diversity_images), list(enumerate(pairs))
    )
    return {
        "images": [image for image, _, _ in per_image],
        "rows": [row for _, row, _ in per_image],
        "diversity": [spread for _, _, spread in per_image if spread is not None],
    }


def _run_image(point: Point, pair, scale: int, base: SamplingSettings, with_diversity: bool) -> tuple:
    """One image of a point: (its output or the mean of its K samples, its row, the samples' diversity or None)."""
    count = point.seeds if point.seeds > 1 else (2 if point.model.is_diffusion and with_diversity else 1)
    runs = [evaluate(point.model, pair.lr, scale, _settings(point, base, s), pair.hr) for s in range(count)]
    samples = [r.image for r in runs]
    counted = runs if point.seeds > 1 else runs[:1]  # what the point costs: one sample, or all K
    if point.seeds > 1:
        image = np.round(pixel_mean(samples)).astype(np.uint8)
        scores = image_scores(image, pair.lr, scale, pair.hr)
    else:
        image, scores = samples[0], runs[0].scores
    row = {**scores, "nfe": sum(r.result.nfe for r in counted), "seconds": sum(r.result.seconds for r in counted)}
    return image, row, diversity(samples) if count > 1 else None


def summarize(point: Point, dataset: str, scale: int, runs: list[dict], refs: list, protocol: SWDProtocol) -> dict:
    """One CSV row: mean scores over the images, SWD of the output set against the reference set."""
    rows = [r for run in runs for r in run["rows"]]
    spreads = [d for run in runs for d in run["diversity"]]
    return {
        "dataset": dataset,
        "model": point.label,
        "family": point.model.family,
        "scale": scale,
        "steps": "" if point.steps is None else point.steps,
        "eta": "" if point.eta is None else point.eta,
        "seeds": point.seeds,
        "nfe": float(np.mean([r["nfe"] for r in rows])),
        "n_images": len(rows),
        **mean_scores(rows),
        **swd([im for run in runs for im in run["images"]], refs, protocol),
        "diversity": 0.0 if not point.model.is_diffusion else (float(np.mean(spreads)) if spreads else ""),
        "seconds_per_image": float(np.mean([r["seconds"] for r in rows])),
    }


def mark_pareto(rows: list[dict]) -> None:
    """``pareto`` = 1 where no other row of the same dataset has PSNR-Y >= and SWD <= with one strict."""
    for row in rows:
        rivals = [r for r in rows if r["dataset"] == row["dataset"] and r is not row]
        row["pareto"] = int(not any(_dominates(r, row) for r in rivals))


def _dominates(a: dict, b: dict) -> bool:
    better_or_equal = a["psnr_y"] >= b["psnr_y"] and a["swd"] <= b["swd"]
    return better_or_equal and (a["psnr_y"] > b["psnr_y"] or a["swd"] < b["swd"])


def dominating(rows: list[dict], rival_family: str = "gan", dataset: str = "all") -> list[str]:
    """The answer to "does any diffusion setting dominate the GAN": one line per GAN row of ``dataset``."""
    lines = []
    for rival in [r for r in rows if r["family"] == rival_family and r["dataset"] == dataset]:
        wins = [
            r
            for r in rows
            if r["dataset"] == dataset
            and r["family"] not in (rival_family, "bicubic", "regression")
            and r["psnr_y"] >= rival["psnr_y"]
            and r["swd"] < rival["swd"]
        ]
        if not wins:
            lines.append(
                f"{dataset}: no diffusion setting has lower SWD than {rival['model']} "
                f"(PSNR-Y {rival['psnr_y']:.2f}, SWD {rival['swd']:.1f}) at equal or higher PSNR-Y"
            )
            continue
        best = min(wins, key=lambda r: r["nfe"])
        lines.append(
            f"{dataset}: {len(wins)} diffusion settings dominate {rival['model']} (PSNR-Y "
            f"{rival['psnr_y']:.2f}, SWD {rival['swd']:.1f}); the cheapest is {best['model']} at NFE "
            f"{best['nfe']:g} (PSNR-Y {best['psnr_y']:.2f}, SWD {best['swd']:.1f})"
        )
    return lines


DETAIL_PSNR_LOSS = 1.0  # dB of PSNR-Y the detail preset may give up against the fidelity one


def pick_presets(rows: list[dict], psnr_loss: float = DETAIL_PSNR_LOSS, dataset: str = "all") -> dict[str, dict]:
    """Each diffusion model's presets from its single-sample rows of ``dataset``: fidelity = the (steps, eta)
    of the highest PSNR-Y; detail = the lowest SWD among the settings within ``psnr_loss`` dB of it.
    Returns {model name: {"fidelity": {"steps", "eta"}, "detail": {...}}}."""
    picked = {}
    grid = [r for r in rows if r["dataset"] == dataset and r["steps"] != "" and r["seeds"] == 1]
    for name in dict.fromkeys(r["model"].split(" [")[0] for r in grid):
        own = [r for r in grid if r["model"].split(" [")[0] == name]
        fidelity = max(own, key=lambda r: (r["psnr_y"], -r["nfe"]))
        near = [r for r in own if r["psnr_y"] >= fidelity["psnr_y"] - psnr_loss]
        detail = min(near, key=lambda r: (r["swd"], r["nfe"]))
        picked[name] = {"fidelity": _preset(fidelity), "detail": _preset(detail)}
    return picked


def _preset(row: dict) -> dict:
    return {
        "steps": int(row["steps"]),
        "eta": float(row["eta"]),
        "psnr_y": round(row["psnr_y"], 3),
        "swd": round(row["swd"], 2),
    }


def update_cards(models, presets: dict[str, dict], note: str) -> list[tuple[str, Path]]:
    """Write ``presets`` into each folder model's card (``"presets"``: what the app's Preset radio reads);
    returns the (name, folder) of each card written."""
    from sr_models.cards import read_card, write_card

    updated = []
    for model in models:
        folder = getattr(model, "folder", None)
        if folder is None or model.name not in presets:
            continue
        card = read_card(folder)
        card["presets"] = {**presets[model.name], "protocol": note}
        write_card(folder, card)
        updated.append((model.name, Path(folder)))
    return updated


def figure(rows: list[dict], dataset: str = "all") -> go.Figure:
    """The P-D plane: PSNR-Y (right is better) against SWD (down is better), one colour per model."""
    sel = [r for r in rows if r["dataset"] == dataset]
    fig = go.Figure()
    for base in dict.fromkeys(r["model"].split(" [")[0] for r in sel):
        for seeds in sorted({r["seeds"] for r in sel if r["model"].split(" [")[0] == base}):
            pts = [r for r in sel if r["model"].split(" [")[0] == base and r["seeds"] == seeds]
            name = base if seeds == 1 else f"{base}, mean of {seeds} seeds"
            text = [r["model"] + f"<br>NFE {r['nfe']:g}, HF {r['hf_ratio']:.2f}" for r in pts]
            marker = {"size": 9, "symbol": "diamond" if seeds > 1 else "circle"}
            fig.add_trace(
                column_trace(
                    pts, "psnr_y", "swd", mode="markers", name=name, text=text, hoverinfo="text", marker=marker
                )
            )
    front = sorted((r for r in sel if r.get("pareto")), key=lambda r: r["psnr_y"])
    front_line = {"dash": "dot", "color": "grey"}
    fig.add_trace(
        column_trace(front, "psnr_y", "swd", mode="lines", name="Pareto front", line=front_line, hoverinfo="skip")
    )
    fig.update_layout(
        template="plotly_white",
        title=f"Perception-distortion plane ({dataset})",
        xaxis_title="PSNR-Y (dB), higher is better",
        yaxis_title="SWD x 1e3, lower is better",
    )
    return fig


def perception_study(
    models,
    scale: int,
    datasets,
    out: Path,
    steps_list=(1, 2, 5, 10, 20, 50),
    etas=(0.0, 1.0),
    *,
    mean_seeds: int = 4,
    mean_at=((20, 1.0),),
    crop=None,
    limit=None,
    split="all",
    settings: SamplingSettings | None = None,
    protocol: SWDProtocol = SWDProtocol(),
    diversity_images: int = 8,
    steps_for=None,
    progress=print,
    command: str = "",
) -> list[dict]:
    """Run every point over every dataset; write the CSV, the page and the run card; return the rows."""
    start_run(out)
    base = settings or SamplingSettings(lr_projection=0)  # raw unless asked
    data = {Path(d).name: list(eval_pairs(d, scale, limit=limit, crop=crop, split=split)) for d in datasets}
    points = study_points(models, steps_list, etas, mean_seeds, mean_at, steps_for)
    rows, started = [], time.perf_counter()
    for n, point in enumerate(points, 1):
        runs = {name: run_point(point, pairs, scale, base, diversity_images) for name, pairs in data.items()}
        for name, pairs in data.items():
            rows.append(summarize(point, name, scale, [runs[name]], [p.hr for p in pairs], protocol))
        all_refs = [p.hr for pairs in data.values() for p in pairs]
        rows.append(summarize(point, "all", scale, list(runs.values()), all_refs, protocol))
        if not distributed.is_main():
            continue  # the main process reports and writes
        progress(
            f"[{n}/{len(points)}] {point.label}: "
            + ", ".join(f"{r['dataset']} {r['psnr_y']:.2f} dB / SWD {r['swd']:.1f}" for r in rows[-len(data) - 1 :])
        )
        write_csv(out / "perception.partial.csv", rows, COLUMNS)  # nothing lost if a long run is stopped
    mark_pareto(rows)
    if not distributed.is_main():
        return rows
    write_csv(out / "perception.csv", rows, COLUMNS)
    write_study_page(rows, out / "perception.html")
    write_card(out, rows, protocol, command, data, crop, base, time.perf_counter() - started)
    (out / "perception.partial.csv").unlink(missing_ok=True)
    return rows


def write_study_page(rows: list[dict], page: Path, plotly_js="cdn") -> None:
    write_page(
        page,
        "Perception-distortion study",
        [figure(rows, d) for d in dict.fromkeys(r["dataset"] for r in rows)],
        plotly_js,
    )


def write_card(out: Path, rows, protocol: SWDProtocol, command: str, data: dict, crop, base, seconds: float) -> None:
    answer = [line for d in dict.fromkeys(r["dataset"] for r in rows) for line in dominating(rows, dataset=d)]
    card = {
        **run_header(command, seconds),
        "data": {name: len(pairs) for name, pairs in data.items()},
        "crop": crop,
        "sampling": f"DDIM, timestep spacing {base.spacing or 'each model default'}, back-projection "
        f"{base.lr_projection if base.lr_projection is not None else 'model default'}; sample seeds 0 (and 1 for "
        "diversity); a mean of K uses seeds 0..K-1",
        "swd": protocol.describe(),
        "diversity": "mean pairwise RMS difference (grey levels) of the seeds' outputs per image, averaged",
        "answer": answer,
    }
    (out / "run_card.json").write_text(json.dumps(card, indent=2, default=str) + "\n")
    md = ["# Perception-distortion study run card", "", *[f"- **{k}**: {v}" for k, v in card.items() if k != "answer"]]
    (out / "run_card.md").write_text("\n".join(md + ["", "## Answer", "", *[f"- {a}" for a in answer]]) + "\n")
