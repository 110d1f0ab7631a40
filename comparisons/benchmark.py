"""Benchmark command: every model through the same interface, the same degradation and metrics.

    python -m comparisons.benchmark --models bicubic,regression-x4 --scale 4 \
        --data ../shared/data/test/Set5 --data ../shared/data/test/Set14 --out results/x4

A model name may be a cascade spec (``"ldm-x4>ldm-x4"``); ``--stage-steps 10,5`` and the other
``--stage-*`` options set its stages. Writes ``per_image.csv``, ``stages.csv`` (one row per
image and stage: steps, seed, NFE, seconds of each stage), ``summary.csv``, ``summary.md`` (a
table whose header states the protocol), ``summary.html`` (an interactive quality-vs-time plot) and
``run_card.json`` (command, commit, weights, machine, process count).

Under ``accelerate launch --num_processes N`` (or torchrun) the images are shared out over the N processes
(``comparisons.distributed``); the files are the same as one process's, apart from the time columns.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from comparisons import distributed
from comparisons.cli import add_settings_arguments, settings_from_args
from comparisons.evaluate import SCORE_COLUMNS, evaluate
from comparisons.records import STAGE_COST_COLUMNS, STAGE_SETTING_COLUMNS, write_csv
from sr_models.base import ModelUnavailableError, SRInputError
from sr_models.data import SPLITS, eval_pairs, list_images
from sr_models.device import add_device_arguments
from sr_models.registry import discover, get_models
from sr_models.swd import SWDProtocol, swd
from sr_models.types import SamplingSettings
from sr_models.uncertainty import diversity

SWD_PROTOCOL = SWDProtocol()
DISTRIBUTION_COLUMNS = [*SWD_PROTOCOL.keys(), "diversity"]  # --perceptual, no pretrained weights needed
SUMMARY_COLUMNS = [
    "dataset",
    "model",
    "family",
    "scale",
    "n_images",
    *SCORE_COLUMNS,
    "fid",
    "is_mean",
    *DISTRIBUTION_COLUMNS,
    "seconds_per_image",
    "nfe",
    "tiles",
    "peak_memory_mb",
    "n_stages",
    "steps",
    "sampler",
    "seed",
    "crop",
    "lr_projection",
    "settings",
]
PER_IMAGE_COLUMNS = [
    "dataset",
    "model",
    "scale",
    "image",
    "height",
    "width",
    *SCORE_COLUMNS,
    "seconds",
    "nfe",
    "tiles",
    "peak_memory_mb",
    "n_stages",
    "steps",
    "seed",
]
STAGE_COLUMNS = [
    "dataset",
    "model",
    "image",
    "stage",
    "stage_model",
    *STAGE_SETTING_COLUMNS,
    "lr_projection",
    *STAGE_COST_COLUMNS,
]
METRIC_KEYS = ("psnr_y", "ssim_y", "lr_psnr", "hf_ratio")


def protocol_text(
    scale: int, crop: int | None, limit: int | None, settings: SamplingSettings | None = None, split: str = "all"
) -> str:
    settings = settings or SamplingSettings()
    described = settings.describe() or "model defaults"
    parts = [
        f"x{scale}; HR mod-cropped to {scale}",
        f"HR center crop {crop} px" if crop else "whole images",
        f"first {limit} images per set" if limit else "all images",
        *([f"split {split!r} of each folder"] if split != "all" else []),
        "LR = MATLAB-bicubic imresize(HR, 1/scale) rounded to uint8",
        f"PSNR/SSIM on BT.601 Y, {scale} px border shaved, SSIM Gaussian 11x11 sigma 1.5",
        "gray images on their one channel",
        "LR-PSNR = PSNR(imresize(SR, 1/scale), LR) on RGB",
        "hf_ratio = SR/HR spectral energy above the LR Nyquist (Y, Hann window)",
        f"settings: {described} (unset: each model's default; LR back-projection "
        f"{'model default' if settings.lr_projection is None else settings.lr_projection})",
    ]
    return "; ".join(parts)


def run_benchmark(
    models,
    scale: int,
    datasets: list[str],
    out: Path,
    limit: int | None = None,
    crop: int | None = None,
    settings: SamplingSettings | None = None,
    save_images: bool = False,
    perceptual: bool = False,
    lpips_model=None,
    feature_extractor=None,
    fid_patch: int = 64,
    split: str = "all",
    command: str = "",
) -> list[dict]:
    """Run every model on every folder; write the reports into ``out``; return the summary rows.

    ``perceptual`` adds LPIPS (per image) and patch FID / IS (per set) where their weights are
    present and says plainly which are missing; ``lpips_model`` / ``feature_extractor`` replace
    the pretrained backbones (tests use random ones). Under several processes each runs its share
    of the images and every one returns the whole summary; the main one alone writes.
    """
    started = time.perf_counter()
    lpips_fn, fid_on, notes = _perceptual_setup(perceptual, lpips_model, feature_extractor)
    _check_and_warm_up(models, scale, settings)
    total = sum(len(list_images(d, split)[:limit]) for d in datasets) * len(models)
    per_image, stage_rows, summary = [], [], []
    bar = tqdm(total=total, desc="benchmark", unit="img", dynamic_ncols=True, disable=not distributed.is_main())
    for data in datasets:
        dataset = Path(data).name
        pairs = list(eval_pairs(data, scale, limit=limit, crop=crop, split=split))
        for model in models:
            save_dir = out / "images" / dataset / model.name if save_images else None
            evaluations = _evaluate_set(model, pairs, dataset, scale, settings, lpips_fn, save_dir, bar)
            rows = [{**e.row, "dataset": dataset} for e in evaluations]
            per_image += rows
            stage_rows += [
                row for e in evaluations for row in _stage_rows(e.result, dataset, model.name, e.row["image"])
            ]
            extra = {}
            if lpips_fn is not None:
                extra["lpips"] = float(np.mean([r["lpips"] for r in rows]))
            if perceptual:
                extra.update(_set_distribution(model, evaluations, pairs, scale, settings))
            if fid_on:
                extra.update(
                    _distribution_scores(evaluations, pairs, fid_patch, feature_extractor, notes, dataset, model)
                )
            summary.append(_summary_row(model, dataset, scale, crop, rows, evaluations[-1].result.facts(), extra))
    bar.close()
    if distributed.is_main():
        protocol = protocol_text(scale, crop, limit, settings, split)
        _write_reports(out, per_image, stage_rows, summary, protocol, notes)
        _write_run_card(out, models, command, protocol, time.perf_counter() - started)
    return summary


def _check_and_warm_up(models, scale: int, settings: SamplingSettings | None) -> None:
    for model in models:  # every problem before the first image, not an hour in
        model.check_scale(scale)
        model.check_available()
        model.resolve(settings)
    for model in models:  # load and warm up (first-call costs) outside the timed runs
        model.upscale(np.full((8, 8, 3), 128, np.uint8), scale=scale, settings=settings)


def _evaluate_set(model, pairs, dataset: str, scale: int, settings, lpips_fn, save_dir: Path | None, bar) -> list:
    """``evaluate`` on every pair of one folder (shared out over the processes); the outputs saved as PNG
    into ``save_dir`` if given."""

    def one(pair):
        bar.set_postfix_str(f"{dataset}/{model.name}/{pair.name}", refresh=False)
        evaluation = evaluate(model, pair.lr, scale, settings, pair.hr, name=pair.name, lpips_fn=lpips_fn)
        bar.update(distributed.progress_step())
        return evaluation

    evaluations = distributed.map_images(one, pairs)
    if save_dir is not None and distributed.is_main():
        save_dir.mkdir(parents=True, exist_ok=True)
        for pair, evaluation in zip(pairs, evaluations):
            Image.fromarray(evaluation.image).save(save_dir / f"{pair.name}.png")
    return evaluations


def _stage_rows(result, dataset: str, model_name: str, image: str) -> list[dict]:
    return [
        {
            **stage.facts(),
            "dataset": dataset,
            "model": model_name,
            "image": image,
            "stage": i + 1,
            "stage_model": stage.model,
        }
        for i, stage in enumerate(result.stages)
    ]


def _distribution_scores(
    evaluations, pairs, fid_patch: int, feature_extractor, notes: list, dataset: str, model
) -> dict:
    from comparisons.perceptual import distribution_metrics

    dist = distribution_metrics(
        [e.image for e in evaluations], [p.hr for p in pairs], patch=fid_patch, feature_extractor=feature_extractor
    )
    notes.append(f"FID/IS ({dataset}, {model.name}): {dist['protocol']}")
    return {"fid": dist["fid"], "is_mean": dist["is_mean"]}


def _set_distribution(model, evaluations, pairs, scale: int, settings: SamplingSettings | None) -> dict:
    """SWD of the set's outputs against its references, and diversity: the mean RMS difference between
    each output and a second sample with the next seed (0 for a deterministic model, not run)."""
    spread = 0.0
    if model.is_diffusion:
        seeds = [int(e.row["seed"]) + 1 for e in evaluations]
        again = distributed.map_images(
            lambda job: evaluate(model, job[0].lr, scale, replace(settings or SamplingSettings(), seed=job[1])).image,
            list(zip(pairs, seeds)),
        )
        spread = float(np.mean([diversity([e.image, a]) for e, a in zip(evaluations, again)]))
    return {**swd([e.image for e in evaluations], [p.hr for p in pairs], SWD_PROTOCOL), "diversity": spread}


def _summary_row(model, dataset: str, scale: int, crop: int | None, rows: list[dict], facts: dict, extra: dict) -> dict:
    """One summary row: the means of a model's per-image rows on one folder (the settings of its last run)."""
    return {
        **{k: facts[k] for k in ("n_stages", "steps", "sampler", "seed", "lr_projection", "settings")},
        **extra,
        "dataset": dataset,
        "model": model.name,
        "family": model.family,
        "scale": scale,
        "n_images": len(rows),
        **{k: float(np.nanmean([r[k] for r in rows])) for k in METRIC_KEYS},
        "seconds_per_image": float(np.mean([r["seconds"] for r in rows])),
        "nfe": float(np.mean([r["nfe"] for r in rows])),
        "tiles": float(np.mean([r["tiles"] for r in rows])),
        "peak_memory_mb": float(np.max([r["peak_memory_mb"] for r in rows])),
        "crop": crop or "",
    }


def _write_reports(out: Path, per_image, stage_rows, summary, protocol: str, notes: list[str]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "per_image.csv", per_image, PER_IMAGE_COLUMNS)
    write_csv(out / "stages.csv", stage_rows, STAGE_COLUMNS)
    write_csv(out / "summary.csv", summary, SUMMARY_COLUMNS)
    notes = list(dict.fromkeys(n.split(": ", 1)[1] if n.startswith("FID/IS (") else n for n in notes))
    (out / "summary.md").write_text(markdown_table(summary, protocol, notes))
    try:
        from comparisons.plots import benchmark_figure, write_page

        write_page(out / "summary.html", "Benchmark", [benchmark_figure(summary, title=protocol)])
    except ImportError:  # plotly is optional for the numbers
        pass


def _write_run_card(out: Path, models, command: str, protocol: str, seconds: float) -> None:
    """``run_card.json``: what reproduces the run (command, commit, weights) and where it ran (machine, processes)."""
    from comparisons.compare import stage_models
    from comparisons.provenance import machine, run_commit, versions, weight_hashes

    card = {
        "command": command,
        "commit": run_commit(),
        "seconds": round(seconds, 1),
        "processes": distributed.processes(),
        "machine": machine(),
        "versions": versions(),
        "protocol": protocol,
        "weights_sha256": weight_hashes([part for model in models for part in stage_models(model)]),
    }
    (out / "run_card.json").write_text(json.dumps(card, indent=2, default=str) + "\n")


def _fmt(value) -> str:
    if isinstance(value, float):
        if value.is_integer():
            return str(int(value))
        return f"{value:.4f}" if abs(value) < 1 else f"{value:.2f}"
    return str(value)


def markdown_table(summary: list[dict], protocol: str, notes: list[str] = ()) -> str:
    columns = ["dataset", "model", "scale", "n_images", "psnr_y", "ssim_y", "lr_psnr", "hf_ratio"]
    columns += [c for c in ("lpips", "fid", "is_mean", "swd", "diversity") if summary and c in summary[0]]
    columns += ["seconds_per_image", "nfe", "steps"]
    lines = [f"Protocol: {protocol}", *[f"Note: {n}" for n in notes], ""]
    lines += ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in summary:
        lines.append("| " + " | ".join(_fmt(row.get(c, "")) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def _perceptual_setup(perceptual: bool, lpips_model, feature_extractor):
    """(lpips function or None, whether to compute FID/IS, notes for the report)."""
    if not perceptual:
        return None, False, []
    from comparisons.perceptual import available_perceptual_metrics, lpips_function

    lpips_fn, missing_lpips = lpips_function(lpips_model)
    notes = [] if lpips_fn is not None else [f"LPIPS skipped: {missing_lpips}"]
    missing_fid = available_perceptual_metrics()["fid"] if feature_extractor is None else None
    if missing_fid:
        notes.append(f"FID/IS skipped: {missing_fid}")
    for note in notes if distributed.is_main() else ():
        print(f"warning: {note}", file=sys.stderr)
    return lpips_fn, not missing_fid, notes


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m comparisons.benchmark",
        description="Benchmark SR models on test folders with the standard protocol (Y channel, border = scale).",
    )
    p.add_argument("--list", action="store_true", help="list the models found and whether they can run here")
    p.add_argument(
        "--models", help='comma-separated model names (see --list) or cascades, e.g. bicubic,"ldm-x4>ldm-x4"'
    )
    p.add_argument("--scale", type=int)
    p.add_argument("--data", action="append", help="test folder of HR images; repeat for several")
    p.add_argument("--out", help="output folder for the CSV/Markdown/HTML files")
    p.add_argument("--limit", type=int, help="use at most this many images per folder")
    p.add_argument("--crop", type=int, help="evaluate on HR center crops of this size (for slow models)")
    p.add_argument(
        "--split",
        default="all",
        choices=SPLITS,
        help="part of each folder: 'val' is the held-out validation split of a training pool "
        "(pick defaults there, never on test sets)",
    )
    add_settings_arguments(p)
    add_device_arguments(p)
    distributed.add_threads_argument(p)
    p.add_argument("--model-dir", action="append", default=[], help="extra folder of model folders")
    p.add_argument("--save-images", action="store_true", help="also write the SR outputs as PNG")
    p.add_argument(
        "--perceptual",
        action="store_true",
        help="add SWD and diversity (no weights needed), LPIPS and patch FID/IS (need weights: "
        "python -m comparisons.perceptual --prefetch)",
    )
    p.add_argument("--fid-patch", type=int, default=64, help="patch size of the FID/IS protocol")
    p.add_argument(
        "--update-cards",
        action="store_true",
        help="write the measured numbers into the model cards of the folder models benchmarked",
    )
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list:
        for name, m in discover(model_dirs=args.model_dir, device=args.device, dtype=args.dtype).items():
            a = m.availability()
            print(f"{name:28s} {m.family:12s} x{'/'.join(map(str, m.scales)):10s} {'ok' if a.ok else a.reason}")
        return 0
    missing = [f"--{k}" for k in ("models", "scale", "data", "out") if not getattr(args, k)]
    if missing:
        parser.error(f"the following arguments are required: {', '.join(missing)}")
    try:
        distributed.start(args.device, args.threads)
        settings = settings_from_args(args)
        models = get_models(
            [n.strip() for n in args.models.split(",") if n.strip()],
            discover(model_dirs=args.model_dir, device=args.device, dtype=args.dtype),
        )
        summary = run_benchmark(
            models,
            args.scale,
            args.data,
            Path(args.out),
            limit=args.limit,
            crop=args.crop,
            settings=settings,
            save_images=args.save_images,
            perceptual=args.perceptual,
            fid_patch=args.fid_patch,
            split=args.split,
            command="python -m comparisons.benchmark " + " ".join(sys.argv[1:] if argv is None else argv),
        )
    except (KeyError, FileNotFoundError, SRInputError, ModelUnavailableError) as err:
        print(f"error: {err.args[0] if err.args else err}", file=sys.stderr)
        return 2
    if not distributed.is_main():
        return 0
    if args.update_cards:
        protocol = protocol_text(args.scale, args.crop, args.limit, settings, args.split)
        for folder in update_cards(models, summary, protocol):
            print(f"updated the model card in {folder}", file=sys.stderr)
    print((Path(args.out) / "summary.md").read_text())
    return 0


def update_cards(models, summary: list[dict], protocol: str) -> list[Path]:
    """Merge this run's rows into ``metrics`` of each folder model's card, next to bicubic's."""
    from sr_models.cards import read_card, write_card

    bicubic = {r["dataset"]: r for r in summary if r["model"] == "bicubic"}
    updated = []
    for model in models:
        folder = getattr(model, "folder", None)
        if folder is None:
            continue
        meta = read_card(folder)
        rows = [r for r in meta.get("metrics", [])]
        for r in (r for r in summary if r["model"] == model.name):
            new = {
                k: (round(v, 4) if isinstance(v, float) else v)
                for k, v in r.items()
                if k
                in (
                    "dataset",
                    "scale",
                    "n_images",
                    "psnr_y",
                    "ssim_y",
                    "lr_psnr",
                    "seconds_per_image",
                    "nfe",
                    "steps",
                    "sampler",
                    "crop",
                    "lr_projection",
                )
            }
            if r["dataset"] in bicubic:
                new["bicubic_psnr_y"] = round(bicubic[r["dataset"]]["psnr_y"], 4)
                new["bicubic_ssim_y"] = round(bicubic[r["dataset"]]["ssim_y"], 4)
            key = (new["dataset"], new["scale"], new.get("crop", ""))
            rows = [o for o in rows if (o["dataset"], o["scale"], o.get("crop", "")) != key] + [new]
        meta["metrics"] = rows
        meta["metrics_protocol"] = f"Measured with `python -m comparisons.benchmark` ({protocol})."
        write_card(folder, meta)
        updated.append(folder)
    return updated


if __name__ == "__main__":
    sys.exit(main())
