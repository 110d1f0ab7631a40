"""Bicubic baseline: the benchmark's own MATLAB-compatible ``imresize``, upsampling."""

from __future__ import annotations

from sr_models.base import SRModel
from sr_models.degradation import imresize


class BicubicSR(SRModel):
    name = "bicubic"
    family = "bicubic"
    scales = (2, 3, 4, 8, 16)
    description = "MATLAB-compatible bicubic imresize (Keys a=-0.5), the benchmark's baseline"

    def _upscale(self, lr, *, scale, settings, on_step, keep_frames):
        h, w = lr.shape[:2]
        return imresize(lr, scale, output_shape=(h * scale, w * scale), device=self.device), 0, None
