import numpy as np
import pytest

from sr_models.degradation import degrade, imresize
from sr_models.metrics import is_grayscale, lr_consistency, psnr, rgb_to_y, ssim


def test_bt601_y_range():
    assert rgb_to_y(np.array([[[255, 255, 255]]], np.uint8))[0, 0] == pytest.approx(235.0)
    assert rgb_to_y(np.array([[[0, 0, 0]]], np.uint8))[0, 0] == pytest.approx(16.0)
    assert rgb_to_y(np.array([[[255, 0, 0]]], np.uint8))[0, 0] == pytest.approx(16 + 65.481)


def test_psnr_known_value_and_border():
    hr = np.full((20, 20, 3), (100, 90, 80), np.uint8)  # a colour image: measured on Y
    sr = hr + 10  # every channel +10 -> Y differs by 10 * 219/255
    expected = 10 * np.log10(255**2 / (10 * 219 / 255) ** 2)
    assert psnr(sr, hr, crop_border=0) == pytest.approx(expected)
    assert psnr(sr, hr, crop_border=0, y_channel=False) == pytest.approx(10 * np.log10(255**2 / 100))
    assert psnr(hr, hr) == float("inf")
    # an error confined to the border disappears once the border is shaved
    sr2 = hr.copy()
    sr2[:2] = 0
    assert psnr(sr2, hr, crop_border=2) == float("inf")
    assert psnr(sr2, hr, crop_border=1) < 30


def test_gray_images_are_measured_on_their_one_channel():
    rng = np.random.default_rng(0)
    g = rng.integers(0, 256, (32, 32), dtype=np.uint8)
    hr = np.repeat(g[..., None], 3, axis=2)
    sr = np.clip(hr.astype(int) + 5, 0, 255).astype(np.uint8)
    assert is_grayscale(hr) and not is_grayscale(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8))
    mse = np.mean((sr[..., 0].astype(float) - hr[..., 0]) ** 2)
    assert psnr(sr, hr) == pytest.approx(10 * np.log10(255**2 / mse))


def test_ssim_properties():
    rng = np.random.default_rng(0)
    y, x = np.mgrid[:48, :48]
    hr = np.stack([100 + 50 * np.sin(x / 5), 120 + 40 * np.cos(y / 6), 90 + 0 * x], -1).astype(np.uint8)
    assert ssim(hr, hr) == pytest.approx(1.0)
    noisy = np.clip(hr + rng.normal(0, 20, hr.shape), 0, 255).astype(np.uint8)
    assert 0 < ssim(noisy, hr) < 0.9
    assert ssim(noisy, hr) == pytest.approx(ssim(hr, noisy))
    # 11x11 window: an image smaller than the window cannot be measured
    with pytest.raises(ValueError):
        ssim(hr[:12, :12], hr[:12, :12], crop_border=2)


def test_ssim_matches_matlab_style_reference_on_constant_shift():
    # Constant images: mu terms only. SSIM = (2 mu1 mu2 + C1) / (mu1^2 + mu2^2 + C1) exactly.
    a = np.full((32, 32, 3), (100, 90, 80), np.uint8)
    b = np.full((32, 32, 3), (120, 110, 100), np.uint8)
    y1, y2 = rgb_to_y(a)[0, 0], rgb_to_y(b)[0, 0]
    c1 = (0.01 * 255) ** 2
    assert ssim(b, a) == pytest.approx((2 * y1 * y2 + c1) / (y1**2 + y2**2 + c1))


def test_lr_consistency():
    rng = np.random.default_rng(0)
    hr = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    hr, lr = degrade(hr, 4)
    bicubic = imresize(lr, 4)
    good = lr_consistency(bicubic, lr, 4)
    shifted = np.clip(bicubic.astype(int) + 30, 0, 255).astype(np.uint8)  # colour drift
    assert good > lr_consistency(shifted, lr, 4) + 10
    assert lr_consistency(hr, lr, 4) == float("inf")  # the HR reproduces its own LR exactly
    with pytest.raises(ValueError):
        lr_consistency(bicubic, lr[:-1], 4)


def test_shape_mismatch():
    with pytest.raises(ValueError):
        psnr(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 5, 3), np.uint8))
