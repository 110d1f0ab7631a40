"""Sliced Wasserstein distance between two image sets, on Laplacian-pyramid patches (no pretrained weights).

The protocol of Karras et al. 2018 (ProGAN, "Progressive Growing of GANs", section 5), re-implemented:

1. Each image gets a Laplacian pyramid built with the 5-tap binomial filter [1, 4, 6, 4, 1] / 16 and
   mirrored borders. Level 1 is the finest band (image minus its blurred, down-up copy); the last level
   is the Gaussian residual at 1 / 2**(levels - 1) of the size.
2. At every level, ``patches_per_image`` random 7x7 neighbourhoods are drawn from each image (uniform
   positions, with replacement), each a descriptor of 7 * 7 * C values. The positions come from a generator
   seeded by (seed, level, image shape) only. So the result does not depend on the order of the images, and
   an SR image and its HR reference (same size) are sampled at the same places: common random numbers,
   which on small sets (Set14) cut the sampling noise of the SWD by several times (the paper drew fresh
   positions for each of its 16384 images). Descriptors are stacked in the order of a hash of each image's
   content, so even the float sums are independent of the image order.
3. Each set's descriptors are normalised per colour channel by that set's own mean and std (as the paper).
4. SWD = mean over ``repeats`` x ``projections`` random unit directions of mean |sorted(A.d) - sorted(B.d)|,
   reported x 1e3 as in the paper. Sets with different descriptor counts are compared at common quantiles.

Images of different sizes may be mixed. An image smaller than 7 px at a level gives that level no
patches; a level with no patch in one of the sets is reported as NaN (with a warning) and left out of the mean.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

_BINOMIAL = np.array([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0
_UNITS = 1e3  # the paper reports SWD x 1e3


@dataclass(frozen=True)
class SWDProtocol:
    """Every choice that changes an SWD number; ``describe()`` is the text the README and run cards print."""

    levels: int = 4
    patches_per_image: int = 128
    patch_size: int = 7
    projections: int = 128
    repeats: int = 4
    seed: int = 0

    def describe(self) -> str:
        coarsest = 2 ** (self.levels - 1)
        size = f"{self.patch_size}x{self.patch_size}"
        return (
            f"SWD (Karras et al. 2018): {self.levels}-level Laplacian pyramid (binomial 5-tap filter, mirrored "
            f"borders; level 1 = finest band, level {self.levels} = Gaussian residual at 1/{coarsest} size), "
            f"{self.patches_per_image} random {size} patches per image and level (positions seeded by seed "
            f"{self.seed}, the level and the image size, so the image order does not matter and an SR image "
            f"and its reference share positions), descriptors normalised per colour channel within each set, "
            f"{self.repeats} x {self.projections} random unit projections, mean |sorted difference| x 1e3 per "
            f"level; keys swd_l1 (finest) .. swd_l{self.levels} and their mean swd."
        )

    def keys(self) -> list[str]:
        """The keys ``swd`` returns: per level, finest first, then the mean."""
        return [f"swd_l{level}" for level in range(1, self.levels + 1)] + ["swd"]


def _blur(image: np.ndarray, gain: float = 1.0) -> np.ndarray:
    """Separable binomial filter over the two spatial axes, mirrored borders."""
    out = ndimage.convolve1d(image, _BINOMIAL * gain, axis=0, mode="mirror")
    return ndimage.convolve1d(out, _BINOMIAL * gain, axis=1, mode="mirror")


def _upsample(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Zero-insertion 2x upsampling then the binomial filter (x2 per axis to keep the brightness), cropped."""
    up = np.zeros((2 * image.shape[0], 2 * image.shape[1], image.shape[2]))
    up[::2, ::2] = image
    return _blur(up, gain=2.0)[: shape[0], : shape[1]]


def laplacian_pyramid(image: np.ndarray, levels: int) -> list[np.ndarray]:
    """``levels`` float64 HxWxC bands, finest first; the last is the Gaussian residual.

    Once a side is down to 1 px the remaining levels are empty (0 x 0) arrays: they could hold no patch anyway.
    """
    current = np.asarray(image, dtype=np.float64)
    current = current[..., None] if current.ndim == 2 else current
    bands = []
    for _ in range(levels - 1):
        if min(current.shape[:2]) < 2:
            return bands + [np.empty((0, 0, current.shape[2]))] * (levels - len(bands))
        down = _blur(current)[::2, ::2]
        bands.append(current - _upsample(down, current.shape[:2]))
        current = down
    return bands + [current]


def _content_key(image: np.ndarray) -> int:
    """A 64-bit hash of an image's shape, dtype and pixels: the canonical order of a set's descriptors."""
    digest = hashlib.blake2b(str((image.shape, image.dtype.str)).encode(), digest_size=8)
    digest.update(np.ascontiguousarray(image).tobytes())
    return int.from_bytes(digest.digest(), "little")


def _patches(band: np.ndarray, count: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` random size x size neighbourhoods of one band, as (count, C, size*size); empty if too small."""
    height, width, channels = band.shape
    if height < size or width < size:
        return np.empty((0, channels, size * size))
    rows = rng.integers(0, height - size + 1, count)
    cols = rng.integers(0, width - size + 1, count)
    windows = np.lib.stride_tricks.sliding_window_view(band, (size, size), axis=(0, 1))  # (H', W', C, s, s)
    return windows[rows, cols].reshape(count, channels, size * size)


def _normalise(descriptors: np.ndarray) -> np.ndarray:
    """Per colour channel, zero mean and unit std over the set; flattened to (n, C*size*size)."""
    mean = descriptors.mean(axis=(0, 2), keepdims=True)
    std = descriptors.std(axis=(0, 2), keepdims=True)
    return ((descriptors - mean) / np.where(std > 0, std, 1.0)).reshape(len(descriptors), -1)


def set_descriptors(images: Sequence[np.ndarray], protocol: SWDProtocol) -> list[np.ndarray]:
    """Per level (finest first) one set's normalised descriptors, in the order of the images' content keys."""
    keyed = sorted(((_content_key(np.asarray(image)), index) for index, image in enumerate(images)))
    per_level: list[list[np.ndarray]] = [[] for _ in range(protocol.levels)]
    for _, index in keyed:
        for level, band in enumerate(laplacian_pyramid(images[index], protocol.levels)):
            # Positions from the size alone (see the module docstring); per level, so that the level-3
            # patches do not depend on how many levels there are.
            rng = np.random.default_rng([protocol.seed, level, *np.shape(images[index])])
            per_level[level].append(_patches(band, protocol.patches_per_image, protocol.patch_size, rng))
    stacked = [np.concatenate(parts) for parts in per_level]
    return [_normalise(d) if len(d) else d.reshape(0, d.shape[1] * d.shape[2]) for d in stacked]


def _on_quantiles(sorted_rows: np.ndarray, count: int) -> np.ndarray:
    """Rows of sorted projections (k, n) resampled at ``count`` evenly spaced quantiles (linear interpolation)."""
    if sorted_rows.shape[1] == count:
        return sorted_rows
    source = np.linspace(0.0, 1.0, sorted_rows.shape[1])
    target = np.linspace(0.0, 1.0, count)
    return np.stack([np.interp(target, source, row) for row in sorted_rows])


def sliced_wasserstein(a: np.ndarray, b: np.ndarray, projections: int, repeats: int, rng: np.random.Generator) -> float:
    """Mean over random unit directions of the mean |difference| between the sorted projections of a and b."""
    count = min(len(a), len(b))
    distances = []
    for _ in range(repeats):
        directions = rng.standard_normal((projections, a.shape[1]))
        directions /= np.sqrt((directions**2).sum(axis=1, keepdims=True))
        # (projections, n): each projection a contiguous row, which numpy sorts fastest.
        projected_a = _on_quantiles(np.sort(directions @ a.T, axis=1), count)
        projected_b = _on_quantiles(np.sort(directions @ b.T, axis=1), count)
        distances.append(np.abs(projected_a - projected_b).mean())
    return float(np.mean(distances))


def swd(
    sr_images: Sequence[np.ndarray], hr_images: Sequence[np.ndarray], protocol: SWDProtocol = SWDProtocol()
) -> dict[str, float]:
    """SWD (x 1e3) between two sets of HxWxC (or HxW) images: keys ``swd_l1`` (finest) .. ``swd_lN`` and ``swd``.

    ``swd`` is the mean over the levels that have patches in both sets; an empty level is NaN (with a warning).
    """
    if not len(sr_images) or not len(hr_images):
        raise ValueError("SWD needs at least one image in each set")
    channels = {1 if np.ndim(image) == 2 else np.shape(image)[2] for image in [*sr_images, *hr_images]}
    if len(channels) > 1:
        raise ValueError(f"SWD needs one number of colour channels in both sets, got {sorted(channels)}")
    sr_levels = set_descriptors(sr_images, protocol)
    hr_levels = set_descriptors(hr_images, protocol)
    result = {}
    for level, (a, b) in enumerate(zip(sr_levels, hr_levels), start=1):
        if not len(a) or not len(b):
            warnings.warn(
                f"SWD level {level}: no {protocol.patch_size} px patch in one set; reported as NaN", stacklevel=2
            )
            result[f"swd_l{level}"] = float("nan")
            continue
        rng = np.random.default_rng([protocol.seed, level, 1])  # the same directions for every pair of sets
        result[f"swd_l{level}"] = _UNITS * sliced_wasserstein(a, b, protocol.projections, protocol.repeats, rng)
    measured = [value for value in result.values() if not np.isnan(value)]
    result["swd"] = float(np.mean(measured)) if measured else float("nan")
    return result
