"""Serving helpers: what a shared server needs around a comparison, so a script gets what the app gets.

The output-size limit (checked from the file header, before anything is decoded or run), a run-time
estimate, and a bound on how many models keep their weights loaded.
"""

from __future__ import annotations

import gc
import math
import os
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np
from PIL import Image

from sr_models.base import SRInputError, UpscaleResult
from sr_models.cascade import CascadeSR
from sr_models.degradation import hr_multiple, scaled_size
from sr_models.resized import ResizedSR
from sr_models.types import SamplingSettings

MODE_HR = "hr"  # the image is a reference: degrade it, upscale the LR, compare to it
MODE_LR = "lr"  # the image is the low-resolution input: upscale it, nothing to compare to

EXIF_ORIENTATION = 0x0112
ROTATED = (5, 6, 7, 8)  # EXIF orientations that swap width and height
MAX_OUTPUT_PIXELS_ENV = "SR_MAX_OUTPUT_PIXELS"
# 4 MP (2000x2000) per output: a 500x500 input at 4x, 125x125 at 16x. On a 2-core CPU Space that
# is already minutes for a pixel-space diffusion model (see ``TimeEstimator``); a 256x256 input at
# 16x (16.8 MP) or a 1 MP input at 16x (268 MP, 800 MB per float32 RGB copy) is refused outright.
DEFAULT_MAX_OUTPUT_PIXELS = 4_000_000
MAX_LOADED_ENV = "SR_MAX_LOADED_MODELS"
DEFAULT_MAX_LOADED = 4  # models holding weights at once; the least recently used are unloaded


def _env_int(name: str, default: int) -> int:
    try:
        value = int(os.environ.get(name, default))
    except ValueError:
        return default
    return value if value > 0 else default


def max_output_pixels() -> int:
    return _env_int(MAX_OUTPUT_PIXELS_ENV, DEFAULT_MAX_OUTPUT_PIXELS)


def output_size(width: int, height: int, mode: str, scale) -> tuple[int, int]:
    """(width, height) of every output for an image of this size in this mode (a real scale: round(s * side))."""
    if mode == MODE_HR:  # the reference is cropped so that its size / scale is whole; outputs match it
        multiple = hr_multiple(scale)  # p of scale = p/q: the scale itself when whole
        return width // multiple * multiple, height // multiple * multiple
    out_h, out_w = scaled_size(height, width, scale)
    return out_w, out_h


def lr_size(width: int, height: int, mode: str, scale) -> tuple[int, int]:
    """(width, height) of the low-resolution input the models get: the file's, or the reference's / scale."""
    if mode != MODE_HR:
        return width, height
    out_w, out_h = output_size(width, height, mode, scale)
    return round(out_w / scale), round(out_h / scale)


def check_output_size(width: int, height: int, mode: str, scale, limit: int | None = None) -> tuple[int, int]:
    """The output size, or a plain refusal when it is over the limit (nothing allocated yet)."""
    limit = max_output_pixels() if limit is None else limit
    out_w, out_h = output_size(width, height, mode, scale)
    if out_w * out_h > limit:
        largest = int(math.sqrt(limit / scale**2)) if mode == MODE_LR else int(math.sqrt(limit))
        raise SRInputError(
            f"{scale:g}x of a {width}x{height} image is {out_w}x{out_h} = {out_w * out_h / 1e6:.1f} MP per output, "
            f"above this server's limit of {limit / 1e6:.1f} MP (about {largest}x{largest} input at {scale:g}x; "
            f"set {MAX_OUTPUT_PIXELS_ENV} to change it): crop the image or choose a smaller scale"
        )
    return out_w, out_h


def image_size(source) -> tuple[int, int] | None:
    """(width, height) from the file header without decoding; None when Pillow cannot tell (the
    loader then explains why)."""
    try:
        if isinstance(source, Image.Image):
            return source.size
        if isinstance(source, np.ndarray):
            return source.shape[1], source.shape[0]
        with Image.open(Path(source)) as img:
            width, height = img.size
            if img.getexif().get(EXIF_ORIENTATION) in ROTATED:  # the loader turns it upright
                return height, width
            return width, height
    except Exception:  # any unreadable input: load_image gives the message
        return None


def frame_count(source) -> int:
    """How many frames the file holds (an animated GIF: several; the loader keeps the first)."""
    try:
        with Image.open(Path(source)) as img:
            return int(getattr(img, "n_frames", 1))
    except Exception:  # not a file Pillow can open: one image, or the loader's message
        return 1


def stage_models(model) -> list:
    """The models that hold weights in a run of ``model``: a cascade's stages, a routed model's (``ldm-x4
    then resize to 3x``) inner model or stages, else itself."""
    if isinstance(model, ResizedSR):
        return stage_models(model.inner)
    return [m for m, _ in model.stages] if isinstance(model, CascadeSR) else [model]


class LoadedModels:
    """At most ``limit`` models keep their weights loaded; the least recently used are unloaded
    (weights dropped, garbage collected) before another one loads. Models without ``unload()``
    (bicubic, models built in memory) are not counted."""

    def __init__(self, limit: int | None = None):
        self.limit = _env_int(MAX_LOADED_ENV, DEFAULT_MAX_LOADED) if limit is None else max(1, int(limit))
        self._recent: OrderedDict[int, object] = OrderedDict()  # id -> model, least recent first
        self._lock = threading.Lock()

    @staticmethod
    def _unloadable(model) -> bool:
        return callable(getattr(model, "unload", None))

    @staticmethod
    def _is_loaded(model) -> bool:
        return bool(getattr(model, "loaded", getattr(model, "_model", None) is not None))

    def loaded(self) -> list[str]:
        """Names of the loaded models, least recently used first."""
        return [m.name for m in self._recent.values() if self._is_loaded(m)]

    def before_run(self, model) -> list[str]:
        """Mark ``model`` (a cascade: its stages) as in use and unload others to make room; returns
        the names unloaded."""
        parts = [m for m in stage_models(model) if self._unloadable(m)]
        unloaded = []
        with self._lock:
            for m in parts:
                self._recent.pop(id(m), None)
                self._recent[id(m)] = m
            keep = {id(m) for m in parts}
            others = [m for m in self._recent.values() if id(m) not in keep and self._is_loaded(m)]
            while others and len(others) + len(parts) > self.limit:
                victim = others.pop(0)
                victim.unload()
                unloaded.append(victim.name)
        if unloaded:
            gc.collect()
        return unloaded


# Seconds of one model run = fixed + per_mp * output MP + per_step_mp * output MP * steps, by family.
# Measured once on a 2-core CPU (this repo's CI machine, under load) with 32 and 64 px inputs, back-
# projection included; ``TimeEstimator`` then rescales each model by what its last run really took.
FAMILY_COST = {
    "bicubic": (0.1, 0.5, 0.0),
    "regression": (1.0, 5.0, 0.0),
    "ldm": (1.0, 30.0, 6.0),  # VAE encode/decode and back-projection dominate at 1-2 steps
    "sr3": (1.0, 10.0, 75.0),  # a UNet at full output resolution every step
}
DEFAULT_COST = (1.0, 30.0, 30.0)


class TimeEstimator:
    """Run-time estimates before running: a per-family cost model, calibrated per model by its last run."""

    def __init__(self):
        self.calibration: dict[str, float] = {}  # model name -> observed / modelled seconds (last run)

    @staticmethod
    def _modelled(model, out_pixels: float, steps: int | None) -> float:
        fixed, per_mp, per_step_mp = FAMILY_COST.get(model.family, DEFAULT_COST)
        mp = out_pixels / 1e6
        return fixed + per_mp * mp + per_step_mp * mp * (steps or 0)

    def _stages(self, model, lr_w: int, lr_h: int, settings: SamplingSettings | None):
        """(stage model, output pixels, steps) per stage with the settings it would resolve to."""
        resolved = model.resolve(settings)
        pairs = model.stages if isinstance(model, CascadeSR) else [(model, model.scales[0])]
        stage_settings = resolved.stages if isinstance(model, CascadeSR) else [resolved]
        out, w, h = [], lr_w, lr_h
        for (stage, stage_scale), st in zip(pairs, stage_settings):
            w, h = w * stage_scale, h * stage_scale
            out.append((stage, w * h, st.steps))
        return out

    def predict(self, model, lr_w: int, lr_h: int, scale, settings: SamplingSettings | None = None) -> float:
        if isinstance(model, ResizedSR):  # the route's inner model at its own scale (the resize is cheap)
            return self.predict(model.inner, lr_w, lr_h, model.inner_scale, settings)
        if not isinstance(model, CascadeSR):  # the asked scale (multi-scale and continuous models)
            out_h, out_w = scaled_size(lr_h, lr_w, scale or model.scales[0])
            stages = [(model, out_w * out_h, model.resolve(settings).steps)]
        else:
            stages = self._stages(model, lr_w, lr_h, settings)
        return sum(self._modelled(m, px, steps) * self.calibration.get(m.name, 1.0) for m, px, steps in stages)

    def observe(self, model, result: UpscaleResult) -> None:
        """Calibrate each stage's model from this run (load time excluded)."""
        parts = stage_models(model)
        for part, stage in zip(parts, result.stages):
            out_pixels = stage.image.shape[0] * stage.image.shape[1]
            modelled = self._modelled(part, out_pixels, stage.settings.steps)
            if stage.seconds > 0 and modelled > 0:
                self.calibration[part.name] = stage.seconds / modelled


def format_seconds(seconds: float) -> str:
    if seconds < 1:
        return "under a second"
    if seconds < 90:
        return f"about {seconds:.0f} s"
    return f"about {seconds / 60:.1f} min"
