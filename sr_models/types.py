"""The values that travel from the sampler to the CSV, the app and the model card unchanged.

* ``SamplingSettings``: how to run a model (steps, sampler, eta, seed, tile, back-projection,
  SDEdit strength); ``None`` means "the model's default". A cascade carries one per stage in
  ``stages``; a stage's own values win over the run's.
* ``StepInfo``: what the denoising loop reports after each step (k-diffusion's callback idea).
* ``StageResult``: one model's part of a run, with its resolved settings and its own cost.
* ``UpscaleResult``: the image and its stages; totals are properties, so they always add up.

A single model is a cascade of one stage: every consumer reads ``stages`` the same way.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from sr_models.previews import nearest_resize, preview, preview_size

SAMPLERS = ("ddim", "ddpm", "dpmsolver++")  # the diffusion samplers: cards, command choices and checks use this
SPACINGS = ("leading", "trailing", "linspace")  # diffusers' timestep_spacing values
DEFAULT_SEED = 0  # what a run without a seed uses (resolved in SRModel.resolve / Cascade.resolve only)
MAX_SEED = 2**63  # seeds are 0 <= seed < 2**63 (what torch.Generator.manual_seed accepts)


class SRInputError(ValueError):
    """Bad input for a model (unsupported scale, wrong array, bad setting): the message is for the user."""


class ModelUnavailableError(RuntimeError):
    """The model cannot run here (weights missing, needs internet); the message says why."""


class HalfPrecisionOverflow(RuntimeError):
    """A float16 network call gave inf / NaN (the SD x4 upscaler's VAE is known to): the run restarts in float32."""


@dataclass(frozen=True)
class SamplingSettings:
    steps: int | None = None  # denoising steps (diffusion models only)
    sampler: str | None = None  # "ddim", "ddpm", "dpmsolver++"
    eta: float | None = None  # DDIM eta: 0 deterministic, 1 DDPM-like
    seed: int | None = None  # None: 0 for a single model; a cascade derives one per stage from the run's
    tile: int | None = None  # tile side in the network's working resolution (bounded memory)
    lr_projection: int | None = None  # back-projection iterations onto the ORIGINAL LR after this stage
    strength: float | None = None  # SDEdit: 1 starts from noise; s < 1 starts from the noised bicubic guess
    spacing: str | None = None  # timestep spacing of the respaced schedule: "leading", "trailing", "linspace"
    stages: tuple[SamplingSettings, ...] | None = None  # per-stage settings of a cascade (single models
    # use the run-wide values and ignore these)

    def __post_init__(self):
        check_settings(self)

    def for_stage(self, index: int) -> SamplingSettings:
        """The settings of stage ``index``: its own values, else the run's (stages not inherited)."""
        own = self.stages[index] if self.stages and index < len(self.stages) else SamplingSettings()
        run = replace(self, stages=None)
        return replace(run, **{k: v for k, v in asdict(own).items() if v is not None and k != "stages"})

    def as_dict(self) -> dict:
        """Flat, JSON-friendly; ``stages`` as a list of dicts when present."""
        out = {k: v for k, v in asdict(self).items() if k != "stages"}
        if self.stages:
            out["stages"] = [s.as_dict() for s in self.stages]
        return out

    @classmethod
    def from_dict(cls, data: dict) -> SamplingSettings:
        data = dict(data)
        stages = data.pop("stages", None)
        if stages:
            data["stages"] = tuple(cls.from_dict(s) for s in stages)
        return cls(**data)

    def describe(self) -> str:
        """Short text for tables: '10 ddim, eta 0, seed 0, bp 5'."""
        parts = []
        if self.steps is not None:
            parts.append(f"{self.steps} {self.sampler or ''}".strip())
            if self.eta:
                parts.append(f"eta {self.eta:g}")
            if self.spacing:
                parts.append(self.spacing)
            if self.strength is not None and self.strength < 1:
                parts.append(f"strength {self.strength:g}")
        if self.seed is not None:
            parts.append(f"seed {self.seed}")
        if self.lr_projection:
            parts.append(f"bp {self.lr_projection}")
        return ", ".join(parts)


def check_settings(s: SamplingSettings) -> None:
    """Plain messages for every bad number, before anything is allocated."""

    def whole(name, value, low):
        if value is None:
            return
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            if isinstance(value, float) and value.is_integer():
                raise SRInputError(f"{name} must be a whole number, got {value} (write {int(value)})")
            raise SRInputError(f"{name} must be a whole number, got {value!r}")
        if value < low:
            raise SRInputError(f"{name} must be at least {low}, got {value}")

    whole("steps", s.steps, 1)
    whole("lr_projection", s.lr_projection, 0)
    whole("tile", s.tile, 8)
    whole("seed", s.seed, 0)
    if s.seed is not None and s.seed >= MAX_SEED:
        raise SRInputError(f"seed must be below 2^63, got {s.seed}")
    if s.eta is not None and not (isinstance(s.eta, (int, float)) and math.isfinite(s.eta) and 0 <= s.eta <= 1):
        raise SRInputError(f"eta must be a number from 0 to 1, got {s.eta!r}")
    if s.strength is not None and not (
        isinstance(s.strength, (int, float)) and math.isfinite(s.strength) and 0 < s.strength <= 1
    ):
        raise SRInputError(f"strength must be in (0, 1], got {s.strength!r}")
    if s.spacing is not None and s.spacing not in SPACINGS:
        raise SRInputError(f"timestep spacing must be one of {', '.join(SPACINGS)}, got {s.spacing!r}")
    if s.sampler is not None and not isinstance(s.sampler, str):
        raise SRInputError(f"sampler must be a name, got {s.sampler!r}")


def derive_seed(seed: int, stage: int) -> int:
    """Stage 0 keeps the run's seed (a one-stage cascade equals the model); later stages get their own."""
    if stage == 0:
        return seed
    return int(np.random.SeedSequence([seed, stage]).generate_state(1, np.uint64)[0]) % MAX_SEED


@dataclass(frozen=True)
class NetworkCalls:
    """What a run cost in network evaluations, counted two ways.

    ``nfe``: evaluations of the denoiser (of the one network for a feed-forward model) per sample, as
    the field counts NFE: one per sampling step, two with classifier-free guidance, whatever the
    image size. ``tiles``: the network calls on tiles in total, over every evaluation (nfe x tiles
    per image): the cost of bounded memory, which grows with the output size; equal to ``nfe`` when
    nothing is tiled. Decoder and encoder calls count in neither. A family may return a plain int
    from ``_upscale``: its NFE, nothing tiled.
    """

    nfe: int
    tiles: int

    @classmethod
    def of(cls, value: int | NetworkCalls) -> NetworkCalls:
        return value if isinstance(value, NetworkCalls) else cls(int(value), int(value))


@dataclass
class StepInfo:
    """What the denoising loop reports after each step: enough to animate a trajectory."""

    step: int  # 0-based index of the step just done
    total: int  # number of steps in this run (of this stage)
    timestep: float  # the scheduler's t of this step
    x_t: Any = None  # current noisy state (tensor, model space: latent or pixel)
    x0: Any = None  # None while sampling: kept frames are decoded after the timed run (``Trajectory``)
    stage: str = ""  # the model that produced it
    stage_index: int = 0  # its position in a cascade


OnStep = Callable[[StepInfo], None]


@dataclass(frozen=True)
class PendingFrame:
    """A kept trajectory frame not decoded yet: ``decode()`` gives its preview (uint8 HxWx3), the
    full-size frame of ``size`` (height, width) reduced ``factor`` times. Sliced like the image it
    stands for, ``frame[:h, :w]`` crops the full-size frame, so a family crops its padding as before."""

    make: Callable[[], np.ndarray]  # the preview of the uncropped frame
    size: tuple[int, int]
    factor: int = 1

    def __getitem__(self, key: tuple[slice, slice]) -> PendingFrame:
        if len(key) != 2 or any(s.start not in (None, 0) or s.step not in (None, 1) for s in key):
            raise IndexError("a pending frame is only cropped from its top-left corner: frame[:h, :w]")
        rows, cols = (len(range(*s.indices(n))) for s, n in zip(key, self.size))
        return replace(self, size=(rows, cols))

    def decode(self) -> np.ndarray:
        rows, cols = preview_size(*self.size, self.factor)
        return self.make()[:rows, :cols]


@dataclass
class Trajectory:
    """Kept denoising steps of one stage: the noisy state x_t and the predicted clean image x̂0 side by
    side, and, when back-projection follows, the returned image last. Frames are previews, at most
    ``previews.PREVIEW_MAX_SIDE`` pixels on the long side, uint8 HxWx3 once ``decode()`` has run (a
    family may add them as ``PendingFrame``s, to be decoded after the timed run)."""

    x0: list[np.ndarray] = field(default_factory=list)  # per kept step
    x_t: list[np.ndarray] = field(default_factory=list)  # the same steps' noisy states, decoded as they are
    labels: list[str] = field(default_factory=list)

    def add(self, x_t: np.ndarray | PendingFrame, x0: np.ndarray | PendingFrame, label: str) -> None:
        self.x_t.append(x_t)
        self.x0.append(x0)
        self.labels.append(label)

    def decode(self) -> None:
        """Pending frames to preview images, full-size ones reduced to the preview size."""

        def decoded(frame):
            return frame.decode() if isinstance(frame, PendingFrame) else preview(frame)

        self.x_t = [decoded(f) for f in self.x_t]
        self.x0 = [decoded(f) for f in self.x0]

    def __len__(self) -> int:
        return len(self.x0)


@dataclass
class StageResult:
    model: str
    scale: int
    settings: SamplingSettings  # resolved: the values actually used
    image: np.ndarray  # uint8 HxWx3, after this stage's back-projection if any
    input_shape: tuple[int, int]  # (h, w) of the image this stage received
    nfe: int  # network evaluations per sample (NetworkCalls.nfe): steps, x2 with guidance; tiles not counted
    seconds: float  # model run plus back-projection
    peak_memory_mb: float
    tiles: int = 0  # network calls on tiles in total (NetworkCalls.tiles): nfe x tiles per image
    projection_seconds: float = 0.0
    load_seconds: float = 0.0  # loading weights on first use, not part of ``seconds``
    trajectory: Trajectory = field(default_factory=Trajectory)  # kept steps, if any
    trajectory_seconds: float = 0.0  # decoding the kept frames to previews, after and not part of ``seconds``
    device: str = "cpu"  # where it ran, and the networks' precision
    dtype: str = "float32"

    @property
    def frames(self) -> list[np.ndarray]:
        return self.trajectory.x0

    def decode_frames(self) -> None:
        """Decode the kept trajectory frames to previews, timed apart: called once the run's clock stops."""
        if not len(self.trajectory):
            return
        t0 = time.perf_counter()
        self.trajectory.decode()
        self.trajectory_seconds += time.perf_counter() - t0

    @property
    def frame_labels(self) -> list[str]:
        return self.trajectory.labels

    def facts(self) -> dict:
        """A flat row: what a table, a CSV or a JSON needs of this stage."""
        s = self.settings
        return {
            "model": self.model,
            "scale": self.scale,
            "steps": s.steps,
            "sampler": s.sampler,
            "eta": s.eta,
            "seed": s.seed,
            "strength": s.strength,
            "spacing": s.spacing,
            "lr_projection": s.lr_projection or 0,
            "nfe": self.nfe,
            "tiles": self.tiles,
            "seconds": self.seconds,
            "projection_seconds": self.projection_seconds,
            "load_seconds": self.load_seconds,
            "trajectory_seconds": self.trajectory_seconds,
            "peak_memory_mb": self.peak_memory_mb,
            "device": self.device,
            "dtype": self.dtype,
            "input": f"{self.input_shape[1]}x{self.input_shape[0]}",
            "output": f"{self.image.shape[1]}x{self.image.shape[0]}",
        }


@dataclass
class UpscaleResult:
    image: np.ndarray  # uint8 HxWx3 RGB: the last stage's image
    scale: int  # product of the stages' scales
    model: str  # the model name, or the cascade spec "a>b"
    stages: list[StageResult]
    seconds: float = 0.0  # wall clock of the whole run, loading and trajectory decoding excluded
    peak_memory_mb: float = 0.0
    load_seconds: float = 0.0  # loading weights on first use, reported apart

    @property
    def nfe(self) -> int:
        return sum(s.nfe for s in self.stages)

    @property
    def tiles(self) -> int:
        return sum(s.tiles for s in self.stages)

    @property
    def trajectory_seconds(self) -> float:
        """Decoding kept frames, after the timed run: not part of ``seconds``."""
        return sum(s.trajectory_seconds for s in self.stages)

    @property
    def settings(self) -> SamplingSettings:
        """One stage: its settings; several: the run's seed with every stage's settings."""
        if len(self.stages) == 1:
            return self.stages[0].settings
        return SamplingSettings(seed=self.stages[0].settings.seed, stages=tuple(s.settings for s in self.stages))

    def _at_final_size(self, frames) -> list[np.ndarray]:
        return [nearest_resize(frame, *self.image.shape[:2]) for frame in frames]

    @property
    def frames(self) -> list[np.ndarray]:
        """Every stage's x̂0 frames at the final size (nearest, no smoothing): one sequence to animate."""
        return self._at_final_size(f for s in self.stages for f in s.trajectory.x0)

    @property
    def noisy_frames(self) -> list[np.ndarray]:
        """The matching decoded x_t frames, at the final size."""
        return self._at_final_size(f for s in self.stages for f in s.trajectory.x_t)

    @property
    def frame_labels(self) -> list[str]:
        multi = len(self.stages) > 1
        return [f"{s.model}: {lab}" if multi else lab for s in self.stages for lab in s.frame_labels]

    def facts(self) -> dict:
        """Totals of the run as a flat row (per-stage rows: ``[s.facts() for s in stages]``)."""
        return {
            "model": self.model,
            "scale": self.scale,
            "n_stages": len(self.stages),
            "nfe": self.nfe,
            "tiles": self.tiles,
            "seconds": self.seconds,
            "peak_memory_mb": self.peak_memory_mb,
            "load_seconds": self.load_seconds,
            "trajectory_seconds": self.trajectory_seconds,
            "device": "+".join(dict.fromkeys(s.device for s in self.stages)),
            "dtype": "+".join(dict.fromkeys(s.dtype for s in self.stages)),
            "steps": "+".join(str(s.settings.steps) for s in self.stages if s.settings.steps is not None),
            "sampler": "+".join(dict.fromkeys(s.settings.sampler for s in self.stages if s.settings.sampler)),
            "seed": self.stages[0].settings.seed,
            "lr_projection": "+".join(str(s.settings.lr_projection or 0) for s in self.stages),
            "settings": "; ".join(f"{s.model}: {s.settings.describe()}" for s in self.stages),
        }
