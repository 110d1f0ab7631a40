"""What every training recipe shares: the common flags, the validator, weight initialisation from
another model, the Trainer's configuration from the flags, and the data note of a model card."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

import numpy as np
import torch

from sr_models.data import SPLITS, eval_pairs
from sr_models.device import DEVICES
from sr_models.metrics import score
from sr_models.regression import to_tensor, to_uint8
from sr_models.training.patches import PatchSampler
from sr_models.training.trainer import TrainConfig, Trainer, world
from sr_models.types import SAMPLERS

TRAIN_DEVICES = (*DEVICES, "gpu")  # every command's device names; "gpu" kept for old training commands
MIXED_PRECISION = {"float32": "no", "bfloat16": "bf16", "float16": "fp16"}  # --dtype -> accelerate's name


def add_common_arguments(p: argparse.ArgumentParser, batch: int, lr: float, patch: int, scale: bool = True):
    if scale:
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
    p.add_argument(
        "--device",
        choices=TRAIN_DEVICES,
        default="auto",
        help="'auto': the GPU accelerate finds (one per process under `accelerate launch`), else the CPU; "
        "'gpu' is an alias of 'cuda'",
    )
    p.add_argument(
        "--dtype",
        choices=list(MIXED_PRECISION),
        default="float32",
        help="training precision: bfloat16 / float16 are accelerate's mixed precision (float16: GPUs)",
    )
    p.add_argument(
        "--gradient-accumulation",
        type=int,
        default=1,
        metavar="N",
        help="micro-batches of --batch-size per optimizer step",
    )
    p.add_argument("--restart", action="store_true", help="ignore an existing checkpoint and start over")
    p.add_argument(
        "--split",
        default="train",
        choices=SPLITS,
        help="images of --data to train on: 'train' leaves out the held-out validation split "
        "(one image in ten, sr_models.data.is_validation), 'all' uses every image",
    )
    p.add_argument(
        "--init-from",
        metavar="FOLDER",
        help="start from the weights of a model folder (e.g. a shipped one) instead of random ones; "
        "an existing checkpoint in --out still takes precedence",
    )


def add_diffusion_arguments(
    p: argparse.ArgumentParser, channels: tuple[int, ...] | None = None, name: str | None = None
):
    """The flags every diffusion recipe shares (ldm, sr3, idm): the UNet, the card's sampling defaults,
    the validation samples' steps and the model's name."""
    p.add_argument("--channels", type=channels_arg, default=channels, help="UNet block widths, e.g. 64,128,192")
    p.add_argument("--no-attention", action="store_true", help="no self-attention at the lowest resolution")
    p.add_argument("--default-steps", type=int, default=10, help="sampling steps written into the model card")
    p.add_argument(
        "--lr-projection",
        type=int,
        default=5,
        help="default back-projection iterations of the model's outputs (0: off)",
    )
    p.add_argument("--default-sampler", default="ddim", choices=SAMPLERS)
    p.add_argument("--val-steps", type=int, default=10, help="DDIM steps of the validation samples")
    p.add_argument("--name", default=name, help="model name in the registry")


def sampling_card(args) -> dict:
    """The card fields of a diffusion recipe's sampling defaults (from ``add_diffusion_arguments``)."""
    return {
        "default_steps": args.default_steps,
        "default_sampler": args.default_sampler,
        "samplers": list(SAMPLERS),
        "lr_projection": args.lr_projection,
    }


def make_validator(args, upscale_tensor):
    """Validation PSNR-Y / SSIM-Y / LR-PSNR on --val-data with the benchmark's protocol."""
    if not args.val_data:
        return None
    pairs = list(eval_pairs(args.val_data, args.scale, limit=args.val_images, crop=args.val_crop or None))

    def validate(model):
        device = next(model.parameters()).device
        scores = [
            score(to_uint8(upscale_tensor(model, to_tensor(p.lr).to(device))), p.hr, p.lr, args.scale) for p in pairs
        ]
        return {k: float(np.mean([s[k] for s in scores])) for k in scores[0]}

    return validate


def global_batch(sampler: PatchSampler, key: int, batch_size: int):
    """The (LR, HR) batch of every process together for micro-batch ``key`` (see ``local``)."""
    return sampler.batch(key, batch_size * world()[1])


def spread_condition_weights(weight: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """An LDM's first conv for r x r more conditioning channels (a 2x model from a 4x one: the LR
    pixel-unshuffled by r instead of as is): each colour's weights spread evenly over its r x r
    sub-pixels, so the new model starts by seeing their mean, the LR at the old resolution."""
    latent, r2 = weight.shape[1] - 3, (shape[1] - weight.shape[1] + 3) // 3  # 3 conditioning channels before
    if r2 < 2 or latent + 3 * r2 != shape[1] or round(r2**0.5) ** 2 != r2:
        raise ValueError(f"--init-from: a first conv of {weight.shape[1]} inputs cannot start one of {shape[1]}")
    spread = weight[:, latent:].repeat_interleave(r2, dim=1) / r2  # pixel_unshuffle orders colour-major
    return torch.cat([weight[:, :latent], spread], dim=1)


def init_weights(model: torch.nn.Module, folder: str | Path, subfolder: str = "") -> str:
    """Copy the safetensors weights of ``folder`` (or its ``subfolder``) into ``model``."""
    from safetensors.torch import load_file

    path = Path(folder)
    if subfolder and (path / subfolder).is_dir():
        path = path / subfolder
    files = sorted(path.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"--init-from: no .safetensors weights in {path}")
    state = {k: v for f in files for k, v in load_file(f).items()}
    own = model.state_dict()
    if "conv_in.weight" in state and state["conv_in.weight"].shape != own["conv_in.weight"].shape:
        state["conv_in.weight"] = spread_condition_weights(state["conv_in.weight"], own["conv_in.weight"].shape)
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(
            f"--init-from {path}: its weights do not fit this architecture "
            f"(missing {result.missing_keys[:3]}, unexpected {result.unexpected_keys[:3]}); "
            "use the same --channels / --latent-channels as that model"
        )
    return str(path)


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
        mixed_precision=MIXED_PRECISION[args.dtype],
        gradient_accumulation=args.gradient_accumulation,
        cpu=args.device == "cpu",
    )


def fit(model, loss_fn, args, upscale_tensor, export, card: dict) -> dict:
    """Train a diffusers-config model with the shared Trainer; validation goes through ``upscale_tensor``."""
    trainer = Trainer(
        model,
        loss_fn,
        train_config(args),
        validate_fn=make_validator(args, upscale_tensor),
        export_fn=export,
        model_config={k: list(v) if isinstance(v, tuple) else v for k, v in dict(model.config).items()},
        card=card,
    )
    return trainer.train()


def json_ready(config: dict) -> dict:
    return {
        k: json_ready(v) if isinstance(v, dict) else list(v) if isinstance(v, tuple) else v for k, v in config.items()
    }


def data_note(args, sampler) -> str:
    held = {"train": ", validation split held out", "val": ", validation split only", "all": ""}[args.split]
    return f"{args.data} ({len(sampler.images)} images, split '{args.split}'{held})"


def patch_data_note(args, sampler) -> str:
    """The card's data note of a fixed-scale recipe: random HR patches, flipped and rotated, the protocol's LR."""
    return data_note(args, sampler) + f", random {args.hr_patch}px HR crops, flips/rot90, LR by MATLAB-bicubic imresize"


def channels_arg(text: str) -> tuple[int, ...]:
    return tuple(int(c) for c in text.split(","))
