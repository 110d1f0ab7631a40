"""Shared fixtures: small images made from scikit-image's samples, tiny seeded models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from comparisons.degradation import center_crop
from sr_models.cards import write_meta
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


@pytest.fixture(scope="session")
def tiny_models_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    save_tiny_regression(root / "tiny-x2", scale=2)
    save_tiny_regression(root / "tiny-x4", scale=4)
    return root
