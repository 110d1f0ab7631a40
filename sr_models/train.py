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
from accelerate import PartialState

from sr_models.cards import write_meta
from sr_models.data import SPLITS, PatchSampler, augment_condition, test_pairs
from sr_models.metrics import score
from sr_models.regression import EDSRLite, to_tensor, to_uint8
from sr_models.training import NonFiniteLossError, TrainConfig, Trainer, local, world
from sr_models.types import SamplingSettings


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
        choices=["auto", "cpu", "gpu"],
        default="auto",
        help="'auto': the GPU accelerate finds (one per process under `accelerate launch`), else the CPU",
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


def make_validator(args, upscale_tensor):
    """Validation PSNR-Y / SSIM-Y / LR-PSNR on --val-data with the benchmark's protocol."""
    if not args.val_data:
        return None
    pairs = list(test_pairs(args.val_data, args.scale, limit=args.val_images, crop=args.val_crop or None))

    def validate(model):
        device = next(model.parameters()).device
        scores = [
            score(to_uint8(upscale_tensor(model, to_tensor(p.lr).to(device))), p.hr, p.lr, args.scale) for p in pairs
        ]
        return {k: float(np.mean([s[k] for s in scores])) for k in scores[0]}

    return validate


MIXED_PRECISION = {"float32": "no", "bfloat16": "bf16", "float16": "fp16"}  # --dtype -> accelerate's name


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


def fit(model, loss_fn, args, upscale_tensor, export, record: dict) -> dict:
    """Train a diffusers-config model with the shared Trainer; validation goes through ``upscale_tensor``."""
    trainer = Trainer(
        model,
        loss_fn,
        train_config(args),
        validate_fn=make_validator(args, upscale_tensor),
        export_fn=export,
        model_config={k: list(v) if isinstance(v, tuple) else v for k, v in dict(model.config).items()},
        record=record,
    )
    return trainer.train()


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
    init = init_weights(model, args.init_from) if args.init_from else None
    sampler = PatchSampler(args.data, args.scale, args.hr_patch, seed=args.seed, split=args.split)
    name = args.name or f"regression-x{args.scale}"

    def loss_fn(net, key):
        lr, hr = global_batch(sampler, key, args.batch_size)
        return F.l1_loss(net(local(lr)), local(hr))

    def export(net, out, record):
        net.save_pretrained(str(out), safe_serialization=True)
        write_meta(out, record)

    record = {
        "name": name,
        "family": "regression",
        "scales": [args.scale],
        "description": f"EDSR-lite ({args.channels} ch, {args.blocks} blocks), L1, residual over bicubic",
        "data": data_note(args, sampler) + f", random {args.hr_patch}px HR crops, flips/rot90, "
        "LR by MATLAB-bicubic imresize",
        "init_from": init,
    }
    return fit(model, loss_fn, args, lambda net, x: net(x), export, record)


# ----- gan -----------------------------------------------------------------------------------
def gan_parser(sub):
    p = sub.add_parser("gan", help="ESRGAN-style fine-tuning of a regression network (L1 + relativistic GAN)")
    add_common_arguments(p, batch=16, lr=1e-4, patch=96)
    p.add_argument("--adv-weight", type=float, default=0.05, help="weight of the generator's adversarial loss")
    p.add_argument("--disc-channels", type=int, default=32, help="width of the patch discriminator's first layer")
    p.add_argument("--name", help="model name in the registry (default: gan-x<scale>)")
    p.set_defaults(run=run_gan)


def run_gan(args) -> dict:
    from sr_models.gan import GanPair, PatchDiscriminator, gan_loss

    if not args.init_from:
        raise ValueError("gan: --init-from a regression model folder (e.g. assets/regression-x4) is required")
    torch.manual_seed(args.seed)
    generator = EDSRLite.from_pretrained(args.init_from, use_safetensors=True)
    if generator.config.scale != args.scale:
        raise ValueError(f"gan: --init-from {args.init_from} is a {generator.config.scale}x model, not {args.scale}x")
    pair = GanPair(generator, PatchDiscriminator(args.disc_channels))
    sampler = PatchSampler(args.data, args.scale, args.hr_patch, seed=args.seed, split=args.split)
    name = args.name or f"gan-x{args.scale}"

    def loss_fn(net, key):
        lr, hr = global_batch(sampler, key, args.batch_size)
        return gan_loss(net, local(lr), local(hr), args.adv_weight)

    def export(net, out, record):
        net.generator.save_pretrained(str(out), safe_serialization=True)
        write_meta(out, record)

    record = {
        "name": name,
        "family": "gan",
        "scales": [args.scale],
        "description": f"EDSR-lite from {Path(args.init_from).name}, fine-tuned with L1 + {args.adv_weight} x "
        f"relativistic-average GAN loss (patch discriminator, {args.disc_channels} ch); no VGG loss",
        "data": data_note(args, sampler) + f", random {args.hr_patch}px HR crops, flips/rot90, "
        "LR by MATLAB-bicubic imresize",
        "init_from": args.init_from,
    }
    model_config = {"generator": dict(generator.config), "disc_channels": args.disc_channels}
    trainer = Trainer(
        pair,
        loss_fn,
        train_config(args),
        validate_fn=make_validator(args, lambda net, x: net.generator(x)),
        export_fn=export,
        model_config=json_ready(model_config),
        record=record,
    )
    return trainer.train()


def json_ready(config: dict) -> dict:
    return {
        k: json_ready(v) if isinstance(v, dict) else list(v) if isinstance(v, tuple) else v for k, v in config.items()
    }


# ----- first stage -----------------------------------------------------------------------------
def data_note(args, sampler) -> str:
    held = {"train": ", validation split held out", "val": ", validation split only", "all": ""}[args.split]
    return f"{args.data} ({len(sampler.images)} images, split '{args.split}'{held})"


def channels_arg(text: str) -> tuple[int, ...]:
    return tuple(int(c) for c in text.split(","))


def autoencoder_parser(sub):
    p = sub.add_parser("autoencoder", help="first-stage AutoencoderKL (f=4, 3 latent channels) for the LDMs")
    add_common_arguments(p, batch=8, lr=2e-4, patch=64, scale=False)
    p.set_defaults(scale=1)
    p.add_argument("--channels", type=channels_arg, default=(64, 128, 128), help="block widths, e.g. 64,128,128")
    p.add_argument(
        "--latent-channels",
        type=int,
        default=3,
        help="latent channels (3 keeps a 4x LDM stock-loadable; more reconstruct better)",
    )
    p.add_argument("--kl-weight", type=float, default=1e-6)
    p.set_defaults(run=run_autoencoder)


def run_autoencoder(args) -> dict:
    from sr_models.first_stage import (
        autoencoder_loss,
        build_autoencoder,
        fold_latent_scale,
        latent_std,
    )

    torch.manual_seed(args.seed)
    vae = build_autoencoder(args.channels, args.latent_channels)
    init = init_weights(vae, args.init_from, "vqvae") if args.init_from else None
    sampler = PatchSampler(args.data, 1, args.hr_patch, seed=args.seed, split=args.split)

    def batch(key, size=args.batch_size):
        return global_batch(sampler, key, size)[1] * 2 - 1

    def loss_fn(net, key):
        torch.manual_seed(args.seed * 1_000_003 + key)  # the posterior sample, reproducible on resume
        return autoencoder_loss(net, local(batch(key)), args.kl_weight)

    def reconstruct(net, lr_tensor):  # validation: "upscale" = encode + decode the HR itself
        x = lr_tensor * 2 - 1
        return (net.decode(net.encode(x).latent_dist.mode()).sample + 1) / 2

    def export(net, out, record):
        device = next(net.parameters()).device
        std = latent_std(net, [batch(10_000_000 + i).to(device) for i in range(4)])
        folded = torch.nn.Module.to(fold_latent_scale(net, 1.0 / std), torch.float16)  # fp16 file, loads as fp32
        folded.save_pretrained(str(out), safe_serialization=True)
        record["latent_scale_folded"] = 1.0 / std
        write_meta(out, record)

    record = {
        "name": Path(args.out).name,
        "family": "first-stage",
        "scales": [1],
        "description": f"AutoencoderKL f=4, {args.latent_channels} latent channels, blocks {list(args.channels)}, "
        f"L1+L2 (+{args.kl_weight} KL)",
        "data": data_note(args, sampler) + f", random {args.hr_patch}px crops, flips/rot90",
        "init_from": init,
    }
    args.scale = 1  # validation compares reconstructions with the image itself
    return fit(vae, loss_fn, args, reconstruct, export, record)


# ----- diffusion (ldm, sr3) ----------------------------------------------------------------------
def diffusion_arguments(p):
    p.add_argument("--channels", type=channels_arg, help="UNet block widths, e.g. 64,128,192")
    p.add_argument("--no-attention", action="store_true", help="no self-attention at the lowest resolution")
    p.add_argument("--default-steps", type=int, default=10, help="sampling steps written into the model card")
    p.add_argument(
        "--lr-projection",
        type=int,
        default=5,
        help="default back-projection iterations of the model's outputs (0: off)",
    )
    p.add_argument("--default-sampler", default="ddim", choices=["ddim", "ddpm", "dpmsolver++"])
    p.add_argument("--val-steps", type=int, default=10, help="DDIM steps of the validation samples")
    p.add_argument("--name", help="model name in the registry")
    p.add_argument(
        "--cond-aug-blur",
        type=float,
        default=0.0,
        help="conditioning augmentation for a later cascade stage: max Gaussian blur sigma of the LR (LR px)",
    )
    p.add_argument(
        "--cond-aug-noise",
        type=float,
        default=0.0,
        help="conditioning augmentation: max Gaussian noise std of the LR (in [0, 1] units)",
    )
    p.add_argument("--cond-aug-prob", type=float, default=0.5, help="share of training LRs that are augmented")


def ldm_parser(sub):
    p = sub.add_parser("ldm", help="latent diffusion SR on a trained first stage")
    add_common_arguments(p, batch=16, lr=2e-4, patch=128)
    p.add_argument("--first-stage", required=True, help="folder made by the autoencoder command")
    p.add_argument(
        "--latent-residual",
        action="store_true",
        help="denoise z(HR) - z(upsampled LR) with a zero-initialised output: starts as the decoded upsample",
    )
    diffusion_arguments(p)
    p.set_defaults(run=run_ldm)


def sr3_parser(sub):
    p = sub.add_parser("sr3", help="pixel-space diffusion SR (SR3-style, residual over bicubic)")
    add_common_arguments(p, batch=16, lr=2e-4, patch=64)
    diffusion_arguments(p)
    p.add_argument("--residual-scale", type=float, default=4.0, help="multiplier of HR - bicubic in [-1, 1] units")
    p.set_defaults(run=run_sr3)


def _diffusion_loss(unet, x0, cond, key, seed):
    """x0-prediction loss of this process's slice ``x0``; timesteps and noise are drawn for the global
    batch (the same draws whatever the process count) and sliced like the data."""
    from diffusers import DDPMScheduler

    from sr_models.diffusion import TRAIN_SCHEDULER

    g = torch.Generator().manual_seed(seed * 1_000_003 + key)
    sched = _diffusion_loss.scheduler = getattr(_diffusion_loss, "scheduler", None) or DDPMScheduler(**TRAIN_SCHEDULER)
    n = x0.shape[0] * world()[1]
    t = local(torch.randint(0, sched.config.num_train_timesteps, (n,), generator=g))
    noise = local(torch.randn((n, *x0.shape[1:]), generator=g))
    x_t = sched.add_noise(x0, noise, t)
    return F.mse_loss(unet(torch.cat([x_t, cond], dim=1), t).sample, x0)


def _run_diffusion(args, family: str) -> dict:
    from diffusers import AutoencoderKL

    from sr_models.diffusion import TRAIN_SCHEDULER
    from sr_models.diffusion_sr import (
        LatentSR,
        PixelSR,
        build_unet,
        condition_channels,
        latent_condition,
        save_ldm_folder,
        save_sr3_folder,
        torch_bicubic_up,
    )

    torch.manual_seed(args.seed)
    name = args.name or f"{family}-x{args.scale}"
    sampler = PatchSampler(args.data, args.scale, args.hr_patch, seed=args.seed, split=args.split)
    augmenting = args.cond_aug_blur > 0 or args.cond_aug_noise > 0

    def pairs(key):
        lr, hr = global_batch(sampler, key, args.batch_size)
        if augmenting:  # reproducible on resume: drawn from (seed, key)
            rng = np.random.default_rng([args.seed, key, 7])
            lr = augment_condition(lr, rng, args.cond_aug_blur, args.cond_aug_noise, args.cond_aug_prob)
        return local(lr), local(hr)

    meta = {
        "name": name,
        "family": family,
        "scales": [args.scale],
        "default_steps": args.default_steps,
        "default_sampler": args.default_sampler,
        "samplers": ["ddim", "ddpm", "dpmsolver++"],
        "lr_projection": args.lr_projection,
        "data": data_note(args, sampler) + f", random {args.hr_patch}px HR crops, flips/rot90, "
        "LR by MATLAB-bicubic imresize",
    }
    if augmenting:
        meta["conditioning_augmentation"] = {
            "blur_sigma_max": args.cond_aug_blur,
            "noise_std_max": args.cond_aug_noise,
            "probability": args.cond_aug_prob,
            "level_given_to_model": False,
        }
    if family == "ldm":
        vae = AutoencoderKL.from_pretrained(args.first_stage, use_safetensors=True).eval().requires_grad_(False)
        vae.to(PartialState(cpu=args.device == "cpu").device)  # frozen: used on every process's slice
        unet = build_unet(
            vae.config.latent_channels + condition_channels(args.scale),
            vae.config.latent_channels,
            args.channels or (64, 128, 192),
            attention=not args.no_attention,
            zero_out=args.latent_residual,
        )
        meta["latent_residual"] = args.latent_residual
        meta["description"] = (
            f"latent diffusion on {Path(args.first_stage).name}, UNet {list(unet.config.block_out_channels)}, "
            "x0-prediction"
        )
        meta["first_stage"] = Path(args.first_stage).name

        def targets(step):
            lr, hr = pairs(step)
            with torch.no_grad():
                z0 = vae.encode(hr * 2 - 1).latent_dist.mode()
                if args.latent_residual:
                    z0 = z0 - vae.encode(torch_bicubic_up(lr * 2 - 1, args.scale).clamp(-1, 1)).latent_dist.mode()
            return z0, latent_condition(lr * 2 - 1, args.scale)

        def wrap(net):
            return LatentSR(name, vae, net, TRAIN_SCHEDULER, args.scale, meta).to(next(net.parameters()).device)

        def export(net, out, record):
            save_ldm_folder(out, vae, net, TRAIN_SCHEDULER, args.scale, record)
    else:
        unet = build_unet(6, 3, args.channels or (64, 128, 128), attention=not args.no_attention, zero_out=True)
        meta["residual_scale"] = args.residual_scale
        meta["tile"] = 256
        meta["description"] = (
            f"SR3-style pixel diffusion, UNet {list(unet.config.block_out_channels)}, residual over bicubic, x0-prediction"
        )

        def targets(step):
            lr, hr = pairs(step)
            up = torch_bicubic_up(lr * 2 - 1, args.scale)
            return (hr * 2 - 1 - up) * args.residual_scale, up

        def wrap(net):
            return PixelSR(name, net, TRAIN_SCHEDULER, args.scale, meta).to(next(net.parameters()).device)

        def export(net, out, record):
            save_sr3_folder(out, net, TRAIN_SCHEDULER, record)

    if args.init_from:
        meta["init_from"] = init_weights(unet, args.init_from, "unet")

    def loss_fn(net, key):
        x0, cond = targets(key)
        return _diffusion_loss(net, x0, cond, key, args.seed)

    def sample_val(net, lr_tensor):
        model = wrap(net)
        settings = model.resolve(SamplingSettings(steps=args.val_steps, sampler="ddim", seed=0, lr_projection=0))
        sr, *_ = model.run(lr_tensor * 2 - 1, args.scale, settings)
        return (sr + 1) / 2

    return fit(unet, loss_fn, args, sample_val, export, meta)


def run_ldm(args) -> dict:
    return _run_diffusion(args, "ldm")


def run_sr3(args) -> dict:
    return _run_diffusion(args, "sr3")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sr_models.train",
        description="Train an SR model. Re-running the same command resumes from OUT/checkpoint.",
    )
    sub = parser.add_subparsers(dest="family", required=True, metavar="family")
    regression_parser(sub)
    gan_parser(sub)
    autoencoder_parser(sub)
    ldm_parser(sub)
    sr3_parser(sub)
    from sr_models.zoo import zoo_parser

    zoo_parser(sub)
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
