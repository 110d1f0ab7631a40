"""Training pairs: random HR crops of a folder of images, LR made by the benchmark's degradation.

Every batch is drawn from a generator seeded by (seed, step), so a resumed run sees exactly the
batches an uninterrupted run would have seen.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from comparisons.degradation import imresize
from comparisons.evaluation import IMAGE_SUFFIXES


def find_images(folder: str | Path) -> list[Path]:
    """Image files below ``folder`` (recursive), sorted for reproducibility."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"data folder {folder} does not exist")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) found below {folder}")
    return files


class PatchSampler:
    """Random (LR, HR) patch pairs with flips and 90-degree rotations."""

    def __init__(self, folder: str | Path, scale: int, hr_patch: int, seed: int = 0):
        if hr_patch % scale:
            raise ValueError(f"HR patch {hr_patch} is not a multiple of the scale {scale}")
        self.scale, self.hr_patch, self.seed = scale, hr_patch, seed
        self.images = []
        for path in find_images(folder):
            img = np.asarray(Image.open(path).convert("RGB"))
            if min(img.shape[:2]) >= hr_patch:
                self.images.append(img)
        if not self.images:
            raise ValueError(f"no image in {folder} is at least {hr_patch} px on each side")
        # Sample images in proportion to their area so large images are not under-used.
        areas = np.array([im.shape[0] * im.shape[1] for im in self.images], dtype=np.float64)
        self.weights = areas / areas.sum()

    def batch(self, step: int, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(lr, hr) float tensors in [0, 1], shapes Bx3xpxp and Bx3x(p*scale)x(p*scale)."""
        rng = np.random.default_rng([self.seed, step])
        p = self.hr_patch
        lrs, hrs = [], []
        for idx in rng.choice(len(self.images), size=batch_size, p=self.weights):
            img = self.images[idx]
            top = rng.integers(0, img.shape[0] - p + 1)
            left = rng.integers(0, img.shape[1] - p + 1)
            hr = img[top : top + p, left : left + p]
            hr = np.rot90(hr, k=int(rng.integers(4)))
            if rng.random() < 0.5:
                hr = hr[:, ::-1]
            hr = np.ascontiguousarray(hr)
            lrs.append(imresize(hr, 1.0 / self.scale, output_shape=(p // self.scale, p // self.scale)))
            hrs.append(hr)

        def stack(arrs):
            return torch.from_numpy(np.stack(arrs)).permute(0, 3, 1, 2).float() / 255.0

        return stack(lrs), stack(hrs)
