"""The whole model zoo in one resumable command: ``python -m sr_models.train zoo --data DIR --out DIR``.

It trains, in order, the first stage, then every model built on it (the LDMs at 2x/4x/8x/16x, the
conditioning-augmented cascade stage 2), SR3-4x with the same wall-clock budget as LDM-4x (the
latent-vs-pixel comparison is only fair at equal training time), and the regression baselines.
Each model gets its share of ``--minutes``; every run folder keeps its checkpoint, so re-running
the command resumes where it stopped (a finished model's budget is spent: it only re-exports).
The recipes below are the shipped models' own commands (their cards say so), scaled by the budget.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sr_models.training.common import TRAIN_DEVICES


@dataclass(frozen=True)
class Recipe:
    name: str
    family: str  # the training command's sub-command (python -m sr_models.train FAMILY)
    share: float  # of the zoo's training minutes
    args: tuple[str, ...]
    init_from: str | None = None  # another zoo model to start from
    batch_size: int = 8
    needs: tuple[str, ...] = field(default=())  # zoo models that must exist first (the first stage)


FIRST_STAGE = "first-stage-f4-c8"
LDM = (
    "--first-stage",
    "{out}/" + FIRST_STAGE,
    "--latent-residual",
    "--channels",
    "64,96,128",
    "--hr-patch",
    "128",
    "--learning-rate",
    "2e-4",
    "--default-steps",
    "1",
    "--lr-projection",
    "5",
)

RECIPES = (
    Recipe(
        FIRST_STAGE,
        "autoencoder",
        0.22,
        ("--channels", "32,64,64", "--latent-channels", "8", "--hr-patch", "64", "--learning-rate", "5e-4"),
    ),
    Recipe("ldm-x4", "ldm", 0.15, ("--scale", "4", *LDM), needs=(FIRST_STAGE,)),
    Recipe(
        "sr3-x4",
        "sr3",
        0.15,
        (
            "--scale",
            "4",
            "--channels",
            "64,128,128",
            "--no-attention",
            "--hr-patch",
            "64",
            "--learning-rate",
            "3e-4",
            "--default-steps",
            "1",
            "--lr-projection",
            "5",
        ),
    ),
    Recipe("ldm-x2", "ldm", 0.08, ("--scale", "2", *LDM), init_from="ldm-x4", needs=(FIRST_STAGE,)),
    Recipe("ldm-x8", "ldm", 0.08, ("--scale", "8", *LDM), init_from="ldm-x4", needs=(FIRST_STAGE,)),
    Recipe("ldm-x16", "ldm", 0.08, ("--scale", "16", *LDM), init_from="ldm-x8", needs=(FIRST_STAGE,)),
    Recipe(
        "ldm-x4-aug",
        "ldm",
        0.06,
        (
            "--scale",
            "4",
            *LDM,
            "--learning-rate",
            "1e-4",
            "--cond-aug-blur",
            "1.5",
            "--cond-aug-noise",
            "0.02",
            "--cond-aug-prob",
            "0.6",
        ),
        init_from="ldm-x4",
        needs=(FIRST_STAGE,),
    ),
    Recipe("regression-x2", "regression", 0.06, ("--scale", "2", "--hr-patch", "96"), batch_size=16),
    Recipe("regression-x4", "regression", 0.06, ("--scale", "4", "--hr-patch", "128"), batch_size=16),
    Recipe("regression-x8", "regression", 0.06, ("--scale", "8", "--hr-patch", "128"), batch_size=16),
)
DRY_RUN = ("--max-steps", "1", "--batch-size", "2", "--hr-patch", "64", "--checkpoint-every", "0")


def zoo_parser(sub):
    p = sub.add_parser("zoo", help="train the whole zoo (first stage, LDMs, SR3, cascade stage 2, regression)")
    p.add_argument("--data", required=True, help="folder of training images (e.g. ../shared/data/train)")
    p.add_argument("--out", required=True, help="folder of the model folders (e.g. assets, or $OUT/zoo)")
    p.add_argument("--minutes", type=float, default=12.0, help="training minutes of the whole zoo (default 12)")
    p.add_argument("--only", help="comma-separated zoo models to train (default: all, in order)")
    p.add_argument(
        "--batch-multiplier",
        type=int,
        default=1,
        help="multiply every recipe's batch size (a GPU has room for far larger batches than a CPU)",
    )
    p.add_argument("--split", default="train", choices=["train", "all"], help="'train' holds the validation split out")
    p.add_argument("--device", choices=TRAIN_DEVICES, default="auto", help="as the training commands' --device")
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--dry-run", action="store_true", help="one tiny step per model: checks the whole pipeline fast")
    return p


def commands(args) -> list[tuple[Recipe, list[str]]]:
    """The training command line of every zoo model, in training order."""
    chosen = set(args.only.split(",")) if args.only else None
    known = {r.name for r in RECIPES}
    if chosen and chosen - known:
        raise ValueError(f"unknown zoo model(s) {', '.join(sorted(chosen - known))}; known: {', '.join(known)}")
    out = Path(args.out)
    runs = []
    for recipe in RECIPES:
        if chosen and recipe.name not in chosen:
            continue
        argv = [
            recipe.family,
            *(a.format(out=out) for a in recipe.args),
            "--data",
            args.data,
            "--split",
            args.split,
            "--out",
            str(out / recipe.name),
            "--max-minutes",
            f"{args.minutes * recipe.share:.3f}",
            "--device",
            args.device,
            "--dtype",
            args.dtype,
            "--batch-size",
            str(recipe.batch_size * args.batch_multiplier),
        ]
        if recipe.family != "autoencoder":
            argv += ["--name", recipe.name]
        if recipe.init_from and (out / recipe.init_from).exists():
            argv += ["--init-from", str(out / recipe.init_from)]
        if args.threads:
            argv += ["--threads", str(args.threads)]
        if args.dry_run:
            argv += list(DRY_RUN)
        runs.append((recipe, argv))
    return runs


def run_zoo(args, train: Callable[[list[str]], int]) -> dict:
    """Train every chosen zoo model with ``train(argv) -> exit code`` (the training command's main,
    passed in by the parser so this module does not import it back)."""
    t0 = time.perf_counter()
    done = {}
    for recipe, argv in commands(args):
        missing = [n for n in recipe.needs if not (Path(args.out) / n / "sr_model.json").exists()]
        if missing:
            raise FileNotFoundError(f"zoo: {recipe.name} needs {', '.join(missing)} in {args.out}; train it first")
        print(f"zoo: {recipe.name} ({args.minutes * recipe.share:.1f} min): python -m sr_models.train {' '.join(argv)}")
        code = train(argv)
        if code:
            raise ValueError(f"zoo: training {recipe.name} failed (exit {code}); re-run the zoo to resume")
        done[recipe.name] = str(Path(args.out) / recipe.name)
    print(f"zoo: {len(done)} models in {args.out} after {(time.perf_counter() - t0) / 60:.1f} min")
    return done
