"""One comparison run, as the app shows it: load a user image, optionally degrade it, upscale it
with several models, score each output. The app only lays this out; tests call it directly.

Serving around it (limits, estimates, loaded models) is in ``comparisons.serving``; what the page
shows of it (views, zoom) is in ``comparisons.views``.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from comparisons.evaluate import evaluate
from comparisons.serving import MODE_HR, MODE_LR, LoadedModels, check_output_size, frame_count, image_size
from comparisons.serving import stage_models as stage_models  # re-exported: run_record imports it from here
from sr_models.base import SRInputError, StepInfo, UpscaleResult
from sr_models.degradation import degrade, hr_multiple
from sr_models.image_io import load_image
from sr_models.resized import route_kind
from sr_models.types import SamplingSettings


class RunStopped(Exception):
    """The run was stopped from outside (a Stop button, a cancelled request) between two steps.

    Deliberately not an ``SRInputError`` / ``RuntimeError``: it ends the whole comparison instead of
    being reported as one model's failure."""


@dataclass
class Comparison:
    lr: np.ndarray
    hr: np.ndarray | None
    scale: int | float
    results: list[UpscaleResult] = field(default_factory=list)
    scores: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)  # model name -> message
    routes: dict[str, str] = field(default_factory=dict)  # model name -> how it reached the scale (route_kind)
    seconds: float = 0.0  # wall clock of the whole comparison: every model, loading and scoring included
    estimated_seconds: float | None = None  # what the caller estimated before the run (the app's estimate)

    def table(self) -> list[dict]:
        """One row per model that ran (fidelity if a reference exists, the settings it ran with, its
        cost), then a row per stage under each cascade: the same ``facts()`` the benchmark's CSVs use."""
        rows = []
        for result, s in zip(self.results, self.scores):
            facts = result.facts()
            row = {"model": result.model}
            if any(kind != "direct" for kind in self.routes.values()):  # a run at a scale not every model has
                row["route"] = self.routes.get(result.model, "")
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
            row.update(_cost_columns(facts))
            rows.append(row)
            if len(result.stages) > 1:
                for i, stage in enumerate(result.stages):
                    st = stage.facts()
                    rows.append(
                        {
                            "model": f"  stage {i + 1}: {stage.model} ({st['input']} → {st['output']})",
                            **_settings_columns([stage]),
                            **_cost_columns(st),
                        }
                    )
        return rows


# What a run cost, as short headers; optional facts (a tile count, the time spent decoding kept
# trajectory frames) get a column only when ``facts()`` reports them.
COST_COLUMNS = (("nfe", "NFE", 0), ("tiles", "tiles", 0), ("seconds", "seconds", 3))
COST_COLUMNS += (("trajectory_seconds", "traj. s", 3), ("peak_memory_mb", "peak MB", 1))


def _cost_columns(facts: dict) -> dict:
    out = {}
    for key, header, digits in COST_COLUMNS:
        if key in facts and facts[key] is not None:
            out[header] = round(facts[key], digits) if digits else facts[key]
    return out


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
        "seed": "" if not settings or settings[0].seed is None else str(settings[0].seed),  # text: exact in a browser
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
    frames = frame_count(source) if isinstance(source, (str, Path)) else 1
    if frames > 1 and not any("frame" in n for n in notes):
        notes.append(f"animated image: only the first of its {frames} frames is used")
    h, w = image.shape[:2]
    check_output_size(w, h, mode, scale, max_output)  # the decoded size (sources without a header)
    if mode == MODE_LR:
        return image, None, notes
    if min(h, w) < 4 * scale:
        raise SRInputError(
            f"a {w}x{h} reference is too small to degrade by {scale:g}x (need at least {math.ceil(4 * scale)} px a side)"
        )
    hr, lr = degrade(image, scale)
    if hr.shape != image.shape:
        multiple = hr_multiple(scale)
        notes.append(f"reference cropped from {w}x{h} to {hr.shape[1]}x{hr.shape[0]} (a multiple of {multiple})")
    return lr, hr, notes


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
    settings_for: Callable[[object], SamplingSettings] | None = None,
) -> Comparison:
    """Upscale with every model; a model that fails is reported in ``errors``, the others still run.

    ``settings_for(model)``: the settings of each model (a per-model preset), instead of ``settings``.
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

    started = time.perf_counter()
    for i, model in enumerate(models):
        comparison.seconds = time.perf_counter() - started
        check_stop()
        if on_model:
            on_model(i, len(models), model.name)
        if loaded is not None:
            loaded.before_run(model)
        try:
            own = settings_for(model) if settings_for is not None else settings
            evaluation = evaluate(model, lr, scale, own, hr, on_step=step, keep_frames=keep_frames)
        except (SRInputError, RuntimeError) as err:  # unsupported scale, unavailable weights, ...
            comparison.errors[model.name] = str(err)
            continue
        comparison.results.append(evaluation.result)
        comparison.routes[evaluation.result.model] = route_kind(model)
        comparison.scores.append(evaluation.scores)
        if on_result is not None:
            on_result(model, evaluation.result)
    comparison.seconds = time.perf_counter() - started
    return comparison
