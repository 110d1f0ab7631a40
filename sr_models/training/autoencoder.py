"""The first-stage recipe: ``python -m sr_models.train autoencoder`` (the LDMs' AutoencoderKL)."""

from __future__ import annotations

from pathlib import Path

import torch

from sr_models.cards import write_card
from sr_models.training.common import add_common_arguments, channels_arg, data_note, fit, global_batch, init_weights
from sr_models.training.patches import PatchSampler
from sr_models.training.trainer import local


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

    def export(net, out, card):
        device = next(net.parameters()).device
        std = latent_std(net, [batch(10_000_000 + i).to(device) for i in range(4)])
        folded = torch.nn.Module.to(fold_latent_scale(net, 1.0 / std), torch.float16)  # fp16 file, loads as fp32
        folded.save_pretrained(str(out), safe_serialization=True)
        card["latent_scale_folded"] = 1.0 / std
        write_card(out, card)

    card = {
        "name": Path(args.out).name,
        "family": "first-stage",
        "scales": [1],
        "description": f"AutoencoderKL f=4, {args.latent_channels} latent channels, blocks {list(args.channels)}, "
        f"L1+L2 (+{args.kl_weight} KL)",
        "data": data_note(args, sampler) + f", random {args.hr_patch}px crops, flips/rot90",
        "init_from": init,
    }
    args.scale = 1  # validation compares reconstructions with the image itself
    return fit(vae, loss_fn, args, reconstruct, export, card)
