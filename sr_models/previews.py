"""Images made for looking at, not for measuring.

* Previews: trajectory frames are kept at most ``PREVIEW_MAX_SIDE`` pixels on the long side, reduced
  by a whole factor (box average, sizes rounded up), so recording a large run stays cheap.
* Nearest-neighbour enlargement to a given size: an LR or a preview shown at the output size with its
  pixels as blocks, no smoothing (a whole factor repeats each pixel, as ``np.repeat`` would).
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

PREVIEW_MAX_SIDE = 512


def preview_factor(height: int, width: int, max_side: int = PREVIEW_MAX_SIDE) -> int:
    """The whole factor that brings a ``height`` x ``width`` image within ``max_side`` (1: it fits)."""
    return max(1, math.ceil(max(height, width) / max_side))


def preview_size(height: int, width: int, factor: int) -> tuple[int, int]:
    """(height, width) of an image reduced ``factor`` times, rounded up as PIL's ``reduce`` rounds."""
    return math.ceil(height / factor), math.ceil(width / factor)


def preview(image: np.ndarray, max_side: int = PREVIEW_MAX_SIDE) -> np.ndarray:
    """``image`` (uint8 HxWx3) itself when it fits within ``max_side``, else box-reduced to fit."""
    factor = preview_factor(*image.shape[:2], max_side)
    return image if factor == 1 else np.asarray(Image.fromarray(image).reduce(factor))


def nearest_resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """``image`` at ``height`` x ``width`` by nearest neighbour: output pixel (i, j) is source pixel
    (i * h // height, j * w // width), so a whole-factor enlargement repeats each pixel in a block."""
    rows = np.arange(height) * image.shape[0] // height
    cols = np.arange(width) * image.shape[1] // width
    return image[rows[:, None], cols[None, :]]


def nearest_upscale(image: np.ndarray, scale: float) -> np.ndarray:
    """``image`` enlarged ``scale`` times without smoothing (a whole scale: each pixel a block)."""
    return nearest_resize(image, round(image.shape[0] * scale), round(image.shape[1] * scale))
