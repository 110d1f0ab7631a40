"""Shared fixtures: small images made from scikit-image's samples, tiny seeded models."""

from __future__ import annotations

import socket
import time
from contextlib import contextmanager

import numpy as np
import pytest
import torch
from PIL import Image

from sr_models.cards import write_card
from sr_models.degradation import center_crop
from sr_models.diffusion_sr import (
    build_unet,
    condition_channels,
    save_ldm_folder,
    save_sr3_folder,
)
from sr_models.first_stage import build_autoencoder
from sr_models.regression import EDSRLite
from sr_models.sampling import SAMPLERS, TRAIN_SCHEDULER


def sample_images() -> dict[str, np.ndarray]:
    from skimage import data

    return {
        "astronaut": center_crop(data.astronaut(), 96),
        "coffee": center_crop(data.coffee(), 80)[:, :72],  # non-square
        "camera_gray": np.repeat(center_crop(data.camera(), 64)[..., None], 3, axis=2),
    }


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    for name, image in sample_images().items():
        Image.fromarray(image).save(folder / f"{name}.png")
    return folder


def save_tiny_regression(folder, scale: int = 2, name: str | None = None, seed: int = 0):
    torch.manual_seed(seed)
    net = EDSRLite(scale=scale, channels=4, num_blocks=1)
    torch.nn.init.normal_(net.tail.weight, std=0.01)  # not the bicubic identity: outputs differ
    net.save_pretrained(str(folder), safe_serialization=True)
    write_card(folder, {"name": name or f"tiny-regression-x{scale}", "family": "regression", "scales": [scale]})
    return folder


def tiny_ldm_folder(folder, scale=4, seed=0):
    torch.manual_seed(seed)
    vae = build_autoencoder((8, 8, 8))
    unet = build_unet(3 + condition_channels(scale), 3, (16, 16, 16))
    meta = {
        "name": f"tiny-ldm-x{scale}",
        "family": "ldm",
        "scales": [scale],
        "default_steps": 2,
        "default_sampler": "ddim",
        "samplers": list(SAMPLERS),
        "tile": 64,
    }
    save_ldm_folder(folder, vae, unet, TRAIN_SCHEDULER, scale, meta)
    return folder


def tiny_sr3_folder(folder, scale=4, seed=0):
    torch.manual_seed(seed)
    unet = build_unet(6, 3, (16, 16, 16), attention=False)
    meta = {
        "name": f"tiny-sr3-x{scale}",
        "family": "sr3",
        "scales": [scale],
        "default_steps": 2,
        "default_sampler": "ddim",
        "samplers": list(SAMPLERS),
        "residual_scale": 4.0,
    }
    save_sr3_folder(folder, unet, TRAIN_SCHEDULER, meta)
    return folder


@pytest.fixture(scope="session")
def tiny_models_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    save_tiny_regression(root / "tiny-x2", scale=2)
    save_tiny_regression(root / "tiny-x4", scale=4)
    tiny_ldm_folder(root / "tiny-ldm-x4", scale=4)
    return root


# --- the app: one way to serve it in-process, one to start it as a process ------------------------
NO_CASCADE = ["", "", "", 0, 0, 0]  # the cascade builder's stage dropdowns and step boxes, unused


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def app_models(folder) -> dict:
    """Fresh model objects (nothing loaded yet) for the tiny test models and bicubic."""
    from sr_models.registry import discover

    return {k: v for k, v in discover(model_dirs=[folder]).items() if k.startswith(("bicubic", "tiny"))}


@pytest.fixture
def tiny_lab(tiny_models_dir):
    """A Lab (the app's run slot, scratch folder and models) over the tiny models, closed after the test."""
    from ui.lab import Lab

    lab = Lab(app_models(tiny_models_dir))
    yield lab
    lab.scratch.close()


@contextmanager
def served(models: dict, example_dir, downloads=None):
    """``build_app(models)`` served in this process on a free port: (demo, gradio_client.Client)."""
    from gradio_client import Client

    from ui.layout import build_app

    demo = build_app(models, example_dir=example_dir)
    demo.queue()
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    kwargs = {} if downloads is None else {"download_files": downloads}
    try:
        yield demo, Client(f"http://127.0.0.1:{port}/", verbose=False, **kwargs)
    finally:
        demo.close()
        demo.lab.scratch.close()


@contextmanager
def started_app(log_path, env: dict | None = None):
    """``python app.py`` as its own process on a free port (``comparisons.load_test.app_process``)."""
    from comparisons.load_test import app_process

    with app_process(log_path, free_port(), env) as server:
        yield server


def compare_output(result, name: str):
    """One output of /compare by name (``CompareOutputs.api_names``)."""
    from ui.handlers import CompareOutputs

    return result[CompareOutputs.api_names().index(name)]


def shown(result, name: str):
    """What an output shows: the value of a component update (None when hidden), else the value."""
    value = compare_output(result, name)
    if isinstance(value, dict) and value.get("__type__") == "update":
        return value.get("value") if value.get("visible", True) else None
    return value


def wait_for(condition, timeout: float, what: str):
    """Poll ``condition`` until true; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


class SlowUNet:
    """Counts the UNet calls of a loaded diffusion model and makes each take ``delay`` seconds."""

    def __init__(self, deferred, delay: float = 0.03):
        self.calls = 0
        self.unet = deferred.load().unet
        self._forward = self.unet.forward

        def forward(*args, **kwargs):
            self.calls += 1
            time.sleep(delay)
            return self._forward(*args, **kwargs)

        self.unet.forward = forward


@pytest.fixture(scope="session")
def lr_png(tmp_path_factory):
    """A 24x20 random LR image."""
    path = tmp_path_factory.mktemp("lr") / "lr.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture(scope="session")
def hr_png(tmp_path_factory):
    """A 64x64 crop of scikit-image's astronaut: a reference with structure to score against."""
    from skimage import data

    path = tmp_path_factory.mktemp("hr") / "astronaut.png"
    Image.fromarray(data.astronaut()[100:164, 180:244]).save(path)
    return path
