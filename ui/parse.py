"""A request's raw values (as a browser or a script sent them) into one checked ``Job``.

Only what the page means is checked here: a value's type (a number typed as text, NaN, 2.5 steps),
"0 / empty = the model's default", the server's own limits (steps, back-projection, models per run).
Every sampling value then goes through ``SamplingSettings``, whose ``check_settings`` owns the ranges
(seed, eta) and their messages, and ``resolve`` owns the defaults (an empty seed stays None here).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from comparisons.posterior import check_posterior_request
from comparisons.serving import MODE_HR, MODE_LR
from sr_models.cascade import MAX_STAGES as MAX_CASCADE_STAGES
from sr_models.cascade import SEPARATOR, is_cascade_spec
from sr_models.degradation import MAX_SCALE, protocol_scale, scale_fraction
from sr_models.sampling import SAMPLERS
from sr_models.types import SamplingSettings, SRInputError

MODES = {
    "High-resolution image: degrade it, then compare against it": MODE_HR,
    "My low-resolution image: just upscale it": MODE_LR,
}
DEFAULT_SCALE = 4  # the page's scale when it opens
SCALES = [2, 3, 4, 8, 16]  # the scales suggested in the page; any real one from 1 to MAX_SCALE runs
MAX_WIDTH = 100_000  # output widths above this are refused unread (the pixel limit refuses far less)
MAX_STEPS = 200
MAX_PROJECTION = 10
MAX_VIEWS = 12  # image panels of the grid, laid out in advance (Gradio needs a fixed number)
MAX_MODELS = MAX_VIEWS - 2  # per run: the grid also shows the reference and the input
MAX_STAGES = 3  # stages of the cascade builder
MAX_NAME = 200  # longer model names are refused without being echoed back
FIDELITY, DETAIL, CUSTOM = "fidelity", "detail", "custom"
PRESETS = (FIDELITY, DETAIL, CUSTOM)


@dataclass
class Job:
    """A checked request: only names and plain values, so it can cross into a ZeroGPU worker."""

    source: object  # a file path (or an image) as uploaded
    mode: str
    scale: int | float
    names: list[str]
    settings: SamplingSettings
    record: bool = True
    source_name: str = ""
    k: int = 0  # samples of a posterior exploration (0: not one)
    width: int | None = None  # an output width asked instead of the scale (the Lab sets the scale from it)
    preset: str = CUSTOM  # "fidelity" / "detail": each model's own (steps, eta); "custom": the boxes


def shorten(value, limit: int = 60) -> str:
    """``repr(value)``, cut to ``limit`` characters: what a message may echo of a user's value."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 1]}… ({len(text)} characters)"


def is_empty(value) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def number(value, what: str):
    """A number as sent (int, float, or text such as "12" or "1e9"), else a plain message. Not bool."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise SRInputError(f"{what} must be a whole number, got {shorten(value)}")
    if not isinstance(value, str):
        return value
    text = value.strip()
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    raise SRInputError(f"{what} must be a number, got {shorten(value)}")


def whole(value, what: str) -> int:
    """A whole number, with no range: 4.0 and "4" are 4; 2.5, "nan" and inf are refused."""
    result = number(value, what)
    if isinstance(result, float):
        if not math.isfinite(result) or not result.is_integer():
            raise SRInputError(f"{what} must be a whole number, got {shorten(value)}")
        result = int(result)
    return result


def whole_in(value, what: str, low: int, high: int | None = None) -> int:
    """A whole number in [low, high]: the page's own limits (the sampling ranges are check_settings')."""
    result = whole(value, what)
    if result < low:
        raise SRInputError(f"{what} must be at least {low}, got {result}")
    if high is not None and result > high:
        raise SRInputError(f"{what} must be at most {high}, got {result}")
    return result


def real(value, what: str) -> float:
    """A number (eta) as a float; its range is checked by ``check_settings``."""
    try:
        return float(number(value, what))
    except (SRInputError, ValueError):
        raise SRInputError(f"{what} must be a number from 0 to 1, got {shorten(value)}") from None


def text(value, what: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise SRInputError(f"{what} must be text, got {shorten(value)}")
    if len(value) > MAX_NAME:
        raise SRInputError(f"{what} is {len(value)} characters long (at most {MAX_NAME}): {shorten(value)}")
    return value.strip()


def flag(value, what: str) -> bool:
    if isinstance(value, bool) or value in (0, 1):
        return bool(value)
    raise SRInputError(f"{what} must be true or false, got {shorten(value)}")


def parse_mode(value) -> str:
    if value in MODES:
        return MODES[value]
    if value in MODES.values():
        return value
    raise SRInputError(f"unknown mode {shorten(value)}; choose one of: {', '.join(map(repr, MODES))}")


def parse_scale(value) -> int | float:
    """A real magnification from 1 to 16 (2.5, "3", 4.0 -> 4); every model reaches it by its route
    (``sr_models.resized.at_scale``). "3x", NaN, 0, 17 get one plain message."""
    if is_empty(value):
        raise SRInputError("choose a scale")
    try:
        result = number(value, "scale")
    except SRInputError:
        raise SRInputError(
            f"scale must be a number from 1 to {MAX_SCALE} (e.g. 2.5 or 3), got {shorten(value)}"
        ) from None
    if not math.isfinite(result):
        raise SRInputError(f"scale must be a number from 1 to {MAX_SCALE}, got {shorten(value)}")
    if not 1 <= result <= MAX_SCALE:
        raise SRInputError(f"scale must be from 1 to {MAX_SCALE}, got {result:g}")
    return protocol_scale(result)


def check_scale_for_mode(scale, mode: str) -> None:
    """A reference is cropped so that its size / scale is whole: the scale must be a ratio p/q (2.5 = 5/2)."""
    if mode == MODE_HR:
        try:
            scale_fraction(scale)
        except ValueError as err:
            raise SRInputError(str(err)) from None


def parse_width(value) -> int | None:
    """The output width asked instead of a scale (empty or 0: none; the scale box counts)."""
    if is_empty(value):
        return None
    return whole_in(value, "output width", 0, MAX_WIDTH) or None


def scale_for_width(width: int, mode: str, size: tuple[int, int] | None) -> int | float:
    """The scale that makes a ``size`` (w, h) input ``width`` pixels wide (low-resolution mode only)."""
    if mode == MODE_HR:
        raise SRInputError(
            "an output width is for a low-resolution image; a reference's outputs have the reference's size: "
            "give a scale instead (and leave the width empty)"
        )
    if size is None:
        raise SRInputError("the file is not an image the server can read")
    scale = width / size[0]
    if not 1 <= scale <= MAX_SCALE:
        raise SRInputError(
            f"an output {width} px wide is {scale:.3g}x of this {size[0]} px wide image: the scale must be from 1 "
            f"to {MAX_SCALE} ({size[0]} to {size[0] * MAX_SCALE} px)"
        )
    return protocol_scale(scale)


def parse_preset(value) -> str:
    """fidelity / detail / custom (empty: custom, the steps and eta as typed)."""
    if is_empty(value):
        return CUSTOM
    if value not in PRESETS:
        raise SRInputError(f"unknown preset {shorten(value)}; choose one of: {', '.join(PRESETS)}")
    return value


def parse_samples(value) -> int:
    """K, the number of posterior samples: a whole number in the explorer's range."""
    k = whole(value, "the number of samples K")
    check_posterior_request(k, 0, 0)  # the range, with the explorer's own message
    return k


def parse_names(value) -> list[str]:
    """The ticked models, in order, without repeats; at least one is checked later (with the cascade)."""
    if value is None:
        return []
    if not isinstance(value, (list, tuple)):
        raise SRInputError(f"models must be a list of model names, got {shorten(value)}")
    names = [text(v, "a model name") for v in value]
    if any(not n for n in names):
        raise SRInputError("a model name is empty")
    return list(dict.fromkeys(names))


def parse_steps(value, what: str = "steps") -> int | None:
    """0 or empty: the model's default (None)."""
    return None if is_empty(value) else (whole_in(value, what, 0, MAX_STEPS) or None)


def parse_settings(steps, sampler, eta, seed, projection, stages=None) -> SamplingSettings:
    """Every sampling value as sent; empty means the model's default (None)."""
    sampler = text(sampler, "sampler")
    if sampler and sampler not in SAMPLERS:
        raise SRInputError(
            f"unknown sampler {shorten(sampler)}; choose from {', '.join(SAMPLERS)} (or empty for the default)"
        )
    projection = -1 if is_empty(projection) else whole_in(projection, "back-projection iterations", -1, MAX_PROJECTION)
    return SamplingSettings(
        steps=parse_steps(steps),
        sampler=sampler or None,
        eta=None if is_empty(eta) else real(eta, "eta"),
        seed=None if is_empty(seed) else whole(seed, "seed"),
        stages=stages,
        lr_projection=None if projection < 0 else projection,
    )


def cascade_from_builder(stages, stage_steps) -> tuple[str | None, tuple[SamplingSettings, ...] | None]:
    """(spec, per-stage settings) from the builder's dropdowns and step boxes; (None, None) if unused."""
    picked = [(text(name, "a cascade stage"), steps) for name, steps in zip(stages, stage_steps)]
    picked = [(name, steps) for name, steps in picked if name]
    if not picked:
        return None, None
    if len(picked) == 1:
        raise SRInputError("a cascade needs at least two stages: pick a second one, or clear the first")
    settings = tuple(SamplingSettings(steps=parse_steps(steps, "stage steps")) for _, steps in picked)
    return SEPARATOR.join(name for name, _ in picked), settings


def parse_stage_steps(value, spec: str) -> tuple[SamplingSettings, ...] | None:
    """ "10,5": steps per cascade stage (0 = that stage's default); empty: the defaults."""
    given = text(value, "stage steps")
    if not given:
        return None
    if not is_cascade_spec(spec):
        raise SRInputError("stage steps are for a cascade (a>b); for one model use steps")
    parts = given.split(",")
    if len(parts) > MAX_CASCADE_STAGES:
        raise SRInputError(f"at most {MAX_CASCADE_STAGES} stage steps, got {len(parts)}")
    return tuple(SamplingSettings(steps=parse_steps(p, "stage steps")) for p in parts)


def compare_job(
    image, mode, scale, names, steps, sampler, eta, seed, record, projection, builder, preset=CUSTOM, width=None
) -> Job:
    """The /compare request as a Job: the ticked models plus the builder's cascade (if any)."""
    spec, stage_settings = cascade_from_builder(builder[:MAX_STAGES], builder[MAX_STAGES:])
    names = parse_names(names) + ([spec] if spec else [])
    settings = parse_settings(steps, sampler, eta, seed, projection, stage_settings)
    mode, scale, record = parse_mode(mode), parse_scale(scale), flag(record, "record")
    preset, width = parse_preset(preset), parse_width(width)
    if width is None:
        check_scale_for_mode(scale, mode)
    if image is None:
        raise SRInputError("Upload an image or pick an example first.")
    names = list(dict.fromkeys(names))
    source_name = Path(str(image)).name
    return Job(image, mode, scale, names, settings, record, source_name, preset=preset, width=width)


def posterior_job(image, mode, model, scale, k, steps, sampler, eta, seed, projection, preset=CUSTOM) -> Job:
    """The /posterior request as a Job: one model or cascade, K samples with seeds seed..seed+K-1."""
    spec = text(model, "model")
    if not spec:
        raise SRInputError("choose a model (a diffusion model, or a cascade a>b with a diffusion stage)")
    k, preset = parse_samples(k), parse_preset(preset)
    settings = parse_settings(steps, sampler, eta, seed, projection)
    mode, scale = parse_mode(mode), parse_scale(scale)
    check_scale_for_mode(scale, mode)
    if image is None:
        raise SRInputError("Upload an image or pick an example first.")
    return Job(image, mode, scale, [spec], settings, False, Path(str(image)).name, k=k, preset=preset)


def upscale_job(image, model, scale, steps, sampler, seed, stage_steps) -> Job:
    """The /upscale request as a Job: one model or cascade, the image is the LR input."""
    spec = text(model, "model")
    if not spec:
        raise SRInputError("choose a model (a name, or a cascade a>b)")
    stages = parse_stage_steps(stage_steps, spec)
    settings, scale = parse_settings(steps, sampler, None, seed, None, stages), parse_scale(scale)
    if image is None:
        raise SRInputError("send an image")
    return Job(source=image, mode=MODE_LR, scale=scale, names=[spec], settings=settings)
