"""One comparison run, as the app shows it: load a user image, optionally degrade it, upscale it
with several models, score each output. The app only lays this out; tests call it directly.

Serving helpers live here too, so a script gets what the app gets: the output-size limit (checked
from the file header, before anything is decoded or run), a run-time estimate, a bound on how many
models keep their weights loaded, and stopping a run between two denoising steps.
"""

from __future__ import annotations

import gc
import math
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from sr_models.base import SRInputError, StepInfo, UpscaleResult
from sr_models.cascade import CascadeSR
from sr_models.degradation import degrade
from sr_models.image_io import load_image
from sr_models.metrics import detail_ratio, lr_consistency, score
from sr_models.types import SamplingSettings

MODE_HR = "hr"  # the image is a reference: degrade it, upscale the LR, compare to it
MODE_LR = "lr"  # the image is the low-resolution input: upscale it, nothing to compare to

MAX_OUTPUT_PIXELS_ENV = "SR_MAX_OUTPUT_PIXELS"
# 4 MP (2000x2000) per output: a 500x500 input at 4x, 125x125 at 16x. On a 2-core CPU Space that
# is already minutes for a pixel-space diffusion model (see ``TimeEstimator``); a 256x256 input at
# 16x (16.8 MP) or a 1 MP input at 16x (268 MP, 800 MB per float32 RGB copy) is refused outright.
DEFAULT_MAX_OUTPUT_PIXELS = 4_000_000
MAX_LOADED_ENV = "SR_MAX_LOADED_MODELS"
DEFAULT_MAX_LOADED = 4  # models holding weights at once; the least recently used are unloaded


class RunStopped(Exception):
    """The run was stopped from outside (a Stop button, a cancelled request) between two steps.

    Deliberately not an ``SRInputError`` / ``RuntimeError``: it ends the whole comparison instead of
    being reported as one model's failure."""


def _env_int(name: str, default: int) -> int:
    try:
        value = int(os.environ.get(name, default))
    except ValueError:
        return default
    return value if value > 0 else default


def max_output_pixels() -> int:
    return _env_int(MAX_OUTPUT_PIXELS_ENV, DEFAULT_MAX_OUTPUT_PIXELS)


def output_size(width: int, height: int, mode: str, scale: int) -> tuple[int, int]:
    """(width, height) of every output for an image of this size in this mode."""
    if mode == MODE_HR:  # the reference is cropped to a multiple of the scale; outputs match it
        return width // scale * scale, height // scale * scale
    return width * scale, height * scale


def check_output_size(width: int, height: int, mode: str, scale: int, limit: int | None = None) -> tuple[int, int]:
    """The output size, or a plain refusal when it is over the limit (nothing allocated yet)."""
    limit = max_output_pixels() if limit is None else limit
    out_w, out_h = output_size(width, height, mode, scale)
    if out_w * out_h > limit:
        largest = int(math.sqrt(limit / scale**2)) if mode == MODE_LR else int(math.sqrt(limit))
        raise SRInputError(
            f"{scale}x of a {width}x{height} image is {out_w}x{out_h} = {out_w * out_h / 1e6:.1f} MP per output, "
            f"above this server's limit of {limit / 1e6:.1f} MP (about {largest}x{largest} input at {scale}x; "
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
            return img.size
    except Exception:  # any unreadable input: load_image gives the message
        return None


@dataclass
class Comparison:
    lr: np.ndarray
    hr: np.ndarray | None
    scale: int
    results: list[UpscaleResult] = field(default_factory=list)
    scores: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)  # model name -> message

    def table(self) -> list[dict]:
        """One row per model that ran (fidelity if a reference exists, the settings it ran with, its
        cost), then a row per stage under each cascade: the same ``facts()`` the benchmark's CSVs use."""
        rows = []
        for result, s in zip(self.results, self.scores):
            facts = result.facts()
            row = {"model": result.model}
            if s["psnr_y"] is not None:
                row.update(
                    {
                        "PSNR-Y (dB)": round(s["psnr_y"], 2),
                        "SSIM-Y": round(s["ssim_y"], 4),
                        "detail (HF ratio)": round(s["hf_ratio"], 3),
                    }
                )
            row["LR-PSNR (dB)"] = round(s["lr_psnr"], 2)
            row.update(_settings_columns(result.stages))
            row.update(
                {
                    "NFE": facts["nfe"],
                    "seconds": round(facts["seconds"], 3),
                    "peak MB": round(facts["peak_memory_mb"], 1),
                }
            )
            rows.append(row)
            if len(result.stages) > 1:
                for i, stage in enumerate(result.stages):
                    st = stage.facts()
                    rows.append(
                        {
                            "model": f"  stage {i + 1}: {stage.model} ({st['input']} → {st['output']})",
                            **_settings_columns([stage]),
                            "NFE": st["nfe"],
                            "seconds": round(st["seconds"], 3),
                            "peak MB": round(st["peak_memory_mb"], 1),
                        }
                    )
        return rows


def _settings_columns(stages) -> dict:
    """steps / sampler / eta / seed / back-projection of a row; a cascade's totals join its stages'."""

    def joined(values):
        values = ["" if v is None else (f"{v:g}" if isinstance(v, float) else str(v)) for v in values]
        return "+".join(values) if any(values) else ""

    settings = [st.settings for st in stages]
    return {
        "steps": joined(s.steps for s in settings),
        "sampler": "+".join(dict.fromkeys(s.sampler for s in settings if s.sampler)),
        "eta": joined(s.eta for s in settings),
        "seed": settings[0].seed if settings else "",
        "back-proj.": joined(s.lr_projection or 0 for s in settings),
    }


def prepare_input(source, mode: str, scale: int, max_pixels: int | None = None, max_output: int | None = None):
    """(lr, hr or None, notes) from a user image in the chosen mode; a too-large output is refused from
    the file header, before the image is decoded."""
    if mode not in (MODE_HR, MODE_LR):
        raise SRInputError(f"unknown mode {mode!r}")
    size = image_size(source)
    if size is not None:
        check_output_size(*size, mode, scale, max_output)
    image, notes = load_image(source, max_pixels=max_pixels)
    h, w = image.shape[:2]
    check_output_size(w, h, mode, scale, max_output)  # the decoded size (sources without a header)
    if mode == MODE_LR:
        return image, None, notes
    if min(h, w) < 4 * scale:
        raise SRInputError(
            f"a {w}x{h} reference is too small to degrade by {scale}x (need at least {4 * scale} px a side)"
        )
    hr, lr = degrade(image, scale)
    if hr.shape != image.shape:
        notes.append(f"reference cropped from {w}x{h} to {hr.shape[1]}x{hr.shape[0]} (a multiple of {scale})")
    return lr, hr, notes


def stage_models(model) -> list:
    """The models that hold weights in a run of ``model``: a cascade's stages, else itself."""
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

    def predict(self, model, lr_w: int, lr_h: int, scale: int, settings: SamplingSettings | None = None) -> float:
        if not isinstance(model, CascadeSR) and len(model.scales) > 1:  # multi-scale: the asked one
            stages = [(model, lr_w * lr_h * scale**2, model.resolve(settings).steps)]
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


def run_comparison(
    source,
    mode: str,
    scale: int,
    models,
    *,
    settings: SamplingSettings | None = None,
    keep_frames: int = 0,
    max_pixels: int | None = None,
    max_output: int | None = None,
    on_model: Callable[[int, int, str], None] | None = None,
    on_step: Callable[[StepInfo], None] | None = None,
    stop: threading.Event | None = None,
    loaded: LoadedModels | None = None,
    on_result: Callable[[object, UpscaleResult], None] | None = None,
) -> Comparison:
    """Upscale with every model; a model that fails is reported in ``errors``, the others still run.

    ``stop``: when set, the run ends with ``RunStopped`` before the next model or denoising step.
    ``loaded``: keeps the number of loaded models bounded. ``on_result(model, result)`` after each model.
    """
    if not models:
        raise SRInputError("choose at least one model")
    settings = settings or SamplingSettings()
    lr, hr, notes = prepare_input(source, mode, scale, max_pixels, max_output)
    comparison = Comparison(lr=lr, hr=hr, scale=scale, notes=notes)

    def check_stop():
        if stop is not None and stop.is_set():
            raise RunStopped("stopped before the run finished")

    def step(info: StepInfo):
        check_stop()  # between two steps: the sampler never starts the next one
        if on_step is not None:
            on_step(info)

    for i, model in enumerate(models):
        check_stop()
        if on_model:
            on_model(i, len(models), model.name)
        if loaded is not None:
            loaded.before_run(model)
        try:
            result = model.upscale(lr, scale=scale, settings=settings, on_step=step, keep_frames=keep_frames)
        except (SRInputError, RuntimeError) as err:  # unsupported scale, unavailable weights, ...
            comparison.errors[model.name] = str(err)
            continue
        comparison.results.append(result)
        if on_result is not None:
            on_result(model, result)
        if hr is not None:
            comparison.scores.append(
                {**score(result.image, hr, lr, scale), "hf_ratio": detail_ratio(result.image, hr, scale)}
            )
        else:
            comparison.scores.append(_lr_only(result, lr, scale))
    return comparison


def _lr_only(result: UpscaleResult, lr: np.ndarray, scale: int) -> dict:
    return {"psnr_y": None, "ssim_y": None, "lr_psnr": lr_consistency(result.image, lr, scale)}


def nearest_upscale(lr: np.ndarray, scale: int) -> np.ndarray:
    """The LR shown at the output size without smoothing: what the model had to work from."""
    return np.repeat(np.repeat(lr, scale, axis=0), scale, axis=1)


INPUT_VIEW = "input (LR, nearest)"
REFERENCE_VIEW = "reference (HR)"


def views(comparison: Comparison) -> list[tuple[str, np.ndarray]]:
    """Every image of a comparison at the output size, named: the reference (if any), the input
    (nearest, so its pixels show), then each output. What the grid, the slider and the zoom show."""
    out = []
    if comparison.hr is not None:
        out.append((REFERENCE_VIEW, comparison.hr))
    out.append((INPUT_VIEW, nearest_upscale(comparison.lr, comparison.scale)))
    out += [(r.model, r.image) for r in comparison.results]
    return out


def zoom_box(comparison: Comparison, x: float, y: float, size: int = 64) -> tuple[int, int, int]:
    """(left, top, side) of the square region centred on output pixel (``x``, ``y``), ``size`` output
    pixels a side, kept inside the image and aligned to the LR pixel grid."""
    scale = comparison.scale
    out_h, out_w = comparison.lr.shape[0] * scale, comparison.lr.shape[1] * scale
    size = max(scale, min(int(size), out_h, out_w)) // scale * scale
    top = int(np.clip(round(y - size / 2), 0, out_h - size)) // scale * scale
    left = int(np.clip(round(x - size / 2), 0, out_w - size)) // scale * scale
    return left, top, size


def zoom_crops(comparison: Comparison, x: float, y: float, size: int = 64, magnify: int = 4):
    """The same region of the reference, the input and every output, enlarged without smoothing.

    ``x``/``y`` are the region's centre in output pixels (where a click on any output landed);
    ``size`` is its side in output pixels. Returns a list of (uint8 image, caption) pairs.
    """
    left, top, size = zoom_box(comparison, x, y, size)
    return [
        (nearest_upscale(image[top : top + size, left : left + size], magnify), caption)
        for caption, image in views(comparison)
    ]
