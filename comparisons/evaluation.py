"""Test pairs and per-image scores: the piece the benchmark and training validation share."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image

from comparisons.degradation import center_crop, degrade
from comparisons.metrics import lr_consistency, psnr, ssim

LR_PSNR_CAP = 100.0  # dB
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


@dataclass
class TestPair:
    name: str
    hr: np.ndarray  # mod-cropped (and center-cropped if asked) uint8 RGB
    lr: np.ndarray


def list_images(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"test folder {folder} does not exist")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"no images in {folder}")
    return files


def test_pairs(
    folder: str | Path, scale: int, limit: int | None = None, crop: int | None = None
) -> Iterator[TestPair]:
    """HR/LR pairs of a test folder with the benchmark degradation.

    ``crop``: evaluate on the HR center crop of that size (a multiple of the scale), for slow models.
    """
    for path in list_images(folder)[:limit]:
        hr = np.asarray(Image.open(path).convert("RGB"))
        if crop:
            hr = center_crop(hr, crop, multiple=scale)
        hr, lr = degrade(hr, scale)
        yield TestPair(path.stem, hr, lr)


def score(sr: np.ndarray, hr: np.ndarray, lr: np.ndarray, scale: int) -> dict[str, float]:
    """The fidelity numbers of one output: PSNR/SSIM on Y with border = scale, LR-consistency."""
    return {
        "psnr_y": psnr(sr, hr, crop_border=scale, y_channel=True),
        "ssim_y": ssim(sr, hr, crop_border=scale, y_channel=True),
        # An output that reproduces its LR exactly has infinite LR-PSNR; cap it so means stay finite.
        "lr_psnr": min(lr_consistency(sr, lr, scale), LR_PSNR_CAP),
    }
