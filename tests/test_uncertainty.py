"""Uncertainty from posterior samples: diversity, std/mean maps, LR-consistency map, Spearman, sparsification, AUSE."""

from __future__ import annotations

import numpy as np
import pytest

from sr_models.degradation import degrade
from sr_models.uncertainty import (
    ause,
    ause_random,
    calibration,
    diversity,
    lr_consistency_map,
    oracle_curve,
    pixel_mean,
    pixel_std,
    random_curve,
    sparsification_curve,
    spearman,
)


def noisy_samples(sigma: float, k: int = 6, seed: int = 0) -> np.ndarray:
    """K float samples of one flat grey image with Gaussian noise of std ``sigma`` (no clipping)."""
    rng = np.random.default_rng(seed)
    return 128.0 + rng.normal(0.0, sigma, (k, 40, 48, 3))


def test_diversity_is_zero_for_identical_samples_and_grows_with_the_noise():
    image = np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    assert diversity([image, image.copy(), image.copy()]) == 0.0
    small, large = diversity(noisy_samples(4.0)), diversity(noisy_samples(8.0))
    # Two independent draws differ by sqrt(2) sigma RMS.
    assert small == pytest.approx(np.sqrt(2) * 4.0, rel=0.05)
    assert large == pytest.approx(2 * small, rel=0.05)


def test_one_sample_is_refused():
    with pytest.raises(ValueError, match="at least 2"):
        diversity([np.zeros((4, 4, 3))])


def test_std_and_mean_maps_on_a_two_sample_hand_case():
    a = np.zeros((2, 3, 3), np.uint8)
    b = a.copy()
    b[0, 1] = (4, 0, 6)  # one pixel differs in two channels
    std = pixel_std([a, b])
    assert std.shape == (2, 3)
    # ddof=1: std of (0, 4) is sqrt(8), of (0, 6) sqrt(18); averaged over the 3 channels.
    assert std[0, 1] == pytest.approx((np.sqrt(8) + np.sqrt(18)) / 3)
    assert np.count_nonzero(std) == 1
    mean = pixel_mean([a, b])
    assert mean.shape == (2, 3, 3)
    np.testing.assert_allclose(mean[0, 1], (2, 0, 3))


def test_sparsification_hand_case_and_its_oracle():
    error = np.array([1.0, 2.0, 3.0, 4.0])
    fractions = np.array([0.0, 0.25, 0.5, 0.75])
    # The most uncertain pixel is the one with the smallest error: the worst possible ranking.
    worst = sparsification_curve(np.array([4.0, 3.0, 2.0, 1.0]), error, fractions)
    np.testing.assert_allclose(worst, np.array([2.5, 3.0, 3.5, 4.0]) / 2.5)
    np.testing.assert_allclose(oracle_curve(error, fractions), np.array([2.5, 2.0, 1.5, 1.0]) / 2.5)
    np.testing.assert_allclose(random_curve(error, fractions), 1.0)


def test_perfect_uncertainty_has_zero_ause_and_spearman_one():
    error = np.abs(np.random.default_rng(2).normal(size=(64, 64)))
    assert ause(error, error) == 0.0
    assert spearman(2 * error + 1, error) == pytest.approx(1.0)
    assert ause_random(error) > 0.1


def test_random_uncertainty_scores_like_the_random_order():
    rng = np.random.default_rng(3)
    error = np.abs(rng.normal(size=(128, 128)))
    random_score = ause(rng.random((128, 128)), error)
    assert random_score == pytest.approx(ause_random(error), rel=0.1)
    assert abs(spearman(rng.random((128, 128)), error)) < 0.05
    informative = ause(error + rng.normal(0, 0.5, error.shape), error)
    assert 0 < informative < 0.7 * random_score


def test_lr_consistency_map_is_zero_for_a_consistent_sr_and_localises_an_lr_error():
    hr = np.random.default_rng(4).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    hr, lr = degrade(hr, 4)  # SR = HR is consistent with its LR by construction
    clean = lr_consistency_map(hr, lr, 4)
    assert clean.shape == (48, 64)
    assert np.all(clean == 0)
    shifted = lr.copy()
    shifted[2, 3, 0] = np.clip(int(shifted[2, 3, 0]) + 9, 0, 255)
    step = abs(int(shifted[2, 3, 0]) - int(lr[2, 3, 0])) / 3  # one channel of three
    blocks = lr_consistency_map(hr, shifted, 4)
    assert np.all(blocks[8:12, 12:16] == pytest.approx(step)) and step > 0
    assert np.count_nonzero(blocks) == 16


def test_lr_consistency_map_at_a_real_valued_scale():
    hr, lr = degrade(np.random.default_rng(6).integers(0, 256, (50, 45, 3), dtype=np.uint8), 2.5)
    assert lr.shape[:2] == (20, 18)
    assert np.all(lr_consistency_map(hr, lr, 2.5) == 0)
    shifted = lr.copy()
    shifted[19, 17] = 255 - shifted[19, 17]  # the bottom-right LR pixel
    blocks = lr_consistency_map(hr, shifted, 2.5)
    assert blocks.shape == (50, 45) and blocks[-1, -1] > 0
    # SR rows 47..49 and columns 42..44 (pixel centres / 2.5 >= 19 and 17) show that pixel.
    assert np.count_nonzero(blocks) == 3 * 3


def test_lr_consistency_map_refuses_a_wrong_scale():
    with pytest.raises(ValueError, match="not 2x"):
        lr_consistency_map(np.zeros((32, 32, 3), np.uint8), np.zeros((8, 8, 3), np.uint8), 2)


def test_calibration_sees_that_spread_predicts_the_error_of_the_mean():
    rng = np.random.default_rng(5)
    sigma = np.linspace(1.0, 40.0, 64)[None, :, None]  # spread grows from left to right
    reference = np.full((48, 64, 3), 128.0)
    samples = reference + rng.normal(0.0, 1.0, (8, 48, 64, 3)) * sigma
    result = calibration(samples, reference)
    assert set(result) == {"spearman", "ause", "ause_random", "mean_spread", "mean_abs_error", "diversity"}
    assert result["spearman"] > 0.4
    assert result["ause"] < 0.5 * result["ause_random"]
    assert result["mean_spread"] == pytest.approx(np.mean(sigma), rel=0.1)
