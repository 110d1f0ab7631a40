"""Offline tests of comparisons.perceptual: random backbones stand in for the pretrained weights."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from comparisons import perceptual
from comparisons.perceptual import (
    PREFETCH_COMMAND,
    PerceptualWeightsMissing,
    available_perceptual_metrics,
    distribution_metrics,
    load_lpips,
    lpips_distance,
    split_patches,
)


def _noise(seed: int, h: int = 64, w: int = 64) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _gradient(h: int = 64, w: int = 64, phase: float = 0.0) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    r = 127.5 + 127.5 * np.sin(x / 9.0 + phase)
    g = 255.0 * y / (h - 1)
    b = 127.5 + 127.5 * np.cos((x + y) / 13.0 + phase)
    return np.stack([r, g, b], axis=-1).round().astype(np.uint8)


class TinyFeatures(torch.nn.Module):
    """A seeded random conv net standing in for Inception: uint8 N x 3 x H x W -> N x 8."""

    num_features = 8  # read by torchmetrics' FID so it skips its 299x299 probe

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.conv = torch.nn.Conv2d(3, self.num_features, 5, stride=2)
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(self.conv.weight.shape, generator=generator) * 0.2)
            self.conv.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv(x.float() / 255.0))
        return h.mean(dim=(2, 3))


# ---------------------------------------------------------------------------------------- LPIPS


@pytest.fixture(scope="module")
def random_lpips():
    return load_lpips(random_backbone=True)


def test_lpips_identical_is_zero(random_lpips):
    img = _gradient()
    assert lpips_distance(img, img.copy(), random_lpips) == pytest.approx(0.0, abs=1e-6)


def test_lpips_different_positive_and_symmetric(random_lpips):
    a, b = _gradient(), _noise(1)
    ab, ba = lpips_distance(a, b, random_lpips), lpips_distance(b, a, random_lpips)
    assert ab > 1e-3
    assert ab == pytest.approx(ba, rel=1e-4)
    # a small perturbation is closer than a replacement by noise
    near = np.clip(a.astype(int) + 3, 0, 255).astype(np.uint8)
    assert 0 < lpips_distance(a, near, random_lpips) < ab


@pytest.mark.slow
def test_lpips_random_backbone_is_deterministic(random_lpips):
    perceptual._build_lpips.cache_clear()
    again = load_lpips(random_backbone=True)
    assert again is not random_lpips
    a, b = _gradient(), _noise(2)
    assert lpips_distance(a, b, again) == pytest.approx(lpips_distance(a, b, random_lpips), rel=1e-6)


def test_lpips_shape_mismatch_raises(random_lpips):
    with pytest.raises(ValueError, match="differ in shape"):
        lpips_distance(_gradient(64, 64), _gradient(64, 72), random_lpips)
    with pytest.raises(ValueError, match="uint8 HxWx3"):
        lpips_distance(_gradient()[..., 0], _gradient()[..., 0], random_lpips)


# ---------------------------------------------------------------------------------- patches


def test_split_patches_counts_and_content():
    img = _noise(3, 130, 200)
    patches = split_patches(img, 64)
    assert patches.shape == (6, 64, 64, 3)  # 2 rows x 3 columns, remainders dropped
    np.testing.assert_array_equal(patches[0], img[:64, :64])
    np.testing.assert_array_equal(patches[4], img[64:128, 64:128])  # row-major order
    assert split_patches(img, 32).shape[0] == 4 * 6
    assert split_patches(_noise(4, 40, 40), 64).shape == (0, 64, 64, 3)


# -------------------------------------------------------------------------------- FID / IS


def test_fid_with_custom_extractor():
    extractor = TinyFeatures()
    smooth = [_gradient(128, 128, phase=p) for p in (0.0, 0.7, 1.4, 2.1)]  # 16 patches
    noisy = [_noise(10 + i, 128, 128) for i in range(4)]

    same = distribution_metrics(smooth, smooth, patch=64, feature_extractor=extractor)
    other = distribution_metrics(noisy, smooth, patch=64, feature_extractor=extractor)

    assert same["n_patches"] == other["n_patches"] == 16
    assert abs(same["fid"]) < 1e-6
    assert other["fid"] > 1e-2
    assert other["fid"] > 1e4 * max(abs(same["fid"]), 1e-9)
    # IS of softmax over 8 outputs lies in [1, 8]; one split -> no spread
    assert 1.0 - 1e-6 <= other["is_mean"] <= 8.0
    assert math.isnan(other["is_std"])
    assert "64x64 patches" in other["protocol"] and "16 SR vs 16 HR" in other["protocol"]
    assert "TinyFeatures" in other["protocol"]


def test_fid_is_splits_and_patch_option():
    extractor = TinyFeatures()
    sr = [_noise(20 + i, 96, 96) for i in range(3)]
    hr = [_gradient(96, 96, phase=i) for i in range(3)]
    out = distribution_metrics(sr, hr, patch=32, feature_extractor=extractor, is_splits=3)
    assert out["n_patches"] == 27
    assert out["is_std"] >= 0 and not math.isnan(out["is_std"])


def test_fid_input_validation():
    extractor = TinyFeatures()
    with pytest.raises(ValueError, match="differ in shape"):
        distribution_metrics([_noise(0, 64, 64)], [_noise(0, 64, 128)], feature_extractor=extractor)
    with pytest.raises(ValueError, match="at least 2"):
        distribution_metrics([_noise(0, 64, 64)], [_noise(1, 64, 64)], feature_extractor=extractor)


# ------------------------------------------------------------------------------ missing weights


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    """Point the torch hub cache (where AlexNet and Inception live) at an empty folder."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)  # set_dir() would override $TORCH_HOME
    return tmp_path


def test_missing_weights_detected(empty_cache):
    status = available_perceptual_metrics()
    assert set(status) == {"lpips", "fid", "inception_score"}
    for metric, reason in status.items():
        assert reason is not None, metric
        assert PREFETCH_COMMAND in reason
        assert str(empty_cache) in reason

    with pytest.raises(PerceptualWeightsMissing, match="--prefetch") as err:
        load_lpips()
    assert "alexnet-owt-7be5be79.pth" in str(err.value)

    with pytest.raises(PerceptualWeightsMissing, match="--prefetch") as err:
        distribution_metrics([_noise(0, 128, 128)], [_noise(1, 128, 128)])
    assert "weights-inception-2015-12-05-6726825d.pth" in str(err.value)


def test_weights_found_where_libraries_look(empty_cache):
    checkpoints = empty_cache / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    (checkpoints / "weights-inception-2015-12-05-6726825d.pth").write_bytes(b"")
    status = available_perceptual_metrics()
    assert status["fid"] is None and status["inception_score"] is None
    assert status["lpips"] is not None


def test_cli_check_and_failed_prefetch(empty_cache, monkeypatch, capsys):
    assert perceptual.main(["--check"]) == 1
    out = capsys.readouterr().out
    assert "MISSING  alexnet" in out and PREFETCH_COMMAND in out

    def offline(weight):
        raise OSError("network unreachable")

    monkeypatch.setattr(perceptual, "_download", offline)
    assert perceptual.main(["--prefetch"]) == 1
    lines = capsys.readouterr().out.strip().splitlines()
    failed = [line for line in lines if line.startswith("FAILED")]
    assert len(failed) == 2 and all("network unreachable" in line for line in failed)


def test_lpips_function_uses_the_given_model_or_says_why_not(random_lpips, empty_cache):
    fn, missing = perceptual.lpips_function(random_lpips)
    a, b = _gradient(), _gradient(phase=1.0)
    assert missing is None and fn(a, b) == lpips_distance(a, b, random_lpips) > 0
    fn, missing = perceptual.lpips_function()  # the pretrained AlexNet is not in the empty cache
    assert fn is None and "lpips unavailable" in missing and PREFETCH_COMMAND in missing
