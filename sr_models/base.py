"""The one interface every model family implements:
``SRModel.upscale(lr, scale, settings, on_step) -> UpscaleResult``.

A family only writes ``_upscale``; settings resolution, validation, timing, peak-memory
measurement, back-projection onto the original LR and the result record live here, so the app,
the benchmark, cascades and the tests measure every family the same way. Diffusion families
report their denoising steps through ``on_step`` (k-diffusion style: one call per step with x_t)
and keep the chosen steps' x_t and x̂0 in the result, decoded to previews once the clock has stopped.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace

import numpy as np
import torch

from sr_models.consistency import back_project
from sr_models.degradation import MAX_SCALE, protocol_scale, scaled_size
from sr_models.device import PeakMemory, dtype_name, pick_device, pick_dtype, place
from sr_models.types import (  # noqa: F401  (re-exported: the interface's vocabulary)
    DEFAULT_SEED,
    HalfPrecisionOverflow,
    ModelUnavailableError,
    NetworkCalls,
    OnStep,
    SamplingSettings,
    SRInputError,
    StageResult,
    StepInfo,
    Trajectory,
    UpscaleResult,
)


@dataclass
class Availability:
    ok: bool
    reason: str = ""


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


class SRModel:
    """Base class of every family. Subclasses set the attributes and implement ``_upscale``."""

    name: str = ""
    family: str = ""
    scales: tuple[int, ...] = ()
    description: str = ""
    default_steps: int | None = None  # None: not iterative
    default_sampler: str | None = None
    default_spacing: str = "leading"  # diffusers' default timestep spacing
    samplers: tuple[str, ...] = ()
    lr_projection_default: int = 0  # back-projection iterations applied to outputs unless asked otherwise
    continuous: bool = False  # True: any real scale from 1 to max_scale (``scales``: its nominal whole ones)
    max_scale: float = MAX_SCALE
    device: torch.device = torch.device("cpu")
    dtype: torch.dtype = torch.float32
    card: dict | None = None  # sr_model.json as read (None: a model built in memory)
    dtype_request: str | torch.dtype | None = None  # what ``to`` was asked for: wrappers pass it on to each part

    def to(self, device: str | torch.device | None = None, dtype: str | torch.dtype | None = None) -> SRModel:
        """Run on ``device`` in ``dtype`` from now on (None: $SR_DEVICE / $SR_DTYPE, else the best device
        present, in the precision ``auto`` picks for this model there), like a diffusers pipeline's ``.to``;
        returns the model. Registry models reload their weights on a dtype change; a model built in memory
        is cast in place (down and back up loses the bits in between)."""
        self.device, self.dtype_request = pick_device(device), dtype
        self.dtype = pick_dtype(dtype, self.device, self.card)  # "auto" resolves per model, from its card
        self._place()
        return self

    def _place(self):
        """Move the weights to ``self.device`` / ``self.dtype`` (families with weights override)."""

    def availability(self) -> Availability:
        return Availability(True)

    @property
    def is_diffusion(self) -> bool:
        return self.default_steps is not None

    def check_scale(self, scale: int | float | None) -> int | float:
        if self.continuous and scale is not None:  # whole values come back as int: the fixed-scale paths
            try:
                return protocol_scale(scale, self.max_scale)
            except ValueError as err:
                raise SRInputError(f"{self.name}: {err}") from None
        if scale is None:
            if len(self.scales) != 1:
                raise SRInputError(f"{self.name} supports scales {list(self.scales)}: choose one")
            return self.scales[0]
        if isinstance(scale, bool) or not isinstance(scale, (int, np.integer)):
            raise SRInputError(f"the scale must be a whole number, got {scale!r}")
        if scale not in self.scales:
            raise SRInputError(f"{self.name} supports scale {'/'.join(map(str, self.scales))}x, not {scale}x")
        return int(scale)

    def check_available(self):
        available = self.availability()
        if not available.ok:
            raise ModelUnavailableError(f"{self.name} is not available: {available.reason}")

    def resolve(self, settings: SamplingSettings | None) -> SamplingSettings:
        """The settings this model will actually use: every ``None`` replaced by its default."""
        settings = settings or SamplingSettings()  # per-stage ``stages`` are a cascade's: a single model
        # runs with the run-wide values, so one settings value serves a mixed list (bicubic, a>b, ...)
        if self.is_diffusion:
            sampler = settings.sampler or self.default_sampler
            if self.samplers and sampler not in self.samplers:
                raise SRInputError(f"unknown sampler {sampler!r}; choose from {', '.join(self.samplers)}")
            diffusion = dict(
                steps=settings.steps or self.default_steps,
                sampler=sampler,
                eta=settings.eta or 0.0,
                strength=1.0 if settings.strength is None else settings.strength,
                spacing=settings.spacing or self.default_spacing,
            )
        else:
            diffusion = dict(steps=None, sampler=None, eta=None, strength=None, spacing=None)
        projection = self.lr_projection_default if settings.lr_projection is None else settings.lr_projection
        return SamplingSettings(
            **diffusion,
            seed=DEFAULT_SEED if settings.seed is None else settings.seed,
            tile=settings.tile,
            lr_projection=projection,
        )

    def upscale(
        self,
        lr_image: np.ndarray,
        scale: int | None = None,
        settings: SamplingSettings | None = None,
        on_step: OnStep | None = None,
        keep_frames: int = 0,
    ) -> UpscaleResult:
        """Upscale an HxWx3 uint8 RGB image: a run of one stage.

        ``scale`` defaults to the model's only scale; ``settings`` (None fields: model defaults)
        say how to sample and how many back-projection iterations onto the LR follow;
        ``keep_frames`` > 0 keeps up to that many trajectory frames in the result.
        """
        lr_image = as_rgb_uint8(lr_image)
        self.check_available()
        scale = self.check_scale(scale)
        resolved = self.resolve(settings)
        t_load = time.perf_counter()
        self.load_weights()  # before the clock and the memory peak start
        load_seconds = time.perf_counter() - t_load
        with PeakMemory(self.device) as mem:
            t0 = time.perf_counter()
            stage = self.run_stage(lr_image, scale, resolved, on_step, keep_frames)
            seconds = time.perf_counter() - t0
        stage.decode_frames()  # kept frames to previews, outside the clock and the memory peak
        return UpscaleResult(stage.image, scale, self.name, [stage], seconds, mem.peak_mb, load_seconds)

    def run_stage(
        self,
        lr: np.ndarray,
        scale: int,
        settings: SamplingSettings,
        on_step: OnStep | None = None,
        keep_frames: int = 0,
        original_lr: np.ndarray | None = None,
        stage_index: int = 0,
    ) -> StageResult:
        """One stage with resolved ``settings``; back-projection targets ``original_lr`` (default: ``lr``),
        the input of the whole run, at the total magnification from it to this stage's output. Kept
        trajectory frames may come back pending: the caller decodes them once its clock has stopped
        (``StageResult.decode_frames``), so recording costs the timed run nothing."""
        original_lr = lr if original_lr is None else original_lr
        t_load = time.perf_counter()
        self.load_weights()  # outside the timed run: loading is reported apart
        load_seconds = time.perf_counter() - t_load
        report = None
        if on_step is not None:
            report = lambda info: on_step(replace(info, stage=self.name, stage_index=stage_index))  # noqa: E731
        with PeakMemory(self.device) as mem:
            t0 = time.perf_counter()
            image, calls, trajectory = self._upscale_in_range(lr, scale, settings, report, keep_frames)
            trajectory, calls = trajectory or Trajectory(), NetworkCalls.of(calls)
            expected = (*scaled_size(lr.shape[0], lr.shape[1], scale), 3)  # (h * s, w * s) for whole s
            if image.shape != expected or image.dtype != np.uint8:  # a family bug, not user input
                raise RuntimeError(f"{self.name} returned {image.shape} {image.dtype}, expected {expected} uint8")
            t1 = time.perf_counter()
            if settings.lr_projection:
                total = scale if original_lr is lr else image.shape[0] // original_lr.shape[0]
                image = back_project(image, original_lr, total, settings.lr_projection, self.device)
                if len(trajectory):  # end the animation on the image actually returned
                    trajectory.add(image, image, f"back-projected onto the LR ({settings.lr_projection} iterations)")
            t2 = time.perf_counter()
        return StageResult(
            model=self.name,
            scale=scale,
            settings=settings,
            image=image,
            input_shape=lr.shape[:2],
            nfe=calls.nfe,
            tiles=calls.tiles,
            seconds=t2 - t0,
            peak_memory_mb=mem.peak_mb,
            projection_seconds=t2 - t1,
            load_seconds=load_seconds,
            trajectory=trajectory,
            device=str(self.device),
            dtype=dtype_name(self.dtype),
        )

    def _upscale_in_range(self, lr, scale, settings, on_step, keep_frames):
        """``_upscale``, rerun in float32 when a float16 network call overflows (said in the log; the stage
        record then says float32, the precision its image was really made in)."""
        try:
            return self._upscale(lr, scale=scale, settings=settings, on_step=on_step, keep_frames=keep_frames)
        except HalfPrecisionOverflow as err:
            logging.getLogger(__name__).warning("%s; running it again in float32", err)
            self.to(self.device, torch.float32)
            return self._upscale(lr, scale=scale, settings=settings, on_step=on_step, keep_frames=keep_frames)

    def load_weights(self):
        """Load what the model needs before it runs (no-op for models built in memory)."""

    def _upscale(self, lr, *, scale, settings, on_step, keep_frames):
        """Return (sr uint8 HxWx3, NFE as an int or NetworkCalls (NFE and tiles), Trajectory or None);
        ``settings`` are resolved."""
        raise NotImplementedError


class NetworkSR(SRModel):
    """A family whose weights are one diffusers network, ``self.network`` (a ``network_class`` saved with
    ``save_pretrained`` in safetensors): its folder loader and its placement on the device come from here."""

    network_class: type  # the network's diffusers ModelMixin class

    @classmethod
    def from_folder(cls, folder, name: str, card: dict | None = None) -> NetworkSR:
        return cls(name, cls.network_class.from_pretrained(str(folder), use_safetensors=True), card)

    def _place(self):
        place(self.network, self.device, self.dtype)
