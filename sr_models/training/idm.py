"""The any-scale diffusion recipe: ``python -m sr_models.train idm --liif FOLDER`` (IDM-style, on top of liif-x).

SR3's x0-prediction loss (``training.diffusion._diffusion_loss``: the same timestep and noise draws)
on the residual HR - liif(LR), where liif is the trained ``liif`` model of --liif (frozen, copied into
the exported folder), with the UNet told the batch's scale through its scale embedding. Each step draws
one scale from [--min-scale, --max-scale] and fixed-size HR patches (``ScalePatchSampler``), so the
UNet's cost per step does not depend on the scale.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import torch
from accelerate import PartialState

from sr_models.degradation import MAX_SCALE, scaled_size
from sr_models.idm import ImplicitDiffusionSR, build_idm_unet, save_idm_folder, scale_label
from sr_models.liif import NOMINAL_SCALES, LIIFNet, liif_condition
from sr_models.sampling import TRAIN_SCHEDULER
from sr_models.training.common import (
    add_common_arguments,
    add_diffusion_arguments,
    data_note,
    fit,
    init_weights,
    sampling_card,
)
from sr_models.training.diffusion import _diffusion_loss
from sr_models.training.liif import add_scale_arguments, scale_batch, scale_sampler
from sr_models.types import SamplingSettings


def idm_parser(sub):
    p = sub.add_parser("idm", help="IDM-style diffusion serving any scale: residual over a trained liif model")
    add_common_arguments(p, batch=16, lr=2e-4, patch=64, scale=False)
    add_scale_arguments(p)
    p.add_argument("--liif", required=True, metavar="FOLDER", help="the trained liif model (e.g. assets/liif-x)")
    add_diffusion_arguments(p, channels=(64, 128, 128), name="idm-x")
    p.add_argument("--residual-scale", type=float, default=4.0, help="multiplier of HR - liif in [-1, 1] units")
    p.set_defaults(run=run_idm)


def load_frozen_liif(folder: str, device) -> LIIFNet:
    if not (Path(folder) / "config.json").exists():
        raise FileNotFoundError(f"--liif {folder}: no liif model there (train one with `sr_models.train liif`)")
    liif = LIIFNet.from_pretrained(folder, use_safetensors=True).eval().requires_grad_(False)
    return liif.to(device)


def run_idm(args) -> dict:
    torch.manual_seed(args.seed)
    liif = load_frozen_liif(args.liif, PartialState(cpu=args.device == "cpu").device)  # used on every slice
    unet = build_idm_unet(args.channels, attention=not args.no_attention)
    sampler = scale_sampler(args, args.hr_patch, None)
    meta = {
        "name": args.name,
        "scales": list(NOMINAL_SCALES),
        "max_scale": MAX_SCALE,
        "trained_scales": [args.min_scale, args.max_scale],
        **sampling_card(args),
        "residual_scale": args.residual_scale,
        "tile": 256,
        "liif_source": str(args.liif),
        "description": f"IDM-style pixel diffusion, UNet {list(args.channels)} with a scale embedding (FiLM), "
        f"residual over {Path(args.liif).name}'s implicit upsample, x0-prediction, any scale",
        "data": data_note(args, sampler) + f", random {args.hr_patch}px HR crops, one scale per batch drawn from "
        f"[{args.min_scale:g}, {args.max_scale:g}] (LR = round(HR / scale)), flips/rot90, LR by MATLAB-bicubic "
        "imresize at 1/scale",
    }
    if args.init_from:
        meta["init_from"] = init_weights(unet, args.init_from, "unet")

    def loss_fn(net, key):
        lr, hr, scale = scale_batch(sampler, key, args.batch_size)
        with torch.no_grad():
            cond = liif_condition(liif, lr * 2 - 1, tuple(hr.shape[-2:]))
        labels = torch.full((hr.shape[0],), scale_label(scale, args.max_scale), device=hr.device)
        x0 = (hr * 2 - 1 - cond) * args.residual_scale
        return _diffusion_loss(partial(net, class_labels=labels), x0, cond, key, args.seed)

    def sample_val(net, lr_tensor):
        model = ImplicitDiffusionSR(args.name, net, TRAIN_SCHEDULER, liif, meta).to(next(net.parameters()).device)
        settings = model.resolve(SamplingSettings(steps=args.val_steps, sampler="ddim", seed=0, lr_projection=0))
        h, w = scaled_size(lr_tensor.shape[-2], lr_tensor.shape[-1], args.val_scale)
        sr, *_ = model.run(lr_tensor * 2 - 1, args.val_scale, settings)
        return (sr[:, :, :h, :w] + 1) / 2

    def export(net, out, record):
        save_idm_folder(out, net, TRAIN_SCHEDULER, liif, record)

    args.scale = args.val_scale  # the validator measures the protocol at this scale
    return fit(unet, loss_fn, args, sample_val, export, meta)
