"""Reference for the tests: MATLAB's bicubic ``imresize`` written out plainly in float64 numpy.

Independent of ``sr_models.degradation`` on purpose, and built differently: each axis becomes a dense
(output x input) matrix filled one output sample at a time, exactly as MATLAB's ``contributions``
defines the taps, and the image is multiplied by those matrices. The fast float32 torch version (sparse
bands, float64 rechecks) is checked against it. Only the kernel formula itself is shared
(``degradation.cubic``, the definition of MATLAB's 'bicubic'), and tests/test_degradation.py pins it
to hand-computed values.
"""

from __future__ import annotations

import math

import numpy as np

from sr_models.degradation import cubic


def _mirror(index: int, length: int) -> int:
    """MATLAB's symmetric border for a 0-based index: -1 -> 0, -2 -> 1, length -> length - 1, ..."""
    folded = index % (2 * length)
    return folded if folded < length else 2 * length - 1 - folded


def _axis_matrix(in_len: int, out_len: int, scale: float) -> np.ndarray:
    """Row i: the weight output sample i gives each input sample along one axis (MATLAB's rules)."""
    shrinking = scale < 1
    width = 4.0 / scale if shrinking else 4.0  # shrinking widens the kernel so it low-passes
    taps = np.arange(math.ceil(width) + 2)
    matrix = np.zeros((out_len, in_len))
    for i in range(1, out_len + 1):  # 1-based, as in MATLAB
        centre = i / scale + 0.5 * (1 - 1 / scale)  # input coordinate with pixel centres aligned
        sources = math.floor(centre - width / 2) + taps
        offsets = centre - sources
        raw = scale * cubic(offsets * scale) if shrinking else cubic(offsets)
        for source, weight in zip(sources, raw / raw.sum()):
            matrix[i - 1, _mirror(int(source) - 1, in_len)] += weight
    return matrix


def imresize(
    img: np.ndarray,
    scale: float | None = None,
    output_shape: tuple[int, int] | None = None,
) -> np.ndarray:
    """MATLAB ``imresize(img, scale, 'bicubic')`` of an HxW or HxWxC array (no argument checks).

    With ``scale`` alone the size is ceil(size * scale); with ``output_shape`` alone each axis' scale is
    its size ratio. uint8 in gives uint8 out (rounded, clipped); anything else gives float64 out.
    """
    in_shape = img.shape[:2]
    if output_shape is None:
        output_shape = tuple(math.ceil(n * scale) for n in in_shape)
    scales = [scale] * 2 if scale is not None else [out / n for out, n in zip(output_shape, in_shape)]
    out = img.astype(np.float64)
    # MATLAB resizes the axis with the smaller scale first (sorted is stable, as MATLAB's order is).
    for axis in sorted(range(2), key=lambda a: scales[a]):
        matrix = _axis_matrix(in_shape[axis], int(output_shape[axis]), float(scales[axis]))
        out = np.moveaxis(np.tensordot(matrix, out, axes=(1, axis)), 0, axis)
    if img.dtype == np.uint8:
        return np.clip(np.round(out), 0, 255).astype(np.uint8)
    return out
