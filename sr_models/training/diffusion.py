"""The diffusion recipes: ``python -m sr_models.train ldm`` (latent) and ``sr3`` (pixel space)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from accelerate import PartialState

from sr_models.training.common import (
    add_common_arguments,
    add_diffusion_arguments,
    fit,
    global_batch,
    init_weights,
    patch_data_note,
    sampling_card,
)
from sr_models.training.patches import PatchSampler, augment_condition
from sr_models.training.trainer import local, world
from sr_models.types import SamplingSettings


def diffusion_arguments(p):
    """The ldm and sr3 recipes' flags: the shared diffusion ones and conditioning augmentation."""
    add_diffusion_arguments(p)
    # One section of --help, whose heading says once what the three flags are for.
    aug = p.add_argument_group(
        "conditioning augmentation", "for a later cascade stage: random blur and noise on the LR"
    )
    aug.add_argument("--cond-aug-blur", type=float, default=0.0, help="max Gaussian blur sigma of the LR (LR px)")
    aug.add_argument(
        "--cond-aug-noise", type=float, default=0.0, help="max Gaussian noise std of the LR ([0, 1] units)"
    )
    aug.add_argument("--cond-aug-prob", type=float, default=0.5, help="share of training LRs that are augmented")


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

    from sr_models.sampling import TRAIN_SCHEDULER

    g = torch.Generator().manual_seed(seed * 1_000_003 + key)
    sched = _diffusion_loss.scheduler = getattr(_diffusion_loss, "scheduler", None) or DDPMScheduler(**TRAIN_SCHEDULER)
    n = x0.shape[0] * world()[1]
    t = local(torch.randint(0, sched.config.num_train_timesteps, (n,), generator=g))
    noise = local(torch.randn((n, *x0.shape[1:]), generator=g))
    x_t = sched.add_noise(x0, noise, t)
    return F.mse_loss(unet(torch.cat([x_t, cond], dim=1), t).sample, x0)


@dataclass
class _Recipe:
    """What differs between the latent and the pixel-space recipe."""

    unet: torch.nn.Module  # the network trained
    targets: Callable[[int], tuple[torch.Tensor, torch.Tensor]]  # batch key -> (x0, conditioning)
    wrap: Callable[[torch.nn.Module], object]  # the network as a model that samples (validation)
    export: Callable[[torch.nn.Module, Path, dict], None]  # the model folder, with its card


def _pairs(args, sampler: PatchSampler) -> Callable[[int], tuple[torch.Tensor, torch.Tensor]]:
    """Batch key -> this process's (LR, HR) slice in [0, 1], the LRs augmented if asked."""
    augmenting = args.cond_aug_blur > 0 or args.cond_aug_noise > 0

    def pairs(key):
        lr, hr = global_batch(sampler, key, args.batch_size)
        if augmenting:  # reproducible on resume: drawn from (seed, key)
            rng = np.random.default_rng([args.seed, key, 7])
            lr = augment_condition(lr, rng, args.cond_aug_blur, args.cond_aug_noise, args.cond_aug_prob)
        return local(lr), local(hr)

    return pairs


def _card(args, family: str, name: str, sampler: PatchSampler) -> dict:
    """The card both recipes share; each recipe adds its own fields."""
    card = {
        "name": name,
        "family": family,
        "scales": [args.scale],
        **sampling_card(args),
        "data": patch_data_note(args, sampler),
    }
    if args.cond_aug_blur > 0 or args.cond_aug_noise > 0:
        card["conditioning_augmentation"] = {
            "blur_sigma_max": args.cond_aug_blur,
            "noise_std_max": args.cond_aug_noise,
            "probability": args.cond_aug_prob,
            "level_given_to_model": False,
        }
    return card


def _ldm_recipe(args, name: str, card: dict, pairs) -> _Recipe:
    """Latent diffusion on a frozen first stage: x0 is the HR's latent (or its residual over the
    upsampled LR's latent), the LR brought to latent resolution is the conditioning."""
    from diffusers import AutoencoderKL

    from sr_models.diffusion_sr import (
        LatentSR,
        build_unet,
        condition_channels,
        latent_condition,
        save_ldm_folder,
        torch_bicubic_up,
    )
    from sr_models.sampling import TRAIN_SCHEDULER

    vae = AutoencoderKL.from_pretrained(args.first_stage, use_safetensors=True).eval().requires_grad_(False)
    vae.to(PartialState(cpu=args.device == "cpu").device)  # frozen: used on every process's slice
    unet = build_unet(
        vae.config.latent_channels + condition_channels(args.scale),
        vae.config.latent_channels,
        args.channels or (64, 128, 192),
        attention=not args.no_attention,
        zero_out=args.latent_residual,
    )
    card["latent_residual"] = args.latent_residual
    card["description"] = (
        f"latent diffusion on {Path(args.first_stage).name}, UNet {list(unet.config.block_out_channels)}, x0-prediction"
    )
    card["first_stage"] = Path(args.first_stage).name

    def targets(step):
        lr, hr = pairs(step)
        with torch.no_grad():
            z0 = vae.encode(hr * 2 - 1).latent_dist.mode()
            if args.latent_residual:
                z0 = z0 - vae.encode(torch_bicubic_up(lr * 2 - 1, args.scale).clamp(-1, 1)).latent_dist.mode()
        return z0, latent_condition(lr * 2 - 1, args.scale)

    def wrap(net):
        return LatentSR(name, vae, net, TRAIN_SCHEDULER, args.scale, card).to(next(net.parameters()).device)

    def export(net, out, final_card):
        save_ldm_folder(out, vae, net, TRAIN_SCHEDULER, args.scale, final_card)

    return _Recipe(unet, targets, wrap, export)


def _sr3_recipe(args, name: str, card: dict, pairs) -> _Recipe:
    """Pixel-space diffusion: x0 is the scaled residual HR - bicubic, the bicubic upsample the conditioning."""
    from sr_models.diffusion_sr import PixelSR, build_unet, save_sr3_folder, torch_bicubic_up
    from sr_models.sampling import TRAIN_SCHEDULER

    unet = build_unet(6, 3, args.channels or (64, 128, 128), attention=not args.no_attention, zero_out=True)
    card["residual_scale"] = args.residual_scale
    card["tile"] = 256
    card["description"] = (
        f"SR3-style pixel diffusion, UNet {list(unet.config.block_out_channels)}, residual over bicubic, x0-prediction"
    )

    def targets(step):
        lr, hr = pairs(step)
        up = torch_bicubic_up(lr * 2 - 1, args.scale)
        return (hr * 2 - 1 - up) * args.residual_scale, up

    def wrap(net):
        return PixelSR(name, net, TRAIN_SCHEDULER, args.scale, card).to(next(net.parameters()).device)

    def export(net, out, final_card):
        save_sr3_folder(out, net, TRAIN_SCHEDULER, final_card)

    return _Recipe(unet, targets, wrap, export)


def _run_diffusion(args, family: str, make_recipe: Callable[..., _Recipe]) -> dict:
    torch.manual_seed(args.seed)
    name = args.name or f"{family}-x{args.scale}"
    sampler = PatchSampler(args.data, args.scale, args.hr_patch, seed=args.seed, split=args.split)
    card = _card(args, family, name, sampler)
    recipe = make_recipe(args, name, card, _pairs(args, sampler))
    if args.init_from:
        card["init_from"] = init_weights(recipe.unet, args.init_from, "unet")

    def loss_fn(net, key):
        x0, cond = recipe.targets(key)
        return _diffusion_loss(net, x0, cond, key, args.seed)

    def sample_val(net, lr_tensor):
        model = recipe.wrap(net)
        settings = model.resolve(SamplingSettings(steps=args.val_steps, sampler="ddim", seed=0, lr_projection=0))
        sr, *_ = model.run(lr_tensor * 2 - 1, args.scale, settings)
        return (sr + 1) / 2

    return fit(recipe.unet, loss_fn, args, sample_val, recipe.export, card)


def run_ldm(args) -> dict:
    return _run_diffusion(args, "ldm", _ldm_recipe)


def run_sr3(args) -> dict:
    return _run_diffusion(args, "sr3", _sr3_recipe)
