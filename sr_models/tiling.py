"""Tiled application of a network to a large tensor, blended without seams.

``tiled(fn, x, tile, overlap, scale)`` cuts ``x`` (N x C x H x W) into overlapping tiles, runs
``fn`` on each (``fn`` maps h x w to h*scale x w*scale), and blends the outputs with weights that
fall linearly to (almost) zero at each tile's inner edges, so neighbouring tiles fade into each
other. Diffusion families call it inside every denoising step (MultiDiffusion-style: one shared
x_t, tiled predictions), which keeps the sample globally consistent rather than stitching
independently sampled tiles.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def _starts(length: int, tile: int, stride: int) -> list[int]:
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, stride))
    return starts + [length - tile]


def tile_overhead(h: int, w: int, tile: int, overlap: int, multiple: int = 1) -> float:
    """The pixels ``tiled`` runs a network on, over the image's own (1 when one tile covers it): what
    overlapping tiles cost, e.g. 1.56 for a 1024² image in 256 px tiles overlapping by 16 (25 tiles)."""
    if h <= tile and w <= tile:
        return 1.0
    ys, xs = _starts(h, tile, _stride(tile, overlap, multiple)), _starts(w, tile, _stride(tile, overlap, multiple))
    return len(ys) * min(h, tile) * len(xs) * min(w, tile) / (h * w)


def _stride(tile: int, overlap: int, multiple: int) -> int:
    return max(multiple, (tile - overlap) // multiple * multiple)


def _ramp(length: int, overlap: int, at_start: bool, at_end: bool) -> torch.Tensor:
    w = torch.ones(length)
    if overlap > 0:
        ramp = torch.arange(1, overlap + 1, dtype=torch.float32) / (overlap + 1)
        if not at_start:
            w[:overlap] = ramp
        if not at_end:
            w[-overlap:] = ramp.flip(0)
    return w


def tiled(
    fn: Callable[..., torch.Tensor],
    x: torch.Tensor | tuple[torch.Tensor, ...],
    tile: int,
    overlap: int,
    scale: float = 1,
    multiple: int = 1,
) -> torch.Tensor:
    """Apply ``fn`` tile by tile; ``multiple`` rounds tile starts so the network's strides line up.

    ``scale`` is the output/input size ratio: above 1 for a decoder or an upscaler, 1/f for an
    encoder (tile starts must then be multiples of f). ``x`` may be a tuple of tensors of one size
    (e.g. x_t and its conditioning): ``fn`` then gets their tiles, so they are never concatenated
    at full size.
    """
    parts = x if isinstance(x, tuple) else (x,)
    n, _, h, w = parts[0].shape
    if h <= tile and w <= tile:
        return fn(*parts)
    if overlap >= tile:
        raise ValueError(f"overlap {overlap} must be smaller than the tile {tile}")
    stride = _stride(tile, overlap, multiple)
    out = weight = None
    ys, xs = _starts(h, tile, stride), _starts(w, tile, stride)
    for top in ys:
        for left in xs:
            patches = [p[:, :, top : top + tile, left : left + tile] for p in parts]
            y = fn(*patches)
            ph, pw = round(patches[0].shape[-2] * scale), round(patches[0].shape[-1] * scale)
            if out is None:  # on the network's device and in its dtype
                out = y.new_zeros(n, y.shape[1], round(h * scale), round(w * scale))
                weight = y.new_zeros(1, 1, round(h * scale), round(w * scale))
            wy = _ramp(ph, round(overlap * scale), top == 0, top + tile >= h)
            wx = _ramp(pw, round(overlap * scale), left == 0, left + tile >= w)
            wgt = (wy[:, None] * wx[None, :]).to(y)
            y0, x0 = round(top * scale), round(left * scale)
            out[:, :, y0 : y0 + ph, x0 : x0 + pw] += y * wgt
            weight[:, :, y0 : y0 + ph, x0 : x0 + pw] += wgt
    return out.div_(weight)
