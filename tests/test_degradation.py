import math

import numpy as np
import pytest

from sr_models.degradation import center_crop, cubic, degrade, imresize, modcrop

# Antialiased 1/2 downscale: the kernel is cubic(x/2)/2 sampled at +-0.5, 1.5, 2.5, 3.5,
# i.e. cubic(0.25), cubic(0.75), cubic(1.25), cubic(1.75) halved (worked out by hand).
HALF_WEIGHTS = np.array([-0.0234375, -0.0703125, 0.2265625, 0.8671875, 0.8671875, 0.2265625, -0.0703125, -0.0234375]) / 2


def test_cubic_kernel_keys_a_minus_half():
    assert cubic(np.array([0.0]))[0] == 1.0
    assert cubic(np.array([1.0, 2.0, 2.5]))[...].tolist() == [0.0, 0.0, 0.0]
    assert cubic(np.array([0.5]))[0] == pytest.approx(0.5625)  # 1.5/8 - 2.5/4 + 1
    assert cubic(np.array([1.5]))[0] == pytest.approx(-0.0625)


def test_downscale_by_two_interior_matches_hand_computed_weights():
    rng = np.random.default_rng(0)
    signal = rng.uniform(0, 255, size=(1, 32))
    out = imresize(signal, 0.5)
    assert out.shape == (1, 16)
    # output j (0-based) is centred between inputs 2j and 2j+1: taps 2j-3 .. 2j+4
    for j in range(2, 13):
        expected = signal[0, 2 * j - 3 : 2 * j + 5] @ HALF_WEIGHTS
        assert out[0, j] == pytest.approx(expected, abs=1e-9)


def test_symmetric_border():
    signal = np.arange(16, dtype=np.float64)[None] ** 2
    out = imresize(signal, 0.5)
    mirrored = signal[0, [2, 1, 0, 0, 1, 2, 3, 4]]  # taps -3..4 mirrored about the edge (1-based symmetric)
    assert out[0, 0] == pytest.approx(mirrored @ HALF_WEIGHTS, abs=1e-9)


def test_constant_image_stays_constant_and_uint8_rounds():
    img = np.full((20, 30, 3), 77, np.uint8)
    for s in (0.25, 1 / 3, 2, 3.5):
        out = imresize(img, s)
        assert out.dtype == np.uint8
        assert out.shape[:2] == (math.ceil(20 * s), math.ceil(30 * s))
        assert np.all(out == 77)


def test_upscale_reproduces_samples_at_integer_positions_within_interpolation():
    # Upscaling by 2 then downscaling by 2 (both MATLAB-bicubic) is close to the identity on smooth data.
    y, x = np.mgrid[:32, :48]
    img = (127 + 100 * np.sin(x / 7.0) * np.cos(y / 9.0)).astype(np.float64)
    back = imresize(imresize(img, 2), 0.5)
    assert np.abs(back - img)[4:-4, 4:-4].max() < 1.0


def test_non_integer_and_non_square_sizes():
    img = np.random.default_rng(1).integers(0, 256, size=(37, 53, 3), dtype=np.uint8)
    assert imresize(img, 1 / 3).shape == (13, 18, 3)
    assert imresize(img, output_shape=(50, 20)).shape == (50, 20, 3)
    assert imresize(img, 1.5).shape == (56, 80, 3)


def test_bad_arguments():
    with pytest.raises(ValueError):
        imresize(np.zeros((4, 4)), scale=0)
    with pytest.raises(ValueError):
        imresize(np.zeros((4, 4)))
    with pytest.raises(ValueError):
        imresize(np.zeros((2, 2, 2, 2)), 2)


def test_modcrop_and_degrade_shapes():
    hr = np.zeros((103, 70, 3), np.uint8)
    assert modcrop(hr, 4).shape == (100, 68, 3)
    hr2, lr = degrade(hr, 4)
    assert hr2.shape == (100, 68, 3) and lr.shape == (25, 17, 3) and lr.dtype == np.uint8
    with pytest.raises(ValueError):
        modcrop(np.zeros((3, 3, 3), np.uint8), 4)


def test_center_crop_multiple():
    img = np.zeros((100, 90, 3), np.uint8)
    assert center_crop(img, 64, multiple=8).shape == (64, 64, 3)
    assert center_crop(img, 95, multiple=8).shape == (88, 88, 3)
