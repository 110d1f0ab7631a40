"""Cascades: models chained into one model, spelled ``a>b[>c]`` wherever a model name goes.

``ldm-x4>ldm-x4`` is a 16x model: stage 2 upscales stage 1's output. A model with several
scales names the one it runs at: ``bicubic@4>ldm-x4``. Each stage has its own settings
(``SamplingSettings.stages``); seeds are derived per stage from the run's seed unless a stage
sets its own, and each stage's optional back-projection targets the *original* LR at the total
magnification so far, so no stage can drift from what the input says (SR3 / Imagen cascades
condition each stage on the previous output; the measurements are the study's business).
"""

from __future__ import annotations

import math
import time

import numpy as np

from sr_models.base import Availability, PeakMemory, SRModel, as_rgb_uint8
from sr_models.types import DEFAULT_SEED, SamplingSettings, SRInputError, UpscaleResult, derive_seed

SEPARATOR = ">"
MAX_STAGES = 4


def is_cascade_spec(name: str) -> bool:
    return SEPARATOR in name


def parse_stage(token: str, models: dict[str, SRModel]) -> tuple[SRModel, int]:
    """``name`` or ``name@scale`` -> (model, the scale it runs at)."""
    name, at, scale_text = token.strip().partition("@")
    name = name.strip()
    if not name:
        raise SRInputError("a cascade has an empty stage: write stages as a>b, e.g. ldm-x4>ldm-x4")
    if name not in models:
        raise KeyError(f"unknown model {name!r} in the cascade; known: {', '.join(models)}")
    model = models[name]
    if isinstance(model, CascadeSR):
        raise SRInputError(f"{name} is already a cascade: write its stages out in one spec")
    if at:
        if not scale_text.strip().isdigit():
            raise SRInputError(f"{token.strip()!r}: the scale after @ must be a whole number, e.g. bicubic@4")
        scale = int(scale_text)
        if scale not in model.scales:
            raise SRInputError(
                f"{name} runs at {'/'.join(map(str, model.scales))}x, not {scale}x (in {token.strip()!r})"
            )
        return model, scale
    if len(model.scales) != 1:
        raise SRInputError(
            f"{name} runs at several scales ({'/'.join(map(str, model.scales))}x): "
            f"say which in the cascade, e.g. {name}@{model.scales[0]}"
        )
    return model, model.scales[0]


def parse_cascade(spec: str, models: dict[str, SRModel]) -> CascadeSR:
    tokens = spec.split(SEPARATOR)
    if len(tokens) > MAX_STAGES:
        raise SRInputError(f"a cascade has at most {MAX_STAGES} stages, {spec!r} has {len(tokens)}")
    return CascadeSR([parse_stage(t, models) for t in tokens])


class CascadeSR(SRModel):
    family = "cascade"

    def __init__(self, stages: list[tuple[SRModel, int]]):
        if len(stages) < 2:
            raise SRInputError("a cascade needs at least two stages (a>b)")
        self.stages = stages
        self.name = SEPARATOR.join(m.name if len(m.scales) == 1 else f"{m.name}@{s}" for m, s in stages)
        self.scales = (math.prod(s for _, s in stages),)
        self.description = "cascade: " + " then ".join(f"{m.name} ({s}x)" for m, s in stages)
        self.default_steps = sum(m.default_steps or 0 for m, _ in stages) or None
        self.samplers = tuple(dict.fromkeys(x for m, _ in stages for x in m.samplers))

    def _place(self):
        for model, _ in self.stages:
            model.to(self.device, self.dtype_request)  # each stage resolves "auto" for itself

    def availability(self) -> Availability:
        for model, _ in self.stages:
            available = model.availability()
            if not available.ok:
                return Availability(False, f"stage {model.name}: {available.reason}")
        return Availability(True)

    def resolve(self, settings: SamplingSettings | None) -> SamplingSettings:
        """Every stage's resolved settings, in ``stages``; stage seeds derived from the run's."""
        settings = settings or SamplingSettings()
        given = settings.stages or ()
        if len(given) > len(self.stages):
            raise SRInputError(f"{len(given)} stage settings given for a cascade of {len(self.stages)} stages")
        run_seed = DEFAULT_SEED if settings.seed is None else settings.seed
        resolved = []
        for i, (model, _) in enumerate(self.stages):
            own_seed = given[i].seed if i < len(given) else None
            stage = settings.for_stage(i)
            seed = own_seed if own_seed is not None else derive_seed(run_seed, i)
            resolved.append(model.resolve(SamplingSettings(**{**stage.as_dict(), "seed": seed})))
        return SamplingSettings(seed=run_seed, stages=tuple(resolved))

    def upscale(self, lr_image, scale=None, settings=None, on_step=None, keep_frames=0) -> UpscaleResult:
        lr_image = as_rgb_uint8(lr_image)
        self.check_available()
        scale = self.check_scale(scale)
        resolved = self.resolve(settings)
        stages, current = [], lr_image
        t_load = time.perf_counter()
        for model, _ in self.stages:
            model.load_weights()  # before the clock and the memory peak start
        load_seconds = time.perf_counter() - t_load
        with PeakMemory(self.stages[0][0].device) as mem:
            t0 = time.perf_counter()
            for i, ((model, stage_scale), stage_settings) in enumerate(zip(self.stages, resolved.stages)):
                result = model.run_stage(
                    current, stage_scale, stage_settings, on_step, keep_frames, original_lr=lr_image, stage_index=i
                )
                stages.append(result)
                current = result.image
            seconds = time.perf_counter() - t0
        for stage in stages:  # kept frames to previews, outside the clock and the memory peak
            stage.decode_frames()
        return UpscaleResult(np.asarray(current), scale, self.name, stages, seconds, mem.peak_mb, load_seconds)

    def _upscale(self, lr, *, scale, settings, on_step, keep_frames):  # a cascade runs through upscale()
        raise SRInputError(f"{self.name} is a cascade: it cannot be a stage of another cascade")
