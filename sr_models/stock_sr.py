"""Stock diffusers super-resolution pipelines, run through our sampling loop.

* ``StockLDMSR`` (family ``stock-ldm``): diffusers' ``LDMSuperResolutionPipeline`` (CompVis
  LDM-SR, Rombach et al. 2022): a ``VQModel`` first stage (f = 4, decoding through the codebook),
  a ``UNet2DModel`` fed the latent and the LR in [-1, 1] concatenated at latent resolution,
  epsilon-prediction. Our ``LatentSR`` is that layout, so only the first stage's encode differs.
* ``StableDiffusionUpscaleSR`` (family ``sd-upscale``): ``StableDiffusionUpscalePipeline``
  (SD x4 upscaler): an ``AutoencoderKL`` (f = 4, latents scaled by ``scaling_factor``) whose latent
  sits at LR resolution, the LR noised to ``noise_level`` by the low-res DDPM scheduler and
  concatenated, a ``UNet2DConditionModel`` that also takes the noise level (as class label) and
  CLIP text embeddings, classifier-free guidance, v-prediction.

Components come from the pipelines' own ``from_pretrained`` (safetensors when present, else
``.bin`` through diffusers / transformers, both ``torch.load(weights_only=True)``), and text is
encoded by the pipeline's own ``encode_prompt``. Sampling goes through ``DiffusionSR.run``, so
steps, sampler, eta, seed, timestep spacing, SDEdit strength, tiling and the trajectory callback
work as for our own families; the prediction type comes from the repo's scheduler config.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers.models.unets.unet_2d import UNet2DOutput
from diffusers.utils.torch_utils import randn_tensor

from sr_models.diffusion_sr import LatentSR
from sr_models.tiling import tiled
from sr_models.types import ModelUnavailableError, NetworkCalls, SRInputError

LR_CHANNELS = 3


def load_pipeline(pipeline_class, folder: str | Path):
    """The stock pipeline from a folder, in float32 on the CPU (``SRModel.to`` moves it later).

    ``use_safetensors=None``: safetensors where a component has them, else its ``.bin``, which
    diffusers and transformers both read with ``torch.load(weights_only=True)`` (no pickled code).
    """
    pipe = pipeline_class.from_pretrained(str(folder), dtype=torch.float32, use_safetensors=None)
    pipe.set_progress_bar_config(disable=True)
    return pipe


class StockLDMSR(LatentSR):
    family = "stock-ldm"
    description = "stock LDM-SR pipeline (VQModel f=4 + UNet2DModel, LR concatenated), epsilon-prediction"

    @classmethod
    def from_pipeline(cls, pipe, name: str, card: dict | None = None) -> StockLDMSR:
        vqvae, unet = pipe.vqvae, pipe.unet
        if unet.config.in_channels != vqvae.config.latent_channels + LR_CHANNELS:
            raise ModelUnavailableError(
                f"{name}: the UNet takes {unet.config.in_channels} channels, not latent "
                f"({vqvae.config.latent_channels}) + LR ({LR_CHANNELS}): not a stock LDM-SR layout"
            )
        factor = 2 ** (len(vqvae.config.block_out_channels) - 1)  # the latent is at LR size: scale = f
        model = cls(name, vqvae, unet, dict(pipe.scheduler.config), factor, card)
        model.description = (card or {}).get("description", cls.description)
        return model

    @classmethod
    def from_folder(cls, folder, name: str, card: dict | None = None) -> StockLDMSR:
        from diffusers import LDMSuperResolutionPipeline

        return cls.from_pipeline(load_pipeline(LDMSuperResolutionPipeline, folder), name, card)

    def encode(self, image: torch.Tensor) -> torch.Tensor:
        """VQ encoder output before quantisation (decoding quantises, as the stock pipeline does)."""
        f, tile = self.factor, self.tile * self.factor
        return tiled(
            lambda part: self.vae.encode(part.to(self.dtype)).latents.float(),
            image,
            tile,
            self.tile_overlap * f // 2,
            scale=1 / f,
            multiple=f,
        )


class TextGuidedUNet(torch.nn.Module):
    """A ``UNet2DConditionModel`` behind the loop's ``unet(x, t).sample`` call.

    Text embeddings, the LR's noise level (class label) and classifier-free guidance live here,
    so the shared loop, tiling included, needs to know nothing about them: each call doubles the
    batch when guidance is on (unconditional first, as the stock pipeline orders it).
    """

    def __init__(self, unet):
        super().__init__()
        self.unet = unet
        self.set_condition(None, torch.zeros(1, dtype=torch.long), 1.0)

    @property
    def config(self):
        return self.unet.config

    def set_condition(self, embeddings: torch.Tensor | None, noise_level: torch.Tensor, guidance_scale: float):
        """``embeddings``: (2, L, D) negative then positive with guidance, else (1, L, D)."""
        self.embeddings, self.noise_level, self.guidance_scale = embeddings, noise_level, guidance_scale

    @property
    def evaluations(self) -> int:
        """Network evaluations per call: guidance runs the UNet on two inputs."""
        return 2 if self.embeddings is not None and self.embeddings.shape[0] == 2 else 1

    def forward(self, x: torch.Tensor, t) -> UNet2DOutput:
        n = self.evaluations
        x = torch.cat([x] * n) if n > 1 else x
        labels = self.noise_level.to(x.device).repeat(x.shape[0])
        out = self.unet(x, t, encoder_hidden_states=self.embeddings.to(x), class_labels=labels).sample
        if n > 1:
            uncond, cond = out.chunk(2)
            out = uncond + self.guidance_scale * (cond - uncond)
        return UNet2DOutput(sample=out)


class StableDiffusionUpscaleSR(LatentSR):
    family = "sd-upscale"
    description = (
        "stock SD x4 upscaler pipeline (AutoencoderKL f=4, text- and noise-level-conditioned "
        "UNet2DConditionModel, guidance), v-prediction"
    )

    def __init__(self, name: str, pipe, card: dict | None = None):
        card = card or {}
        factor = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
        expected = pipe.vae.config.latent_channels + LR_CHANNELS
        if pipe.unet.config.in_channels != expected:
            raise ModelUnavailableError(
                f"{name}: the UNet takes {pipe.unet.config.in_channels} channels, not "
                f"latent + LR = {expected}: not a stock SD upscaler layout"
            )
        super().__init__(name, pipe.vae, TextGuidedUNet(pipe.unet), dict(pipe.scheduler.config), factor, card)
        self.pipeline = pipe  # its text encoder, tokenizer, low-res scheduler and encode_prompt
        self.description = card.get("description", self.description)
        self.prompt = card.get("prompt", "")
        self.negative_prompt = card.get("negative_prompt", "")
        self.guidance_scale = float(card.get("guidance_scale", 9.0))
        self.noise_level = int(card.get("noise_level", 20))

    @classmethod
    def from_folder(cls, folder, name: str, card: dict | None = None) -> StableDiffusionUpscaleSR:
        from diffusers import StableDiffusionUpscalePipeline

        return cls(name, load_pipeline(StableDiffusionUpscalePipeline, folder), card)

    @property
    def guided(self) -> bool:
        """Guidance only where it changes the result: with equal prompts both branches agree."""
        return self.guidance_scale > 1 and self.prompt != self.negative_prompt

    @property
    def max_noise_level(self) -> int:
        return int(self.pipeline.config.max_noise_level)

    def _place(self):
        super()._place()
        torch.nn.Module.to(self.pipeline.text_encoder, self.device, self.dtype)

    @torch.inference_mode()
    def text_embeddings(self) -> torch.Tensor:
        """(negative, positive) embeddings with guidance, else the prompt's alone."""
        positive, negative = self.pipeline.encode_prompt(
            self.prompt, self.device, 1, self.guided, negative_prompt=self.negative_prompt or None
        )
        return torch.cat([negative, positive]) if self.guided else positive

    def run(self, lr, scale, settings, on_step=None, keep_frames=0):
        if not 0 <= self.noise_level <= self.max_noise_level:
            raise SRInputError(f"noise_level must be 0 to {self.max_noise_level}, got {self.noise_level}")
        labels = torch.tensor([self.noise_level], dtype=torch.long)
        self.unet.set_condition(self.text_embeddings(), labels, self.guidance_scale)
        image, calls, trajectory = super().run(lr, scale, settings, on_step, keep_frames)
        per_call = self.unet.evaluations  # guidance: two evaluations in each call, as the field counts NFE
        return image, NetworkCalls(calls.nfe * per_call, calls.tiles * per_call), trajectory

    def _prepare(self, lr, scale, generator=None):
        cond, shape = super()._prepare(lr, scale)  # the LR as is: the latent is at LR resolution
        level = torch.tensor([self.noise_level], dtype=torch.long, device=cond.device)
        # drawn from the run's generator before x_T, in the stock pipeline's order: same seed, same image
        noise = randn_tensor(tuple(cond.shape), generator=generator, dtype=torch.float32).to(cond)
        noised = self.pipeline.low_res_scheduler.add_noise(cond, noise, level)
        return noised, shape

    def encode(self, image: torch.Tensor) -> torch.Tensor:
        return super().encode(image) * self.vae.config.scaling_factor

    def decode(self, z: torch.Tensor, tile: int | None = None) -> torch.Tensor:
        return super().decode(z / self.vae.config.scaling_factor, tile)
