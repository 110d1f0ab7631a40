"""The regression baseline recipe: ``python -m sr_models.train regression`` (EDSR-lite, L1 loss)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sr_models.cards import write_card
from sr_models.regression import EDSRLite
from sr_models.training.common import add_common_arguments, fit, global_batch, init_weights, patch_data_note
from sr_models.training.patches import PatchSampler
from sr_models.training.trainer import local


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

    def export(net, out, card):
        net.save_pretrained(str(out), safe_serialization=True)
        write_card(out, card)

    card = {
        "name": name,
        "family": "regression",
        "scales": [args.scale],
        "description": f"EDSR-lite ({args.channels} ch, {args.blocks} blocks), L1, residual over bicubic",
        "data": patch_data_note(args, sampler),
        "init_from": init,
    }
    return fit(model, loss_fn, args, lambda net, x: net(x), export, card)
