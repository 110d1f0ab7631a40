"""The cascade study: is a chain of small-scale models (SR3's claim: with fewer refinement steps)
better than one large-scale model, at equal total network evaluations and at equal wall clock?

    python -m comparisons.studies cascade --data ../shared/data/test/Set5 --data ../shared/data/test/Set14 \
        --data ../shared/data/test/BSD100 --crop 256 --out results/cascade

Configurations (each skipped, with a note, when its models are missing):

* 16x: ``ldm-x16`` at every N of the grid; ``ldm-x4>ldm-x4`` at every (N1, N2); the same with the
  conditioning-augmented stage 2 (``--aug-model``); stage 2 started SDEdit-style from the noised
  upsample of stage 1's output (``--strengths``); ``regression-x4>regression-x4`` and bicubic as
  reference points. ``--aug-grid`` gives the augmented cascade a smaller grid; SDEdit runs
  stage 1 at ``--sdedit-n1`` steps and stage 2 over the grid.
* 8x: ``ldm-x8`` at every N; ``ldm-x2>ldm-x4`` and ``ldm-x4>ldm-x2`` at equal steps per stage;
  regression and bicubic references.

Every diffusion model samples with DDIM (eta 0) and, by default, ``trailing`` timestep spacing
(``--spacing``): "leading" runs a 1-step schedule at t = 0, which would handicap exactly the
low step counts the comparison is about.

Each configuration runs with back-projection onto the original LR as the models default to
(``bp``) and without any (``raw``, the quality floors' protocol), as ``--projection`` says.
Writes ``cascade.csv`` (a row per configuration, projection and dataset, plus ``all`` pooled over
every image), ``cascade_per_image.csv``, ``cascade.html`` (quality vs total NFE and vs seconds
with the Pareto fronts, the N1 x N2 heat maps) and ``run_card.json`` / ``run_card.md`` (commit,
model hashes, data, seeds, settings, machine, and the answer).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots
from tqdm.auto import tqdm

from comparisons import distributed
from comparisons.evaluate import SCORE_COLUMNS, evaluate
from comparisons.plots import log_axis, write_page
from comparisons.provenance import folder_digest, machine_description, run_commit
from comparisons.records import read_csv, write_csv
from sr_models.data import eval_pairs
from sr_models.registry import get_models
from sr_models.types import SamplingSettings, StageResult

PROJECTIONS = {"bp": None, "raw": 0}  # None: each model's default back-projection
COLUMNS = [
    "scale",
    "group",
    "config",
    "model",
    "n1",
    "n2",
    "strength",
    "projection",
    "dataset",
    "n_images",
    *SCORE_COLUMNS,
    "nfe",
    "seconds",
    "peak_memory_mb",
    "stage1_nfe",
    "stage2_nfe",
    "stage1_seconds",
    "stage2_seconds",
    "stage1_peak_mb",
    "stage2_peak_mb",
    "settings",
]
INTEGER_COLUMNS = ("scale", "n1", "n2", "n_images")
TEXT_COLUMNS = ("group", "config", "model", "projection", "dataset", "settings")


@dataclass(frozen=True)
class Config:
    scale: int
    group: str  # what the point is in the plots: "ldm-x16", "ldm-x4>ldm-x4", "reference", ...
    model: str  # a model name or cascade spec
    settings: SamplingSettings
    n1: int | None = None  # steps of the single model or of stage 1
    n2: int | None = None  # steps of stage 2
    strength: float | None = None  # stage 2's SDEdit strength

    @property
    def label(self) -> str:
        steps = "" if self.n1 is None else f" [{self.n1}" + ("" if self.n2 is None else f",{self.n2}") + "]"
        return self.model + steps + (f" s={self.strength:g}" if self.strength else "")


def _pair(model: str, n1: int, n2: int, group: str, strength: float | None = None, scale: int = 16) -> Config:
    stage2 = SamplingSettings(steps=n2, strength=strength)
    return Config(scale, group, model, SamplingSettings(stages=(SamplingSettings(steps=n1), stage2)), n1, n2, strength)


def study_configs(
    grid, aug_model: str | None, strengths, scales=(16, 8), aug_grid=None, sdedit_n1: int = 2
) -> list[Config]:
    configs = []
    if 16 in scales:
        configs += [
            Config(16, "reference", "bicubic", SamplingSettings()),
            Config(16, "reference", "regression-x4>regression-x4", SamplingSettings()),
        ]
        configs += [Config(16, "ldm-x16", "ldm-x16", SamplingSettings(steps=n), n) for n in grid]
        configs += [_pair("ldm-x4>ldm-x4", a, b, "ldm-x4>ldm-x4") for a in grid for b in grid]
        if aug_model:
            configs += [
                _pair(f"ldm-x4>{aug_model}", a, b, f"ldm-x4>{aug_model}")
                for a in aug_grid or grid
                for b in aug_grid or grid
            ]
        for s in strengths:  # stage 2 from the noised upsample of stage 1's output, over stage 2's steps
            configs += [_pair("ldm-x4>ldm-x4", sdedit_n1, b, f"ldm-x4>ldm-x4 SDEdit {s:g}", s) for b in grid]
    if 8 in scales:
        configs += [
            Config(8, "reference", "bicubic", SamplingSettings()),
            Config(8, "reference", "regression-x8", SamplingSettings()),
            Config(8, "reference", "regression-x2>regression-x4", SamplingSettings()),
        ]
        configs += [Config(8, "ldm-x8", "ldm-x8", SamplingSettings(steps=n), n) for n in grid]
        for spec in ("ldm-x2>ldm-x4", "ldm-x4>ldm-x2"):
            configs += [_pair(spec, n, n, spec, scale=8) for n in grid]
    return configs


def _stage_cost(stages: list[StageResult], i: int, key: str):
    return getattr(stages[i], key) if i < len(stages) else 0


def _runnable(configs, models: dict) -> tuple[list[tuple[Config, object]], list[str]]:
    """(config, model) for every configuration whose models are here; a note for each one skipped."""
    notes, runnable = [], []
    for config in configs:
        try:
            (model,) = get_models([config.model], models)
            model.check_available()
            runnable.append((config, model))
        except (KeyError, RuntimeError, ValueError) as err:
            notes.append(f"skipped {config.label}: {err.args[0] if err.args else err}")
    return runnable, list(dict.fromkeys(notes))


def _image_row(config: Config, projection: str, dataset: str, evaluation) -> dict:
    """One per-image row: the configuration, the scores, and the cost of each stage."""
    result, stages = evaluation.result, evaluation.result.stages
    return {
        "scale": config.scale,
        "group": config.group,
        "config": config.label,
        "model": config.model,
        "n1": config.n1,
        "n2": config.n2,
        "strength": config.strength,
        "projection": projection,
        "dataset": dataset,
        "image": evaluation.row["image"],
        **{k: evaluation.scores[k] for k in ("psnr_y", "ssim_y", "lr_psnr", "hf_ratio")},
        "lpips": evaluation.scores.get("lpips"),
        "nfe": result.nfe,
        "seconds": result.seconds,
        "peak_memory_mb": result.peak_memory_mb,
        **{f"stage{i + 1}_nfe": _stage_cost(stages, i, "nfe") for i in (0, 1)},
        **{f"stage{i + 1}_seconds": _stage_cost(stages, i, "seconds") for i in (0, 1)},
        **{f"stage{i + 1}_peak_mb": _stage_cost(stages, i, "peak_memory_mb") for i in (0, 1)},
        "settings": evaluation.row["settings"],
    }


def _run_image(config: Config, model, settings, projection: str, dataset: str, lpips_fn, bar, pair) -> dict:
    """One image through one configuration: its per-image row."""
    evaluation = evaluate(model, pair.lr, config.scale, settings, pair.hr, name=pair.name, lpips_fn=lpips_fn)
    bar.update(distributed.progress_step())
    return _image_row(config, projection, dataset, evaluation)


def run_study(
    configs,
    datasets,
    out: Path,
    crop: int | None,
    limit: int | None,
    projections=("bp", "raw"),
    models: dict | None = None,
    lpips_fn=None,
    spacing: str | None = "trailing",
) -> tuple[list[dict], list[str]]:
    """Run every configuration on every image; return (summary rows, notes)."""
    from sr_models.registry import discover

    runnable, notes = _runnable(configs, models if models is not None else discover())
    pairs = {
        (d, s): list(eval_pairs(d, s, limit=limit, crop=crop)) for d in datasets for s in {c.scale for c, _ in runnable}
    }
    total = sum(len(pairs[(d, c.scale)]) for d in datasets for c, _ in runnable) * len(projections)
    per_image = []
    bar = tqdm(total=total, desc="cascade study", unit="img", dynamic_ncols=True, disable=not distributed.is_main())
    for config, model in runnable:
        model.load_weights()
        for projection in projections:
            settings = replace(config.settings, lr_projection=PROJECTIONS[projection], seed=0, spacing=spacing)
            for data in datasets:
                run = partial(_run_image, config, model, settings, projection, Path(data).name, lpips_fn, bar)
                per_image += distributed.map_images(run, pairs[(data, config.scale)])  # each process its share
    bar.close()
    rows = summarize(per_image)
    if not distributed.is_main():
        return rows, notes
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "cascade_per_image.csv", per_image, ["image", *COLUMNS])
    write_csv(out / "cascade.csv", rows, COLUMNS)
    return rows, notes


def summarize(per_image: list[dict]) -> list[dict]:
    """Means per configuration, projection and dataset, and pooled over all images ('all')."""
    groups: dict[tuple, list[dict]] = {}
    for r in per_image:
        for dataset in (r["dataset"], "all"):
            groups.setdefault((r["scale"], r["config"], r["projection"], dataset), []).append(r)
    rows = []
    for (_, _, _, dataset), sel in groups.items():
        first = sel[0]
        row = {
            k: first[k] for k in ("scale", "group", "config", "model", "n1", "n2", "strength", "projection", "settings")
        }
        row.update({"dataset": dataset, "n_images": len(sel)})
        for key in ("peak_memory_mb", "stage1_peak_mb", "stage2_peak_mb"):  # the worst image
            row[key] = max(r[key] for r in sel)
        for key in (*SCORE_COLUMNS, "nfe", "seconds", "stage1_nfe", "stage2_nfe", "stage1_seconds", "stage2_seconds"):
            values = [r[key] for r in sel if r[key] is not None]
            row[key] = float(np.nanmean(values)) if values else None
        rows.append(row)
    return rows


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats in both cost (lower) and quality (higher)."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], -np.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def answer(
    rows: list[dict],
    dataset: str,
    projection: str,
    single: str = "ldm-x16",
    cascade: str = "ldm-x4>ldm-x4",
    scale: int = 16,
) -> list[str]:
    """The study's answer in sentences: at equal total NFE and equal wall clock, who wins and by how much."""
    sel = [r for r in rows if r["dataset"] == dataset and r["projection"] == projection and r["scale"] == scale]
    singles = sorted((r for r in sel if r["group"] == single), key=lambda r: r["nfe"])
    chains = [r for r in sel if r["group"].startswith(cascade) and r["model"].count(">") == 1]
    if not singles or not chains:
        return [f"{dataset}, {projection}: not enough configurations to compare {single} with {cascade}."]
    lines = []
    for s in singles:
        same_nfe = [c for c in chains if c["nfe"] <= s["nfe"]]
        same_time = [c for c in chains if c["seconds"] <= s["seconds"] * 1.05]
        parts = [f"{single} at {s['n1']} steps: {s['psnr_y']:.2f} dB ({s['nfe']:.0f} NFE, {s['seconds']:.2f} s)"]
        for what, pool in (("at no more NFE", same_nfe), ("at no more wall clock", same_time)):
            if pool:
                b = max(pool, key=lambda r: r["psnr_y"])
                parts.append(
                    f"best cascade {what}: {b['config']} {b['psnr_y']:.2f} dB "
                    f"({b['psnr_y'] - s['psnr_y']:+.2f}; {b['nfe']:.0f} NFE, {b['seconds']:.2f} s)"
                )
            else:
                parts.append(f"no cascade {what}")
        lines.append("; ".join(parts))
    best = max(chains, key=lambda r: r["psnr_y"])
    lines.append(
        f"best cascade overall: {best['config']} {best['psnr_y']:.2f} dB at {best['nfe']:.0f} NFE; "
        f"best single: {max(singles, key=lambda r: r['psnr_y'])['psnr_y']:.2f} dB"
    )
    return [f"{dataset}, {projection}: {line}" for line in lines]


ZERO_NFE_AT = 0.5  # where NFE 0 (bicubic: no network) is drawn on the log NFE axis, labelled "0"
GROUP_LABELS = {"reference": "baselines"}  # the CSV's group "reference" holds bicubic and regression


def _x(value: float, key: str) -> float:
    """Where a value sits on its log axis: NFE 0 at the axis start, seconds at least 1 ms."""
    if key == "nfe":
        return ZERO_NFE_AT if value == 0 else value
    return max(value, 1e-3)


def _axis(values: list[float], key: str) -> dict:
    """1-2-5 ticks in whole numbers; the NFE axis starts with a "0" tick at ``ZERO_NFE_AT`` (log scale has no 0)."""
    if key != "nfe":
        return log_axis(values, "seconds per image")
    axis = log_axis([v for v in values if v >= 1] or [1], "total NFE (0 = no network, drawn at the axis start)")
    return {**axis, "tickvals": [ZERO_NFE_AT, *axis["tickvals"]], "ticktext": ["0", *axis["ticktext"]]}


def _points(g: list[dict], key: str, group: str, colour: str, first: bool) -> go.Scatter:
    """One group's points on one panel; NFE 0 as an open diamond, so it does not read as a measured 0.5."""
    zero = [key == "nfe" and r["nfe"] == 0 for r in g]
    return go.Scatter(
        x=[_x(r[key], key) for r in g],
        y=[r["psnr_y"] for r in g],
        mode="markers",
        name=GROUP_LABELS.get(group, group),
        legendgroup=group,
        showlegend=first,
        marker={"color": colour, "size": 8, "symbol": ["diamond-open" if z else "circle" for z in zero]},
        text=[r["config"] for r in g],
        customdata=[[r["ssim_y"], r["lr_psnr"], r["hf_ratio"], r["nfe"], r["seconds"]] for r in g],
        hovertemplate="%{text}<br>PSNR-Y %{y:.2f}<br>SSIM-Y %{customdata[0]:.4f}<br>LR-PSNR "
        "%{customdata[1]:.1f}<br>detail %{customdata[2]:.3f}<br>NFE %{customdata[3]:.0f}<br>"
        "%{customdata[4]:.3f} s<extra></extra>",
    )


def figure(rows: list[dict], dataset: str = "all") -> go.Figure:
    """Quality vs total NFE and vs seconds (Pareto fronts dashed), per projection and scale. The baselines
    (CSV group "reference") are named so in the legend; NFE 0 sits at the start of the log axis, labelled 0."""
    panels = sorted({(r["scale"], r["projection"]) for r in rows}, key=lambda k: (-k[0], k[1]))
    titles = [f"{s}x, {p}: PSNR-Y vs {x}" for s, p in panels for x in ("total NFE", "seconds per image")]
    fig = make_subplots(
        rows=len(panels), cols=2, subplot_titles=titles, vertical_spacing=0.08 / max(1, len(panels) / 3)
    )
    palette = ["#636efa", "#ef553b", "#00cc96", "#ab63fa", "#ffa15a", "#19d3f3", "#ff6692", "#b6e880", "#fecb52"]
    colours: dict[str, str] = {}
    in_legend: set[str] = set()
    for row_i, (scale, projection) in enumerate(panels, start=1):
        sel = [r for r in rows if r["dataset"] == dataset and r["scale"] == scale and r["projection"] == projection]
        for col, key in ((1, "nfe"), (2, "seconds")):
            for group in dict.fromkeys(r["group"] for r in sel):
                g = [r for r in sel if r["group"] == group]
                colour = colours.setdefault(group, palette[len(colours) % len(palette)])
                fig.add_trace(_points(g, key, group, colour, group not in in_legend), row_i, col)
                in_legend.add(group)
            front = pareto_front([(r[key], r["psnr_y"]) for r in sel])
            pts = sorted((sel[i][key], sel[i]["psnr_y"]) for i in front)
            fig.add_trace(
                go.Scatter(
                    x=[_x(p[0], key) for p in pts],
                    y=[p[1] for p in pts],
                    mode="lines",
                    line={"dash": "dash", "color": "gray"},
                    name="Pareto front",
                    showlegend=row_i == 1 and col == 1,
                    legendgroup="front",
                ),
                row_i,
                col,
            )
            fig.update_xaxes(**_axis([r[key] for r in sel], key), row=row_i, col=col)
            fig.update_yaxes(title="PSNR-Y (dB)", row=row_i, col=col)
    fig.update_layout(template="plotly_white", height=380 * len(panels), title=f"Cascade study ({dataset})")
    return fig


def heatmaps(rows: list[dict], dataset: str = "all") -> go.Figure:
    """PSNR-Y over the (N1, N2) grid: a row per cascade group with a full grid, a column per projection."""
    sel = [r for r in rows if r["n2"] is not None and r["dataset"] == dataset]

    def full_grid(group):  # a real N1 x N2 grid, not the 8x cascades' diagonal
        cells = {(r["n1"], r["n2"]) for r in sel if r["group"] == group}
        n1s, n2s = {a for a, _ in cells}, {b for _, b in cells}
        return len(n1s) > 1 and len(n2s) > 1 and len(cells) == len(n1s) * len(n2s)

    groups = [g for g in dict.fromkeys(r["group"] for r in sel) if full_grid(g)]
    projections = sorted({r["projection"] for r in sel})
    if not groups:
        return go.Figure()
    titles = [f"{g} ({p})" for g in groups for p in projections]
    fig = make_subplots(rows=len(groups), cols=len(projections), subplot_titles=titles, horizontal_spacing=0.12)
    for i, group in enumerate(groups, start=1):
        for j, projection in enumerate(projections, start=1):
            cells = [r for r in sel if r["group"] == group and r["projection"] == projection]
            n1s, n2s = sorted({r["n1"] for r in cells}), sorted({r["n2"] for r in cells})
            z = [[next((r["psnr_y"] for r in cells if r["n1"] == a and r["n2"] == b), None) for a in n1s] for b in n2s]
            fig.add_trace(
                go.Heatmap(
                    z=z,
                    x=[str(a) for a in n1s],
                    y=[str(b) for b in n2s],
                    colorscale="Viridis",
                    showscale=False,
                    texttemplate="%{z:.2f}",
                    hovertemplate="N1 %{x}, N2 %{y}: %{z:.2f} dB<extra></extra>",
                ),
                i,
                j,
            )
            fig.update_xaxes(title="stage 1 steps", type="category", row=i, col=j)
            fig.update_yaxes(title="stage 2 steps", type="category", row=i, col=j)
    fig.update_layout(
        template="plotly_white",
        height=330 * len(groups) + 80,
        title=f"PSNR-Y (dB) over the split of steps between the stages ({dataset}; brighter is better)",
    )
    return fig


def load_rows(path: Path) -> list[dict]:
    """``cascade.csv`` back into rows (numbers as numbers, empty cells None), to redraw the plots without rerunning."""
    return read_csv(path, integers=INTEGER_COLUMNS, texts=TEXT_COLUMNS, empty=None)


def write_study_page(rows: list[dict], page: Path, plotly_js="cdn") -> None:
    """The study's HTML: the scatter panels, then the heat maps over all images and over Set14."""
    write_page(page, "Cascade study", [figure(rows), heatmaps(rows), heatmaps(rows, "Set14")], plotly_js)


def run_card(out: Path, args: dict, rows: list[dict], notes: list[str], models: dict, seconds: float) -> dict:
    """What reproduces the study and what it found: commit, model hashes, data, settings, machine, answer."""
    used = sorted({n.split("@")[0] for r in rows for n in r["model"].split(">")})
    card = {
        "command": args.get("command"),
        "commit": run_commit(),
        "seconds": round(seconds, 1),
        "machine": machine_description(),
        "processes": distributed.processes(),
        "data": args.get("data"),
        "crop": args.get("crop"),
        "limit": args.get("limit"),
        "sampling": f"DDIM, eta 0, timestep spacing {args.get('spacing')} for every diffusion model and stage",
        "seeds": "run seed 0; stage 1 keeps it, stage 2 derives its own (sr_models.types.derive_seed)",
        "projections": {
            "bp": "each model's default back-projection onto the original LR after each stage",
            "raw": "no back-projection anywhere",
        },
        "models": {n: folder_digest(models[n].folder) for n in used if getattr(models.get(n), "folder", None)},
        "notes": notes,
        "answer": [line for d in ("Set14", "all") for p in ("raw", "bp") for line in answer(rows, d, p)],
    }
    (out / "run_card.json").write_text(json.dumps(card, indent=2, default=str) + "\n")
    md = [
        "# Cascade study run card",
        "",
        *[f"- **{k}**: {v}" for k, v in card.items() if k not in ("answer", "notes", "models")],
        "",
        "## Models (sha256 of their safetensors, first 16 hex)",
        "",
        *[f"- {k}: `{v}`" for k, v in card["models"].items()],
        "",
        "## Answer",
        "",
        *[f"- {a}" for a in card["answer"]],
        "",
        "## Notes",
        "",
        *[f"- {n}" for n in notes],
    ]
    (out / "run_card.md").write_text("\n".join(md) + "\n")
    return card


def cascade_study(
    datasets,
    out: Path,
    grid=(1, 2, 5, 10, 20),
    aug_model: str | None = "ldm-x4-aug",
    strengths=(),
    scales=(16, 8),
    crop: int | None = 256,
    limit: int | None = None,
    projections=("bp", "raw"),
    models: dict | None = None,
    command: str = "",
    lpips_fn=None,
    aug_grid=None,
    sdedit_n1: int = 2,
    spacing: str | None = "trailing",
) -> dict:
    from sr_models.registry import discover

    models = models if models is not None else discover()
    run_commit()  # the code this run starts from (its card names it)
    start = time.perf_counter()
    configs = study_configs(grid, aug_model, strengths, scales, aug_grid, sdedit_n1)
    rows, notes = run_study(configs, datasets, out, crop, limit, projections, models, lpips_fn, spacing)
    if not distributed.is_main():
        return {"seconds": time.perf_counter() - start}  # the main process writes and reports
    write_study_page(rows, out / "cascade.html", plotly_js=True)  # plotly.js inside: works offline
    args = {
        "command": command,
        "data": [str(d) for d in datasets],
        "crop": crop,
        "limit": limit,
        "spacing": spacing or "each model's default",
    }
    return run_card(out, args, rows, notes, models, time.perf_counter() - start)
