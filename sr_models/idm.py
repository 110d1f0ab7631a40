"""IDM-style diffusion at any scale (family ``idm``, model ``idm-x``; after Gao et al., CVPR 2023).

The Implicit Diffusion Model puts an implicit neural representation into the denoiser so one model
serves continuous scales, and modulates by the scale how the LR features weigh against the generated
ones. Here, at a CPU budget, in pixel space on top of the SR3 machinery (``PixelSR``):

* the implicit part is a trained ``liif-x`` (``sr_models.liif``), frozen: its output on the target
  grid, round(s * h) x round(s * w), is the conditioning the UNet sees next to x_t (where SR3 sees
  the bicubic upsample), so every output size is a plain pixel grid for the UNet;
* the scale enters as a second timestep-like embedding (diffusers' ``class_embed_type="timestep"``)
  added to the time embedding, and every ResNet block applies it as a FiLM scale and shift
  (``resnet_time_scale_shift="scale_shift"``): scale-adaptive modulation of the features;
* the UNet denoises the residual HR - liif (x0-prediction, scaled like SR3's), its output layer
  starts at zero, so an untrained idm-x returns exactly liif-x's image.

The sampler loop, steps, samplers, eta, seed, trajectory, tiling (of the UNet on the target grid)
and back-projection (at the real-valued scale, ``SRModel.run_stage``) are SR3's. The folder holds
``unet/``, ``scheduler/`` and ``liif/`` (the implicit model's weights, or the card's ``liif`` path).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from diffusers import DDIMScheduler, UNet2DModel

from sr_models.degradation import MAX_SCALE, scaled_size
from sr_models.device import place
from sr_models.diffusion_sr import PixelSR, _load, _pad_to, build_unet, save_sr3_folder, to_image, to_model_range
from sr_models.liif import NOMINAL_SCALES, LIIFNet, liif_condition
from sr_models.types import Trajectory

TRAINED_SCALES = (1.0, 4.0)  # the range idm-x is trained on; larger scales reuse the embedding of the largest
LIIF_SUBFOLDER = "liif"


def scale_label(scale: float, trained_max: float = TRAINED_SCALES[1]) -> float:
    """The scale as a timestep-like label for the UNet's embedding: 1000 log(s) / log(16), with s clamped
    to [1, trained_max] so a scale outside training gets the nearest embedding the model has learnt."""
    return 1000.0 * math.log(min(max(float(scale), 1.0), trained_max)) / math.log(MAX_SCALE)


def build_idm_unet(channels=(64, 128, 128), attention: bool = True) -> UNet2DModel:
    """``build_unet``'s SR3 layout (x_t and the implicit upsample in, the residual out, output at zero)
    plus the scale embedding and FiLM modulation of the ResNet blocks."""
    layout = {k: v for k, v in build_unet(6, 3, channels, attention).config.items() if not k.startswith("_")}
    unet = UNet2DModel(**{**layout, "class_embed_type": "timestep", "resnet_time_scale_shift": "scale_shift"})
    torch.nn.init.zeros_(unet.conv_out.weight)
    torch.nn.init.zeros_(unet.conv_out.bias)
    return unet


class ImplicitDiffusionSR(PixelSR):
    family = "idm"
    description = "IDM-style pixel diffusion on the residual over a LIIF upsample, scale-modulated UNet, any scale"
    continuous = True

    def __init__(self, name, unet: UNet2DModel, scheduler_config: dict, liif: LIIFNet, meta: dict | None = None):
        meta = meta or {}
        super().__init__(name, unet, scheduler_config, NOMINAL_SCALES[0], meta)
        self.liif = liif.eval()
        self.scales = tuple(meta.get("scales", NOMINAL_SCALES))
        self.max_scale = float(meta.get("max_scale", self.max_scale))
        self.trained_max = float(meta.get("trained_scales", TRAINED_SCALES)[1])
        self.liif_tile = int(meta.get("liif_tile", 256))  # LR tile of the implicit model's encoder
        self._label = 0.0  # the running scale's label and padded target grid, set by _prepare
        self._grid = (0, 0)

    def _place(self):
        super()._place()
        place(self.liif, self.device, self.dtype)
        if not getattr(self.unet.class_embedding, "_casts_input", False):
            # diffusers' UNet2DModel feeds the float32 sinusoidal projection of class labels straight into
            # class_embedding (timesteps get a cast; class labels do not): in half precision that is a
            # dtype mismatch, so the embedding casts its input to its own weights' dtype
            self.unet.class_embedding.register_forward_pre_hook(_cast_to_weights)
            self.unet.class_embedding._casts_input = True

    def network(self, module, x: torch.Tensor, *args) -> torch.Tensor:
        if module is not self.unet:
            return super().network(module, x, *args)
        labels = torch.full((x.shape[0],), self._label, device=x.device)
        return module(x.to(self.dtype), *args, class_labels=labels).sample.float()

    def _prepare(self, lr, scale, generator=None):
        self._label = scale_label(scale, self.trained_max)
        size = scaled_size(lr.shape[-2], lr.shape[-1], scale)
        cond = liif_condition(self.liif, lr.to(self.dtype), size, self.liif_tile).float()
        cond, _, _ = _pad_to(cond, self._pad_multiple)  # the UNet's strides need a multiple
        self._grid = tuple(cond.shape[-2:])
        return cond, (1, 3, *self._grid)

    def _init_x0(self, lr, scale):
        return lr.new_zeros(1, 3, *self._grid)  # zero residual = the implicit upsample (SDEdit's start)

    def _upscale(self, lr, *, scale, settings, on_step, keep_frames):
        h, w = scaled_size(lr.shape[0], lr.shape[1], scale)
        sr, nfe, padded = self.run(to_model_range(lr), scale, settings, on_step, keep_frames)
        trajectory = Trajectory()
        for x_t, x0, label in zip(padded.x_t, padded.x0, padded.labels):
            trajectory.add(x_t[:h, :w], x0[:h, :w], label)
        return to_image(sr[:, :, :h, :w]), nfe, trajectory

    @classmethod
    def from_folder(cls, folder, name: str, meta: dict) -> ImplicitDiffusionSR:
        folder = Path(folder)
        unet = _load(UNet2DModel, folder / "unet")
        scheduler = DDIMScheduler.load_config(folder / "scheduler")
        liif = LIIFNet.from_pretrained(str(folder / meta.get("liif", LIIF_SUBFOLDER)), use_safetensors=True)
        return cls(name, unet, scheduler, liif, meta)


def save_idm_folder(folder, unet: UNet2DModel, scheduler_config: dict, liif: LIIFNet, meta: dict) -> None:
    """An ``idm`` folder: SR3's layout (fp16 UNet file, scheduler, card) plus the implicit model in ``liif/``."""
    folder = Path(folder)
    liif.save_pretrained(str(folder / LIIF_SUBFOLDER), safe_serialization=True)
    meta = {"family": "idm", "continuous": True, "scales": list(NOMINAL_SCALES), "liif": LIIF_SUBFOLDER, **meta}
    save_sr3_folder(folder, unet, scheduler_config, meta)


def _cast_to_weights(module: torch.nn.Module, args: tuple) -> tuple:
    """A forward pre-hook: the module's input in the dtype of its weights."""
    dtype = next(module.parameters()).dtype
    return tuple(a.to(dtype) if torch.is_tensor(a) and a.is_floating_point() else a for a in args)
