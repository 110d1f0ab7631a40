"""Back-projection onto the LR (Irani & Peleg 1991): make an SR output reproduce its input.

Each iteration adds the upsampled LR error ``imresize(LR - imresize(SR, 1/s), s)``. It restores
what the LR says about an image exactly (low frequencies, colour) and leaves the detail a model
added, so a model whose decoder or sampler drifts cannot shift colours or lose fidelity the LR
guarantees. Uses the benchmark's own ``imresize``, since that is the degradation being inverted.
"""

from __future__ import annotations

import numpy as np

from sr_models.degradation import imresize


def back_project(sr: np.ndarray, lr: np.ndarray, scale: int, iterations: int = 3) -> np.ndarray:
    """uint8 SR (H x W x 3) made consistent with the uint8 LR (H/scale x W/scale x 3)."""
    if sr.shape[0] != lr.shape[0] * scale or sr.shape[1] != lr.shape[1] * scale:
        raise ValueError(f"SR {sr.shape[:2]} is not {scale}x the LR {lr.shape[:2]}")
    x = sr.astype(np.float64)
    target = lr.astype(np.float64)
    for _ in range(iterations):
        error = target - imresize(x, 1.0 / scale, output_shape=lr.shape[:2])
        x = x + imresize(error, scale, output_shape=sr.shape[:2])
    return np.clip(np.round(x), 0, 255).astype(np.uint8)
