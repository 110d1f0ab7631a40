import math

import numpy as np
import pytest
import torch

from sr_models import degradation
from sr_models.data import eval_pairs
from sr_models.degradation import (
    _contributions,
    _float32_margin,
    _round_to_uint8,
    center_crop,
    cubic,
    degrade,
    hr_multiple,
    imresize,
    modcrop,
    protocol_scale,
    scaled_size,
)
from sr_models.metrics import score, shave_border
from tests.reference_imresize import imresize as reference_imresize

# Antialiased 1/2 downscale: the kernel is cubic(x/2)/2 sampled at +-0.5, 1.5, 2.5, 3.5,
# i.e. cubic(0.25), cubic(0.75), cubic(1.25), cubic(1.75) halved (worked out by hand).
HALF_WEIGHTS = (
    np.array([-0.0234375, -0.0703125, 0.2265625, 0.8671875, 0.8671875, 0.2265625, -0.0703125, -0.0234375]) / 2
)


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


# --- the float32 torch imresize against the original float64 numpy one (tests/reference_imresize.py) ---

SCALES = [1 / 2, 1 / 3, 1 / 4, 1 / 8, 2, 3, 4, 8, 16, 0.7]


def random_image(shape, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


def smooth_image(shape):
    y, x = np.mgrid[: shape[0], : shape[1]]
    img = 127.5 + 120 * np.sin(x / 5.3 + 0.3) * np.cos(y / 7.1)
    return np.repeat(img[..., None], shape[2], axis=2) if len(shape) == 3 else img


@pytest.mark.parametrize("shape", [(37, 53, 3), (29, 31)])
@pytest.mark.parametrize("scale", SCALES)
def test_float32_matches_float64_reference_before_rounding(shape, scale):
    img = random_image(shape).astype(np.float32)
    out = imresize(img, scale)
    assert out.dtype == np.float32
    assert np.abs(out - reference_imresize(img.astype(np.float64), scale)).max() <= 1e-3


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("make", [random_image, smooth_image])
def test_uint8_equals_reference_after_rounding(scale, make):
    for shape in [(37, 53, 3), (29, 31)]:
        img = np.clip(np.round(make(shape)), 0, 255).astype(np.uint8)
        out = imresize(img, scale)
        assert out.dtype == np.uint8 and out.shape == reference_imresize(img, scale).shape
        assert np.array_equal(out, reference_imresize(img, scale))


@pytest.mark.parametrize("output_shape", [(50, 20), (13, 18), (111, 160)])
def test_output_shape_driven_sizes_match_reference(output_shape):
    img = random_image((37, 53, 3), seed=2)
    assert np.array_equal(imresize(img, output_shape=output_shape), reference_imresize(img, output_shape=output_shape))
    fast = imresize(img.astype(np.float32), output_shape=output_shape)
    assert np.abs(fast - reference_imresize(img.astype(np.float64), output_shape=output_shape)).max() <= 1e-3


def test_uint8_rounding_survives_float32_error_up_to_the_margin():
    """Push every float32 sample halfway to the margin towards its nearest rounding boundary:
    naive rounding then differs from float64, the recheck of near-boundary samples does not."""
    img = random_image((64, 64, 3), seed=3)
    scale = 1.3  # not a lattice of dyadic weights, so some samples land within the margin of x.5
    exact = reference_imresize(img.astype(np.float64), scale)
    expected = reference_imresize(img, scale)
    taps = _contributions(64, exact.shape[0], scale)
    margin = _float32_margin(taps[0], taps[0])
    towards_boundary = np.where(exact - np.floor(exact) < 0.5, 1, -1)
    values = exact + towards_boundary * margin / 2
    assert not np.array_equal(np.clip(np.round(values), 0, 255), expected)
    assert np.array_equal(_round_to_uint8(values.astype(np.float32), img, taps, taps, margin), expected)


def test_small_bands_give_the_same_result(monkeypatch):
    img = random_image((40, 36, 3), seed=4)
    whole = {s: imresize(img, s) for s in (1 / 4, 0.7, 3)}
    monkeypatch.setattr(degradation, "_BAND_ELEMENTS", 100)  # a few output rows per band
    for s, expected in whole.items():
        assert np.array_equal(imresize(img, s), expected)
    diff = imresize(img.astype(np.float32), 1 / 4) - reference_imresize(img.astype(np.float64), 1 / 4)
    assert np.abs(diff).max() <= 1e-3


def test_dtype_conventions():
    img = random_image((12, 10, 3), seed=5)
    assert imresize(img, 2).dtype == np.uint8
    assert imresize(img.astype(np.float32), 2).dtype == np.float32
    assert imresize(img.astype(np.float64), 2).dtype == np.float64  # float64 in: computed in float64
    assert imresize(img.astype(np.int16), 2).dtype == np.float64
    assert imresize(img[..., 0], 2).shape == (24, 20)
    wide = imresize(np.full((8, 8), -300.0, np.float32), 2)
    assert np.allclose(wide, -300)  # float output is not clipped


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_equals_cpu():
    img = random_image((37, 53, 3), seed=6)
    for s in (1 / 4, 4, 16):
        assert np.array_equal(imresize(img, s, device="cuda"), imresize(img, s))
        fp = img.astype(np.float32)
        assert np.abs(imresize(fp, s, device="cuda") - imresize(fp, s)).max() <= 1e-3


# --- real-valued scales of the protocol ---


@pytest.mark.parametrize(
    "scale, hr_shape, lr_shape",
    [(2.5, (100, 70), (40, 28)), (3, (102, 69), (34, 23)), (3.0, (102, 69), (34, 23)), (1.5, (102, 69), (68, 46))],
)
def test_real_valued_degrade_crops_hr_to_a_whole_lr(scale, hr_shape, lr_shape):
    hr, lr = degrade(random_image((103, 70, 3), seed=7), scale)
    assert hr.shape[:2] == hr_shape and lr.shape[:2] == lr_shape and lr.dtype == np.uint8
    assert hr.shape[0] / scale == lr.shape[0] and hr.shape[1] / scale == lr.shape[1]
    # the largest such crop: one more row or column would not divide into a whole LR
    assert all(not ((side + k) / scale).is_integer() for side in hr_shape for k in range(1, hr_multiple(scale)))


@pytest.mark.parametrize("scale", [2.5, 3, 7 / 3])
@pytest.mark.parametrize("make", [random_image, smooth_image])
def test_real_valued_degrade_matches_the_float64_reference(scale, make):
    image = np.clip(np.round(make((61, 47, 3))), 0, 255).astype(np.uint8)
    hr, lr = degrade(image, scale)
    assert np.array_equal(hr, image[: hr.shape[0], : hr.shape[1]])
    assert np.array_equal(lr, reference_imresize(hr, 1 / scale, output_shape=lr.shape[:2]))
    fast = imresize(hr.astype(np.float32), 1 / scale, output_shape=lr.shape[:2])
    assert np.abs(fast - reference_imresize(hr.astype(np.float64), 1 / scale, output_shape=lr.shape[:2])).max() <= 1e-3


@pytest.mark.parametrize("scale", [2, 3, 4, 8])
def test_integer_scales_are_the_classic_modcrop_unchanged(scale):
    image = random_image((103, 70, 3), seed=8)
    h, w = 103 - 103 % scale, 70 - 70 % scale
    expected_lr = reference_imresize(image[:h, :w], 1.0 / scale, output_shape=(h // scale, w // scale))
    for given in (scale, float(scale), np.int64(scale)):
        hr, lr = degrade(image, given)
        assert hr.shape[:2] == (h, w) and np.array_equal(lr, expected_lr)
    assert protocol_scale(float(scale)) == scale and isinstance(protocol_scale(float(scale)), int)


@pytest.mark.parametrize("bad", [0, -1, 17, float("nan"), float("inf"), "3x", "3", True, None, 0.5])
def test_bad_scales_are_refused_with_a_plain_message(bad):
    with pytest.raises(ValueError, match="the scale must be") as caught:
        degrade(random_image((32, 32, 3)), bad)
    assert "Traceback" not in str(caught.value) and len(str(caught.value)) < 120


def test_a_scale_that_is_no_small_ratio_cannot_be_mod_cropped():
    assert hr_multiple(2.5) == 5 and hr_multiple(7 / 3) == 7 and hr_multiple(4) == 4
    with pytest.raises(ValueError, match="not a ratio of whole numbers"):
        degrade(random_image((32, 32, 3)), math.pi)
    with pytest.raises(ValueError, match="crop multiple"):
        degrade(random_image((32, 32, 3)), 3.99)  # 399/100: a 32 px image has no multiple of 399


def test_scaled_size_is_round_of_scale_times_size():
    assert scaled_size(17, 20, 2.5) == (round(42.5), 50) == (42, 50)
    assert scaled_size(17, 20, 1.5) == (26, 30) and scaled_size(17, 20, 7) == (119, 140)
    assert scaled_size(40, 28, 2.5) == (100, 70)  # protocol pairs: exact


def test_metrics_shave_ceil_of_the_scale():
    assert [shave_border(s) for s in (2, 2.5, 3, 1.5, 16)] == [2, 3, 3, 2, 16]
    hr, lr = degrade(smooth_image((60, 60, 3)).astype(np.uint8), 2.5)
    sr = hr.copy()
    sr[:3] = 0  # an error in the 3 shaved rows only: invisible at 2.5x, seen with a 2 px border
    assert score(sr, hr, lr, 2.5)["psnr_y"] == float("inf")
    assert score(sr, hr, lr, 2.5, crop_border=2)["psnr_y"] < 30
    assert score(hr, hr, lr, 2.5)["lr_psnr"] > 40  # the LR-consistency check takes a real-valued scale


def test_evaluation_pairs_at_a_real_valued_scale_with_a_crop(tmp_path):
    from PIL import Image

    Image.fromarray(random_image((90, 83, 3), seed=9)).save(tmp_path / "a.png")
    (pair,) = eval_pairs(tmp_path, 2.5, crop=64)
    assert pair.hr.shape == (60, 60, 3) and pair.lr.shape == (24, 24, 3)
    (pair,) = eval_pairs(tmp_path, 4, crop=64)
    assert pair.hr.shape == (64, 64, 3) and pair.lr.shape == (16, 16, 3)
