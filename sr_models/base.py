"""The one interface every model family implements: ``SRModel.upscale(lr, ...) -> UpscaleResult``.

A family only writes ``_upscale``; validation, timing, peak-memory measurement and the result
record live here, so the app, the benchmark and the tests measure every family the same way.
Diffusion families report their denoising trajectory through ``on_step`` (k-diffusion style: one
call per step with x_t and the predicted clean image) and keep the frames in the result.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from sr_models.consistency import back_project


class SRInputError(ValueError):
    """Bad input for a model (unsupported scale, wrong array, ...): the message is for the user."""


class ModelUnavailableError(RuntimeError):
    """The model cannot run here (weights missing, needs internet); the message says why."""


@dataclass
class StepInfo:
    """What a sampler reports after each step: enough to animate a trajectory."""

    step: int  # 0-based index of the step just done
    total: int  # number of steps in this run
    timestep: float  # the scheduler's t (or sigma) of this step
    x_t: Any = None  # current noisy state (tensor, model space: latent or pixel)
    x0: Any = None  # predicted clean image, uint8 HxWx3 when decoded, else None
    stage: str = ""  # which model in a cascade produced it


@dataclass
class UpscaleResult:
    image: np.ndarray  # uint8 HxWx3 RGB
    scale: int
    model: str
    nfe: int  # network evaluations (UNet / CNN forward passes on the whole image or its tiles)
    seconds: float
    peak_memory_mb: float  # peak resident memory above the level at the call's start (CPU) or CUDA peak
    settings: dict = field(default_factory=dict)
    frames: list[np.ndarray] = field(default_factory=list)  # trajectory (uint8 HxWx3), if any
    frame_labels: list[str] = field(default_factory=list)


@dataclass
class Availability:
    ok: bool
    reason: str = ""


OnStep = Callable[[StepInfo], None]


def as_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """Check that an array is the HxWx3 uint8 RGB image every model takes."""
    if not isinstance(image, np.ndarray):
        raise SRInputError(f"expected a numpy image, got {type(image).__name__}")
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise SRInputError(
            f"expected an HxWx3 uint8 RGB array, got dtype {image.dtype} and shape {image.shape}; "
            "use sr_models.image_io.load_image to convert files"
        )
    if min(image.shape[:2]) < 1:
        raise SRInputError("the image is empty")
    return image


class PeakMemory:
    """Peak memory of a block: CUDA's allocator peak, else resident-set peak sampled every 5 ms."""

    def __init__(self, interval: float = 0.005):
        self.interval = interval
        self.peak_mb = 0.0

    @staticmethod
    def _rss_bytes() -> int:
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError):  # not Linux: no sampling, report 0
            return 0

    def _sample(self):
        while not self._stop.is_set():
            self._max = max(self._max, self._rss_bytes())
            self._stop.wait(self.interval)

    def __enter__(self):
        self._start = self._rss_bytes()
        self._max = self._start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._max = max(self._max, self._rss_bytes())
        self.peak_mb = (self._max - self._start) / 2**20
        return False


class SRModel:
    """Base class of every family. Subclasses set the attributes and implement ``_upscale``."""

    name: str = ""
    family: str = ""
    scales: tuple[int, ...] = ()
    description: str = ""
    default_steps: int | None = None  # None: not iterative
    default_sampler: str | None = None
    samplers: tuple[str, ...] = ()
    lr_projection_default: int = 0  # back-projection iterations applied to outputs unless asked otherwise

    def availability(self) -> Availability:
        return Availability(True)

    @property
    def is_diffusion(self) -> bool:
        return self.default_steps is not None

    def upscale(
        self,
        lr_image: np.ndarray,
        scale: int | None = None,
        steps: int | None = None,
        sampler: str | None = None,
        seed: int = 0,
        eta: float = 0.0,
        on_step: OnStep | None = None,
        keep_frames: int = 0,
        tile_size: int | None = None,
        lr_projection: int | None = None,
    ) -> UpscaleResult:
        """Upscale an HxWx3 uint8 RGB image.

        ``scale`` defaults to the model's only scale; ``steps``/``sampler``/``eta`` apply to
        iterative models (ignored by the others); ``seed`` makes sampling reproducible;
        ``keep_frames`` > 0 keeps up to that many trajectory frames in the result; ``lr_projection``
        back-projects the output onto the LR that many times (None: the model's default; 0: off).
        """
        lr_image = as_rgb_uint8(lr_image)
        available = self.availability()
        if not available.ok:
            raise ModelUnavailableError(f"{self.name} is not available: {available.reason}")
        if scale is None:
            if len(self.scales) != 1:
                raise SRInputError(f"{self.name} supports scales {list(self.scales)}: choose one")
            scale = self.scales[0]
        if scale not in self.scales:
            raise SRInputError(f"{self.name} supports scale {'/'.join(map(str, self.scales))}x, not {scale}x")
        if self.is_diffusion:
            steps = self.default_steps if steps is None else int(steps)
            sampler = sampler or self.default_sampler
            if steps < 1:
                raise SRInputError(f"steps must be at least 1, got {steps}")
            if self.samplers and sampler not in self.samplers:
                raise SRInputError(f"unknown sampler {sampler!r}; choose from {', '.join(self.samplers)}")
        else:
            steps, sampler = None, None
        if lr_projection is None:
            lr_projection = self.lr_projection_default
        if lr_projection < 0:
            raise SRInputError(f"lr_projection must be 0 or more, got {lr_projection}")
        settings = {"scale": scale, "steps": steps, "sampler": sampler, "seed": int(seed), "eta": eta}
        if lr_projection:
            settings["lr_projection"] = int(lr_projection)
        with PeakMemory() as mem:
            t0 = time.perf_counter()
            image, nfe, frames, labels = self._upscale(
                lr_image,
                scale=scale,
                steps=steps,
                sampler=sampler,
                seed=int(seed),
                eta=eta,
                on_step=on_step,
                keep_frames=keep_frames,
                tile_size=tile_size,
            )
            if lr_projection:
                image = back_project(image, lr_image, scale, int(lr_projection))
            seconds = time.perf_counter() - t0
        expected = (lr_image.shape[0] * scale, lr_image.shape[1] * scale, 3)
        if image.shape != expected or image.dtype != np.uint8:  # a family bug, not user input
            raise RuntimeError(f"{self.name} returned {image.shape} {image.dtype}, expected {expected} uint8")
        return UpscaleResult(
            image=image,
            scale=scale,
            model=self.name,
            nfe=nfe,
            seconds=seconds,
            peak_memory_mb=mem.peak_mb,
            settings=settings,
            frames=frames,
            frame_labels=labels,
        )

    def _upscale(self, lr, *, scale, steps, sampler, seed, eta, on_step, keep_frames, tile_size):
        """Return (sr uint8 HxWx3, nfe, frames, frame_labels)."""
        raise NotImplementedError
