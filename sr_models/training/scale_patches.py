"""Random training patches at real-valued scales, for the any-scale recipes (``liif``, ``idm``).

Each batch draws one scale s uniformly from [min_scale, max_scale] (all its patches share it, so they
stack), then either keeps the HR patch size fixed (the UNet's cost per step stays constant) and takes
the LR size round(HR / s), or keeps the LR size fixed (the encoder's cost stays constant, LIIF's own
recipe) and takes the HR size round(LR * s). The scale actually trained is HR / LR, so HR / s is a
whole number, as the protocol wants (``sr_models.degradation.degrade``); the LR is MATLAB's imresize
of the HR patch at 1/s. Like ``PatchSampler``: area-weighted images, flips and 90-degree rotations,
and a generator seeded by (seed, step), so a resumed run sees the batches an uninterrupted one would.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from sr_models.degradation import imresize
from sr_models.training.patches import PatchSampler


class ScalePatchSampler:
    """(LR, HR, scale) batches; give exactly one of ``hr_patch`` and ``lr_patch``."""

    def __init__(
        self,
        folder: str | Path,
        min_scale: float,
        max_scale: float,
        *,
        hr_patch: int | None = None,
        lr_patch: int | None = None,
        seed: int = 0,
        split: str = "all",
    ):
        if (hr_patch is None) == (lr_patch is None):
            raise ValueError("give one patch size: a fixed HR patch or a fixed LR patch")
        if not 1 <= min_scale <= max_scale:
            raise ValueError(f"scales must satisfy 1 <= min <= max, got [{min_scale}, {max_scale}]")
        self.min_scale, self.max_scale = min_scale, max_scale
        self.hr_patch, self.lr_patch, self.seed = hr_patch, lr_patch, seed
        largest = hr_patch if hr_patch is not None else round(lr_patch * max_scale)
        self.pool = PatchSampler(folder, 1, largest, seed=seed, split=split)  # images at least `largest` px
        self.images = self.pool.images

    def sizes(self, scale: float) -> tuple[int, int]:
        """(HR, LR) patch sides for a drawn scale; their ratio is the scale actually trained."""
        if self.hr_patch is not None:
            return self.hr_patch, max(1, round(self.hr_patch / scale))
        return round(self.lr_patch * scale), self.lr_patch

    def batch(self, step: int, batch_size: int) -> tuple[torch.Tensor, torch.Tensor, float]:
        """(lr, hr, scale): float tensors in [0, 1], B x 3 x n x n and B x 3 x m x m, and scale = m / n."""
        rng = np.random.default_rng([self.seed, step])
        hr_side, lr_side = self.sizes(float(rng.uniform(self.min_scale, self.max_scale)))
        scale = hr_side / lr_side
        lrs, hrs = [], []
        for idx in rng.choice(len(self.images), size=batch_size, p=self.pool.weights):
            img = self.images[idx]
            top = rng.integers(0, img.shape[0] - hr_side + 1)
            left = rng.integers(0, img.shape[1] - hr_side + 1)
            hr = np.rot90(img[top : top + hr_side, left : left + hr_side], k=int(rng.integers(4)))
            if rng.random() < 0.5:
                hr = hr[:, ::-1]
            hr = np.ascontiguousarray(hr)
            lrs.append(imresize(hr, 1.0 / scale, output_shape=(lr_side, lr_side)))
            hrs.append(hr)

        def stack(arrs):
            return torch.from_numpy(np.stack(arrs)).permute(0, 3, 1, 2).float() / 255.0

        return stack(lrs), stack(hrs), scale
