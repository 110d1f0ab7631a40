"""Tiny seeded models the test modules share (imported, never collected: no ``test`` prefix)."""

from __future__ import annotations

import numpy as np
import torch

from sr_models.liif import LIIFNet, save_liif_folder
from tests.conftest import save_tiny_regression


def tiny_liif(seed=0, trained=True) -> LIIFNet:
    torch.manual_seed(seed)
    net = LIIFNet(channels=4, num_blocks=1, hidden=8, mlp_layers=2)
    if trained:  # not the bicubic identity: outputs differ from bicubic
        torch.nn.init.normal_(net.mlp[-1].weight, std=0.05)
    return net.eval()


def save_tiny_liif(folder, seed=0):
    save_liif_folder(folder, tiny_liif(seed), {"name": "tiny-liif"})
    return folder


def save_routing_models(root):
    """Fixed-scale models to route to any scale (``tiny-x2``, ``tiny-x4``) and a continuous one
    (``tiny-liif``), each in its own folder under ``root``; returns ``root``."""
    save_tiny_regression(root / "x2", scale=2, name="tiny-x2")
    save_tiny_regression(root / "x4", scale=4, name="tiny-x4")
    save_tiny_liif(root / "liif")
    return root


# The any-scale models' shared input and scales (issue 15: outputs of round(s*w) x round(s*h) at each).
ANY_SCALE_LR = np.random.default_rng(0).integers(0, 256, (17, 20, 3), dtype=np.uint8)
ANY_SCALES = (1.5, 2.5, 3, 7)
