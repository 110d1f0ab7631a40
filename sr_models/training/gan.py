"""The GAN recipe: ``python -m sr_models.train gan`` fine-tunes a regression network with L1 plus a
relativistic GAN loss (the model code is ``sr_models.gan``)."""

from __future__ import annotations

from pathlib import Path

import torch

from sr_models.cards import write_card
from sr_models.regression import EDSRLite
from sr_models.training.common import (
    add_common_arguments,
    global_batch,
    json_ready,
    make_validator,
    patch_data_note,
    train_config,
)
from sr_models.training.patches import PatchSampler
from sr_models.training.trainer import Trainer, local


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

    def export(net, out, card):
        net.generator.save_pretrained(str(out), safe_serialization=True)
        write_card(out, card)

    card = {
        "name": name,
        "family": "gan",
        "scales": [args.scale],
        "description": f"EDSR-lite from {Path(args.init_from).name}, fine-tuned with L1 + {args.adv_weight} x "
        f"relativistic-average GAN loss (patch discriminator, {args.disc_channels} ch); no VGG loss",
        "data": patch_data_note(args, sampler),
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
        card=card,
    )
    return trainer.train()
