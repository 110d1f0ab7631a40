import numpy as np
import pytest
import torch

from sr_models.base import ModelUnavailableError, SRInputError, UpscaleResult
from sr_models.bicubic import BicubicSR
from sr_models.degradation import imresize
from sr_models.registry import HubModel, discover, get_models, load_model
from sr_models.types import SamplingSettings
from tests.conftest import save_tiny_regression

LR = np.random.default_rng(0).integers(0, 256, (12, 10, 3), dtype=np.uint8)


@pytest.mark.slow
def test_bicubic_result_record():
    result = BicubicSR().upscale(LR, scale=4, settings=SamplingSettings(seed=3))
    assert isinstance(result, UpscaleResult)
    assert result.image.shape == (48, 40, 3) and result.image.dtype == np.uint8
    assert np.array_equal(result.image, imresize(LR, 4))
    assert result.nfe == 0 and result.seconds >= 0 and result.peak_memory_mb >= 0
    assert result.settings == SamplingSettings(seed=3, lr_projection=0)
    assert result.frames == [] and len(result.stages) == 1 and result.stages[0].model == "bicubic"


def test_bad_inputs_raise_clear_errors():
    bicubic = BicubicSR()
    with pytest.raises(SRInputError, match="not 5x"):
        bicubic.upscale(LR, scale=5)
    with pytest.raises(SRInputError, match="choose one"):
        bicubic.upscale(LR)
    with pytest.raises(SRInputError, match="uint8 RGB"):
        bicubic.upscale(LR.astype(np.float32), scale=2)
    with pytest.raises(SRInputError, match="uint8 RGB"):
        bicubic.upscale(LR[..., :1], scale=2)


@pytest.mark.slow
def test_folder_model_loads_lazily_and_runs(tiny_models_dir):
    models = discover(model_dirs=[tiny_models_dir])
    tiny = models["tiny-regression-x2"]
    assert tiny.family == "regression" and tiny.scales == (2,)
    assert tiny.availability().ok
    assert tiny._model is None  # nothing loaded until used
    result = tiny.upscale(LR)
    assert result.image.shape == (24, 20, 3) and result.nfe == 1
    # the same weights loaded directly give the same image
    direct = load_model(tiny_models_dir / "tiny-x2").upscale(LR)
    assert np.array_equal(direct.image, result.image)
    with pytest.raises(SRInputError):
        tiny.upscale(LR, scale=4)


@pytest.mark.slow
def test_regression_output_is_network_output(tiny_models_dir):
    model = load_model(tiny_models_dir / "tiny-x4")
    x = torch.from_numpy(LR).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        expected = model.network(x)[0].clamp(0, 1).permute(1, 2, 0).numpy() * 255
    assert np.abs(model.upscale(LR).image.astype(float) - expected).max() <= 0.5 + 1e-4


def test_env_model_dirs_and_missing_weights(tmp_path, monkeypatch):
    folder = save_tiny_regression(tmp_path / "m", scale=2, name="env-model")
    monkeypatch.setenv("SR_MODEL_DIRS", str(tmp_path))
    models = discover()
    assert "env-model" in models and "bicubic" in models
    (folder / "diffusion_pytorch_model.safetensors").unlink()
    status = discover()["env-model"].availability()
    assert not status.ok and "weights missing" in status.reason
    with pytest.raises(ModelUnavailableError, match="weights missing"):
        discover()["env-model"].upscale(LR)


def test_unknown_model_name_lists_known():
    with pytest.raises(KeyError, match="bicubic"):
        get_models(["nope"], {"bicubic": BicubicSR()})


def test_hub_model_offline_is_unavailable_with_reason(monkeypatch, tmp_path):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    hub = HubModel("someone/not-cached-sr")
    status = hub.availability()
    assert not status.ok and "needs internet" in status.reason
    with pytest.raises(ModelUnavailableError, match="needs internet"):
        hub.upscale(LR, scale=4)


@pytest.mark.slow
def test_hub_snapshot_loads_through_the_folder_code(monkeypatch, tiny_models_dir):
    # A downloaded snapshot is a plain folder: resolving it is the only Hub-specific step.
    hub = HubModel("someone/tiny", scales=(2,))
    monkeypatch.setattr(hub, "_cached_snapshot", lambda: tiny_models_dir / "tiny-x2")
    assert hub.availability().ok
    direct = load_model(tiny_models_dir / "tiny-x2").upscale(LR)
    assert np.array_equal(hub.upscale(LR).image, direct.image)


@pytest.mark.slow
def test_lr_projection_is_a_generic_option(tiny_models_dir):
    from sr_models.metrics import lr_consistency

    model = load_model(tiny_models_dir / "tiny-x2")
    plain = model.upscale(LR)
    projected = model.upscale(LR, settings=SamplingSettings(lr_projection=3))
    assert plain.settings.lr_projection == 0 and projected.settings.lr_projection == 3
    assert lr_consistency(projected.image, LR, 2) > lr_consistency(plain.image, LR, 2)
    with pytest.raises(SRInputError):
        model.upscale(LR, settings=SamplingSettings(lr_projection=-1))
