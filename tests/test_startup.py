"""Start-up (issue 17): weights load in a background thread while the page is served, a run arriving
mid-load waits for that load, a failed load is the model's error; perceptual weights are fetched on a
Space only; ``--hub`` ticks the cached Hub pipelines; a run of minutes is announced with the steps
that fit a minute."""

import threading
import time

import numpy as np
import pytest
from PIL import Image

from comparisons import warmup
from comparisons.compare import run_comparison
from comparisons.serving import MODE_LR, LoadedModels
from sr_models import registry
from sr_models.bicubic import BicubicSR
from sr_models.registry import TICK_HUB_ENV, FolderModel, builtin_models, model_folders
from sr_models.types import SamplingSettings
from tests.conftest import NO_CASCADE, wait_for
from ui.handlers import Handlers
from ui.lab import Lab
from ui.parse import MODES

LR = np.random.default_rng(0).integers(0, 256, (6, 5, 3), dtype=np.uint8)
LR_MODE = next(k for k, v in MODES.items() if v == MODE_LR)


@pytest.fixture
def folder_models(tiny_models_dir):
    """Fresh deferred models of the tiny test folders (nothing loaded)."""
    return [FolderModel(f) for f in model_folders([tiny_models_dir])]


class SlowLoader:
    """Stands in for ``registry.load_model``: counts loads, holds each until released, or fails."""

    def __init__(self, error: Exception | None = None):
        self.calls, self.error = 0, error
        self.started, self.release = threading.Event(), threading.Event()

    def __call__(self, folder):
        self.calls += 1
        self.started.set()
        self.release.wait(10)
        if self.error is not None:
            raise self.error
        return BicubicSR()


def test_ticked_models_load_in_the_background_within_the_loaded_bound(folder_models):
    loaded = LoadedModels(limit=2)
    thread = warmup.start(folder_models, loaded)[0]
    thread.join(60)
    assert not thread.is_alive()
    assert [m.loaded for m in folder_models] == [True, True, False]  # the first two: the bound's limit
    assert loaded.loaded() == [m.name for m in folder_models[:2]]


@pytest.mark.slow
def test_a_run_during_the_background_load_waits_for_it_instead_of_loading_again(folder_models, monkeypatch):
    loader = SlowLoader()
    monkeypatch.setattr(registry, "load_model", loader)
    model = folder_models[0]
    scale = model.scales[0]
    preload = threading.Thread(target=model.preload)
    preload.start()
    assert loader.started.wait(10)
    results = []
    run = threading.Thread(target=lambda: results.append(model.upscale(LR, scale=scale)))
    run.start()
    time.sleep(0.2)
    assert run.is_alive() and loader.calls == 1  # the run waits on the load in progress
    loader.release.set()
    preload.join(10)
    run.join(10)
    assert loader.calls == 1 and results[0].image.shape == (6 * scale, 5 * scale, 3)


def test_a_failed_background_load_is_reported_by_the_models_run(folder_models, monkeypatch, capsys, lr_png):
    loader = SlowLoader(OSError("no such file: unet/diffusion_pytorch_model.safetensors\nsecond line"))
    loader.release.set()
    monkeypatch.setattr(registry, "load_model", loader)
    model = next(m for m in folder_models if 2 in m.scales)
    assert warmup.preload_models([model], LoadedModels()) == []  # no exception: the thread goes on
    out = capsys.readouterr()
    assert "Traceback" not in out.out + out.err and model.name in out.out
    comparison = run_comparison(str(lr_png), MODE_LR, 2, [model])
    message = comparison.errors[model.name]
    assert "could not load its weights (OSError: no such file" in message and "second line" not in message
    assert loader.calls == 1  # the run reported the background load's error, it did not load again
    run_comparison(str(lr_png), MODE_LR, 2, [model])
    assert loader.calls == 2  # the next run tries again


def test_start_up_work_never_prints_a_stack_trace(capsys):
    def broken():
        raise KeyError("boom")

    warmup.in_background(broken, name="test-broken").join(10)
    out = capsys.readouterr()
    assert "Traceback" not in out.err + out.out and "broken stopped (KeyError" in out.out


@pytest.mark.slow  # imports the perceptual metrics' libraries
def test_perceptual_weights_are_fetched_on_a_space_only(monkeypatch, folder_models):
    fetched = []

    def fake_fetch():
        fetched.append(threading.current_thread().name)
        return {"alexnet": "fetched  alexnet: /cache/alexnet.pth"}

    from comparisons import perceptual

    monkeypatch.setattr(perceptual, "fetch_missing_weights", fake_fetch)
    monkeypatch.delenv(warmup.SPACE_ENV, raising=False)
    assert warmup.fetch_perceptual_weights(fake_fetch) == {} and len(warmup.start([], LoadedModels())) == 1
    assert fetched == []  # offline / not a Space: nothing fetched
    monkeypatch.setenv(warmup.SPACE_ENV, "someone/diffusion-sr-lab")
    threads = warmup.start([], LoadedModels())
    for thread in threads:
        thread.join(10)
    assert fetched == ["sr-lab-perceptual-weights"]  # in its own thread, not the server's


def test_perceptual_fetch_reports_each_weight_in_one_line(monkeypatch, tmp_path):
    import torch

    from comparisons import perceptual

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)

    def fake_download(weight):
        if weight.name == "inception":
            raise OSError("network unreachable")
        weight.path.parent.mkdir(parents=True, exist_ok=True)
        weight.path.write_bytes(b"weights")

    outcome = perceptual.fetch_missing_weights(fake_download)
    assert outcome["alexnet"].startswith("fetched") and perceptual.WEIGHTS["alexnet"].present()
    assert outcome["inception"].startswith("FAILED") and "network unreachable" in outcome["inception"]


# --- --hub ----------------------------------------------------------------------------------------------
@pytest.fixture
def hub_cache(monkeypatch, tmp_path):
    """An empty local Hub cache, offline."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    return tmp_path


def cache_entry(cache, entry) -> None:
    """``entry``'s files (``HubEntry.files``, what the Space preloads) in the Hub cache's layout."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / f"models--{entry.repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    components = {f.split("/")[0]: ["diffusers", "Component"] for f in entry.files if "/" in f}
    for name in entry.files:
        path = repo / "snapshots" / commit / name
        path.parent.mkdir(parents=True, exist_ok=True)
        index = {"_class_name": entry.pipeline, **components}
        path.write_text(__import__("json").dumps(index) if name == "model_index.json" else "{}")


def hub_handlers() -> Handlers:
    models = {"bicubic": BicubicSR(), **{m.name: m for m in builtin_models()}}
    return Handlers(Lab(models))


def test_hub_flag_ticks_the_cached_hub_models_only(hub_cache, monkeypatch):
    from sr_models.hub import HUB_MODELS

    pytest.importorskip("transformers")
    ldm = next(e for e in HUB_MODELS if e.name == "ldm-sr-openimages")
    cache_entry(hub_cache, ldm)  # the LDM is cached, the SD upscaler is not
    handlers = hub_handlers()
    monkeypatch.delenv(TICK_HUB_ENV, raising=False)
    assert handlers.models_for(4) == ["bicubic"]  # without the flag: listed, not ticked
    monkeypatch.setenv(TICK_HUB_ENV, "1")
    assert handlers.models_for(4) == ["bicubic", "ldm-sr-openimages"]
    handlers.lab.scratch.close()


def test_hub_flag_on_the_command_line(monkeypatch, capsys):
    import app

    monkeypatch.setenv(TICK_HUB_ENV, "0")  # restored after the test
    app.parse_args([])
    assert not registry.ticks_hub_models()
    app.parse_args(["--hub"])
    assert registry.ticks_hub_models()
    with pytest.raises(SystemExit):
        app.parse_args(["--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--hub" in help_text and f"{TICK_HUB_ENV}=1" in help_text and "sd-x4-upscaler" in help_text


# --- a run of minutes, announced --------------------------------------------------------------------------
@pytest.fixture
def sd_handlers(hub_cache):
    handlers = hub_handlers()
    yield handlers
    handlers.lab.scratch.close()


def png(tmp_path, side: int) -> str:
    path = tmp_path / f"lr{side}.png"
    Image.fromarray(np.random.default_rng(side).integers(0, 256, (side, side, 3), dtype=np.uint8)).save(path)
    return str(path)


def test_estimate_warns_of_a_run_of_minutes_and_names_the_steps_that_fit_a_minute(sd_handlers, tmp_path):
    import re

    image, model = png(tmp_path, 128), sd_handlers.models["sd-x4-upscaler"]
    text = sd_handlers.estimate(image, LR_MODE, 4, ["bicubic", "sd-x4-upscaler"], 0, "", *NO_CASCADE)
    warning = text.split("\n\n")[1]
    assert warning.startswith(f"⚠ **sd-x4-upscaler** at {model.default_steps} steps") and "min" in warning
    fit = int(re.search(r"Steps to (\d+)", warning).group(1))
    predict = sd_handlers.lab.estimator.predict
    assert (
        predict(model, 128, 128, 4, SamplingSettings(steps=fit))
        <= 60
        < predict(model, 128, 128, 4, SamplingSettings(steps=fit + 1))
    )
    assert "⚠" not in sd_handlers.estimate(image, LR_MODE, 4, ["sd-x4-upscaler"], fit, "", *NO_CASCADE)
    assert "⚠" not in sd_handlers.estimate(png(tmp_path, 24), LR_MODE, 4, ["sd-x4-upscaler"], 0, "", *NO_CASCADE)
    huge = sd_handlers.estimate(png(tmp_path, 480), LR_MODE, 4, ["sd-x4-upscaler"], 0, "", *NO_CASCADE)
    assert "over a minute even at 1 step" in huge


def test_the_page_is_served_before_the_weights_load(folder_models, monkeypatch):
    loader = SlowLoader()
    monkeypatch.setattr(registry, "load_model", loader)
    handlers = Handlers(Lab({m.name: m for m in folder_models}))
    begun = time.monotonic()
    threads = handlers.start_background_work(scale=4)
    assert time.monotonic() - begun < 1 and threads[0].is_alive()  # returns at once; the load goes on
    wait_for(lambda: loader.calls == 1, 10, "the background load")
    loader.release.set()
    threads[0].join(10)
    assert loader.calls == len([m for m in folder_models if 4 in m.scales])
    handlers.lab.scratch.close()
