"""What the app shows of a comparison or a posterior exploration: every image at the output size, named,
and the same region of each, enlarged without smoothing (the zoom)."""

from __future__ import annotations

import numpy as np

from comparisons.compare import Comparison
from sr_models.degradation import scaled_size
from sr_models.previews import nearest_resize, nearest_upscale  # the LR at the output size: what the model had

INPUT_VIEW = "input (LR, nearest)"
REFERENCE_VIEW = "reference (HR)"
MEAN_VIEW = "mean of the samples"
MAP_VIEWS = {  # file of comparisons.posterior.map_files -> caption
    "std_map.png": "std map (uncertainty)",
    "error_map.png": "|error| map",
    "lr_map.png": "LR-consistency map",
}


def views(comparison: Comparison) -> list[tuple[str, np.ndarray]]:
    """Every image of a comparison at the output size, named: the reference (if any), the input
    (nearest, so its pixels show), then each output. What the grid, the slider and the zoom show."""
    out = []
    if comparison.hr is not None:
        out.append((REFERENCE_VIEW, comparison.hr))
    out.append((INPUT_VIEW, nearest_upscale(comparison.lr, comparison.scale)))
    out += [(r.model, r.image) for r in comparison.results]
    return out


def sample_caption(index: int, seed) -> str:
    return f"sample {index} (seed {seed})"


def posterior_views(posterior, maps: dict[str, np.ndarray]) -> list[tuple[str, np.ndarray]]:
    """Every image of a posterior exploration at the output size, named: the reference (if any), the input,
    the mean, each sample, then each map of ``maps`` (``comparisons.posterior.map_files``' images: the map is
    the left W columns, the colour bar is dropped here so the zoom lines up)."""
    h, w = posterior.mean.shape[:2]
    out = [(REFERENCE_VIEW, np.asarray(posterior.hr))] if posterior.hr is not None else []
    out += [(INPUT_VIEW, nearest_resize(posterior.lr, h, w)), (MEAN_VIEW, posterior.mean)]
    out += [(sample_caption(i, seed), image) for i, (seed, image) in enumerate(zip(posterior.seeds, posterior.samples))]
    out += [(MAP_VIEWS[name], maps[name][:h, :w]) for name in MAP_VIEWS if name in maps]
    return out


def pixel_grid(scale) -> int:
    """The zoom snaps to the LR pixel grid at a whole scale; at 2.5x there is none to snap to."""
    return int(scale) if float(scale).is_integer() else 1


def region_box(out_w: int, out_h: int, grid: int, x: float, y: float, size: int = 64) -> tuple[int, int, int]:
    """(left, top, side) of the square region centred on (``x``, ``y``), ``size`` pixels a side, kept inside
    the image and aligned to a ``grid`` of pixels."""
    size = max(grid, min(int(size), out_h, out_w)) // grid * grid
    top = int(np.clip(round(y - size / 2), 0, out_h - size)) // grid * grid
    left = int(np.clip(round(x - size / 2), 0, out_w - size)) // grid * grid
    return left, top, size


def zoom_views(named, x: float, y: float, size: int, magnify: int, grid: int = 1):
    """The same region of every (caption, image) of ``named`` (all one size), enlarged without smoothing:
    ((left, top, side), [(crop, caption), ...])."""
    out_h, out_w = named[0][1].shape[:2]
    left, top, side = region_box(out_w, out_h, grid, x, y, size)
    crops = [(nearest_upscale(image[top : top + side, left : left + side], magnify), c) for c, image in named]
    return (left, top, side), crops


def zoom_box(comparison: Comparison, x: float, y: float, size: int = 64) -> tuple[int, int, int]:
    """(left, top, side) of the square region centred on output pixel (``x``, ``y``), ``size`` output
    pixels a side, kept inside the image and aligned to the LR pixel grid."""
    scale = comparison.scale
    out_h, out_w = scaled_size(comparison.lr.shape[0], comparison.lr.shape[1], scale)
    return region_box(out_w, out_h, pixel_grid(scale), x, y, size)


def zoom_crops(comparison: Comparison, x: float, y: float, size: int = 64, magnify: int = 4):
    """The same region of the reference, the input and every output, enlarged without smoothing.

    ``x``/``y`` are the region's centre in output pixels (where a click on any output landed);
    ``size`` is its side in output pixels. Returns a list of (uint8 image, caption) pairs.
    """
    return zoom_views(views(comparison), x, y, size, magnify, pixel_grid(comparison.scale))[1]
