"""The two diffusion families behind the common interface.

* ``LatentSR`` (family ``ldm``, Rombach et al. 2022): diffusion in the latent space of a
  first-stage ``AutoencoderKL`` (f = 4), the LR image concatenated to the latent at latent
  resolution. How the LR gets there depends on the ratio r = scale / f, losing nothing:
  r = 1 (4x) as is, which is exactly the CompVis / diffusers ``LDMSuperResolutionPipeline``
  layout; r < 1 (2x) pixel-unshuffled by f / scale (every LR pixel kept, stacked into channels);
  r > 1 (8x, 16x) upsampled by r (bicubic).
* ``PixelSR`` (family ``sr3``, Saharia et al. 2021): the same task in pixel space. The UNet sees
  x_t next to the bicubic upsample of the LR and denoises the *residual* HR - bicubic (scaled):
  the part the LR does not already give, which is what makes small CPU budgets work.

Both predict x0 directly (scheduler ``prediction_type="sample"``) and share the sampling loop,
seeding, trajectory frames and tiled inference.
"""

from __future__ import annotations

import copy
import json
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DModel

from sr_models.base import SamplingSettings, SRModel, StepInfo, Trajectory
from sr_models.device import place
from sr_models.previews import preview_factor, preview_size
from sr_models.sampling import make_scheduler, sample, schedule, start_state
from sr_models.tiling import tiled
from sr_models.types import SAMPLERS, HalfPrecisionOverflow, NetworkCalls, PendingFrame

FIRST_STAGE_FACTOR = 4


def to_model_range(image: np.ndarray) -> torch.Tensor:
    """uint8 HxWx3 -> float 1x3xHxW in [-1, 1] (the range every network here works in)."""
    return torch.from_numpy(np.array(image, dtype=np.float32, copy=True)).permute(2, 0, 1)[None] / 127.5 - 1


def to_image(x: torch.Tensor, rows: int = 256) -> np.ndarray:
    """float 1x3xHxW in [-1, 1] (any device, any dtype) -> uint8 HxWx3, as the diffusers pipelines quantise.

    Converted ``rows`` at a time, so a large image never has float copies beside it."""
    image = np.empty((x.shape[-2], x.shape[-1], 3), np.uint8)
    for top in range(0, x.shape[-2], rows):
        part = (x[0, :, top : top + rows].float().clamp(-1, 1) / 2 + 0.5).permute(1, 2, 0).cpu().numpy()
        image[top : top + rows] = np.round(part * 255)
    return image


def torch_bicubic_up(lr: torch.Tensor, factor: int) -> torch.Tensor:
    """torch's bicubic (a = -0.75, no antialiasing): how models see an LR at a larger size.

    Not the benchmark's MATLAB ``imresize`` (``sr_models.degradation``), which makes LRs and the
    bicubic baseline; the two differ by tenths of a dB and must not be mixed up.
    """
    return F.interpolate(lr, scale_factor=factor, mode="bicubic", align_corners=False)


def latent_condition(lr: torch.Tensor, scale: int, factor: int = FIRST_STAGE_FACTOR) -> torch.Tensor:
    """The LR brought to latent resolution without losing information (see the module doc)."""
    if scale == factor:
        return lr
    if scale < factor:
        if factor % scale:
            raise ValueError(f"scale {scale} does not divide the first-stage factor {factor}")
        return F.pixel_unshuffle(lr, factor // scale)
    if scale % factor:
        raise ValueError(f"scale {scale} is not a multiple of the first-stage factor {factor}")
    return torch_bicubic_up(lr, scale // factor)


def condition_channels(scale: int, factor: int = FIRST_STAGE_FACTOR) -> int:
    return 3 * (factor // scale) ** 2 if scale < factor else 3


def _pad_to(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, int, int]:
    """Pad bottom/right to a multiple, and to at least two multiples (the UNet's lowest level needs
    more than one pixel for its group norms)."""
    h, w = x.shape[-2:]
    ph, pw = max((-h) % multiple, 2 * multiple - h), max((-w) % multiple, 2 * multiple - w)
    if ph or pw:
        mode = "reflect" if ph < h and pw < w else "replicate"  # reflect needs the pad under the size
        x = F.pad(x, (0, pw, 0, ph), mode=mode)
    return x, h, w


def shrink(x: torch.Tensor, factor: int) -> torch.Tensor:
    """A copy of a working-space tensor ``factor`` times smaller (area average, sizes rounded up as
    ``previews.preview_size`` rounds them): how kept trajectory states are stored."""
    if factor == 1:
        return x.clone()  # the loop may update a large state in place
    return F.adaptive_avg_pool2d(x, preview_size(x.shape[-2], x.shape[-1], factor))


class FrameRecorder:
    """The loop's per-step callback: every step goes to ``on_step`` (x̂0 not decoded), and the kept
    steps' x_t and x̂0 go into ``trajectory`` as working-space copies shrunk to the preview size,
    decoded only after the timed run (``PendingFrame``), so recording costs the run almost nothing."""

    def __init__(self, model: DiffusionSR, lr, scale: int, cond, steps: int, keep_frames: int, on_step=None):
        self.model, self.lr, self.scale, self.cond, self.on_step = model, lr, scale, cond, on_step
        self.keep = set(np.linspace(0, steps - 1, keep_frames).round().astype(int).tolist()) if keep_frames else set()
        self.trajectory = Trajectory()
        self.size = model.image_size(cond)  # the conditioning has the state's size (they are concatenated)
        self.factor = preview_factor(*self.size)

    def __call__(self, i: int, n: int, t, x_t: torch.Tensor, x0: torch.Tensor) -> None:
        if i in self.keep:  # x_t kept as it is: noise turning into an image
            self.trajectory.add(self._pending(x_t), self._pending(x0), f"step {i + 1}/{n} (t={int(t)})")
        if self.on_step is not None:
            self.on_step(StepInfo(step=i, total=n, timestep=float(t), x_t=x_t, stage=self.model.name))

    def _pending(self, state: torch.Tensor) -> PendingFrame:
        small = shrink(state, self.factor)
        make = partial(self.model.preview, small, self.lr, self.scale, self.cond, self.factor)
        return PendingFrame(make, self.size, self.factor)


class DiffusionSR(SRModel):
    """Shared sampling, seeding, frames and tiling; subclasses say how to condition and decode."""

    samplers = SAMPLERS

    def __init__(self, name: str, unet: UNet2DModel, scheduler_config: dict, scale: int, card: dict | None = None):
        card = card or {}
        self.name, self.unet = name, unet.eval()
        self.scheduler_config = dict(scheduler_config)
        self.scales = (scale,)
        self.card = card
        self.default_steps = int(card.get("default_steps", 20))
        self.default_sampler = card.get("default_sampler", "ddim")
        self.default_spacing = card.get("timestep_spacing", "leading")
        self.tile = int(card.get("tile", 64))  # in the UNet's working resolution
        self.tile_overlap = int(card.get("tile_overlap", 16))
        self.lr_projection_default = int(card.get("lr_projection", 0))

    def _place(self):
        place(self.unet, self.device, self.dtype)

    def network(self, module, x: torch.Tensor, *args) -> torch.Tensor:
        """``module(x, *args)`` in the networks' dtype; the sampler's state stays float32 (as k-diffusion
        keeps it), so half precision only touches the network evaluations. A float16 call that overflows
        raises ``HalfPrecisionOverflow`` (the stage then reruns in float32) instead of leaving NaN pixels."""
        out = module(x.to(self.dtype), *args).sample
        if out.dtype == torch.float16 and not torch.isfinite(out).all():
            raise HalfPrecisionOverflow(f"{self.name}: a float16 network call overflowed")
        return out.float()

    # subclass hooks ------------------------------------------------------------------------------
    def _prepare(self, lr: torch.Tensor, scale: int, generator=None) -> tuple[torch.Tensor, tuple[int, ...]]:
        """(conditioning at working resolution, shape of x_t); ``generator`` is the run's, for a family
        whose conditioning is noised (drawn before x_T, as the diffusers pipelines draw it)."""
        raise NotImplementedError

    def _finish(self, x0: torch.Tensor, lr: torch.Tensor, scale: int, cond: torch.Tensor) -> torch.Tensor:
        """Working-space x0 -> image in [-1, 1]; ``cond`` is the run's conditioning (``_prepare``'s)."""
        raise NotImplementedError

    @property
    def _pad_multiple(self) -> int:
        return 2 ** (len(self.unet.config.block_out_channels) - 1)

    def _init_x0(self, lr: torch.Tensor, scale: int) -> torch.Tensor:
        """The working-space image of the plain upsample of ``lr``: where SDEdit starts from."""
        raise NotImplementedError

    def image_size(self, state: torch.Tensor) -> tuple[int, int]:
        """(height, width) of the image a working-space state decodes to (pixel families: its own)."""
        return tuple(state.shape[-2:])

    @torch.inference_mode()
    def preview(self, state: torch.Tensor, lr: torch.Tensor, scale: int, cond: torch.Tensor, factor: int):
        """A kept state, ``shrink``-ed ``factor`` times, as a preview image (uint8 HxWx3); at factor 1
        exactly what ``_finish`` makes of the full state."""
        return to_image(self._finish_preview(state, lr, scale, cond, factor))

    def _finish_preview(self, state, lr, scale, cond, factor) -> torch.Tensor:
        """``_finish`` at the preview size: the conditioning shrunk like the state."""
        return self._finish(state, lr, scale, shrink(cond, factor))

    # the run -------------------------------------------------------------------------------------
    def run(self, lr: torch.Tensor, scale: int, settings: SamplingSettings, on_step=None, keep_frames=0):
        """LR in [-1, 1] (1x3xhxw), resolved settings -> (SR in [-1, 1], NetworkCalls, Trajectory).

        NFE is the number of denoiser evaluations (one per step run); the tiles of each evaluation are
        counted apart (``NetworkCalls.tiles``)."""
        tile = settings.tile or self.tile
        scheduler = make_scheduler(settings.sampler, self.scheduler_config, settings.spacing)
        generator = torch.Generator("cpu").manual_seed(settings.seed)
        lr = lr.to(self.device)
        cond, shape = self._prepare(lr, scale, generator)
        tile_calls = 0

        def denoise(x_t, t):
            def unet(x_part, cond_part):  # concatenated per tile: no full-size copy of both
                nonlocal tile_calls
                tile_calls += 1
                return self.network(self.unet, torch.cat([x_part, cond_part], dim=1), t)

            return tiled(unet, (x_t, cond), tile, self.tile_overlap, multiple=self._pad_multiple)

        with torch.inference_mode():
            timesteps = schedule(scheduler, settings.steps, settings.strength, self.device)
            init = None if settings.strength >= 1 else self._init_x0(lr, scale)
            x = start_state(shape, scheduler, timesteps, generator, init, self.device)
            recorder = FrameRecorder(self, lr, scale, cond, len(timesteps), keep_frames, on_step)
            x0, evaluations = sample(denoise, x, scheduler, timesteps, generator, eta=settings.eta, on_step=recorder)
            del x  # the start state: only x0 is needed now (a 4096² pixel state is 200 MB)
            image = self._finish(x0, lr, scale, cond)
        return image, NetworkCalls(evaluations, tile_calls), recorder.trajectory

    def _upscale(self, lr, *, scale, settings, on_step, keep_frames):
        x = to_model_range(lr)
        x, h, w = _pad_to(x, self._lr_multiple(scale))
        sr, calls, padded = self.run(x, scale, settings, on_step, keep_frames)
        crop = (slice(None), slice(None), slice(0, h * scale), slice(0, w * scale))
        trajectory = Trajectory()
        for x_t, x0, label in zip(padded.x_t, padded.x0, padded.labels):
            trajectory.add(x_t[: h * scale, : w * scale], x0[: h * scale, : w * scale], label)
        return to_image(sr[crop]), calls, trajectory

    def _lr_multiple(self, scale: int) -> int:
        return self._pad_multiple


class LatentSR(DiffusionSR):
    family = "ldm"
    description = "latent diffusion (AutoencoderKL f=4 + UNet2DModel), x0-prediction"

    def __init__(self, name, vae: AutoencoderKL, unet, scheduler_config, scale, card=None):
        super().__init__(name, unet, scheduler_config, scale, card)
        self.vae = vae.eval()
        self.factor = 2 ** (len(vae.config.block_out_channels) - 1)
        # latent residual: the UNet denoises z(HR) - z(upsampled LR), SR3's residual idea in latent
        # space; with a zero-initialised output layer the model starts as the decoded upsample.
        self.latent_residual = bool((card or {}).get("latent_residual", False))
        self._base: tuple | None = None  # (lr tensor, scale, its base latent) of the last run

    def _place(self):
        super()._place()
        place(self.vae, self.device, self.dtype)
        self._base = None

    def _lr_multiple(self, scale: int) -> int:
        # latent = LR * scale / f must be a multiple of the UNet's stride, and LR * scale of f
        latent_per_lr = scale / self.factor
        m = self._pad_multiple
        return int(max(1, round(m / latent_per_lr))) if latent_per_lr < 1 else m

    def base_latent(self, lr: torch.Tensor, scale: int) -> torch.Tensor:
        """The latent of the torch-bicubic upsample of ``lr``, kept while the same LR comes back at the same
        scale: K posterior samples (or seeds of a study) of one input encode it once, not K times."""
        cached = self._base
        if cached is None or cached[1] != scale or cached[0].shape != lr.shape or not torch.equal(cached[0], lr):
            self._base = (lr.clone(), scale, self.encode(torch_bicubic_up(lr, scale).clamp(-1, 1)))
        return self._base[2]

    def encode(self, image: torch.Tensor) -> torch.Tensor:
        """Posterior mean of an image in [-1, 1], tile by tile (bounded memory on large images)."""
        f, tile = self.factor, self.tile * self.factor
        return tiled(
            lambda part: self.vae.encode(part.to(self.dtype)).latent_dist.mode().float(),
            image,
            tile,
            self.tile_overlap * f // 2,
            scale=1 / f,
            multiple=f,
        )

    def _init_x0(self, lr, scale):
        base = self.base_latent(lr, scale)
        return torch.zeros_like(base) if self.latent_residual else base

    def _prepare(self, lr, scale, generator=None):
        cond = latent_condition(lr, scale, self.factor)
        return cond, (1, self.vae.config.latent_channels, *cond.shape[-2:])

    def decode(self, z: torch.Tensor, tile: int | None = None) -> torch.Tensor:
        tile = tile or self.tile
        return tiled(
            lambda part: self.network(self.vae.decode, part), z, tile, self.tile_overlap // 2, scale=self.factor
        )

    def _finish(self, x0, lr, scale, cond):
        if self.latent_residual:
            x0 = x0 + self.base_latent(lr, scale)
        return self.decode(x0).clamp_(-1, 1)

    def image_size(self, state):
        return state.shape[-2] * self.factor, state.shape[-1] * self.factor

    def _finish_preview(self, state, lr, scale, cond, factor):
        if self.latent_residual:
            state = state + shrink(self.base_latent(lr, scale), factor)
        # a shrunk state (factor > 1) decodes to at most a 512 px preview: in one piece, not in overlapping
        # tiles (2.25x the decoder's work at 512 px); at factor 1 tiled as the image itself, so it equals it
        return self.decode(state, tile=max(state.shape[-2:]) if factor > 1 else None).clamp_(-1, 1)

    @classmethod
    def from_folder(cls, folder, name: str, card: dict) -> LatentSR:
        folder = Path(folder)
        vae, unet = _load(AutoencoderKL, folder / "vqvae"), _load(UNet2DModel, folder / "unet")
        scheduler = DDIMScheduler.load_config(folder / "scheduler")
        return cls(name, vae, unet, scheduler, int(card["scales"][0]), card)

    def save(self, folder: str | Path, card: dict):
        save_ldm_folder(folder, self.vae, self.unet, self.scheduler_config, self.scales[0], card)


class PixelSR(DiffusionSR):
    family = "sr3"
    description = "pixel-space diffusion (SR3-style UNet2DModel) on the residual over bicubic, x0-prediction"

    def __init__(self, name, unet, scheduler_config, scale, card=None):
        super().__init__(name, unet, scheduler_config, scale, card)
        self.residual_scale = float((card or {}).get("residual_scale", 4.0))

    def _init_x0(self, lr, scale):
        return lr.new_zeros(1, 3, lr.shape[-2] * scale, lr.shape[-1] * scale)  # zero residual = bicubic

    def _prepare(self, lr, scale, generator=None):
        up = torch_bicubic_up(lr, scale)
        return up, (1, 3, *up.shape[-2:])

    def _finish(self, x0, lr, scale, cond):
        return (x0 / self.residual_scale).add_(cond).clamp_(-1, 1)  # cond is the bicubic upsample

    @classmethod
    def from_folder(cls, folder, name: str, card: dict) -> PixelSR:
        folder = Path(folder)
        unet = _load(UNet2DModel, folder / "unet")
        scheduler = DDIMScheduler.load_config(folder / "scheduler")
        return cls(name, unet, scheduler, int(card["scales"][0]), card)


def _half_copy(model):
    """fp16 copy for the files (half the size; loading casts back to fp32). Never the live model."""
    return torch.nn.Module.to(copy.deepcopy(model), torch.float16)  # plain cast; ModelMixin.to only warns


def _load(cls, folder: Path):
    return cls.from_pretrained(folder, use_safetensors=True, torch_dtype=torch.float32, low_cpu_mem_usage=False)


def save_ldm_folder(folder, vae, unet, scheduler_config: dict, scale: int, card: dict):
    """diffusers layout; the 4x model is a stock ``LDMSuperResolutionPipeline`` folder."""
    from diffusers.pipelines.latent_diffusion.pipeline_latent_diffusion_superresolution import (
        LDMSuperResolutionPipeline,
    )

    folder = Path(folder)
    scheduler = DDIMScheduler.from_config(scheduler_config)
    vae, unet = _half_copy(vae), _half_copy(unet)
    LDMSuperResolutionPipeline(vqvae=vae, unet=unet, scheduler=scheduler).save_pretrained(
        str(folder), safe_serialization=True
    )
    stock = (
        scale == 2 ** (len(vae.config.block_out_channels) - 1)
        and vae.config.latent_channels == 3
        and not card.get("latent_residual")
    )
    if not stock:
        # Not the stock layout (the LR unshuffled or upsampled first, latent channels the stock
        # pipeline would infer wrongly, or a latent residual): say so, so the stock pipeline
        # refuses it instead of producing garbage.
        index = json.loads((folder / "model_index.json").read_text())
        index["_class_name"] = "LatentSRPipeline"
        (folder / "model_index.json").write_text(json.dumps(index, indent=2))
    from sr_models.cards import write_card

    write_card(folder, card)


def save_sr3_folder(folder, unet, scheduler_config: dict, card: dict):
    folder = Path(folder)
    _half_copy(unet).save_pretrained(str(folder / "unet"), safe_serialization=True)
    DDIMScheduler.from_config(scheduler_config).save_pretrained(str(folder / "scheduler"))
    from sr_models.cards import write_card

    write_card(folder, card)


def build_unet(
    in_channels: int, out_channels: int, channels=(64, 128, 192), attention: bool = True, zero_out: bool = False
) -> UNet2DModel:
    """A small UNet2DModel; attention only at the lowest resolution (cheap, and optional).

    ``zero_out`` starts the output layer at zero: a residual model then begins as exact bicubic
    and training can only move it from there (the regression baseline's trick).
    """
    n = len(channels)
    down = ["DownBlock2D"] * (n - 1) + ["AttnDownBlock2D" if attention else "DownBlock2D"]
    up = ["AttnUpBlock2D" if attention else "UpBlock2D"] + ["UpBlock2D"] * (n - 1)
    unet = UNet2DModel(
        in_channels=in_channels,
        out_channels=out_channels,
        block_out_channels=tuple(channels),
        down_block_types=tuple(down),
        up_block_types=tuple(up),
        layers_per_block=1,
        norm_num_groups=min(32, min(channels)),
        attention_head_dim=min(32, channels[-1]),
        add_attention=attention,
    )
    if zero_out:
        torch.nn.init.zeros_(unet.conv_out.weight)
        torch.nn.init.zeros_(unet.conv_out.bias)
    return unet
