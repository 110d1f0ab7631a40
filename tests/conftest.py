"""Shared fixtures: small images made from scikit-image's samples, tiny seeded models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from sr_models.cards import write_meta
from sr_models.degradation import center_crop
from sr_models.diffusion import SAMPLERS, TRAIN_SCHEDULER
from sr_models.diffusion_sr import (
    build_unet,
    condition_channels,
    save_ldm_folder,
    save_sr3_folder,
)
from sr_models.first_stage import build_autoencoder
from sr_models.regression import EDSRLite


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
    write_meta(folder, {"name": name or f"tiny-regression-x{scale}", "family": "regression", "scales": [scale]})
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
