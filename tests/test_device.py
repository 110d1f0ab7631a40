"""Device and precision choice, half-precision agreement, and the peak-memory meter."""

from pathlib import Path

import numpy as np
import pytest
import torch

from sr_models import device as device_module
from sr_models.bicubic import BicubicSR
from sr_models.device import PeakMemory, auto_dtype, cpu_flags, pick_device, pick_dtype
from sr_models.registry import discover, load_model
from sr_models.types import SamplingSettings, SRInputError
from tests.conftest import sample_images, save_tiny_regression, tiny_ldm_folder, tiny_sr3_folder


def test_device_and_dtype_come_from_the_argument_then_the_environment(monkeypatch):
    monkeypatch.delenv("SR_DEVICE", raising=False)
    monkeypatch.delenv("SR_DTYPE", raising=False)
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device(None).type in ("cpu", "cuda", "mps")  # the best one present
    monkeypatch.setattr(device_module, "native_bf16", lambda: False)
    assert pick_dtype(None) == torch.float32  # auto, on a CPU without bfloat16 units
    monkeypatch.setenv("SR_DTYPE", "bfloat16")
    monkeypatch.setenv("SR_DEVICE", "cpu")
    assert pick_dtype(None) == torch.bfloat16 and pick_device(None) == torch.device("cpu")
    assert pick_dtype("float16") == torch.float16  # the argument wins over the environment


def test_bad_device_or_dtype_is_a_plain_error(monkeypatch):
    with pytest.raises(SRInputError, match="unknown device"):
        pick_device("tpu")
    with pytest.raises(SRInputError, match="unknown dtype"):
        pick_dtype("float8")
    if not torch.cuda.is_available():
        with pytest.raises(SRInputError, match="no CUDA GPU"):
            pick_device("cuda")
    monkeypatch.setenv("SR_DEVICE", "nonsense")
    with pytest.raises(SRInputError):
        discover()


VALIDATED = {"precision": {"bfloat16": {"val_psnr_y_delta_db": 0.007}}}


@pytest.mark.parametrize(
    "native, card, expected",
    [
        (True, VALIDATED, torch.bfloat16),
        (False, VALIDATED, torch.float32),  # emulated bfloat16 is far slower than float32
        (True, {"precision": {"bfloat16": {"val_psnr_y_delta_db": -0.06}}}, torch.float32),  # moves PSNR too much
        (True, {}, torch.float32),  # never measured
        (True, None, torch.float32),  # a model built in memory
    ],
)
def test_auto_takes_bfloat16_only_where_the_cpu_has_it_and_the_card_validates_it(monkeypatch, native, card, expected):
    monkeypatch.setattr(device_module, "native_bf16", lambda: native)
    monkeypatch.delenv("SR_DTYPE", raising=False)
    assert auto_dtype(torch.device("cpu"), card) == expected
    assert pick_dtype("auto", "cpu", card) == pick_dtype(None, "cpu", card) == expected


def test_auto_on_cuda_is_half_precision_and_avoids_float16_where_the_card_says_it_overflows(monkeypatch):
    cuda = torch.device("cuda")
    assert auto_dtype(cuda, VALIDATED) == torch.float16
    for supported, expected in ((True, torch.bfloat16), (False, torch.float32)):
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda s=supported: s)
        assert auto_dtype(cuda, {"float16_overflows": True}) == expected


def test_cpu_flags_are_read_from_cpuinfo_and_native_bf16_follows_them(monkeypatch):
    flags = cpu_flags()
    assert isinstance(flags, frozenset)
    if Path("/proc/cpuinfo").exists():
        assert flags  # every Linux x86 / arm CPU lists some flags
    monkeypatch.setattr(device_module, "cpu_flags", lambda: frozenset({"avx2", "amx_bf16"}))
    assert device_module.native_bf16()
    monkeypatch.setattr(device_module, "cpu_flags", lambda: frozenset({"avx2", "fma"}))
    assert not device_module.native_bf16()


def float32_run(folder: Path, side: int):
    """(the model in ``folder``, an LR, 2-step settings, its float32 result): what a precision is held to."""
    model = load_model(folder)
    lr = sample_images()["astronaut"][:side, :side]
    settings = SamplingSettings(steps=2, seed=3, lr_projection=0)
    return model, lr, settings, model.to("cpu", "float32").upscale(lr, settings=settings)


@pytest.mark.slow
def test_a_float16_overflow_reruns_the_stage_in_float32(tmp_path, monkeypatch):
    model, lr, settings, reference = float32_run(tiny_sr3_folder(tmp_path / "m", scale=4), 16)
    model.to("cpu", "float16")
    forward = type(model.unet).forward

    def overflowing(self, *args, **kwargs):  # what the SD upscaler's VAE does in float16 on some inputs
        out = forward(self, *args, **kwargs)
        if out.sample.dtype == torch.float16:
            out.sample[..., 0, 0] = float("inf")
        return out

    monkeypatch.setattr(type(model.unet), "forward", overflowing)
    result = model.upscale(lr, settings=settings)
    assert result.stages[0].dtype == "float32"
    assert np.abs(result.image.astype(int) - reference.image.astype(int)).max() <= 2  # float16-rounded weights


@pytest.mark.parametrize("make", [tiny_ldm_folder, tiny_sr3_folder, save_tiny_regression])
@pytest.mark.slow
def test_bfloat16_agrees_with_float32_and_the_record_says_which_ran(tmp_path, make):
    model, lr, settings, full = float32_run(make(tmp_path / "m", scale=4), 32)
    half = model.to("cpu", "bfloat16").upscale(lr, settings=settings)
    assert next(iter(half.stages)).dtype == "bfloat16" and half.facts()["device"] == "cpu"
    diff = np.abs(full.image.astype(int) - half.image.astype(int))
    # bfloat16 keeps 8 mantissa bits: tiny random networks agree within a few grey levels on average
    assert diff.mean() < 3.0, diff.mean()
    assert not np.array_equal(full.image, half.image) or model.family == "regression"


@pytest.mark.slow
def test_discover_places_every_model(tiny_models_dir):
    models = discover(model_dirs=[tiny_models_dir], device="cpu", dtype="bfloat16")
    tiny = models["tiny-regression-x2"]
    assert tiny.dtype == torch.bfloat16
    result = tiny.upscale(np.zeros((8, 8, 3), np.uint8))
    assert result.stages[0].dtype == "bfloat16"
    assert next(tiny.load().network.parameters()).dtype == torch.bfloat16


@pytest.mark.slow
def test_peak_memory_is_reported_on_warm_runs_too():
    model = BicubicSR()
    lr = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    peaks = [model.upscale(lr, scale=4).peak_memory_mb for _ in range(3)]
    # a 1024x1024x3 output needs at least its own 3 MB (uint8) on every run, not just the first
    assert all(p > 3 for p in peaks), peaks


@pytest.mark.slow
def test_nested_meters_carry_the_inner_peak_outwards():
    with PeakMemory() as outer:
        with PeakMemory() as inner:
            block = np.ones((64, 1024, 1024), np.uint8)  # 64 MB touched
            del block
    assert inner.peak_mb > 48 and outer.peak_mb >= inner.peak_mb - 1
