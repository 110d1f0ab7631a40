"""Regression baseline: a small EDSR (Lim et al. 2017) trained with L1, one network per scale.

It works at LR resolution (cheap), upsamples with sub-pixel convolutions and adds its output to
a bicubic upsample of the input, so at initialisation it already *is* bicubic and training only
has to learn the missing detail: that is what makes a few CPU minutes enough to beat bicubic.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from sr_models.base import NetworkSR
from sr_models.tiling import tiled
from sr_models.types import NetworkCalls


class ResBlock(nn.Module):
    def __init__(self, channels: int, res_scale: float):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.res_scale = res_scale

    def forward(self, x):
        return x + self.res_scale * self.conv2(F.relu(self.conv1(x)))


class EDSRLite(ModelMixin, ConfigMixin):
    """Small EDSR on images in [0, 1]; ``forward(lr) -> sr`` at ``scale`` times the size."""

    @register_to_config
    def __init__(self, scale: int = 4, channels: int = 32, num_blocks: int = 8, res_scale: float = 0.2):
        super().__init__()
        if scale not in (2, 3, 4, 8, 16):
            raise ValueError(f"EDSRLite supports scales 2, 3, 4, 8, 16; got {scale}")
        self.head = nn.Conv2d(3, channels, 3, padding=1)
        self.body = nn.Sequential(*[ResBlock(channels, res_scale) for _ in range(num_blocks)])
        self.body_tail = nn.Conv2d(channels, channels, 3, padding=1)
        up = []
        factors = [3] if scale == 3 else [2] * int(math.log2(scale))
        for f in factors:
            up += [nn.Conv2d(channels, channels * f * f, 3, padding=1), nn.PixelShuffle(f)]
        self.upsample = nn.Sequential(*up)
        self.tail = nn.Conv2d(channels, 3, 3, padding=1)
        nn.init.zeros_(self.tail.weight)  # start as exact bicubic: the residual begins at 0
        nn.init.zeros_(self.tail.bias)

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        scale = self.config.scale
        base = F.interpolate(lr, scale_factor=scale, mode="bicubic", align_corners=False)
        feat = self.head(lr - 0.5)
        feat = feat + self.body_tail(self.body(feat))
        return base + self.tail(self.upsample(feat))


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 HxWx3 -> float 1x3xHxW in [0, 1]."""
    return torch.from_numpy(np.array(image, dtype=np.uint8, copy=True)).permute(2, 0, 1)[None].float() / 255.0


def to_uint8(tensor: torch.Tensor) -> np.ndarray:
    """float 1x3xHxW in [0, 1] -> uint8 HxWx3 (rounded, clipped)."""
    arr = tensor[0].detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()
    return np.round(arr * 255.0).astype(np.uint8)


class RegressionSR(NetworkSR):
    family = "regression"
    description = "small EDSR, L1 loss, one forward pass"
    network_class = EDSRLite

    def __init__(self, name: str, network: EDSRLite, card: dict | None = None):
        self.name = name
        self.network = network.eval()
        self.scales = (int(network.config.scale),)
        self.card = card or {}

    def _upscale(self, lr, *, scale, settings, on_step, keep_frames):
        tile = settings.tile or 256  # LR pixels per tile: bounds memory on large images
        tile_calls = 0

        def net(part):
            nonlocal tile_calls
            tile_calls += 1
            return self.network(part.to(self.device, self.dtype))

        with torch.inference_mode():
            sr = tiled(net, to_tensor(lr), tile, overlap=16, scale=scale)
        return to_uint8(sr), NetworkCalls(nfe=1, tiles=tile_calls), None  # one forward pass, however tiled
