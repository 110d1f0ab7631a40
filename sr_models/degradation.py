"""The SR benchmark's degradation: mod-crop, then MATLAB-compatible bicubic ``imresize``.

Published SR tables (SRCNN, VDSR, EDSR, ...) make the low-resolution input with MATLAB's
``imresize(hr, 1/scale, 'bicubic')``. That is *not* what PIL, OpenCV or torch give: MATLAB widens
the Keys kernel (a = -0.5) by the scale when shrinking (antialiasing), mirrors the border
symmetrically and rounds the uint8 result. A different resize moves PSNR by tenths of a dB, so
every number in this project goes through this one function.

Real-valued scales (``degrade``): s = p/q is cropped so HR / s is whole (HR a multiple of p), and the LR
is exactly HR / s, made with the kernel of 1/s; integer scales are the classic mod-crop unchanged.

MATLAB's per-axis weights are computed in float64 as MATLAB does; the resize itself is two sparse
matrix products in torch (float32 for uint8 and float32 images), one band of output rows at a time,
so a 16x upscale to 4096 x 4096 is fast and never holds more than one band's working set. uint8
results stay exactly those of the float64 computation: the few samples that float32 leaves too close
to a rounding boundary are recomputed in float64.
"""

from __future__ import annotations

import math
import numbers
import warnings
from fractions import Fraction

import numpy as np
import torch

# Output elements of one band: 8 MB of float32 per intermediate, so a 4096 x 4096 RGB upscale needs
# a few dozen MB and the rounding passes stay in cache, yet few enough bands that the per-band costs
# (building the rows' matrix, waking torch's threads, which stalls when the cores are busy) stay small.
_BAND_ELEMENTS = 1 << 21
# Unit roundoff of float32: the error bound that decides which uint8 samples need float64.
_FLOAT32_ROUNDOFF = 2.0**-24


def cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.5 (MATLAB's 'bicubic')."""
    absx = np.abs(x)
    absx2 = absx**2
    absx3 = absx**3
    return (1.5 * absx3 - 2.5 * absx2 + 1) * (absx <= 1) + (-0.5 * absx3 + 2.5 * absx2 - 4 * absx + 2) * (
        (absx > 1) & (absx <= 2)
    )


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


def _weight_matrix(
    weights: np.ndarray, indices: np.ndarray, in_len: int, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """Sparse (out_len x in_len) CSR matrix of one axis' contributions.

    Taps that the mirrored border sends to the same input sample are summed in float64 before the cast.
    CSR because its product is several times faster than COO's on CPU for these few-taps-per-row matrices.
    """
    rows = np.repeat(np.arange(weights.shape[0]), weights.shape[1])
    coords = torch.from_numpy(np.stack([rows, indices.ravel()]))
    values = torch.from_numpy(weights.ravel())
    # The checks cost more than the product; _contributions keeps every index inside [0, in_len).
    matrix = torch.sparse_coo_tensor(coords, values, (weights.shape[0], in_len), check_invariants=False)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Sparse CSR tensor support is in beta", UserWarning)
        return matrix.coalesce().to(dtype).to_sparse_csr().to(device)


def _resize_rows(x: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """Apply an axis' weight matrix to dim 0 of ``x``."""
    flat = torch.sparse.mm(matrix, x.reshape(x.shape[0], -1))
    return flat.reshape(matrix.shape[0], *x.shape[1:])


def _resize_band(window: torch.Tensor, rows: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
    """Resize an H x W x C window of input rows into one band of output rows.

    The column pass needs a transpose, so it runs on whichever side has fewer rows (before the row
    pass when upscaling, after it when shrinking); the order of the two passes changes only rounding.
    """
    if rows.shape[0] < rows.shape[1]:
        return _resize_rows(_resize_rows(window, rows).transpose(0, 1), columns).transpose(0, 1)
    return _resize_rows(_resize_rows(window.transpose(0, 1), columns).transpose(0, 1), rows)


def _float32_margin(weights_h: np.ndarray, weights_w: np.ndarray) -> float:
    """Bound on the float32 error of a uint8 (<= 255) resize, doubled for safety.

    A pass over n taps is off by at most (n + 1) roundoffs of sum|w x| (n for the sum, one for the
    weights' cast); the second pass also carries the first's error, scaled by its sum|w|.
    """
    gain = np.abs(weights_h).sum(axis=1).max() * np.abs(weights_w).sum(axis=1).max()
    taps = weights_h.shape[1] + weights_w.shape[1] + 2
    return 2 * taps * _FLOAT32_ROUNDOFF * 255 * gain


def _samples_float64(
    img: np.ndarray, taps_h: tuple[np.ndarray, np.ndarray], taps_w: tuple[np.ndarray, np.ndarray], channel: np.ndarray
) -> np.ndarray:
    """Output samples straight from the input in float64: sum_ij wh_i ww_j img[ih_i, iw_j, channel].

    ``taps_h`` and ``taps_w`` hold each sample's (weights, indices) along the two axes.
    """
    (wh, ih), (ww, iw) = taps_h, taps_w
    chunk = max(1, _BAND_ELEMENTS // (ih.shape[1] * iw.shape[1]))  # bounds the n x taps x taps gather
    out = np.empty(len(channel))
    for start in range(0, len(channel), chunk):
        part = slice(start, start + chunk)
        patch = img[ih[part, :, None], iw[part, None, :], channel[part, None, None]].astype(np.float64)
        out[part] = np.einsum("ni,nij,nj->n", wh[part], patch, ww[part])
    return out


def _round_to_uint8(
    values: np.ndarray,
    img: np.ndarray,
    taps_h: tuple[np.ndarray, np.ndarray],
    taps_w: tuple[np.ndarray, np.ndarray],
    margin: float,
) -> np.ndarray:
    """Round and clip a float32 band to uint8 exactly as the float64 resize would.

    Samples within ``margin`` of a rounding boundary (x.5) may round the other way in float32, so
    they are recomputed from ``img`` in float64 (``taps_h`` covers the band's rows, ``taps_w`` all columns).
    In numpy, single-threaded: these passes are memory-bound, and torch's threads stall when another
    process keeps the cores busy. ``values`` is overwritten.
    """
    rounded = np.rint(values)
    near = np.abs(np.subtract(values, rounded, out=values), out=values) >= 0.5 - margin
    out = np.clip(rounded, 0, 255, out=rounded).astype(np.uint8)
    r, c, channel = np.unravel_index(np.flatnonzero(near), near.shape)
    if len(r):
        exact = _samples_float64(img, (taps_h[0][r], taps_h[1][r]), (taps_w[0][c], taps_w[1][c]), channel)
        out[r, c, channel] = np.clip(np.round(exact), 0, 255)
    return out


def imresize(
    img: np.ndarray,
    scale: float | None = None,
    output_shape: tuple[int, int] | None = None,
    *,
    device: str | torch.device | None = None,
) -> np.ndarray:
    """MATLAB ``imresize(img, scale, 'bicubic')`` for HxW or HxWxC arrays.

    Give either ``scale`` (output size = ceil(size * scale)) or ``output_shape`` (H, W); with both,
    the scale sets the kernel and the shape the size, as in MATLAB. uint8 in gives uint8 out,
    rounded to nearest and clipped, as MATLAB does, and equal to a float64 computation. float32 in
    gives float32 out (within ~1e-4 of float64 on 0-255 data), any other dtype float64 out; float
    outputs are not clipped. ``device`` is where torch computes (default CPU); the result is numpy.
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
    out_h, out_w = int(output_shape[0]), int(output_shape[1])
    if min(out_h, out_w) < 1:
        raise ValueError(f"output size {output_shape} is empty")
    is_uint8 = img.dtype == np.uint8
    single = is_uint8 or img.dtype == np.float32  # float32 is exact enough for uint8, see _round_to_uint8
    work, dtype = (np.float32, torch.float32) if single else (np.float64, torch.float64)
    device = torch.device("cpu" if device is None else device)
    weights_h, indices_h = _contributions(in_h, out_h, scales[0])
    weights_w, indices_w = _contributions(in_w, out_w, scales[1])
    columns = _weight_matrix(weights_w, indices_w, in_w, dtype, device)
    margin = _float32_margin(weights_h, weights_w)
    pixels = img.reshape(in_h, in_w, -1)  # gray as one channel
    out = np.empty((out_h, out_w, pixels.shape[2]), np.uint8 if is_uint8 else work)
    # A band's working set scales with its widest row and, when shrinking, the input rows it reads.
    row_elements = max(in_w, out_w) * pixels.shape[2] * max(1, math.ceil(in_h / out_h))
    band = max(1, _BAND_ELEMENTS // row_elements)
    for top in range(0, out_h, band):
        taps_h = (weights_h[top : top + band], indices_h[top : top + band])
        first, last = int(taps_h[1].min()), int(taps_h[1].max())
        # Writable too: torch warns on read-only arrays (e.g. from PIL), though it never writes here.
        window = torch.from_numpy(np.require(pixels[first : last + 1], work, ["C", "W"])).to(device)
        rows = _weight_matrix(taps_h[0], taps_h[1] - first, last + 1 - first, dtype, device)
        with torch.autocast(device.type, enabled=False):  # exact float32 even inside a mixed-precision step
            values = _resize_band(window, rows, columns).cpu().numpy()
        if is_uint8:
            values = _round_to_uint8(values, pixels, taps_h, (weights_w, indices_w), margin)
        out[top : top + band] = values
    return out[..., 0] if img.ndim == 2 else out


MAX_SCALE = 16  # the largest magnification of the protocol (and of any model here)
MAX_DENOMINATOR = 1000  # a real-valued scale is read as a ratio p/q with q up to this


def protocol_scale(scale, max_scale: float = MAX_SCALE) -> int | float:
    """A magnification checked once, with a plain message: a real number from 1 to ``max_scale``.

    Whole values come back as ``int`` (3.0 -> 3), so integer scales keep exactly today's code paths;
    others as ``float``. Refused: booleans, strings (even "3" or "3x"), NaN, infinities, out of range.
    """
    if isinstance(scale, (bool, np.bool_)) or not isinstance(scale, numbers.Real):
        raise ValueError(f"the scale must be a number, got {scale!r}")
    value = float(scale)
    if not math.isfinite(value):
        raise ValueError(f"the scale must be a finite number, got {scale!r}")
    if not 1 <= value <= max_scale:
        raise ValueError(f"the scale must be from 1 to {max_scale:g}, got {value:g}")
    return int(value) if value.is_integer() else value


def scale_fraction(scale) -> Fraction:
    """The scale as the exact ratio p/q (lowest terms, q <= 1000) the protocol crops by: 2.5 -> 5/2."""
    value = protocol_scale(scale)
    ratio = Fraction(value).limit_denominator(MAX_DENOMINATOR)
    if abs(float(ratio) - value) > 1e-9 * value:
        raise ValueError(
            f"the scale {value:g} is not a ratio of whole numbers with a denominator up to {MAX_DENOMINATOR} "
            "(e.g. 2.5 = 5/2): the HR could not be cropped to a whole multiple of it"
        )
    return ratio


def hr_multiple(scale) -> int:
    """What an HR side must be a multiple of for HR / scale to be whole: p of scale = p/q (4 -> 4, 2.5 -> 5)."""
    return scale_fraction(scale).numerator


def scaled_size(height: int, width: int, scale) -> tuple[int, int]:
    """Output (H, W) of a model at ``scale``: (round(s * h), round(s * w)), Python's round (half to even).

    Exactly (s * h, s * w) where that is whole, so integer scales and protocol pairs are unaffected."""
    s = float(scale)
    return round(s * height), round(s * width)


def modcrop(img: np.ndarray, scale) -> np.ndarray:
    """Crop the bottom/right to the largest size whose sides divided by ``scale`` are whole numbers.

    For scale s = p/q in lowest terms that is the largest multiple of p (an integer scale: of the
    scale itself, the benchmark convention), e.g. 2.5x crops to a multiple of 5 and 3x to one of 3."""
    multiple = hr_multiple(scale)
    h, w = img.shape[:2]
    h2, w2 = h - h % multiple, w - w % multiple
    if h2 == 0 or w2 == 0:
        raise ValueError(f"image {w}x{h} is smaller than {multiple} px, the crop multiple of the scale {scale}")
    return img[:h2, :w2]


def degrade(hr: np.ndarray, scale) -> tuple[np.ndarray, np.ndarray]:
    """Benchmark degradation: returns (mod-cropped HR, LR = imresize(HR, 1/scale)), both uint8.

    ``scale`` may be real-valued (see ``protocol_scale``): for s = p/q the HR is cropped to H' = the
    largest multiple of p <= H (the largest H' with H' / s whole) and the LR is H' / s = H' q / p,
    made by MATLAB's ``imresize`` with the kernel of 1/s. Integer scales give exactly the old pairs."""
    if hr.dtype != np.uint8:
        raise ValueError(f"degrade expects uint8 images, got {hr.dtype}")
    ratio = scale_fraction(scale)
    hr = modcrop(hr, ratio)
    lr_shape = (hr.shape[0] * ratio.denominator // ratio.numerator, hr.shape[1] * ratio.denominator // ratio.numerator)
    lr = imresize(hr, 1.0 / float(ratio), output_shape=lr_shape)
    return hr, lr


def center_crop(img: np.ndarray, size: int, multiple: int = 1) -> np.ndarray:
    """Center crop to at most ``size`` x ``size``, each side a multiple of ``multiple``."""
    h, w = img.shape[:2]
    ch = min(size, h) // multiple * multiple
    cw = min(size, w) // multiple * multiple
    if ch == 0 or cw == 0:
        raise ValueError(f"crop of {size} px from a {w}x{h} image leaves nothing at multiple {multiple}")
    top, left = (h - ch) // 2, (w - cw) // 2
    return img[top : top + ch, left : left + cw]
