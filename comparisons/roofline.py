"""How far a model runs from this machine's limit: the measured matmul peak per dtype, the FLOPs of a
run (``torch.utils.flop_counter``), and the GFLOP/s a timed run achieved (``comparisons.speed``)."""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from sr_models.device import native_bf16
from sr_models.types import SamplingSettings


def matmul_peak(dtype: torch.dtype, side: int = 2048, repeats: int = 10) -> float:
    """GFLOP/s of a square matmul in ``dtype`` on the CPU threads torch uses (the best of ``repeats``).

    Emulated bfloat16 (no AVX512-BF16 / AMX) is hundreds of times slower: a 512 side measures it in a
    second where 2048 would take a minute."""
    if dtype == torch.bfloat16 and not native_bf16():
        side = min(side, 512)
    a, b = torch.randn(side, side).to(dtype), torch.randn(side, side).to(dtype)
    a @ b  # first-call costs (allocator, kernel choice) are not the peak
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * side**3 / best / 1e9


def flops_of(run) -> float:
    """FLOPs of one call of ``run()`` (convolutions, matmuls, attention: what ``FlopCounterMode`` counts)."""
    counter = FlopCounterMode(display=False)
    with counter:
        run()
    return float(counter.get_total_flops())


def run_flops(model, lr: np.ndarray, settings: SamplingSettings) -> float:
    """FLOPs of one ``model.upscale`` of ``lr`` with ``settings``."""
    return flops_of(lambda: model.upscale(lr, settings=settings))


def step_flops(model, lr: np.ndarray, settings: SamplingSettings) -> tuple[float, float]:
    """(FLOPs of one denoising step, FLOPs outside the steps: encode, decode) from runs at 1 and 2 steps:
    the step count is the only thing that differs, so the difference is one step's network calls."""
    one = run_flops(model, lr, replace(settings, steps=1))
    two = run_flops(model, lr, replace(settings, steps=2))
    return two - one, 2 * one - two


def roofline_columns(total_flops: float, per_step: float, seconds: float, peak_gflops: float) -> dict:
    """The speed CSV's roofline columns of one timed row."""
    achieved = total_flops / seconds / 1e9 if seconds > 0 else 0.0
    return {
        "gflop_per_step": significant(per_step / 1e9),
        "gflop": significant(total_flops / 1e9),
        "gflops_achieved": significant(achieved),
        "peak_gflops": significant(peak_gflops),
        "of_peak": significant(achieved / peak_gflops) if peak_gflops else "",
    }


def significant(value: float, digits: int = 4) -> float:
    """Rounded to ``digits`` significant digits: tiny test models and large UNets alike keep their precision."""
    return float(f"{value:.{digits}g}")
