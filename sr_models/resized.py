"""Any output size for every model: a fixed-scale model routed to a real-valued scale s.

``at_scale(model, s)`` returns an ``SRModel`` that upscales by s, output round(s * h) x round(s * w):

* a continuous model (``liif-x``, ``idm-x``) is returned as it is: it runs at s itself;
* bicubic becomes ``AnyScaleBicubic``: the benchmark's ``imresize`` at s directly (no detour);
* a fixed-scale model whose scale is s is returned as it is;
* otherwise the route is the smallest of the model's own scales at or above s, or, when none
  reaches s, a cascade of the model with itself (its largest scale repeated, the last stage the
  smallest own scale that reaches s: ``ldm-x4`` at 12 runs ``ldm-x4>ldm-x4``), then an exact
  MATLAB-bicubic resize down to s: ``imresize(out, s / S, output_shape=round(s * LR size))``, the
  protocol's kernel (``sr_models.degradation``), S being the route's total scale. A cascade given
  by the caller (``ldm-x4>ldm-x2``) is routed by its own total the same way.

The routed model is named by its route, e.g. ``ldm-x4 then resize to 3x``; its result keeps the
inner model's stages (NFE, steps, sampler, seeds), the last stage carrying the resized image and
the resize's seconds. Back-projection, when asked or the inner model's default, does not run at
the inner scale: the last stage runs raw and the resized output is back-projected onto the
ORIGINAL LR at the real scale s (earlier cascade stages keep theirs, on the original LR as always).

Spec syntax, wherever a model name goes (``sr_models.registry.get_models``): ``MODEL~SCALE``, e.g.
``ldm-x4~3``, ``ldm-x4~2.5``, ``ldm-x4>ldm-x2~6`` or ``bicubic@4~3``. ``~`` because ``@`` already
names the scale a multi-scale model runs at inside a cascade (``bicubic@4>ldm-x4``).
"""

from __future__ import annotations

import math
import time
from dataclasses import replace

from sr_models.base import Availability, SRModel, as_rgb_uint8
from sr_models.bicubic import BicubicSR
from sr_models.cascade import MAX_STAGES, CascadeSR, is_cascade_spec, parse_cascade, parse_stage
from sr_models.consistency import back_project
from sr_models.degradation import imresize, protocol_scale, scaled_size
from sr_models.types import SamplingSettings, SRInputError, UpscaleResult

ROUTE = "~"  # MODEL~SCALE: the model routed to that scale


def checked_scale(scale, who: str = "") -> int | float:
    """The protocol's check (a real number from 1 to 16) with a plain ``SRInputError``."""
    try:
        return protocol_scale(scale)
    except ValueError as err:
        raise SRInputError(f"{who}: {err}" if who else str(err)) from None


def route_label(inner_name: str, scale) -> str:
    return f"{inner_name} then resize to {float(scale):g}x"


class AnyScaleBicubic(BicubicSR):
    """Bicubic at any real scale: ``imresize(lr, s)`` to round(s * h) x round(s * w), the benchmark's
    baseline (identical to ``BicubicSR`` at whole scales)."""

    continuous = True

    def _upscale(self, lr, *, scale, settings, on_step, keep_frames):
        size = scaled_size(lr.shape[0], lr.shape[1], scale)
        return imresize(lr, scale, output_shape=size, device=self.device), 0, None


class ResizedSR(SRModel):
    """``inner`` (a fixed-scale model or a cascade) run at ``inner_scale`` >= ``scale``, then resized
    down to ``scale`` with the protocol's bicubic; back-projection at the real ``scale``."""

    def __init__(self, inner: SRModel, scale, inner_scale: int, source: SRModel | None = None):
        self.target = checked_scale(scale, inner.name)
        if inner_scale < self.target:
            raise SRInputError(f"{inner.name} at {inner_scale}x cannot be resized up to {self.target:g}x")
        self.inner, self.inner_scale, self.source = inner, int(inner_scale), source or inner
        inner_name = inner.name if len(inner.scales) == 1 else f"{inner.name}@{inner_scale}"
        self.name = route_label(inner_name, self.target)
        self.spec = f"{inner_name}{ROUTE}{self.target:g}"
        self.family = inner.family
        self.scales = (self.target,)
        self.description = (
            f"{inner_name} ({inner_scale}x), then MATLAB-bicubic resize to {self.target:g}x; " + inner.description
        )
        self.default_steps, self.default_sampler = inner.default_steps, inner.default_sampler
        self.default_spacing, self.samplers = inner.default_spacing, inner.samplers
        self.lr_projection_default = inner.lr_projection_default
        self.device, self.dtype, self.dtype_request = inner.device, inner.dtype, inner.dtype_request

    def _place(self):
        self.inner.to(self.device, self.dtype_request)

    def availability(self) -> Availability:
        return self.inner.availability()

    def load_weights(self):
        self.inner.load_weights()

    def check_scale(self, scale) -> int | float:
        if scale is None:
            return self.target
        value = checked_scale(scale, self.name)
        if value != self.target:
            raise SRInputError(
                f"{self.name} runs at {self.target:g}x only, not {value:g}x: route the model to that scale "
                f"(e.g. {self.source.name}{ROUTE}{value:g})"
            )
        return value

    def resolve(self, settings: SamplingSettings | None) -> SamplingSettings:
        return self.inner.resolve(settings)

    def _last_projection(self, resolved: SamplingSettings) -> tuple[SamplingSettings, int]:
        """The settings the inner model runs with (its last stage raw) and the projection moved after the resize."""
        if resolved.stages:
            last = resolved.stages[-1]
            stages = (*resolved.stages[:-1], replace(last, lr_projection=0))
            return replace(resolved, stages=stages), last.lr_projection or 0
        return replace(resolved, lr_projection=0), resolved.lr_projection or 0

    def upscale(self, lr_image, scale=None, settings=None, on_step=None, keep_frames=0) -> UpscaleResult:
        lr_image = as_rgb_uint8(lr_image)
        self.check_available()
        scale = self.check_scale(scale)
        inner_settings, iterations = self._last_projection(self.resolve(settings))
        result = self.inner.upscale(lr_image, self.inner_scale, inner_settings, on_step, keep_frames)
        t0 = time.perf_counter()
        size = scaled_size(lr_image.shape[0], lr_image.shape[1], scale)
        image = imresize(result.image, scale / self.inner_scale, output_shape=size, device=self.device)
        t1 = time.perf_counter()
        if iterations:
            image = back_project(image, lr_image, scale, iterations, self.device)
        t2 = time.perf_counter()
        last = result.stages[-1]
        last = replace(
            last,
            image=image,
            settings=replace(last.settings, lr_projection=iterations),
            seconds=last.seconds + t2 - t0,
            projection_seconds=last.projection_seconds + t2 - t1,
        )
        stages = [*result.stages[:-1], last]
        seconds = result.seconds + t2 - t0
        return UpscaleResult(image, scale, self.name, stages, seconds, result.peak_memory_mb, result.load_seconds)

    def _upscale(self, lr, *, scale, settings, on_step, keep_frames):  # runs through upscale()
        raise SRInputError(f"{self.name} is a routed model: it cannot be a stage of a cascade")


def self_cascade(model: SRModel, scale) -> list[tuple[SRModel, int]]:
    """The shortest chain of ``model`` with itself reaching ``scale``: its largest scale repeated, the
    last stage the smallest own scale that reaches (``ldm-x4`` at 12: 4, 4; ``ldm-x2`` at 6: 2, 2, 2)."""
    largest, stages, total = max(model.scales), [], 1
    while total * largest < scale:
        stages.append((model, largest))
        total *= largest
    stages.append((model, min(s for s in model.scales if total * s >= scale)))
    if len(stages) > MAX_STAGES:
        raise SRInputError(
            f"{model.name} reaches {float(scale):g}x only in {len(stages)} stages (a cascade has at most {MAX_STAGES})"
        )
    return stages


def at_scale(model: SRModel, scale) -> SRModel:
    """``model`` as an ``SRModel`` that upscales by the real ``scale`` (see the module's docstring)."""
    scale = checked_scale(scale, model.name)
    if isinstance(model, ResizedSR):
        return at_scale(model.source, scale)
    if model.continuous:
        if scale > model.max_scale:
            raise SRInputError(f"{model.name} runs up to {model.max_scale:g}x, not {scale:g}x")
        return model
    if scale in model.scales:
        return model
    if isinstance(model, BicubicSR):
        return AnyScaleBicubic().to(model.device, model.dtype)
    if isinstance(model, CascadeSR):
        total = model.scales[0]
        if total < scale:
            raise SRInputError(f"the cascade {model.name} reaches {total}x, not {scale:g}x: add a stage")
        return ResizedSR(model, scale, total)
    reach = [s for s in model.scales if s >= scale]
    if reach:
        return ResizedSR(model, scale, min(reach))
    stages = self_cascade(model, scale)
    cascade = CascadeSR(stages).to(model.device, model.dtype_request)
    total = math.prod(s for _, s in stages)
    return cascade if total == scale else ResizedSR(cascade, scale, total, source=model)


def is_routed_spec(name: str) -> bool:
    return ROUTE in name


def parse_scale_text(text: str, spec: str) -> int | float:
    """The number after ``~``: "3", "2.5" (not "3x", "", "nan"), checked by the protocol."""
    try:
        value = float(text)
    except ValueError:
        raise SRInputError(
            f"{spec!r}: the scale after {ROUTE} must be a number, e.g. ldm-x4{ROUTE}3 or ldm-x4{ROUTE}2.5, "
            f"got {text.strip()!r}"
        ) from None
    return checked_scale(value, spec)


def parse_routed(spec: str, models: dict[str, SRModel]) -> SRModel:
    """``MODEL~SCALE`` -> ``at_scale``: MODEL is a name, a cascade ``a>b`` or a stage ``name@scale``."""
    name, _, scale_text = spec.rpartition(ROUTE)
    name = name.strip()
    scale = parse_scale_text(scale_text, spec)
    if not name:
        raise SRInputError(f"{spec!r}: name the model before {ROUTE}, e.g. ldm-x4{ROUTE}3")
    if is_cascade_spec(name):
        return at_scale(parse_cascade(name, models), scale)
    if "@" in name:
        model, stage_scale = parse_stage(name, models)
        if stage_scale < scale:
            raise SRInputError(f"{spec!r}: {name} runs at {stage_scale}x, below {scale:g}x")
        return model if stage_scale == scale else ResizedSR(model, scale, stage_scale)
    if name not in models:
        raise KeyError(f"unknown model {name!r} in {spec!r}; known: {', '.join(models)}")
    return at_scale(models[name], scale)


def route_parts(model: SRModel) -> list[SRModel]:
    """The models a (routed, cascaded) model runs, each once: for provenance and loading."""
    if isinstance(model, ResizedSR):
        return route_parts(model.inner)
    if isinstance(model, CascadeSR):
        return list({id(m): m for m, _ in model.stages}.values())
    return [model]


def route_kind(model: SRModel) -> str:
    """How a model reaches its scale: continuous, direct, cascade, resize or cascade + resize."""
    if isinstance(model, ResizedSR):
        return "cascade + resize" if isinstance(model.inner, CascadeSR) else "resize"
    if isinstance(model, CascadeSR):
        return "cascade"
    return "continuous" if model.continuous else "direct"
