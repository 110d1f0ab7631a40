"""Samplers and the denoising loop shared by the latent (LDM) and pixel (SR3) families.

Schedulers are diffusers' own; one saved scheduler config serves every sampler through
``from_config`` (step respacing: any number of steps without retraining). The loop is a short
function with a per-step callback carrying x_t and the predicted clean sample x̂0, as in
k-diffusion, which is all a trajectory animation needs.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler
from diffusers.utils.torch_utils import randn_tensor

from sr_models.types import SAMPLERS

# Training noise schedule of every diffusion model here. x0-prediction ("sample") learns far
# faster than epsilon-prediction on a CPU budget (see the model cards).
TRAIN_SCHEDULER = dict(
    num_train_timesteps=1000,
    beta_start=0.0001,
    beta_end=0.02,
    beta_schedule="linear",
    prediction_type="sample",
    clip_sample=False,
)


def make_scheduler(name: str, config: dict, spacing: str | None = None):
    """A sampler by name, built from the model's saved scheduler config.

    ``spacing`` (diffusers' ``timestep_spacing``): "leading" is the diffusers default but runs a
    1-step schedule at t = 0, where nothing is denoised; "trailing" always starts at t = T - 1.
    """
    extra = {"timestep_spacing": spacing} if spacing else {}
    if name == "ddim":
        return DDIMScheduler.from_config(config, clip_sample=False, set_alpha_to_one=True, **extra)
    if name == "ddpm":
        return DDPMScheduler.from_config(config, clip_sample=False, **extra)
    if name == "dpmsolver++":
        return DPMSolverMultistepScheduler.from_config(config, algorithm_type="dpmsolver++", solver_order=2, **extra)
    raise ValueError(f"unknown sampler {name!r}; choose from {', '.join(SAMPLERS)}")


def predicted_x0(scheduler, model_output: torch.Tensor, sample: torch.Tensor, t) -> torch.Tensor:
    """x̂0 from the network output, whatever the model predicts."""
    kind = scheduler.config.prediction_type
    if kind == "sample":
        return model_output
    alpha = scheduler.alphas_cumprod[int(t)].to(sample.dtype)
    if kind == "epsilon":
        return (sample - (1 - alpha).sqrt() * model_output) / alpha.sqrt()
    if kind == "v_prediction":
        return alpha.sqrt() * sample - (1 - alpha).sqrt() * model_output
    raise ValueError(f"unknown prediction type {kind}")


def schedule(scheduler, steps: int, strength: float = 1.0, device=None) -> torch.Tensor:
    """The timesteps to run: the whole respaced schedule of ``steps``, or its last ``strength`` part.

    ``strength`` < 1 is SDEdit (Meng et al. 2022, diffusers' img2img convention): the run starts
    part-way, from a noised guess instead of pure noise, and skips the first steps.
    """
    scheduler.set_timesteps(steps, device=device)
    if strength >= 1:
        return scheduler.timesteps
    run = max(1, min(steps, int(steps * strength)))
    begin = (steps - run) * scheduler.order
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(begin)  # multistep solvers index their own state
    return scheduler.timesteps[begin:]


def start_state(shape, scheduler, timesteps, generator: torch.Generator, x0=None, device=None) -> torch.Tensor:
    """x_T: pure noise (``x0`` None), or ``x0`` noised to the first of ``timesteps`` (SDEdit).

    The noise is drawn exactly as diffusers' pipelines draw it (``randn_tensor`` with a CPU
    generator), on the CPU and then moved to ``device``, so a seed gives the same image on every
    machine and device, and in the stock pipeline.
    """
    noise = randn_tensor(shape, generator=generator, dtype=torch.float32).to(device or "cpu")
    if x0 is None:
        return noise.mul_(scheduler.init_noise_sigma)
    return scheduler.add_noise(x0, noise, timesteps[:1])


BAND_ELEMENTS = 1 << 22  # a DDIM step on a larger state runs in bands of rows of about this size


def step(scheduler, out: torch.Tensor, t, x: torch.Tensor, **kwargs) -> torch.Tensor:
    """``scheduler.step(out, t, x).prev_sample``, in bands of rows for a large DDIM state.

    DDIM's update is elementwise, so bands give the same numbers while the step's temporaries
    (x̂0, ε̂, the direction, ...) stay band-sized, and each band is written back into ``x``: a
    4096² pixel-space state would otherwise hold about seven full-size float32 copies at once.
    Its noise for eta > 0 is drawn whole first, exactly as ``DDIMScheduler.step`` draws it, so
    banding never changes an image. Other schedulers (DDPM draws inside ``step``, DPM-Solver
    keeps past outputs) step whole and return a new tensor.
    """
    rows = max(1, BAND_ELEMENTS // max(1, x[0, :, 0].numel()))
    if not isinstance(scheduler, DDIMScheduler) or x.shape[0] != 1 or x.shape[-2] <= rows:
        return scheduler.step(out, t, x, **kwargs).prev_sample
    generator = kwargs.pop("generator", None)
    noise = None
    if kwargs.get("eta", 0) > 0:
        noise = randn_tensor(out.shape, generator=generator, device=out.device, dtype=out.dtype)
    for top in range(0, x.shape[-2], rows):
        band = (..., slice(top, top + rows), slice(None))
        band_noise = None if noise is None else noise[band]
        x[band] = scheduler.step(out[band], t, x[band], variance_noise=band_noise, **kwargs).prev_sample
    return x


def sample(
    denoise: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    scheduler,
    timesteps,
    generator: torch.Generator,
    eta: float = 0.0,
    on_step: Callable[[int, int, torch.Tensor, torch.Tensor, torch.Tensor], None] | None = None,
) -> tuple[torch.Tensor, int]:
    """Run the reverse process from the state ``x`` over ``timesteps``; returns (x0, network evaluations).

    ``denoise(x_t, t)`` returns the network output (conditioning is the caller's business);
    ``on_step(i, n, t, x_t, x0_hat)`` is called after every step (k-diffusion's callback). A large
    state is updated in place (see ``step``): a callback that keeps x_t must copy it.
    """
    kwargs = {}
    if isinstance(scheduler, DDIMScheduler):
        kwargs["eta"] = eta
    if isinstance(scheduler, (DDIMScheduler, DDPMScheduler)):
        kwargs["generator"] = generator  # stochastic steps drawn from the seeded generator too
    for i, t in enumerate(timesteps):
        model_input = scheduler.scale_model_input(x, t)
        out = denoise(model_input, t)
        x0 = predicted_x0(scheduler, out, x, t)
        x = step(scheduler, out, t, x, **kwargs)
        if on_step is not None:
            on_step(i, len(timesteps), t, x, x0)
    return x, len(timesteps)
