"""What the app shows of a comparison: every image at the output size, named, and the same region
of each, enlarged without smoothing (the zoom)."""

from __future__ import annotations

import numpy as np

from comparisons.compare import Comparison
from sr_models.previews import nearest_upscale  # the LR at the output size: what the model had

INPUT_VIEW = "input (LR, nearest)"
REFERENCE_VIEW = "reference (HR)"


def views(comparison: Comparison) -> list[tuple[str, np.ndarray]]:
    """Every image of a comparison at the output size, named: the reference (if any), the input
    (nearest, so its pixels show), then each output. What the grid, the slider and the zoom show."""
    out = []
    if comparison.hr is not None:
        out.append((REFERENCE_VIEW, comparison.hr))
    out.append((INPUT_VIEW, nearest_upscale(comparison.lr, comparison.scale)))
    out += [(r.model, r.image) for r in comparison.results]
    return out


def zoom_box(comparison: Comparison, x: float, y: float, size: int = 64) -> tuple[int, int, int]:
    """(left, top, side) of the square region centred on output pixel (``x``, ``y``), ``size`` output
    pixels a side, kept inside the image and aligned to the LR pixel grid."""
    scale = comparison.scale
    out_h, out_w = comparison.lr.shape[0] * scale, comparison.lr.shape[1] * scale
    size = max(scale, min(int(size), out_h, out_w)) // scale * scale
    top = int(np.clip(round(y - size / 2), 0, out_h - size)) // scale * scale
    left = int(np.clip(round(x - size / 2), 0, out_w - size)) // scale * scale
    return left, top, size


def zoom_crops(comparison: Comparison, x: float, y: float, size: int = 64, magnify: int = 4):
    """The same region of the reference, the input and every output, enlarged without smoothing.

    ``x``/``y`` are the region's centre in output pixels (where a click on any output landed);
    ``size`` is its side in output pixels. Returns a list of (uint8 image, caption) pairs.
    """
    left, top, size = zoom_box(comparison, x, y, size)
    return [
        (nearest_upscale(image[top : top + size, left : left + size], magnify), caption)
        for caption, image in views(comparison)
    ]
