"""Samplers and the denoising loop shared by the latent (LDM) and pixel (SR3) families.

Schedulers are diffusers' own; one saved scheduler config serves every sampler through
``from_config`` (step respacing: any number of steps without retraining). The loop is a short
function with a per-step callback carrying x_t and the predicted clean sample x̂0, as in
k-diffusion, which is all a trajectory animation needs.
"""

from __future__ import annotations

from typing import Callable

import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler
from diffusers.utils.torch_utils import randn_tensor

SAMPLERS = ("ddim", "ddpm", "dpmsolver++")

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
        return noise * scheduler.init_noise_sigma
    return scheduler.add_noise(x0, noise, timesteps[:1])


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
    ``on_step(i, n, t, x_t, x0_hat)`` is called after every step (k-diffusion's callback).
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
        x = scheduler.step(out, t, x, **kwargs).prev_sample
        if on_step is not None:
            on_step(i, len(timesteps), t, x, x0)
    return x, len(timesteps)
