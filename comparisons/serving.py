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
from sr_models.tiling import tile_overhead
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


# Seconds of one model run = fixed + (per_mp + per_step_mp * steps) * work MP, by family, where the
# work MP are the output's megapixels times the tiling overhead (``work_megapixels``). Fitted to this
# repo's models on a 2-core AVX2 AMD EPYC (float32, channels_last, back-projection included, 1024²
# outputs); ``TimeEstimator`` then uses each model's own measured runs.
FAMILY_COST = {
    "bicubic": (0.0, 0.05, 0.0),
    "regression": (0.1, 0.8, 0.0),
    "ldm": (0.2, 3.0, 1.0),  # VAE encode/decode and back-projection dominate at 1-2 steps
    "sr3": (0.2, 1.0, 14.0),  # a UNet at full output resolution every step
    "sd-upscale": (1.0, 40.0, 60.0),  # not measured (no Hub here): from its FLOPs, ~10x ldm-x4 per call, x2 guidance
}
DEFAULT_COST = (1.0, 5.0, 5.0)
WORKING_FACTOR = {"ldm": 4, "stock-ldm": 4, "sd-upscale": 4, "sr3": 1}  # output px per working-space px


def work_megapixels(model, out_h: int, out_w: int) -> float:
    """Output megapixels times what overlapping tiles add in the model's working space (its card's
    ``tile``, default 64, and ``tile_overlap``): 1024² from sr3-x4's 256 px tiles is 1.56x its pixels."""
    factor = WORKING_FACTOR.get(model.family)
    card = model.card or {}
    overhead = 1.0
    if factor:
        h, w = math.ceil(out_h / factor), math.ceil(out_w / factor)
        overhead = tile_overhead(h, w, int(card.get("tile", 64)), int(card.get("tile_overlap", 16)))
    return out_h * out_w / 1e6 * overhead


class TimeEstimator:
    """Run-time estimates before running: a model's measured run at that size and step count when there
    is one, else the family's cost model rescaled by the model's last run."""

    def __init__(self):
        self.calibration: dict[str, float] = {}  # model name -> observed / modelled seconds (last run)
        self.measured: dict[tuple, float] = {}  # (model name, out h, out w, steps) -> seconds (last run)

    @staticmethod
    def _modelled(model, out_h: int, out_w: int, steps: int | None) -> float:
        fixed, per_mp, per_step_mp = FAMILY_COST.get(model.family, DEFAULT_COST)
        return fixed + (per_mp + per_step_mp * (steps or 0)) * work_megapixels(model, out_h, out_w)

    def _stage_cost(self, model, out_h: int, out_w: int, steps: int | None) -> float:
        known = self.measured.get((model.name, out_h, out_w, steps))
        if known is not None:
            return known
        return self._modelled(model, out_h, out_w, steps) * self.calibration.get(model.name, 1.0)

    def _stages(self, model, lr_w: int, lr_h: int, settings: SamplingSettings | None):
        """(stage model, output h, output w, steps) per stage with the settings it would resolve to."""
        resolved = model.resolve(settings)
        pairs = model.stages if isinstance(model, CascadeSR) else [(model, model.scales[0])]
        stage_settings = resolved.stages if isinstance(model, CascadeSR) else [resolved]
        out, w, h = [], lr_w, lr_h
        for (stage, stage_scale), st in zip(pairs, stage_settings):
            w, h = w * stage_scale, h * stage_scale
            out.append((stage, h, w, st.steps))
        return out

    def predict(self, model, lr_w: int, lr_h: int, scale, settings: SamplingSettings | None = None) -> float:
        if isinstance(model, ResizedSR):  # the route's inner model at its own scale (the resize is cheap)
            return self.predict(model.inner, lr_w, lr_h, model.inner_scale, settings)
        if not isinstance(model, CascadeSR):  # the asked scale (multi-scale and continuous models)
            out_h, out_w = scaled_size(lr_h, lr_w, scale or model.scales[0])
            stages = [(model, out_h, out_w, model.resolve(settings).steps)]
        else:
            stages = self._stages(model, lr_w, lr_h, settings)
        return sum(self._stage_cost(*stage) for stage in stages)

    def observe(self, model, result: UpscaleResult) -> None:
        """Keep each stage's measured time at its size, and calibrate its model (load time excluded)."""
        for part, stage in zip(stage_models(model), result.stages):
            out_h, out_w = stage.image.shape[:2]
            if stage.seconds <= 0:
                continue
            self.measured[(part.name, out_h, out_w, stage.settings.steps)] = stage.seconds
            modelled = self._modelled(part, out_h, out_w, stage.settings.steps)
            if modelled > 0:
                self.calibration[part.name] = stage.seconds / modelled


def format_seconds(seconds: float) -> str:
    if seconds < 1:
        return "under a second"
    if seconds < 90:
        return f"about {seconds:.0f} s"
    return f"about {seconds / 60:.1f} min"
