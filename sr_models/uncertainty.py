"""Posterior samples as uncertainty: spread, diversity, LR-consistency maps and how well spread predicts error.

All inputs are K samples of one input (a sequence of HxWxC or HxW arrays, or one KxHxW[xC] array) in grey
levels 0-255, uint8 or float. Maps come back as float64 HxW in grey levels: colour channels are averaged,
so one colour bar serves every map.

Sparsification (Ilg et al. 2018, "Uncertainty estimates and multi-hypotheses networks for optical flow"):
remove the given fraction of pixels, most uncertain first, and report the mean error of the rest divided by
the mean error of all pixels, so every curve starts at 1. The oracle removes by the error itself (the best
any uncertainty can do); a random order stays at 1 on average. AUSE is the area between a curve and the oracle.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
from scipy import stats

from sr_models.degradation import imresize, scaled_size

# Fractions of pixels removed: 0, 1, ..., 99 % (removing all of them leaves no mean).
DEFAULT_FRACTIONS = np.arange(100) / 100.0


def _stack(samples: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
    stacked = np.stack([np.asarray(sample, dtype=np.float64) for sample in samples])
    if len(stacked) < 2:
        raise ValueError(f"need at least 2 samples, got {len(stacked)}")
    return stacked


def _channel_mean(image: np.ndarray) -> np.ndarray:
    """HxW from HxW or HxWxC: the mean over colour channels."""
    return image.mean(axis=2) if image.ndim == 3 else image


def diversity(samples: Sequence[np.ndarray] | np.ndarray) -> float:
    """Mean over all pairs of samples of their RMS difference (over pixels and channels), in grey levels."""
    stacked = _stack(samples)
    pairs = itertools.combinations(range(len(stacked)), 2)
    return float(np.mean([np.sqrt(np.mean((stacked[i] - stacked[j]) ** 2)) for i, j in pairs]))


def pixel_mean(samples: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
    """The per-pixel mean of the samples, float64 with the samples' shape (HxWxC stays HxWxC)."""
    return _stack(samples).mean(axis=0)


def pixel_std(samples: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
    """Per-pixel sample std (ddof=1, so K=2 and K=16 estimate the same spread), averaged over channels: HxW."""
    return _channel_mean(_stack(samples).std(axis=0, ddof=1))


def abs_error_map(estimate: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """|estimate - reference| averaged over channels: HxW float64, grey levels."""
    if np.shape(estimate) != np.shape(reference):
        raise ValueError(f"estimate {np.shape(estimate)} and reference {np.shape(reference)} differ in shape")
    return _channel_mean(np.abs(np.asarray(estimate, np.float64) - np.asarray(reference, np.float64)))


def _check_scale(sr_shape: tuple[int, int], lr_shape: tuple[int, int], scale: float) -> None:
    """The size rule of ``metrics.lr_consistency``: the LR is the SR size / scale rounded down, or its preimage."""
    floor = (math.floor(sr_shape[0] / scale + 1e-9), math.floor(sr_shape[1] / scale + 1e-9))
    if lr_shape != floor and scaled_size(*lr_shape, scale) != sr_shape:
        raise ValueError(f"SR {sr_shape} is not {scale}x the LR {lr_shape}")


def lr_consistency_map(sr: np.ndarray, lr: np.ndarray, scale: float) -> np.ndarray:
    """|imresize(SR, 1/scale) - LR| averaged over channels, nearest-upsampled to the SR size: HxW float64.

    The same downscale as ``metrics.lr_consistency`` (MATLAB bicubic; uint8 in gives rounded uint8 out),
    so the map is 0 exactly where that metric sees no error. Real-valued scales work: SR pixel i shows
    LR pixel floor((i + 0.5) / scale), which for an integer scale is the s x s block above it.
    """
    _check_scale(sr.shape[:2], lr.shape[:2], scale)
    error = abs_error_map(imresize(sr, 1.0 / scale, output_shape=lr.shape[:2]), lr)
    rows = np.minimum(((np.arange(sr.shape[0]) + 0.5) / scale).astype(int), lr.shape[0] - 1)
    cols = np.minimum(((np.arange(sr.shape[1]) + 0.5) / scale).astype(int), lr.shape[1] - 1)
    return error[rows[:, None], cols[None, :]]


def spearman(uncertainty: np.ndarray, error: np.ndarray) -> float:
    """Spearman rank correlation of two maps over their pixels; NaN when either map is constant."""
    u, e = np.ravel(uncertainty), np.ravel(error)
    if np.ptp(u) == 0 or np.ptp(e) == 0:
        return float("nan")
    return float(stats.spearmanr(u, e).statistic)


def sparsification_curve(
    uncertainty: np.ndarray, error: np.ndarray, fractions: np.ndarray = DEFAULT_FRACTIONS
) -> np.ndarray:
    """Mean error of the pixels left after removing each fraction, most uncertain first, over the mean error.

    Pixels of equal uncertainty are removed in random order in expectation (their errors are averaged),
    so a constant uncertainty gives the random-order curve, 1 everywhere. NaN if the error is 0 everywhere.
    """
    u, e = np.ravel(uncertainty).astype(np.float64), np.ravel(error).astype(np.float64)
    if u.shape != e.shape:
        raise ValueError(f"uncertainty ({u.size} px) and error ({e.size} px) differ in size")
    _, tie_group = np.unique(u, return_inverse=True)
    e = (np.bincount(tie_group, weights=e) / np.bincount(tie_group))[tie_group]
    removed_first = e[np.argsort(-u, kind="stable")]
    removed_sum = np.concatenate([[0.0], np.cumsum(removed_first)])
    removed = np.minimum(np.round(np.asarray(fractions) * e.size).astype(int), e.size - 1)
    remaining_mean = (removed_sum[-1] - removed_sum[removed]) / (e.size - removed)
    total_mean = removed_sum[-1] / e.size
    return remaining_mean / total_mean if total_mean > 0 else np.full(len(removed), np.nan)


def oracle_curve(error: np.ndarray, fractions: np.ndarray = DEFAULT_FRACTIONS) -> np.ndarray:
    """The best sparsification curve: pixels removed by their actual error."""
    return sparsification_curve(error, error, fractions)


def random_curve(error: np.ndarray, fractions: np.ndarray = DEFAULT_FRACTIONS) -> np.ndarray:
    """The expected curve of a random removal order (every pixel tied): 1 at every fraction."""
    return sparsification_curve(np.zeros(np.shape(error)), error, fractions)


def _area(curve: np.ndarray, fractions: np.ndarray) -> float:
    """Trapezoid area under a curve sampled at ``fractions``."""
    fractions = np.asarray(fractions, dtype=np.float64)
    return float(np.sum((curve[1:] + curve[:-1]) / 2 * np.diff(fractions)))


def ause(uncertainty: np.ndarray, error: np.ndarray, fractions: np.ndarray = DEFAULT_FRACTIONS) -> float:
    """Area between the sparsification curve and the oracle (0 = uncertainty ranks pixels like the error)."""
    gap = sparsification_curve(uncertainty, error, fractions) - oracle_curve(error, fractions)
    return _area(gap, fractions)


def ause_random(error: np.ndarray, fractions: np.ndarray = DEFAULT_FRACTIONS) -> float:
    """AUSE of a random order: the score an uncertainty map must beat to carry information."""
    return _area(random_curve(error, fractions) - oracle_curve(error, fractions), fractions)


def calibration(samples: Sequence[np.ndarray] | np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """How well the samples' spread predicts the error of their pixel mean against the reference.

    Keys: spearman (std vs |error|), ause, ause_random, mean_spread (mean of the std map, grey levels),
    mean_abs_error (of the pixel mean) and diversity (mean pairwise RMS difference, grey levels).
    """
    spread = pixel_std(samples)
    error = abs_error_map(pixel_mean(samples), reference)
    return {
        "spearman": spearman(spread, error),
        "ause": ause(spread, error),
        "ause_random": ause_random(error),
        "mean_spread": float(spread.mean()),
        "mean_abs_error": float(error.mean()),
        "diversity": diversity(samples),
    }
