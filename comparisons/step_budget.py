"""Runs that take minutes, said before they start: a diffusion model whose estimated run
(``comparisons.serving.TimeEstimator``) is over a budget, and the most sampling steps that fit it.

The SD x4 upscaler on a CPU is the case in point: at its default steps a 128 px input takes
minutes, a few steps fit in one.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from sr_models.cascade import CascadeSR
from sr_models.types import SamplingSettings

ONE_MINUTE = 60.0  # what a visitor waits without wondering whether the page is stuck


@dataclass(frozen=True)
class SlowRun:
    name: str
    steps: int  # the steps it would run
    seconds: float  # their estimate
    steps_that_fit: int | None  # the most steps whose estimate fits the budget; None: not even one


def slow_run(estimator, model, lr_w: int, lr_h: int, scale, settings: SamplingSettings | None, budget=ONE_MINUTE):
    """A ``SlowRun`` when ``model`` (one diffusion model; a cascade's stages have their own steps) is estimated
    over ``budget`` seconds with ``settings``, else None."""
    if isinstance(getattr(model, "inner", model), CascadeSR) or not model.is_diffusion:  # a routed model: its inner
        return None
    settings = settings or SamplingSettings()
    seconds = estimator.predict(model, lr_w, lr_h, scale, settings)
    if seconds <= budget:
        return None
    steps = model.resolve(settings).steps
    # estimates grow with the steps: the first count from the top that fits is the most that fits
    fitting = (
        n
        for n in range(steps - 1, 0, -1)
        if estimator.predict(model, lr_w, lr_h, scale, replace(settings, steps=n)) <= budget
    )
    return SlowRun(model.name, steps, seconds, next(fitting, None))
