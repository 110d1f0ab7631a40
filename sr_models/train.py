"""Training command: ``python -m sr_models.train <family> --scale S --data DIR --out DIR [...]``.

Re-running the same command resumes from ``OUT/checkpoint`` (``--restart`` starts over);
``--max-minutes`` is the total budget over all resumed runs. See ``--help`` of each family.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from comparisons.evaluation import score, test_pairs
from sr_models.cards import write_meta
from sr_models.data import PatchSampler
from sr_models.regression import EDSRLite, to_tensor, to_uint8
from sr_models.training import NonFiniteLossError, TrainConfig, Trainer


def add_common_arguments(p: argparse.ArgumentParser, batch: int, lr: float, patch: int):
    p.add_argument("--scale", type=int, required=True, help="magnification (e.g. 2, 4, 8)")
    p.add_argument("--data", required=True, help="folder of training images (searched recursively)")
    p.add_argument("--out", required=True, help="run folder: the exported model plus checkpoint/")
    p.add_argument("--val-data", help="folder of test images for the validation PSNR-Y (e.g. Set5)")
    p.add_argument("--val-images", type=int, default=5, help="validate on at most this many images")
    p.add_argument("--val-crop", type=int, default=256, help="HR center crop for validation (0: whole image)")
    p.add_argument("--max-steps", type=int, default=100_000)
    p.add_argument("--max-minutes", type=float, help="total training time budget, over resumed runs")
    p.add_argument("--batch-size", type=int, default=batch)
    p.add_argument("--hr-patch", type=int, default=patch, help="HR crop size of training patches")
    p.add_argument("--learning-rate", type=float, default=lr)
    p.add_argument("--ema-decay", type=float, default=0.999)
    p.add_argument("--checkpoint-every", type=int, default=200, help="steps between checkpoints")
    p.add_argument("--validate-every", type=int, default=200, help="steps between validations (0: never)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--restart", action="store_true", help="ignore an existing checkpoint and start over")


def make_validator(args, upscale_tensor):
    """Validation PSNR-Y / SSIM-Y / LR-PSNR on --val-data with the benchmark's protocol."""
    if not args.val_data:
        return None
    pairs = list(test_pairs(args.val_data, args.scale, limit=args.val_images, crop=args.val_crop or None))

    def validate(model):
        scores = [score(to_uint8(upscale_tensor(model, to_tensor(p.lr))), p.hr, p.lr, args.scale) for p in pairs]
        return {k: float(np.mean([s[k] for s in scores])) for k in scores[0]}

    return validate


def train_config(args) -> TrainConfig:
    return TrainConfig(
        out=Path(args.out),
        max_steps=args.max_steps,
        max_minutes=args.max_minutes,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        ema_decay=args.ema_decay,
        checkpoint_every=args.checkpoint_every,
        validate_every=args.validate_every if args.val_data else 0,
        seed=args.seed,
        restart=args.restart,
        command="python -m sr_models.train " + shlex.join(args.argv),
    )


# ----- regression ----------------------------------------------------------------------------
def regression_parser(sub):
    p = sub.add_parser("regression", help="small EDSR with L1 loss (the regression baseline)")
    add_common_arguments(p, batch=16, lr=5e-4, patch=96)
    p.add_argument("--channels", type=int, default=32)
    p.add_argument("--blocks", type=int, default=8)
    p.add_argument("--name", help="model name in the registry (default: regression-x<scale>)")
    p.set_defaults(run=run_regression)


def run_regression(args) -> dict:
    torch.manual_seed(args.seed)
    model = EDSRLite(scale=args.scale, channels=args.channels, num_blocks=args.blocks)
    sampler = PatchSampler(args.data, args.scale, args.hr_patch, seed=args.seed)
    name = args.name or f"regression-x{args.scale}"

    def loss_fn(net, step):
        lr, hr = sampler.batch(step, args.batch_size)
        return F.l1_loss(net(lr), hr)

    def export(net, out, record):
        net.save_pretrained(str(out), safe_serialization=True)
        write_meta(out, record)

    record = {
        "name": name,
        "family": "regression",
        "scales": [args.scale],
        "description": f"EDSR-lite ({args.channels} ch, {args.blocks} blocks), L1, residual over bicubic",
        "data": f"{args.data} ({len(sampler.images)} images), random {args.hr_patch}px HR crops, "
        "flips/rot90, LR by MATLAB-bicubic imresize",
    }
    trainer = Trainer(
        model,
        loss_fn,
        train_config(args),
        validate_fn=make_validator(args, lambda net, x: net(x)),
        export_fn=export,
        model_config=dict(model.config),
        record=record,
    )
    return trainer.train()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sr_models.train",
        description="Train an SR model. Re-running the same command resumes from OUT/checkpoint.",
    )
    sub = parser.add_subparsers(dest="family", required=True, metavar="family")
    regression_parser(sub)
    return parser


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        args.run(args)
    except NonFiniteLossError as err:
        print(f"error: {err}", file=sys.stderr)
        return 3
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
