"""Reference for the tests: the original float64 numpy ``imresize`` (a gather of MATLAB's taps).

Kept as it was, independent of ``sr_models.degradation``, so the fast float32 torch version is
checked against a straightforward float64 implementation of the same MATLAB conventions. Only the
kernel formula itself is shared (``degradation.cubic``, the definition of MATLAB's 'bicubic'), and
tests/test_degradation.py pins it to hand-computed values.
"""

from __future__ import annotations

import math

import numpy as np

from sr_models.degradation import cubic


def _contributions(in_len: int, out_len: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Weights and source indices of each output sample along one axis, as MATLAB computes them."""
    kernel_width = 4.0
    antialias = scale < 1
    if antialias:
        kernel_width /= scale  # shrinking: stretch the kernel so it low-passes
    x = np.arange(1, out_len + 1, dtype=np.float64)
    # Output sample x maps to input coordinate u (1-based, pixel centres aligned).
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - kernel_width / 2)
    taps = math.ceil(kernel_width) + 2
    indices = left[:, None] + np.arange(taps)[None, :]
    distance = u[:, None] - indices
    weights = scale * cubic(distance * scale) if antialias else cubic(distance)
    weights = weights / weights.sum(axis=1, keepdims=True)
    # Symmetric border: index 0 -> 1, -1 -> 2, in_len+1 -> in_len, ... (1-based), then 0-based.
    aux = np.concatenate([np.arange(in_len), np.arange(in_len - 1, -1, -1)])
    indices = aux[np.mod(indices.astype(np.int64) - 1, 2 * in_len)]
    # Drop tap columns that are zero for every output sample (MATLAB does the same).
    keep = np.any(weights != 0, axis=0)
    return weights[:, keep], indices[:, keep]


def _resize_axis(img: np.ndarray, axis: int, out_len: int, scale: float) -> np.ndarray:
    weights, indices = _contributions(img.shape[axis], out_len, scale)
    moved = np.moveaxis(img, axis, 0)  # (in_len, ...)
    gathered = moved[indices]  # (out_len, taps, ...)
    w = weights.reshape(weights.shape + (1,) * (moved.ndim - 1))
    return np.moveaxis((gathered * w).sum(axis=1), 0, axis)


def imresize(
    img: np.ndarray,
    scale: float | None = None,
    output_shape: tuple[int, int] | None = None,
) -> np.ndarray:
    """MATLAB ``imresize(img, scale, 'bicubic')`` for HxW or HxWxC arrays.

    Give either ``scale`` (output size = ceil(size * scale)) or ``output_shape`` (H, W); with both,
    the scale sets the kernel and the shape the size, as in MATLAB. uint8 in gives uint8 out,
    rounded to nearest and clipped, as MATLAB does; float in gives float64 out, unclipped.
    """
    if img.ndim not in (2, 3):
        raise ValueError(f"imresize expects an HxW or HxWxC array, got shape {img.shape}")
    if scale is None and output_shape is None:
        raise ValueError("imresize needs a scale or an output_shape")
    in_h, in_w = img.shape[:2]
    if scale is not None:
        if scale <= 0:
            raise ValueError(f"scale must be positive, got {scale}")
        scales = (float(scale), float(scale))
        if output_shape is None:
            output_shape = (math.ceil(in_h * scale), math.ceil(in_w * scale))
    else:
        scales = (output_shape[0] / in_h, output_shape[1] / in_w)
    if min(output_shape) < 1:
        raise ValueError(f"output size {output_shape} is empty")
    is_uint8 = img.dtype == np.uint8
    out = img.astype(np.float64)
    # MATLAB resizes the dimension with the smaller scale factor first (cheaper when shrinking).
    order = np.argsort(scales, kind="stable")
    for axis in order:
        out = _resize_axis(out, int(axis), int(output_shape[axis]), scales[axis])
    if is_uint8:
        return np.clip(np.round(out), 0, 255).astype(np.uint8)
    return out
