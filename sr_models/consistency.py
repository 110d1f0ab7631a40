"""Back-projection onto the LR (Irani & Peleg 1991): make an SR output reproduce its input.

Each iteration adds the upsampled LR error ``imresize(LR - imresize(SR, 1/s), s)``. It restores
what the LR says about an image exactly (low frequencies, colour) and leaves the detail a model
added, so a model whose decoder or sampler drifts cannot shift colours or lose fidelity the LR
guarantees. Uses the benchmark's own ``imresize``, since that is the degradation being inverted,
in float32: the result is rounded to uint8 at the end, and float64 would double the memory of a
4096 x 4096 output for no visible gain.
"""

from __future__ import annotations

import numpy as np

from sr_models.degradation import imresize, scaled_size


def back_project(sr: np.ndarray, lr: np.ndarray, scale: int, iterations: int = 3, device=None) -> np.ndarray:
    """uint8 SR (H x W x 3) made consistent with the uint8 LR (H/scale x W/scale x 3); the resizes run
    on ``device`` (default CPU)."""
    if sr.shape[:2] != scaled_size(lr.shape[0], lr.shape[1], scale):  # round(s * size): s may be real-valued
        raise ValueError(f"SR {sr.shape[:2]} is not {scale}x the LR {lr.shape[:2]}")
    x = sr.astype(np.float32)
    target = lr.astype(np.float32)
    for _ in range(iterations):
        error = target - imresize(x, 1.0 / scale, output_shape=lr.shape[:2], device=device)
        x += imresize(error, scale, output_shape=sr.shape[:2], device=device)
    return np.clip(np.round(x, out=x), 0, 255, out=x).astype(np.uint8)
