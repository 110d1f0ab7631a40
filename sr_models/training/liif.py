"""The any-scale regression recipe: ``python -m sr_models.train liif`` (LIIF-style, L1 at scales from [1, 4]).

Each step draws one scale from [--min-scale, --max-scale], crops HR patches whose size divided by it
is whole (``ScalePatchSampler``: a fixed --lr-patch by default, as LIIF trains), and takes the L1 loss
at --queries random output pixels of each patch (LIIF's sampled queries: the decoder's cost stays
bounded at large scales). Validation: the benchmark protocol at --val-scale.
"""

from __future__ import annotations

import torch

from sr_models.degradation import MAX_SCALE, scaled_size
from sr_models.liif import NOMINAL_SCALES, LIIFNet, liif_loss, random_queries, save_liif_folder
from sr_models.training.common import add_common_arguments, data_note, fit, init_weights
from sr_models.training.scale_patches import ScalePatchSampler
from sr_models.training.trainer import local, world


def add_scale_arguments(p):
    """The scale range and validation scale the any-scale recipes share (--hr-patch comes from common)."""
    p.add_argument("--min-scale", type=float, default=1.0, help="smallest training scale (drawn uniformly)")
    p.add_argument("--max-scale", type=float, default=4.0, help="largest training scale")
    p.add_argument(
        "--val-scale", type=float, default=4, help="the scale of the validation PSNR-Y on --val-data (e.g. 4 or 2.5)"
    )


def scale_sampler(args, hr_patch: int | None, lr_patch: int | None) -> ScalePatchSampler:
    return ScalePatchSampler(
        args.data,
        args.min_scale,
        args.max_scale,
        hr_patch=hr_patch,
        lr_patch=lr_patch,
        seed=args.seed,
        split=args.split,
    )


def scale_batch(sampler: ScalePatchSampler, key: int, batch_size: int):
    """This process's slice of the global batch of micro-batch ``key``, and its scale (shared by all)."""
    lr, hr, scale = sampler.batch(key, batch_size * world()[1])
    return local(lr), local(hr), scale


def liif_parser(sub):
    p = sub.add_parser("liif", help="LIIF-style implicit regression serving any scale (L1, scales from [1, 4])")
    add_common_arguments(p, batch=8, lr=5e-4, patch=0, scale=False)
    add_scale_arguments(p)
    p.add_argument(
        "--lr-patch",
        type=int,
        default=32,
        help="LR patch side, HR = round(LR x scale) as LIIF crops (--hr-patch N instead fixes the HR side)",
    )
    p.add_argument("--queries", type=int, default=2304, help="output pixels of each patch in the loss")
    p.add_argument("--channels", type=int, default=32, help="encoder width (EDSR-lite)")
    p.add_argument("--blocks", type=int, default=8, help="encoder residual blocks")
    p.add_argument("--hidden", type=int, default=64, help="width of the implicit decoder's MLP")
    p.add_argument("--mlp-layers", type=int, default=3, help="linear layers of the MLP before its output layer")
    p.add_argument("--name", default="liif-x", help="model name in the registry")
    p.set_defaults(run=run_liif)


def run_liif(args) -> dict:
    torch.manual_seed(args.seed)
    model = LIIFNet(args.channels, args.blocks, hidden=args.hidden, mlp_layers=args.mlp_layers)
    init = init_weights(model, args.init_from) if args.init_from else None
    hr_patch = args.hr_patch or None
    sampler = scale_sampler(args, hr_patch, None if hr_patch else args.lr_patch)

    def loss_fn(net, key):
        lr, hr, _ = scale_batch(sampler, key, args.batch_size)
        generator = torch.Generator().manual_seed(args.seed * 1_000_003 + key)  # the queries, reproducible
        pixels = random_queries(hr.shape[-2:], args.queries, hr.shape[0] * world()[1], generator)
        return liif_loss(net, lr, hr, local(pixels))

    def export(net, out, record):
        save_liif_folder(out, net, record)

    crop = f"random {hr_patch}px HR crops" if hr_patch else f"random {args.lr_patch}px LR crops (HR = LR x scale)"
    record = {
        "name": args.name,
        "scales": list(NOMINAL_SCALES),
        "max_scale": MAX_SCALE,
        "trained_scales": [args.min_scale, args.max_scale],
        "description": f"EDSR-lite encoder ({args.channels} ch, {args.blocks} blocks) + LIIF decoder (MLP "
        f"{args.hidden} x {args.mlp_layers}, local ensemble), L1 at {args.queries} queries, residual over "
        "bicubic, one model for any scale",
        "data": data_note(args, sampler) + f", {crop}, one scale per batch drawn from "
        f"[{args.min_scale:g}, {args.max_scale:g}], flips/rot90, LR by MATLAB-bicubic imresize at 1/scale",
        "init_from": init,
    }
    args.scale = args.val_scale  # the validator measures the protocol at this scale

    def upscale(net, lr):
        return net(lr, scaled_size(lr.shape[-2], lr.shape[-1], args.val_scale))

    return fit(model, loss_fn, args, upscale, export, record)
