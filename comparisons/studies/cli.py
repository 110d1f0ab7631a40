"""``python -m comparisons.studies STUDY ...``: one sub-command per study, one function per sub-command.

A sub-command is a ``_add_*_arguments`` function (its options) and a ``run_*`` function (the study,
its printed summary, the exit code: 2 with a plain message on bad input).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path

from comparisons import distributed
from comparisons.cli import add_settings_arguments, settings_from_args
from sr_models.base import ModelUnavailableError, SRInputError
from sr_models.data import SPLITS
from sr_models.device import add_device_arguments
from sr_models.registry import discover, get_models

DESCRIPTION = "Studies: how quality and cost move with a sampling setting, without retraining."
MODEL_ERRORS = (KeyError, FileNotFoundError, SRInputError, ModelUnavailableError)
STUDY_ERRORS = (ValueError, *MODEL_ERRORS)  # what most studies report as bad input
# The summary line printed for each row of a study (``str.format`` of the row).
STEPS_LINE = (
    "{steps:>4} {dataset:10s} {model:16s} PSNR-Y {psnr_y:.2f}  LR-PSNR {lr_psnr:.2f}  {seconds_per_image:.2f} s"
)
SPREAD_LINE = (
    "{dataset:10s} {model:16s} {steps!s:>3} steps: one sample {psnr_y_single:.2f} dB, mean of {seeds} "
    "{psnr_y_of_mean:.2f}, expectation {psnr_y_of_expectation:.2f}, spread {spread_rms:.2f} grey levels, "
    "HF ratio {hf_ratio_single:.2f} vs {hf_ratio_of_mean:.2f}"
)
RECONSTRUCTION_LINE = (
    "{dataset:10s} n={n_images:3d} PSNR-Y {psnr_y:.2f}  SSIM-Y {ssim_y:.4f}  "
    "mean error R/G/B {mean_error_r:+.2f}/{mean_error_g:+.2f}/{mean_error_b:+.2f}"
)


def _error(err: Exception) -> int:
    # A KeyError's str() puts its message in quotes (and an OSError's args[0] is its errno): print the text.
    text = err.args[0] if isinstance(err, KeyError) and err.args else err
    print(f"error: {text}", file=sys.stderr)
    return 2


def _print_rows(line: str, rows: list[dict]) -> None:
    for row in rows:
        print(line.format(**row))


def _run_study(study: Callable[[], object], report: Callable, errors: tuple = STUDY_ERRORS) -> int:
    """Every sub-command's shape: run ``study``; bad input (``errors``) is one plain line on stderr and exit
    code 2 (anything else is a bug and raises); otherwise ``report`` prints the study's summary (the main
    process's alone when launched on several), exit code 0."""
    try:
        result = study()
    except errors as err:
        return _error(err)
    if distributed.is_main():
        report(result)
    return 0


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


def _models(args) -> list:
    return get_models(args.models.split(","), discover(model_dirs=args.model_dir, device=args.device, dtype=args.dtype))


def _command(argv) -> str:
    """The command line as a run card records it."""
    return "python -m comparisons.studies " + " ".join(argv or sys.argv[1:])


def _raw_settings(args):
    """The run's settings, raw (no back-projection) unless --lr-projection says otherwise: every quality floor."""
    settings = settings_from_args(args)
    return settings if settings.lr_projection is not None else replace(settings, lr_projection=0)


def _model_study_inputs(args) -> tuple[tuple, dict]:
    """The (positional, keyword) arguments the steps and spread studies share, from their common options."""
    positional = (_models(args), args.scale, args.data, Path(args.out), [int(s) for s in args.steps_list.split(",")])
    return positional, {
        "settings": settings_from_args(args),
        "crop": args.crop,
        "limit": args.limit,
        "split": args.split,
    }


def _model_study(study: Callable, args, **extra):
    """Run the steps or spread study on their common options, plus its own ``extra`` keywords."""
    positional, keywords = _model_study_inputs(args)
    return study(*positional, **extra, **keywords)


def run_steps(args, parser, argv) -> int:
    from comparisons.studies.steps import steps_study

    return _run_study(lambda: _model_study(steps_study, args), partial(_print_rows, STEPS_LINE), MODEL_ERRORS)


def _add_spread_arguments(p: argparse.ArgumentParser) -> None:
    _add_model_study_arguments(p, "1,20")
    p.add_argument("--seeds", type=int, default=8, help="samples per image (seeds seed, seed+1, ...)")


def run_spread(args, parser, argv) -> int:
    from comparisons.studies.spread import spread_study

    def report(rows):
        _print_rows(SPREAD_LINE, rows)
        print(f"wrote {args.out}/spread.csv and spread.html")

    return _run_study(lambda: _model_study(spread_study, args, seeds=args.seeds), report)


def _add_reconstruction_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--first-stage", required=True)
    p.add_argument("--data", action="append", required=True)
    p.add_argument("--out")
    p.add_argument("--crop", type=int)
    p.add_argument("--limit", type=int)
    p.add_argument("--update-card", action="store_true", help="write the numbers into the first stage's card")
    add_device_arguments(p)


def run_reconstruction(args, parser, argv) -> int:
    from comparisons.studies.reconstruction import reconstruction_study

    def study():
        out = Path(args.out) if args.out else None
        return reconstruction_study(
            Path(args.first_stage), args.data, out, args.crop, args.limit, args.update_card, args.device, args.dtype
        )

    return _run_study(study, partial(_print_rows, RECONSTRUCTION_LINE), (OSError, SRInputError))


def _add_cascade_arguments(c: argparse.ArgumentParser) -> None:
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


def _cascade_lpips(skip: bool):
    """The LPIPS function of the cascade study, or None (skipped on request or without its weights)."""
    if skip:
        return None
    from comparisons.perceptual import lpips_function

    lpips_fn, missing = lpips_function()
    if missing:
        print(f"warning: LPIPS skipped: {missing}", file=sys.stderr)
    return lpips_fn


def run_cascade(args, parser, argv) -> int:
    from comparisons.studies.cascade import PROJECTIONS, cascade_study

    projections = tuple(p for p in args.projection.split(",") if p)
    if not projections or set(projections) - set(PROJECTIONS):
        parser.error(f"--projection takes {', '.join(PROJECTIONS)}")

    def study():
        return cascade_study(
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
            lpips_fn=_cascade_lpips(args.no_lpips),
            models=discover(model_dirs=args.model_dir, device=args.device, dtype=args.dtype),
            command=_command(argv),
        )

    def report(card):
        print("\n".join(card["answer"]))
        print(f"wrote {args.out}/cascade.csv, cascade.html, run_card.md ({card['seconds']:.0f} s)")

    return _run_study(study, report, (FileNotFoundError, ValueError))


def _add_perception_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--models",
        default="bicubic,regression-x4,gan-x4,ldm-x4,ldm-x4-aug,ldm-x4-stock,sr3-x4",
        help="models and cascades (Hub models too, when cached); unknown names are an error",
    )
    p.add_argument("--scale", type=int, default=4)
    p.add_argument("--steps-list", default="1,2,5,10,20,50", help="diffusion step counts")
    p.add_argument("--etas", default="0,1", help="DDIM eta values")
    p.add_argument(
        "--steps-for",
        action="append",
        default=[],
        metavar="MODEL=STEPS",
        help="a model's own step counts, e.g. sr3-x4=1,2,5,10,20 (repeatable)",
    )
    p.add_argument("--mean-seeds", type=int, default=4, help="K of the 'mean of K seeds' points (1: none)")
    p.add_argument("--mean-at", default="20:1", help="steps:eta points of the mean of K seeds, comma separated")
    p.add_argument("--diversity-images", type=int, default=8, help="images per set that also run seed 1")
    p.add_argument("--swd-patches", type=int, default=128, help="SWD patches per image and pyramid level")
    p.add_argument("--data", action="append", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--crop", type=int, default=128)
    p.add_argument("--limit", type=int)
    p.add_argument("--split", default="all", choices=SPLITS, help="'val': the training pool's held-out split")
    p.add_argument("--model-dir", action="append", default=[])
    p.add_argument(
        "--update-cards",
        action="store_true",
        help="write each diffusion model's fidelity / detail presets into its card (only with --split val: "
        "presets are never picked on test images)",
    )
    add_settings_arguments(p)
    add_device_arguments(p)


def run_perception(args, parser, argv) -> int:
    from comparisons.studies.perception import perception_study
    from sr_models.swd import SWDProtocol

    def study():
        mean_at = [(int(a), float(b)) for a, b in (x.split(":") for x in args.mean_at.split(",") if x)]
        settings = _raw_settings(args)
        return perception_study(
            _models(args),
            args.scale,
            args.data,
            Path(args.out),
            [int(s) for s in args.steps_list.split(",")],
            [float(e) for e in args.etas.split(",")],
            mean_seeds=args.mean_seeds,
            mean_at=mean_at,
            crop=args.crop or None,
            limit=args.limit,
            split=args.split,
            settings=settings,
            protocol=SWDProtocol(patches_per_image=args.swd_patches),
            diversity_images=args.diversity_images,
            steps_for={k: [int(x) for x in v.split(",")] for k, v in (i.split("=", 1) for i in args.steps_for)},
            command=_command(argv),
        )

    def report(rows):
        print(f"wrote {args.out}/perception.csv, perception.html, run_card.md ({len(rows)} rows)")
        if args.update_cards:
            _write_presets(rows, args)

    if args.update_cards and args.split != "val":
        parser.error("--update-cards picks presets: run it on the validation split (--split val)")
    return _run_study(study, report)


def _write_presets(rows: list[dict], args, source: str = "") -> None:
    from comparisons.studies.perception import DETAIL_PSNR_LOSS, pick_presets, update_cards

    loss = getattr(args, "psnr_loss", DETAIL_PSNR_LOSS)
    presets = pick_presets(rows, loss)
    where = source or f"{', '.join(Path(d).name for d in args.data)} ({args.crop} px crops, {args.scale}x)"
    note = (
        f"picked on the validation split: {where}, raw, single samples; fidelity = the highest PSNR-Y of the "
        f"model's grid, detail = the lowest SWD within {loss:g} dB of it"
    )
    for name, folder in update_cards(_models(args), presets, note):
        print(f"{name}: presets {presets[name]} written into {folder}")


def _add_presets_arguments(p: argparse.ArgumentParser) -> None:
    from comparisons.studies.perception import DETAIL_PSNR_LOSS

    p.add_argument("--csv", required=True, help="a perception study's CSV (or its .partial.csv) on --split val")
    p.add_argument("--models", required=True, help="the models whose cards get their presets")
    p.add_argument("--psnr-loss", type=float, default=DETAIL_PSNR_LOSS, help="dB the detail preset may give up")
    p.add_argument("--model-dir", action="append", default=[])
    add_device_arguments(p)


def run_presets(args, parser, argv) -> int:
    """Presets from a perception run already made on the validation split (no re-run)."""
    from comparisons.records import read_csv
    from comparisons.studies.perception import COLUMNS

    csv_path = Path(args.csv)
    card = csv_path.parent / "run_card.json"
    if card.exists() and "--split val" not in json.loads(card.read_text()).get("command", ""):
        return _error(ValueError(f"{card} is not a run on the validation split: presets are picked on --split val"))

    def study():
        rows = read_csv(csv_path, texts=[c for c in COLUMNS if c in ("dataset", "model", "family")])
        _write_presets(rows, args, source=str(csv_path))
        return rows

    return _run_study(study, lambda rows: print(f"read {len(rows)} rows of {csv_path}"), (OSError, *STUDY_ERRORS))


def _add_scales_arguments(p: argparse.ArgumentParser) -> None:
    from comparisons.studies.scales import DEFAULT_CASCADES, DEFAULT_MODELS, MIN_LR_SIDE, SCALES

    p.add_argument(
        "--models",
        default=DEFAULT_MODELS,
        help="comma-separated lines; a+b+c: fixed-scale models of which the shortest route runs at each scale",
    )
    p.add_argument("--cascades", default=DEFAULT_CASCADES, help="cascades, run beyond their stages' own scales")
    p.add_argument("--scales", default=",".join(f"{s:g}" for s in SCALES), help="comma-separated real scales")
    p.add_argument("--idm-steps", type=int, help="steps of the idm models (default: their own, the fidelity setting)")
    p.add_argument("--swd-patches", type=int, default=128, help="SWD patches per image and pyramid level")
    p.add_argument("--data", action="append", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--crop", type=int, default=128, help="HR center crop, up to the scale's multiple (0: whole)")
    p.add_argument("--min-lr", type=int, default=MIN_LR_SIDE, help="at least this many LR pixels a side in a crop")
    p.add_argument("--limit", type=int)
    p.add_argument("--split", default="all", choices=SPLITS, help="'val': the training pool's held-out split")
    p.add_argument("--model-dir", action="append", default=[])
    add_settings_arguments(p)
    add_device_arguments(p)


def _stage_names(spec: str) -> list[str]:
    """The model names a spec runs: ``a>b@4~3`` -> a, b."""
    return [stage.split("@")[0].strip() for stage in spec.split("~")[0].split(">")]


def _scales_models(args) -> tuple[list, list, list[str]]:
    """The model groups (``a+b``) and cascades of the scales study; names not found are skipped with a note."""
    known = discover(model_dirs=args.model_dir, device=args.device, dtype=args.dtype)
    groups, cascades, notes = [], [], []
    items = [(g, False) for g in args.models.split(",")] + [(c, True) for c in args.cascades.split(",")]
    for item, is_cascade in items:
        names = [n.strip() for n in item.split("+") if n.strip()]
        missing = [n for n in names if any(s not in known for s in _stage_names(n))]
        if missing:
            notes.append(f"skipped {', '.join(missing)}: not found")
        found = get_models([n for n in names if n not in missing], known)
        if found:
            (cascades.extend if is_cascade else groups.append)(found)
    return groups, cascades, notes


def _scale_list(text: str) -> list[int | float]:
    from sr_models.resized import checked_scale

    scales = []
    for item in (s.strip() for s in text.split(",") if s.strip()):
        try:
            value = float(item)
        except ValueError:
            raise SRInputError(f"--scales: {item!r} is not a number (e.g. 2,2.5,3)") from None
        scales.append(checked_scale(value, "--scales"))
    return scales


def run_scales(args, parser, argv) -> int:
    import gc

    from comparisons.studies.scales import answer, scales_study
    from sr_models.swd import SWDProtocol

    def study():
        scales = _scale_list(args.scales)
        settings = _raw_settings(args)
        groups, cascades, notes = _scales_models(args)
        for note in notes:
            print(f"note: {note}", file=sys.stderr)
        gc.freeze()  # the libraries' objects out of the collections every measured run starts with (~0.5 s each)
        try:
            return scales_study(
                groups,
                args.data,
                Path(args.out),
                cascades=cascades,
                scales=scales,
                crop=args.crop or None,
                min_lr=args.min_lr,
                limit=args.limit,
                split=args.split,
                settings=settings,
                idm_steps=args.idm_steps,
                protocol=SWDProtocol(patches_per_image=args.swd_patches),
                notes=notes,
                command=_command(argv),
            )
        finally:
            gc.unfreeze()

    def report(rows):
        print("\n".join(answer(rows)))
        print(f"wrote {args.out}/scales.csv, scales.html, run_card.md ({len(rows)} rows)")

    return _run_study(study, report)


def _add_uncertainty_arguments(p: argparse.ArgumentParser) -> None:
    _add_model_study_arguments(p, "10")
    p.add_argument("--k", type=int, default=8, help="posterior samples per image (2-16)")


def run_uncertainty(args, parser, argv) -> int:
    from comparisons.studies.uncertainty import summary_line, uncertainty_study

    def study():
        (models, scale, data, out, steps), keywords = _model_study_inputs(args)
        settings = replace(keywords.pop("settings"), steps=steps[0])
        return uncertainty_study(models, scale, data, out, settings, args.k, command=_command(argv), **keywords)

    def report(summary):
        print("\n".join(f"{r['dataset']} {r['model']}: {summary_line(r)}" for r in summary))
        print(f"wrote {args.out}/uncertainty.csv, uncertainty_summary.csv, uncertainty.html, run_card.md")

    return _run_study(study, report)


# sub-command -> (help, add its arguments, run it); the order of ``--help``
SUB_COMMANDS = {
    "steps": (
        "quality and time against the number of sampling steps",
        lambda p: _add_model_study_arguments(p, "1,2,5,10,20"),
        run_steps,
    ),
    "reconstruction": (
        "first-stage reconstruction PSNR/SSIM (the LDMs' ceiling)",
        _add_reconstruction_arguments,
        run_reconstruction,
    ),
    "spread": (
        "one sample vs the mean of several seeds: why more steps can cost PSNR",
        _add_spread_arguments,
        run_spread,
    ),
    "cascade": (
        "cascades vs one large-scale model: quality vs total NFE and time (16x, 8x)",
        _add_cascade_arguments,
        run_cascade,
    ),
    "perception": (
        "the perception-distortion plane: PSNR-Y against SWD (no pretrained weights), detail, diversity",
        _add_perception_arguments,
        run_perception,
    ),
    "presets": (
        "each diffusion model's fidelity / detail presets from a perception run on the validation split",
        _add_presets_arguments,
        run_presets,
    ),
    "scales": (
        "continuous scales: any-scale models vs fixed models plus resize and cascades, 2x to 16x",
        _add_scales_arguments,
        run_scales,
    ),
    "uncertainty": (
        "K posterior samples per image: does the per-pixel spread predict the error (Spearman, AUSE)",
        _add_uncertainty_arguments,
        run_uncertainty,
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m comparisons.studies", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="study", required=True)
    for name, (text, add_arguments, _) in SUB_COMMANDS.items():
        sub_parser = sub.add_parser(name, help=text)
        add_arguments(sub_parser)
        distributed.add_threads_argument(sub_parser)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        distributed.start(getattr(args, "device", None), args.threads)
    except SRInputError as err:  # an unknown or absent --device
        return _error(err)
    return SUB_COMMANDS[args.study][2](args, parser, argv)
