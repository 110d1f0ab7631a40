"""Studies: how quality and cost move with a sampling setting, without retraining.

    python -m comparisons.studies steps --models ldm-x4,sr3-x4 --scale 4 --steps 1,2,5,10,20 \
        --data ../shared/data/test/Set5 --crop 128 --out results/steps-x4

Each setting is one benchmark run (same degradation and metrics); the study writes
``study.csv`` (one row per setting x model x dataset) and ``study.html`` (PSNR-Y and seconds
against the setting, one line per model). ``spread`` (``comparisons.spread_study``) splits what
more steps cost into sample spread and the error of the samples' mean; ``cascade``
(``comparisons.cascade_study``) compares cascades with single large-scale models.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from comparisons.benchmark import run_benchmark
from comparisons.cli import add_settings_arguments, settings_from_args
from comparisons.records import write_csv
from sr_models.base import ModelUnavailableError, SRInputError
from sr_models.data import SPLITS
from sr_models.device import add_device_arguments
from sr_models.registry import discover, get_models
from sr_models.types import SamplingSettings


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
    columns = [
        "steps",
        "dataset",
        "model",
        "scale",
        "n_images",
        "psnr_y",
        "ssim_y",
        "lr_psnr",
        "seconds_per_image",
        "nfe",
    ]
    write_csv(out / "study.csv", rows, columns)
    steps_figure(rows).write_html(out / "study.html", include_plotlyjs="cdn")
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


def reconstruction_study(
    folder: Path,
    datasets,
    out: Path | None = None,
    crop=None,
    limit=None,
    update_card: bool = False,
    device=None,
    dtype=None,
) -> list[dict]:
    """First-stage encode -> decode of each HR test image: the ceiling of every LDM built on it."""
    import numpy as np
    import torch
    from diffusers import AutoencoderKL

    from sr_models.cards import read_meta, write_meta
    from sr_models.data import eval_pairs
    from sr_models.device import pick_device, pick_dtype, place
    from sr_models.diffusion_sr import to_image, to_model_range
    from sr_models.metrics import psnr, ssim

    device, dtype = pick_device(device), pick_dtype(dtype)
    vae = place(AutoencoderKL.from_pretrained(folder, use_safetensors=True).eval(), device, dtype)
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    rows = []
    for data in datasets:
        scores = []
        for pair in eval_pairs(data, factor, limit=limit, crop=crop):  # mod-crop to the factor
            with torch.inference_mode():
                x = to_model_range(pair.hr).to(device, dtype)
                recon = to_image(vae.decode(vae.encode(x).latent_dist.mode()).sample)
            # signed mean error per channel: a colour cast shows as a mean far from 0 in one channel
            cast = (recon.astype(np.float64) - pair.hr).reshape(-1, 3).mean(axis=0)
            scores.append((psnr(recon, pair.hr, factor), ssim(recon, pair.hr, factor), *cast))
        rows.append(
            {
                "dataset": Path(data).name,
                "n_images": len(scores),
                "crop": crop or "",
                "psnr_y": float(np.mean([s[0] for s in scores])),
                "ssim_y": float(np.mean([s[1] for s in scores])),
                **{f"mean_error_{c}": float(np.mean([s[2 + i] for s in scores])) for i, c in enumerate("rgb")},
                "max_abs_image_cast": float(np.max([np.abs(s[2:]).max() for s in scores])),
            }
        )
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        write_csv(out / "reconstruction.csv", rows, list(rows[0]))
    if update_card:
        meta = read_meta(folder)
        meta["metrics"] = [
            {k: round(v, 4) if isinstance(v, float) else v for k, v in {**r, "scale": 1}.items()} for r in rows
        ]
        meta["metrics_protocol"] = (
            f"Reconstruction (encode, posterior mode, decode) of each HR test image mod-cropped "
            f"to {factor}; PSNR/SSIM on BT.601 Y with {factor} px shaved: the ceiling of any "
            "LDM on this first stage. `python -m comparisons.studies reconstruction`."
        )
        write_meta(folder, meta)
    return rows


def _add_model_study_arguments(p: argparse.ArgumentParser, steps_default: str) -> None:
    """What the studies that run models over step counts share: models, data, sampling, device."""
    p.add_argument("--models", required=True)
    p.add_argument("--scale", type=int, required=True)
    p.add_argument("--steps-list", default=steps_default, help="comma-separated step counts")
    p.add_argument("--data", action="append", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--crop", type=int)
    p.add_argument("--limit", type=int)
    p.add_argument("--split", default="all", choices=SPLITS, help="'val': the training pool's held-out split")
    p.add_argument("--model-dir", action="append", default=[])
    add_settings_arguments(p)
    add_device_arguments(p)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m comparisons.studies", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="study", required=True)
    _add_model_study_arguments(
        sub.add_parser("steps", help="quality and time against the number of sampling steps"), "1,2,5,10,20"
    )
    r = sub.add_parser("reconstruction", help="first-stage reconstruction PSNR/SSIM (the LDMs' ceiling)")
    r.add_argument("--first-stage", required=True)
    r.add_argument("--data", action="append", required=True)
    r.add_argument("--out")
    r.add_argument("--crop", type=int)
    r.add_argument("--limit", type=int)
    r.add_argument("--update-card", action="store_true", help="write the numbers into the first stage's card")
    add_device_arguments(r)
    v = sub.add_parser("spread", help="one sample vs the mean of several seeds: why more steps can cost PSNR")
    _add_model_study_arguments(v, "1,20")
    v.add_argument("--seeds", type=int, default=8, help="samples per image (seeds seed, seed+1, ...)")
    c = sub.add_parser("cascade", help="cascades vs one large-scale model: quality vs total NFE and time (16x, 8x)")
    c.add_argument("--data", action="append", required=True, help="test folder; repeat for several")
    c.add_argument("--out", required=True)
    c.add_argument("--crop", type=int, default=256, help="HR center crop (0: whole images)")
    c.add_argument("--limit", type=int, help="at most this many images per folder")
    c.add_argument("--grid", default="1,2,5,10,20", help="step counts of the single model and of each stage")
    c.add_argument("--aug-model", default="ldm-x4-aug", help="conditioning-augmented 4x stage 2 ('' for none)")
    c.add_argument("--aug-grid", default="", help="step counts of the augmented cascade's grid (default: --grid)")
    c.add_argument("--strengths", default="", help="SDEdit strengths of stage 2, e.g. 0.5 (empty: none)")
    c.add_argument("--sdedit-n1", type=int, default=2, help="stage 1 steps of the SDEdit configurations")
    c.add_argument("--scales", default="16,8", help="which studies: 16 and/or 8")
    c.add_argument(
        "--spacing", default="trailing", help="timestep spacing of every diffusion stage ('' = each model's)"
    )
    c.add_argument("--projection", default="bp,raw", help="bp (models' default back-projection) and/or raw")
    c.add_argument("--no-lpips", action="store_true", help="skip LPIPS even when its weights are present")
    c.add_argument("--model-dir", action="append", default=[])
    add_device_arguments(c)
    args = parser.parse_args(argv)
    if args.study == "cascade":
        from comparisons.cascade_study import PROJECTIONS, cascade_study

        projections = tuple(p for p in args.projection.split(",") if p)
        if not projections or set(projections) - set(PROJECTIONS):
            parser.error(f"--projection takes {', '.join(PROJECTIONS)}")
        lpips_fn = None
        if not args.no_lpips:
            from comparisons.perceptual import (
                available_perceptual_metrics,
                load_lpips,
                lpips_distance,
            )

            missing = available_perceptual_metrics()["lpips"]
            if missing:
                print(f"warning: LPIPS skipped: {missing}", file=sys.stderr)
            else:
                model = load_lpips()
                lpips_fn = lambda sr, hr: lpips_distance(sr, hr, model)  # noqa: E731
        try:
            card = cascade_study(
                args.data,
                Path(args.out),
                grid=[int(x) for x in args.grid.split(",")],
                aug_model=args.aug_model or None,
                strengths=[float(x) for x in args.strengths.split(",") if x],
                scales=[int(x) for x in args.scales.split(",")],
                crop=args.crop or None,
                limit=args.limit,
                projections=projections,
                sdedit_n1=args.sdedit_n1,
                aug_grid=[int(x) for x in args.aug_grid.split(",") if x] or None,
                spacing=args.spacing or None,
                lpips_fn=lpips_fn,
                models=discover(model_dirs=args.model_dir, device=args.device, dtype=args.dtype),
                command="python -m comparisons.studies " + " ".join(argv or sys.argv[1:]),
            )
        except (FileNotFoundError, ValueError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        print("\n".join(card["answer"]))
        print(f"wrote {args.out}/cascade.csv, cascade.html, run_card.md ({card['seconds']:.0f} s)")
        return 0
    if args.study == "reconstruction":
        try:
            rows = reconstruction_study(
                Path(args.first_stage),
                args.data,
                Path(args.out) if args.out else None,
                args.crop,
                args.limit,
                args.update_card,
                args.device,
                args.dtype,
            )
        except (FileNotFoundError, OSError, SRInputError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        for row in rows:
            print(
                f"{row['dataset']:10s} n={row['n_images']:3d} PSNR-Y {row['psnr_y']:.2f}  SSIM-Y {row['ssim_y']:.4f}  "
                f"mean error R/G/B {row['mean_error_r']:+.2f}/{row['mean_error_g']:+.2f}/{row['mean_error_b']:+.2f}"
            )
        return 0
    if args.study == "spread":
        from comparisons.spread_study import spread_study

        try:
            models = get_models(
                args.models.split(","), discover(model_dirs=args.model_dir, device=args.device, dtype=args.dtype)
            )
            rows = spread_study(
                models,
                args.scale,
                args.data,
                Path(args.out),
                [int(s) for s in args.steps_list.split(",")],
                args.seeds,
                settings_from_args(args),
                args.crop,
                args.limit,
                args.split,
            )
        except (KeyError, ValueError, FileNotFoundError, SRInputError, ModelUnavailableError) as err:
            print(f"error: {err.args[0] if err.args else err}", file=sys.stderr)
            return 2
        for r in rows:
            print(
                f"{r['dataset']:10s} {r['model']:16s} {r['steps']!s:>3} steps: one sample {r['psnr_y_single']:.2f} dB, "
                f"mean of {r['seeds']} {r['psnr_y_of_mean']:.2f}, expectation {r['psnr_y_of_expectation']:.2f}, "
                f"spread {r['spread_rms']:.2f} grey levels, HF ratio {r['hf_ratio_single']:.2f} vs {r['hf_ratio_of_mean']:.2f}"
            )
        print(f"wrote {args.out}/spread.csv and spread.html")
        return 0
    try:
        models = get_models(
            args.models.split(","), discover(model_dirs=args.model_dir, device=args.device, dtype=args.dtype)
        )
        rows = steps_study(
            models,
            args.scale,
            args.data,
            Path(args.out),
            [int(s) for s in args.steps_list.split(",")],
            settings_from_args(args),
            args.crop,
            args.limit,
            args.split,
        )
    except (KeyError, FileNotFoundError, SRInputError, ModelUnavailableError) as err:
        print(f"error: {err.args[0] if err.args else err}", file=sys.stderr)
        return 2
    for r in rows:
        print(
            f"{r['steps']:>4} {r['dataset']:10s} {r['model']:16s} PSNR-Y {r['psnr_y']:.2f}  "
            f"LR-PSNR {r['lr_psnr']:.2f}  {r['seconds_per_image']:.2f} s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
