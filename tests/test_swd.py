"""Sliced Wasserstein distance on Laplacian-pyramid patches: zero, order, seed, blur and noise behaviour."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from sr_models.swd import SWDProtocol, laplacian_pyramid, swd


def natural_set() -> list[np.ndarray]:
    """Six 64-80 px crops of scikit-image's colour samples (two sizes, so positions differ between images)."""
    from skimage import data

    images = []
    for name in ("astronaut", "coffee", "chelsea"):
        image = getattr(data, name)()
        images.append(image[100:180, 150:230])  # 80 x 80
        images.append(image[200:264, 50:114])  # 64 x 64
    return images


def blurred(images: list[np.ndarray], sigma: float) -> list[np.ndarray]:
    return [
        np.clip(ndimage.gaussian_filter(im.astype(float), (sigma, sigma, 0)).round(), 0, 255).astype(np.uint8)
        for im in images
    ]


def noisy(images: list[np.ndarray], sigma: float, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [np.clip(im + rng.normal(0, sigma, im.shape), 0, 255).astype(np.uint8) for im in images]


def test_identical_sets_give_zero_at_every_level():
    images = natural_set()
    result = swd(images, [im.copy() for im in images])
    assert list(result) == SWDProtocol().keys()
    assert all(abs(value) < 1e-9 for value in result.values()), result


def test_blur_raises_the_finest_level_monotonically():
    hr = natural_set()
    finest = [swd(blurred(hr, sigma), hr)["swd_l1"] for sigma in (0.5, 1.0, 2.0)]
    assert 0 < finest[0] < finest[1] < finest[2], finest


def test_image_order_does_not_matter():
    sr, hr = noisy(natural_set(), 8, seed=1), natural_set()
    order = np.random.default_rng(3).permutation(len(sr))
    shuffled = swd([sr[i] for i in order], [hr[i] for i in order[::-1]])
    assert shuffled == swd(sr, hr)


def test_a_seed_fixes_the_number_and_another_seed_moves_it_a_little():
    sr, hr = blurred(natural_set(), 1.0), natural_set()
    first = swd(sr, hr, SWDProtocol(seed=7))["swd"]
    assert swd(sr, hr, SWDProtocol(seed=7))["swd"] == first
    other = swd(sr, hr, SWDProtocol(seed=8))["swd"]
    assert other != first
    assert abs(other - first) < 0.5 * first, (first, other)


def test_noise_images_are_far_from_the_set_and_a_little_noise_is_near():
    hr = natural_set()
    rng = np.random.default_rng(5)
    noise = [rng.integers(0, 256, im.shape, dtype=np.uint8) for im in hr]
    far = swd(noise, hr)["swd"]
    near = swd(noisy(hr, 2, seed=6), hr)["swd"]
    assert far > 5 * near > 0, (far, near)


def test_mixed_sizes_and_small_images_work_and_an_empty_level_is_nan():
    rng = np.random.default_rng(0)
    sr = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in ((9, 14), (40, 33), (21, 60))]
    hr = [rng.integers(0, 256, (48, 48, 3), dtype=np.uint8) for _ in range(2)]
    # Different descriptor counts (the 9 px image has no level-2 patch): compared at common quantiles.
    result = swd(sr, hr, SWDProtocol(levels=3))
    assert all(np.isfinite(value) and value > 0 for value in result.values()), result
    with pytest.warns(UserWarning, match="level 4"):
        # 48 px: level 4 is 6 px, smaller than a 7 px patch in every image
        tiny = swd(hr, hr[::-1], SWDProtocol(levels=4))
    assert np.isnan(tiny["swd_l4"])
    assert tiny["swd"] == pytest.approx(np.mean([tiny[f"swd_l{k}"] for k in (1, 2, 3)]))


def test_pyramid_bands_of_a_constant_image_are_zero_and_the_residual_keeps_it():
    bands = laplacian_pyramid(np.full((37, 50, 3), 90, np.uint8), levels=4)
    assert [band.shape[:2] for band in bands] == [(37, 50), (19, 25), (10, 13), (5, 7)]
    assert all(np.abs(band).max() < 1e-9 for band in bands[:-1])
    np.testing.assert_allclose(bands[-1], 90.0)


def test_sets_with_different_channel_counts_are_refused():
    with pytest.raises(ValueError, match="colour channels"):
        swd([np.zeros((16, 16), np.uint8)], [np.zeros((16, 16, 3), np.uint8)])


def test_describe_states_the_protocol_numbers():
    text = SWDProtocol(levels=3, patches_per_image=64, projections=32, repeats=2, seed=11).describe()
    for fragment in ("3-level", "64 random 7x7", "seed 11", "2 x 32", "swd_l3"):
        assert fragment in text, fragment
