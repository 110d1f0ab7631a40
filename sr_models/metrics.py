"""Full-reference fidelity metrics with the SR benchmark's convention as explicit parameters.

Convention of the published tables (SRCNN / VDSR / EDSR MATLAB scripts, BasicSR's
``calculate_psnr``/``calculate_ssim`` with ``test_y_channel=True``):

* compare on the ITU-R BT.601 luma ``Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255``
  (float, not rounded); RGB on request;
* shave ``crop_border`` pixels from every side first: the scale, ceil(s) for a real-valued scale s
  (``shave_border``);
* SSIM with an 11x11 Gaussian window, sigma 1.5, K1 = 0.01, K2 = 0.03, data range 255, averaged
  over the valid region (Wang et al. 2004, i.e. MATLAB ``ssim_index``);
* an image whose three channels are equal (a grayscale test image stored as RGB) is measured on
  its one channel, as the reference scripts read it as a one-channel image.
"""

from __future__ import annotations

import math

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from sr_models.degradation import imresize, scaled_size

_BT601 = np.array([65.481, 128.553, 24.966])


def is_grayscale(img: np.ndarray) -> bool:
    """True for HxW arrays and for HxWx3 arrays whose three channels are identical."""
    if img.ndim == 2:
        return True
    return bool(np.array_equal(img[..., 0], img[..., 1]) and np.array_equal(img[..., 0], img[..., 2]))


def rgb_to_y(img: np.ndarray) -> np.ndarray:
    """BT.601 luma of a uint8-range RGB image, float64 in [16, 235]."""
    return img.astype(np.float64) @ _BT601 / 255.0 + 16.0


def _luma_gray(img: np.ndarray) -> np.ndarray:
    """The one channel of a gray image; for a colour SR output of a gray reference, its luma."""
    if img.ndim == 2:
        return img.astype(np.float64)
    return img.astype(np.float64) @ (_BT601 / _BT601.sum())


def _prepare(sr: np.ndarray, hr: np.ndarray, crop_border: int, y_channel: bool):
    if sr.shape != hr.shape:
        raise ValueError(f"SR {sr.shape} and HR {hr.shape} differ in shape")
    if y_channel:
        if is_grayscale(hr):
            sr, hr = _luma_gray(sr), _luma_gray(hr)
        else:
            sr, hr = rgb_to_y(sr), rgb_to_y(hr)
    else:
        sr, hr = sr.astype(np.float64), hr.astype(np.float64)
    if crop_border > 0:
        if min(hr.shape[:2]) <= 2 * crop_border:
            raise ValueError(f"image {hr.shape[1]}x{hr.shape[0]} too small to shave {crop_border} px")
        sr = sr[crop_border:-crop_border, crop_border:-crop_border]
        hr = hr[crop_border:-crop_border, crop_border:-crop_border]
    return sr, hr


def psnr(sr: np.ndarray, hr: np.ndarray, crop_border: int = 0, y_channel: bool = True) -> float:
    """PSNR in dB (data range 255) between uint8-range images; ``inf`` when they are equal."""
    sr, hr = _prepare(sr, hr, crop_border, y_channel)
    if np.array_equal(sr, hr):
        return float("inf")
    return float(peak_signal_noise_ratio(hr, sr, data_range=255))


def mse(sr: np.ndarray, hr: np.ndarray, crop_border: int = 0, y_channel: bool = True) -> float:
    """Mean squared error on the pixels ``psnr`` compares (``sr`` may be a float image, e.g. a mean of outputs)."""
    sr, hr = _prepare(sr, hr, crop_border, y_channel)
    return float(np.mean((sr - hr) ** 2))


def ssim(sr: np.ndarray, hr: np.ndarray, crop_border: int = 0, y_channel: bool = True) -> float:
    """SSIM (Gaussian 11x11, sigma 1.5, K1 0.01, K2 0.03, range 255); RGB: mean over channels."""
    sr, hr = _prepare(sr, hr, crop_border, y_channel)
    return float(
        structural_similarity(
            hr,
            sr,
            data_range=255,
            gaussian_weights=True,
            sigma=1.5,
            truncate=3.5,  # 2 * int(3.5 * 1.5 + 0.5) + 1 = 11 taps, as MATLAB's window
            use_sample_covariance=False,
            K1=0.01,
            K2=0.03,
            channel_axis=-1 if sr.ndim == 3 else None,
        )
    )


def shave_border(scale: float) -> int:
    """Pixels shaved from each border before PSNR / SSIM: ceil(scale) (the scale itself when whole)."""
    return math.ceil(scale)


def lr_consistency(sr: np.ndarray, lr: np.ndarray, scale: float) -> float:
    """PSNR (RGB, dB) between ``imresize(SR, 1/scale)`` and the LR input: is the output faithful?

    RGB rather than Y so that a colour shift counts; no border is shaved. The LR must be what the
    SR's size divided by ``scale`` rounds down to, or the LR a model at ``scale`` makes that SR from.
    """
    expected = lr.shape[:2]
    floor = (math.floor(sr.shape[0] / scale + 1e-9), math.floor(sr.shape[1] / scale + 1e-9))
    if expected != floor and scaled_size(*expected, scale) != sr.shape[:2]:
        raise ValueError(f"SR {sr.shape[:2]} is not {scale}x the LR {lr.shape[:2]}")
    down = imresize(sr, 1.0 / scale, output_shape=expected)
    return psnr(down, lr, crop_border=0, y_channel=False)


LR_PSNR_CAP = 100.0  # dB


def score(
    sr: np.ndarray, hr: np.ndarray, lr: np.ndarray, scale: float, crop_border: int | None = None
) -> dict[str, float]:
    """The fidelity numbers of one output: PSNR/SSIM on Y with ``crop_border`` shaved (None:
    ``shave_border(scale)``, i.e. ceil(scale)), LR-consistency."""
    border = shave_border(scale) if crop_border is None else crop_border
    return {
        "psnr_y": psnr(sr, hr, crop_border=border, y_channel=True),
        "ssim_y": ssim(sr, hr, crop_border=border, y_channel=True),
        # An output that reproduces its LR exactly has infinite LR-PSNR; cap it so means stay finite.
        "lr_psnr": min(lr_consistency(sr, lr, scale), LR_PSNR_CAP),
    }


def high_frequency_energy(img: np.ndarray, cutoff: float, crop_border: int = 0) -> float:
    """Mean spectral power of the Y channel above ``cutoff`` (cycles per pixel, Nyquist = 0.5).

    A Hann window keeps the image borders from leaking energy into every frequency.
    """
    y = _luma_gray(img) if is_grayscale(img) else rgb_to_y(img)
    if crop_border:
        y = y[crop_border:-crop_border, crop_border:-crop_border]
    y = y - y.mean()
    window = np.outer(np.hanning(y.shape[0]), np.hanning(y.shape[1]))
    power = np.abs(np.fft.fft2(y * window)) ** 2
    fy = np.fft.fftfreq(y.shape[0])[:, None]
    fx = np.fft.fftfreq(y.shape[1])[None, :]
    band = np.hypot(fy, fx) > cutoff
    return float(power[band].mean()) if band.any() else 0.0


def detail_ratio(sr: np.ndarray, hr: np.ndarray, scale: float) -> float:
    """Restored detail without downloaded weights: the SR's spectral energy above the LR's Nyquist
    frequency (what the LR cannot carry, so a model must invent it) over the reference's.

    1 = as much fine detail as the reference; bicubic and regression models stay well under 1
    (they blur); noise or over-sharpening goes above 1. Energy only: says nothing of *where*.
    """
    cutoff = 0.5 / scale
    border = shave_border(scale)
    ref = high_frequency_energy(hr, cutoff, crop_border=border)
    return high_frequency_energy(sr, cutoff, crop_border=border) / ref if ref > 0 else float("nan")
