"""Random training patches (LR, HR) and conditioning augmentation, training-only.

Every batch is drawn from a generator seeded by (seed, step), so a resumed run sees exactly the
batches an uninterrupted run would have seen. The LR comes from the benchmark's degradation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from sr_models.data import VAL_EVERY, find_images, split_images
from sr_models.degradation import imresize


class PatchSampler:
    """Random (LR, HR) patch pairs with flips and 90-degree rotations."""

    def __init__(self, folder: str | Path, scale: int, hr_patch: int, seed: int = 0, split: str = "all"):
        if hr_patch % scale:
            raise ValueError(f"HR patch {hr_patch} is not a multiple of the scale {scale}")
        self.scale, self.hr_patch, self.seed = scale, hr_patch, seed
        self.images = []
        self.files = split_images(find_images(folder), split)
        if not self.files:
            raise ValueError(
                f"split {split!r} of {folder} has no images (one in {VAL_EVERY} is held out for "
                "validation): use --split all for a tiny folder"
            )
        for path in self.files:
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


def augment_condition(
    lr: torch.Tensor, rng: np.random.Generator, blur: float, noise: float, prob: float
) -> torch.Tensor:
    """Conditioning augmentation (SR3 / Imagen cascades): LR batches in [0, 1] with random blur and noise.

    A later cascade stage receives an earlier stage's output, softer and noisier than a clean
    bicubic LR; training on such inputs teaches it not to copy their flaws. Each image is
    augmented with probability ``prob``: Gaussian blur sigma ~ U(0, ``blur``) LR pixels, then
    Gaussian noise std ~ U(0, ``noise``), then 8-bit rounding like a real image. The level is
    not given to the model, so the model folder keeps its stock layout.
    """
    from torchvision.transforms.functional import gaussian_blur

    out = lr.clone()
    for i in range(out.shape[0]):
        if rng.random() >= prob:
            continue
        sigma = float(rng.uniform(0, blur)) if blur > 0 else 0.0
        if sigma > 0.1:
            k = 2 * int(np.ceil(3 * sigma)) + 1
            out[i] = gaussian_blur(out[i], [k, k], [sigma, sigma])
        std = float(rng.uniform(0, noise)) if noise > 0 else 0.0
        if std > 0:
            out[i] = out[i] + torch.from_numpy(rng.standard_normal(out[i].shape).astype(np.float32)) * std
    return torch.round(out.clamp(0, 1) * 255) / 255
