"""The first stage of the latent models: a small ``AutoencoderKL`` with f = 4 (3 or 8 latent channels).

Why these choices for SR: f = 4 keeps the latent at the 4x model's LR resolution, so a 4x LR
concatenates to it as is (the CompVis LDM-SR layout); 3 latent channels are what that stock layout
expects (``in_channels // 2``) and give 16x fewer numbers than the image, but cap fidelity (about
25.7 dB on Set14); 8 channels (``first-stage-f4-c8``) reconstruct at 31 dB; the loss is
L1 + L2 in pixels with a tiny KL term, aiming at faithful (high-PSNR) reconstructions rather
than GAN sharpness: whatever the decoder loses, no LDM on top of it can recover. No attention in
the mid block, so whole images encode and decode in memory proportional to their size.

The stock pipeline decodes latents without a scaling factor, so the scale that brings latents to
unit variance is folded into ``quant_conv`` / ``post_quant_conv`` at export (exact, no extra op).
"""

from __future__ import annotations

import copy
import math

import torch
from diffusers import AutoencoderKL


def build_autoencoder(channels: tuple[int, ...] = (64, 128, 128), latent_channels: int = 3) -> AutoencoderKL:
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * len(channels),
        up_block_types=("UpDecoderBlock2D",) * len(channels),
        block_out_channels=tuple(channels),
        layers_per_block=1,
        latent_channels=latent_channels,
        norm_num_groups=min(32, min(channels) // 2),
        mid_block_add_attention=False,
        sample_size=64,
    )


def autoencoder_loss(vae: AutoencoderKL, x: torch.Tensor, kl_weight: float = 1e-6) -> torch.Tensor:
    posterior = vae.encode(x).latent_dist
    recon = vae.decode(posterior.sample()).sample
    return F_l1_l2(recon, x) + kl_weight * posterior.kl().mean() / x[0].numel()


def F_l1_l2(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    diff = a - b
    return diff.abs().mean() + (diff**2).mean()


@torch.no_grad()
def latent_std(vae: AutoencoderKL, batches) -> float:
    """Standard deviation of the posterior means over some image batches in [-1, 1]."""
    values = [vae.encode(x).latent_dist.mode().flatten() for x in batches]
    return float(torch.cat(values).std())


@torch.no_grad()
def fold_latent_scale(vae: AutoencoderKL, scale: float) -> AutoencoderKL:
    """A copy whose latents are ``scale`` times the original's, decoding to the same images."""
    vae = copy.deepcopy(vae)
    c = vae.config.latent_channels
    vae.quant_conv.weight[:c] *= scale
    vae.quant_conv.bias[:c] *= scale
    vae.quant_conv.bias[c:] += 2 * math.log(scale)  # log-variance of the scaled posterior
    vae.post_quant_conv.weight /= scale  # 1x1 conv: dividing by input scale undoes it exactly
    return vae
