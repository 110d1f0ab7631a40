"""The continuous-scale study: one any-scale model against fixed-scale models routed to the same scale.

    python -m comparisons.studies scales --data ../shared/data/test/Set5 --data ../shared/data/test/Set14 \
        --data ../shared/data/test/BSD100 --crop 128 --out results/scales

At each scale (default 2, 2.5, 3, 4, inside the any-scale models' training range [1, 4], and 6, 8, 12,
16 outside it) every line of the plot gets one row per data set:

* the continuous models (``liif-x``, ``idm-x``) run at the scale itself;
* bicubic is the benchmark's ``imresize`` at the scale (the baseline every gain is measured from);
* a group of fixed-scale models, ``a+b+c`` (e.g. ``ldm-x2+ldm-x4+ldm-x8+ldm-x16``), runs its member
  with the shortest route (``sr_models.resized.at_scale``: the smallest own scale at or above the
  request, or the model cascaded with itself when none reaches it, then the protocol's bicubic resize
  down), labelled by that route, e.g. ``ldm-x4 then resize to 3x``;
* the cascades (``--cascades``) form one line: at each scale beyond every stage's own scale, the cascade
  with the smallest total that reaches it (``ldm-x4>ldm-x2`` at 6 and 8, ``ldm-x4>ldm-x4`` at 12 and 16).

Every image goes through ``comparisons.evaluate.evaluate``: PSNR-Y and SSIM-Y with ceil(s) px shaved,
LR-consistency (LR-PSNR), HF ratio; SWD (``sr_models.swd``) of each row's output set against its
references; NFE and seconds per image. Raw (no back-projection) unless ``--lr-projection`` says otherwise,
as every quality floor here. HR crops: ``--crop`` (default 128) rounded up to the scale's crop multiple
(``hr_multiple``: 130 at 2.5x, 129 at 3x, 132 at 6x and 12x), and at least ``--min-lr`` (8) LR pixels
a side (so 16x keeps a 128 px crop, an 8 px LR). Writes ``scales.csv`` (a row per data set, scale and
line, plus ``all`` pooled over every image), ``scales.html`` (PSNR-Y gain over bicubic against the scale,
log axis, the training range shaded) and ``run_card.json`` / ``run_card.md`` with the answer.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import plotly.graph_objects as go

from comparisons import distributed
from comparisons.evaluate import evaluate, mean_scores
from comparisons.plots import column_trace, write_page
from comparisons.provenance import machine_description, run_commit, start_run, weight_hashes
from comparisons.records import SWD_COLUMNS, write_csv
from sr_models.base import SRModel
from sr_models.cascade import CascadeSR
from sr_models.data import eval_pairs
from sr_models.degradation import hr_multiple
from sr_models.resized import ResizedSR, at_scale, route_kind, route_parts
from sr_models.swd import SWDProtocol, swd
from sr_models.types import SamplingSettings, SRInputError

SCALES = (2, 2.5, 3, 4, 6, 8, 12, 16)
TRAINED_RANGE = (1, 4)  # the scales liif-x and idm-x are trained on
DEFAULT_MODELS = "liif-x,idm-x,bicubic,regression-x2+regression-x4+regression-x8,ldm-x2+ldm-x4+ldm-x8+ldm-x16,sr3-x4"
DEFAULT_CASCADES = "ldm-x4>ldm-x2,ldm-x4>ldm-x4"
CASCADE_LINE = "cascades"
MIN_LR_SIDE = 8
COLUMNS = [
    "dataset",
    "scale",
    "in_training",
    "line",
    "model",
    "route",
    "runs_at",
    "family",
    "n_images",
    "hr_crop",
    "psnr_y",
    "psnr_gain",
    "ssim_y",
    "lr_psnr",
    "hf_ratio",
    *SWD_COLUMNS,
    "nfe",
    "seconds_per_image",
]


@dataclass(frozen=True)
class Line:
    """One line of the plot: models that take turns by scale. ``beyond_stages``: only scales none of a
    member's stages reaches alone (the cascade line)."""

    name: str
    members: tuple[SRModel, ...]
    beyond_stages: bool = False


def study_lines(models: list[list[SRModel]], cascades: list[SRModel]) -> list[Line]:
    """A line per model group (``a+b``: the shortest route among them wins at each scale), the cascades last."""
    lines = []
    for group in models:
        if len(group) == 1 and (group[0].continuous or group[0].family == "bicubic"):
            name = group[0].name
        else:
            name = "+".join(m.name for m in group) + " (+ resize)"
        lines.append(Line(name, tuple(group)))
    if cascades:
        lines.append(Line(CASCADE_LINE, tuple(cascades), beyond_stages=True))
    return lines


def route_total(model: SRModel, scale) -> tuple[float, int]:
    """What a route costs: the scale its networks reach and its number of stages."""
    if isinstance(model, ResizedSR):
        stages = len(model.inner.stages) if isinstance(model.inner, CascadeSR) else 1
        return model.inner_scale, stages
    if isinstance(model, CascadeSR):
        return model.scales[0], len(model.stages)
    return float(scale), 1


def route_at(line: Line, scale) -> SRModel | None:
    """The line's model at ``scale``: the member with the shortest route (None when none applies)."""
    candidates = []
    for member in line.members:
        if line.beyond_stages and scale <= max(s for _, s in member.stages):
            continue
        try:
            routed = at_scale(member, scale)
        except SRInputError:  # beyond the model's reach (a continuous model's max, a cascade's total)
            continue
        candidates.append((route_total(routed, scale), len(candidates), routed))
    return min(candidates, key=lambda c: c[:2])[2] if candidates else None


def hr_crop(scale, crop: int | None, min_lr: int = MIN_LR_SIDE) -> int | None:
    """The HR crop at ``scale``: ``crop`` or ``min_lr`` LR pixels, whichever is larger, rounded up to the
    scale's crop multiple (None: whole images)."""
    if not crop:
        return None
    multiple = hr_multiple(scale)
    return math.ceil(max(crop, math.ceil(min_lr * scale)) / multiple) * multiple


def _settings(model: SRModel, base: SamplingSettings, idm_steps: int | None) -> SamplingSettings:
    parts = route_parts(model)
    if idm_steps and any(p.family == "idm" for p in parts):
        return replace(base, steps=idm_steps)
    return base


def run_row(model: SRModel, pairs, scale, settings: SamplingSettings) -> dict:
    """Outputs and per-image numbers of one routed model over one data set."""
    runs = distributed.map_images(
        lambda pair: evaluate(model, pair.lr, scale, settings, pair.hr, name=pair.name), pairs
    )
    rows = [{**run.scores, "nfe": run.result.nfe, "seconds": run.result.seconds} for run in runs]
    return {"images": [run.image for run in runs], "rows": rows}


def summarize(line: Line, model: SRModel, dataset: str, scale, runs: list[dict], refs, crop, protocol) -> dict:
    """One CSV row: mean scores over the images, SWD of the output set against the references."""
    rows = [r for run in runs for r in run["rows"]]
    return {
        "dataset": dataset,
        "scale": scale,
        "in_training": int(TRAINED_RANGE[0] <= scale <= TRAINED_RANGE[1]),
        "line": line.name,
        "model": model.name,
        "route": route_kind(model),
        "runs_at": route_total(model, scale)[0],
        "family": model.family,
        "n_images": len(rows),
        "hr_crop": crop or "",
        **mean_scores(rows),
        **swd([im for run in runs for im in run["images"]], refs, protocol),
        "nfe": float(np.mean([r["nfe"] for r in rows])),
        "seconds_per_image": float(np.mean([r["seconds"] for r in rows])),
    }


def add_gains(rows: list[dict]) -> None:
    """``psnr_gain``: PSNR-Y over the bicubic row of the same data set and scale ("" without one)."""
    bicubic = {(r["dataset"], r["scale"]): r["psnr_y"] for r in rows if r["family"] == "bicubic"}
    for row in rows:
        base = bicubic.get((row["dataset"], row["scale"]))
        row["psnr_gain"] = "" if base is None else row["psnr_y"] - base


def run_scale(lines, scale, data: dict, settings, idm_steps, protocol, progress=print) -> list[dict]:
    """Every line's rows at one scale: one per data set and ``all`` pooled."""
    out, ran = [], set()
    for line in lines:
        model = route_at(line, scale)
        if model is None or model.name in ran:  # a cascade a group's route already ran here: one row
            continue
        ran.add(model.name)
        runs = {}
        for name, (pairs, crop) in data.items():
            runs[name] = run_row(model, pairs, scale, _settings(model, settings, idm_steps))
            out.append(summarize(line, model, name, scale, [runs[name]], [p.hr for p in pairs], crop, protocol))
        refs = [p.hr for pairs, _ in data.values() for p in pairs]
        crops = {c for _, c in data.values()}
        out.append(summarize(line, model, "all", scale, list(runs.values()), refs, crops.pop(), protocol))
        done = out[-len(data) - 1 :]
        if distributed.is_main():
            progress(f"{scale:g}x {model.name}: " + ", ".join(f"{r['dataset']} {r['psnr_y']:.2f} dB" for r in done))
    return out


def scales_study(
    models: list[list[SRModel]],
    datasets,
    out: Path,
    *,
    cascades: list[SRModel] = (),
    scales=SCALES,
    crop: int | None = 128,
    min_lr: int = MIN_LR_SIDE,
    limit: int | None = None,
    split: str = "all",
    settings: SamplingSettings | None = None,
    idm_steps: int | None = None,
    protocol: SWDProtocol = SWDProtocol(),
    notes: list[str] = (),
    progress=print,
    command: str = "",
) -> list[dict]:
    """Run every line at every scale over every data set; write the CSV, the page and the run card."""
    start_run(out)
    base = settings or SamplingSettings(lr_projection=0)  # raw unless asked
    lines, rows, started = study_lines(models, list(cascades)), [], time.perf_counter()
    if not lines:
        raise ValueError("no models to run: give --models (or --cascades) that exist")
    counts = {}
    for scale in scales:
        size = hr_crop(scale, crop, min_lr)
        data = {Path(d).name: (list(eval_pairs(d, scale, limit=limit, crop=size, split=split)), size) for d in datasets}
        counts = {name: len(pairs) for name, (pairs, _) in data.items()}
        rows += run_scale(lines, scale, data, base, idm_steps, protocol, progress)
    add_gains(rows)
    if not distributed.is_main():
        return rows
    write_csv(out / "scales.csv", rows, COLUMNS)
    write_study_page(rows, out / "scales.html")
    parts = [p for line in lines for m in line.members for p in route_parts(m)]
    card = {
        "command": command,
        "seconds": round(time.perf_counter() - started, 1),
        "data": counts,
        "crops": {f"{s:g}": hr_crop(s, crop, min_lr) for s in scales},
        "idm_steps": idm_steps,
        "parts": parts,
        "notes": list(notes),
    }
    write_card(out, rows, base, protocol, card)
    return rows


def _is_continuous(row: dict) -> bool:
    """An any-scale model's row (bicubic runs at any scale too, but it is the baseline)."""
    return row["route"] == "continuous" and row["family"] != "bicubic"


def _rows_at(rows: list[dict], dataset: str, scale) -> list[dict]:
    return [r for r in rows if r["dataset"] == dataset and r["scale"] == scale]


def _versus(row: dict, rival: dict) -> str:
    return (
        f"{row['psnr_y'] - rival['psnr_y']:+.2f} dB PSNR-Y and SWD {row['swd']:.1f} vs {rival['swd']:.1f} against "
        f"{rival['model']} ({rival['psnr_y']:.2f} dB, NFE {rival['nfe']:g})"
    )


def answer_at_largest(rows: list[dict], dataset: str) -> list[str]:
    """At the largest scale: each continuous model against every fixed-scale route and cascade there."""
    if not rows:
        return []
    scale = max(r["scale"] for r in rows)
    here = _rows_at(rows, dataset, scale)
    rivals = [r for r in here if r["route"] != "continuous" and r["family"] != "bicubic"]
    lines = []
    for row in filter(_is_continuous, here):
        head = f"At {scale:g}x ({dataset}), {row['model']} gives {row['psnr_y']:.2f} dB PSNR-Y (NFE {row['nfe']:g})"
        lines.append(
            head + ("; " + "; ".join(_versus(row, r) for r in rivals) if rivals else "; no fixed-scale rival ran")
        )
    return lines


def answer_where_continuous_wins(rows: list[dict], dataset: str) -> list[str]:
    """At which scales each continuous model beats every fixed-model-plus-resize route on PSNR-Y."""
    lines = []
    for name in dict.fromkeys(r["model"] for r in rows if _is_continuous(r) and r["dataset"] == dataset):
        wins, losses = [], []
        for row in (r for r in rows if r["model"] == name and r["dataset"] == dataset):
            resized = [r for r in _rows_at(rows, dataset, row["scale"]) if r["route"].endswith("resize")]
            if not resized:
                continue
            best = max(resized, key=lambda r: r["psnr_y"])
            (wins if row["psnr_y"] > best["psnr_y"] else losses).append(
                f"{row['scale']:g}x ({row['psnr_y'] - best['psnr_y']:+.2f} dB vs {best['model']})"
            )
        if not wins and not losses:
            lines.append(f"{dataset}: no fixed model + resize ran at {name}'s scales")
            continue
        lines.append(
            f"{dataset}: {name} beats every fixed model + resize on PSNR-Y at "
            f"{', '.join(wins) or 'no scale'}; it does not at {', '.join(losses) or 'any other scale'}"
        )
    return lines


def answer_gain_over_bicubic(rows: list[dict], dataset: str) -> list[str]:
    """Each continuous model's PSNR-Y gain over bicubic at every scale (the issue's acceptance numbers)."""
    lines = []
    for name in dict.fromkeys(r["model"] for r in rows if _is_continuous(r) and r["dataset"] == dataset):
        gains = [r for r in rows if r["model"] == name and r["dataset"] == dataset and r["psnr_gain"] != ""]
        text = ", ".join(f"{r['psnr_gain']:+.2f} dB at {r['scale']:g}x" for r in gains)
        lines.append(f"{dataset}: {name} over bicubic: {text or 'no bicubic rows'}")
    return lines


def answer(rows: list[dict], dataset: str = "all") -> list[str]:
    """The README's sentences: at the largest scale (16x), each continuous model against the fixed-scale
    routes and cascades; where one continuous model beats fixed-model-plus-resize; its gain over bicubic."""
    return [
        *answer_at_largest(rows, dataset),
        *answer_where_continuous_wins(rows, dataset),
        *answer_gain_over_bicubic(rows, dataset),
    ]


def figure(rows: list[dict], dataset: str = "all") -> go.Figure:
    """PSNR-Y gain over bicubic against the scale, one line per model line, log x, training range shaded."""
    sel = [r for r in rows if r["dataset"] == dataset and r["psnr_gain"] != ""]
    fig = go.Figure()
    for line in dict.fromkeys(r["line"] for r in sel):
        pts = sorted((r for r in sel if r["line"] == line), key=lambda r: r["scale"])
        text = [f"{r['model']}<br>PSNR-Y {r['psnr_y']:.2f} dB, SWD {r['swd']:.1f}, NFE {r['nfe']:g}" for r in pts]
        hover = "%{x:g}x: %{y:+.2f} dB<br>%{text}<extra></extra>"
        fig.add_trace(
            column_trace(pts, "scale", "psnr_gain", mode="lines+markers", name=line, text=text, hovertemplate=hover)
        )
    ticks = sorted({TRAINED_RANGE[0], *(r["scale"] for r in sel)})
    span = [math.log10(TRAINED_RANGE[0] * 0.95), math.log10(max(ticks) * 1.1)]  # a log axis' range is in log10
    fig.add_vrect(x0=TRAINED_RANGE[0], x1=TRAINED_RANGE[1], fillcolor="grey", opacity=0.12, line_width=0)
    fig.add_annotation(x=0.01, y=1.0, xref="paper", yref="paper", text="trained scales [1, 4]", showarrow=False)
    fig.update_layout(
        template="plotly_white",
        title=f"PSNR-Y gain over bicubic against the scale ({dataset})",
        xaxis={
            "title": "scale (log)",
            "type": "log",
            "range": span,
            "tickvals": ticks,
            "ticktext": [f"{t:g}" for t in ticks],
        },
        yaxis={"title": "PSNR-Y gain over bicubic (dB)", "zeroline": True},
    )
    return fig


def write_study_page(rows: list[dict], page: Path, plotly_js="cdn") -> None:
    figures = [figure(rows, d) for d in ["all", *dict.fromkeys(r["dataset"] for r in rows if r["dataset"] != "all")]]
    write_page(page, "Continuous-scale study", figures, plotly_js)


def write_card(out: Path, rows: list[dict], base: SamplingSettings, protocol: SWDProtocol, facts: dict) -> None:
    """``run_card.json`` and ``run_card.md``: command, commit, weights, data, crops, settings, machine, answer."""
    parts = list({id(p): p for p in facts.pop("parts")}.values())
    card = {
        "command": facts.pop("command"),
        "commit": run_commit(),
        "machine": machine_description(),
        "processes": distributed.processes(),
        **facts,
        "weights": weight_hashes(parts),
        "sampling": f"each model's default (idm steps {facts['idm_steps'] or 'default'}), seed "
        f"{base.seed if base.seed is not None else 0}, back-projection "
        f"{base.lr_projection if base.lr_projection is not None else 'model default'} (0: raw)",
        "protocol": "HR center crop (sizes in crops), LR = MATLAB imresize at 1/s; PSNR-Y / SSIM-Y with ceil(s) px "
        "shaved; LR-PSNR on RGB; routes: sr_models.resized.at_scale",
        "swd": protocol.describe(),
        "answer": answer(rows),
    }
    (out / "run_card.json").write_text(json.dumps(card, indent=2, default=str) + "\n")
    md = ["# Continuous-scale study run card", "", *[f"- **{k}**: {v}" for k, v in card.items() if k != "answer"]]
    (out / "run_card.md").write_text("\n".join(md + ["", "## Answer", "", *[f"- {a}" for a in card["answer"]]]) + "\n")
