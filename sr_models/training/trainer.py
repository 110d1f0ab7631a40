"""A small training loop shared by every family: EMA, atomic safetensors checkpoints, resume,
time budget, periodic validation, NaN stop, progress bar, on Hugging Face ``accelerate`` (the
diffusers training-script convention): any device, mixed precision, gradient accumulation, and
data parallelism over several processes / GPUs / machines with ``accelerate launch`` (or
``torchrun``).

Data parallelism draws every batch as the *global* batch (per-process batch x processes, from the
generator seeded by (seed, step)) and gives each process its slice (``local``), and the diffusion
noise is drawn for the global batch too. So N processes of batch B take exactly the steps one
process of batch N x B takes, up to float error (``tests/test_training.py`` checks it with two
gloo processes on the CPU), and a resumed run sees the same batches whatever the process count.

Layout of a run folder ``OUT``:

* ``OUT/`` — the exported model (diffusers ``save_pretrained`` layout with EMA weights,
  ``sr_model.json``, the card with its training section, and ``README.md`` rendered from it), rewritten at every
  checkpoint so a killed run always leaves a usable model;
* ``OUT/checkpoint/`` — the training state (weights, EMA, optimizer, step, clock). It is replaced
  atomically (write ``checkpoint.tmp``, then rename), so a kill at any instant leaves either the
  old or the new checkpoint, never a torn one.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import Accelerator, PartialState
from accelerate.state import AcceleratorState
from diffusers.training_utils import EMAModel
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from sr_models.device import hardware_description

CHECKPOINT = "checkpoint"


class NonFiniteLossError(RuntimeError):
    pass


def world() -> tuple[int, int]:
    """(this process's index, number of processes) of the current (possibly distributed) run."""
    state = PartialState()
    return state.process_index, state.num_processes


def local(batch: torch.Tensor) -> torch.Tensor:
    """This process's slice of a global batch, on this process's device."""
    index, count = world()
    if batch.shape[0] % count:
        raise ValueError(f"a global batch of {batch.shape[0]} does not split over {count} processes")
    part = batch.shape[0] // count
    return batch[index * part : (index + 1) * part].to(PartialState().device)


class _LossModule(torch.nn.Module):
    """The loss as a module's forward, so a data-parallel wrapper sees every use of the weights
    (the autoencoder's loss calls ``encode`` and ``decode``, not ``forward``)."""

    def __init__(self, model: torch.nn.Module, loss_fn: Callable[[torch.nn.Module, int], torch.Tensor]):
        super().__init__()
        self.model, self.loss_fn = model, loss_fn

    def forward(self, key: int) -> torch.Tensor:
        return self.loss_fn(self.model, key)


@dataclass
class TrainConfig:
    out: Path
    max_steps: int = 10_000
    max_minutes: float | None = None  # total training time, summed over resumed runs
    batch_size: int = 16
    learning_rate: float = 2e-4
    ema_decay: float = 0.999
    checkpoint_every: int = 200
    validate_every: int = 200
    grad_clip: float = 1.0
    seed: int = 0
    restart: bool = False
    command: str = ""  # the command line that reproduces this run, for the model card
    mixed_precision: str = "no"  # accelerate's: "no", "fp16" (GPUs), "bf16"
    cpu: bool = False  # train on the CPU even where a GPU is present
    gradient_accumulation: int = 1  # micro-batches per optimizer step


class Trainer:
    """Trains ``model`` on ``loss_fn(model, key) -> scalar``.

    ``key`` numbers the micro-batch (``step * gradient_accumulation + micro``: the step itself
    without accumulation); the loss draws its global batch from it and keeps its ``local`` slice.

    ``validate_fn(model) -> dict`` runs on the EMA weights; ``export_fn(model, out, card)``
    writes the usable model folder; ``model_config`` (the model's constructor arguments) is
    compared on resume so a checkpoint is never loaded into a different architecture.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        loss_fn: Callable[[torch.nn.Module, int], torch.Tensor],
        config: TrainConfig,
        *,
        validate_fn: Callable[[torch.nn.Module], dict] | None = None,
        export_fn: Callable[[torch.nn.Module, Path, dict], None] | None = None,
        model_config: dict | None = None,
        card: dict | None = None,
    ):
        # One process may train several models in turn (the zoo command, tests): each Trainer sets its
        # own precision; the process group (PartialState) is kept.
        AcceleratorState._reset_state(reset_partial_state=False)
        self.accelerator = Accelerator(
            mixed_precision=config.mixed_precision,
            gradient_accumulation_steps=config.gradient_accumulation,
            cpu=config.cpu,
        )
        self.model, self.loss_fn, self.cfg = model.to(self.accelerator.device), loss_fn, config
        self.validate_fn, self.export_fn = validate_fn, export_fn
        self.model_config = model_config or {}
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.params, lr=config.learning_rate, weight_decay=0.0)
        self.ema = EMAModel(self.params, decay=config.ema_decay)
        self.ema.to(self.accelerator.device)
        self.loss_module, self.optimizer = self.accelerator.prepare(_LossModule(self.model, loss_fn), self.optimizer)
        self.is_main = self.accelerator.is_main_process
        self.step = 0
        self.elapsed = 0.0  # seconds of training over all resumed runs
        self.history: list[dict] = []
        self.card = dict(card or {})
        self.out = Path(config.out)
        self.ckpt_dir = self.out / CHECKPOINT

    # ----- checkpoints -------------------------------------------------------------------------
    def _state_tensors(self) -> dict[str, torch.Tensor]:
        tensors = {f"model.{k}": v.detach().contiguous() for k, v in self.model.state_dict().items()}
        tensors.update({f"ema.{i}": p.detach().contiguous() for i, p in enumerate(self.ema.shadow_params)})
        for pid, state in self.optimizer.state_dict()["state"].items():
            for key, value in state.items():
                tensors[f"optim.{pid}.{key}"] = torch.as_tensor(value).detach().contiguous()
        return tensors

    def save_checkpoint(self):
        self.accelerator.wait_for_everyone()
        if not self.is_main:  # every process holds the same weights: one writes them
            return
        tmp = self.out / (CHECKPOINT + ".tmp")
        old = self.out / (CHECKPOINT + ".old")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        save_file(self._state_tensors(), tmp / "state.safetensors")
        meta = {
            "step": self.step,
            "elapsed_seconds": self.elapsed,
            "ema_optimization_step": self.ema.optimization_step,
            "param_groups": self.optimizer.state_dict()["param_groups"],
            "model_config": self.model_config,
            "history": self.history,
        }
        (tmp / "trainer_state.json").write_text(json.dumps(meta, indent=1, default=str))
        for f in tmp.iterdir():  # make the bytes durable before the rename publishes them
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        if self.ckpt_dir.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(self.ckpt_dir, old)
        os.replace(tmp, self.ckpt_dir)
        shutil.rmtree(old, ignore_errors=True)

    def _find_checkpoint(self) -> Path | None:
        for candidate in (self.ckpt_dir, self.out / (CHECKPOINT + ".old")):
            if (candidate / "trainer_state.json").exists() and (candidate / "state.safetensors").exists():
                return candidate
        return None

    def load_checkpoint(self) -> bool:
        path = self._find_checkpoint()
        if path is None:
            return False
        meta = json.loads((path / "trainer_state.json").read_text())
        if meta.get("model_config") != json.loads(json.dumps(self.model_config, default=str)):
            raise ValueError(
                f"the checkpoint in {path} was made for a different model configuration "
                f"({meta.get('model_config')} vs {self.model_config}); use --restart or another --out"
            )
        tensors = load_file(path / "state.safetensors", device=str(self.accelerator.device))
        self.model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        for i, p in enumerate(self.ema.shadow_params):
            p.data.copy_(tensors[f"ema.{i}"])
        self.ema.optimization_step = meta["ema_optimization_step"]
        state: dict = {}
        for key, value in tensors.items():
            if key.startswith("optim."):
                _, pid, name = key.split(".", 2)
                state.setdefault(int(pid), {})[name] = value
        self.optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
        self.step, self.elapsed, self.history = meta["step"], meta["elapsed_seconds"], meta["history"]
        return True

    # ----- export ------------------------------------------------------------------------------
    def _with_ema(self, fn):
        self.ema.store(self.params)
        self.ema.copy_to(self.params)
        try:
            return fn(self.model)
        finally:
            self.ema.restore(self.params)

    def export(self, validation: dict | None):
        if not self.is_main:
            return
        card = dict(self.card)
        card["training"] = {
            "command": self.cfg.command,
            "steps": self.step,
            "batch_size": self.cfg.batch_size,
            "learning_rate": self.cfg.learning_rate,
            "ema_decay": self.cfg.ema_decay,
            "wall_clock_minutes": round(self.elapsed / 60, 2),
            "hardware": hardware_description(),
            "processes": self.accelerator.num_processes,
            "mixed_precision": self.cfg.mixed_precision,
            "gradient_accumulation": self.cfg.gradient_accumulation,
            "torch": torch.__version__,
            "seed": self.cfg.seed,
            "last_validation": validation,
        }
        if self.export_fn is not None:
            self._with_ema(lambda m: self.export_fn(m, self.out, card))

    # ----- loop --------------------------------------------------------------------------------
    def _validate(self) -> dict | None:
        if self.validate_fn is None or not self.is_main:
            return None
        self.model.eval()
        with torch.no_grad():
            result = self._with_ema(self.validate_fn)
        self.model.train()
        return result

    def _all_agree(self, flag: bool) -> bool:
        """True on every process if it is true on any (so they never wait on each other forever)."""
        if self.accelerator.num_processes == 1:
            return flag
        return bool(self.accelerator.reduce(torch.tensor([float(flag)], device=self.accelerator.device), "sum") > 0)

    def _optimizer_step(self) -> float:
        """One optimizer step over ``gradient_accumulation`` micro-batches; returns the mean loss."""
        cfg, total = self.cfg, 0.0
        for micro in range(cfg.gradient_accumulation):
            with self.accelerator.accumulate(self.loss_module):
                with self.accelerator.autocast():
                    loss = self.loss_module(self.step * cfg.gradient_accumulation + micro)
                value = float(self.accelerator.reduce(loss.detach().float(), "mean"))  # same on every process
                if not math.isfinite(value):
                    raise NonFiniteLossError(
                        f"loss became {value} at step {self.step}; stopped without saving it. "
                        f"The last good checkpoint is in {self.ckpt_dir}: lower --learning-rate and resume."
                    )
                self.accelerator.backward(loss)
                if cfg.grad_clip and self.accelerator.sync_gradients:
                    self.accelerator.clip_grad_norm_(self.params, cfg.grad_clip)
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
            total += value
        return total / cfg.gradient_accumulation

    def train(self) -> dict:
        cfg = self.cfg
        if cfg.restart:
            for name in (CHECKPOINT, CHECKPOINT + ".old", CHECKPOINT + ".tmp"):
                shutil.rmtree(self.out / name, ignore_errors=True)
        self.out.mkdir(parents=True, exist_ok=True)
        if self.load_checkpoint():
            print(f"resumed from {self.ckpt_dir} at step {self.step} ({self.elapsed / 60:.1f} min trained)")
        budget = math.inf if cfg.max_minutes is None else cfg.max_minutes * 60
        self.model.train()
        validation = self.history[-1].get("validation") if self.history else None
        stop_reason = "max steps"
        bar = tqdm(
            total=cfg.max_steps,
            initial=self.step,
            desc="train",
            dynamic_ncols=True,
            mininterval=0.5 if sys.stderr.isatty() else 30,
            disable=not self.is_main,
        )
        last_saved = self.step
        while self.step < cfg.max_steps:
            if self._all_agree(self.elapsed >= budget):  # every process stops at the same step
                stop_reason = "time budget"
                break
            t0 = time.perf_counter()
            loss = self._optimizer_step()
            self.ema.step(self.params)
            self.step += 1
            dt = time.perf_counter() - t0
            self.elapsed += dt
            entry = {"step": self.step, "loss": loss, "seconds": round(self.elapsed, 2)}
            if cfg.validate_every and self.step % cfg.validate_every == 0:
                validation = self._validate()
                entry["validation"] = validation
            if self.step % 10 == 0 or "validation" in entry:
                self.history.append(entry)
            postfix = {"loss": f"{entry['loss']:.4f}", "s/step": f"{dt:.2f}"}
            if validation:
                postfix.update({k: f"{v:.2f}" for k, v in validation.items() if isinstance(v, float)})
            bar.set_postfix(postfix, refresh=False)
            bar.update(1)
            if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                self.save_checkpoint()
                self.export(validation)
                last_saved = self.step
        bar.close()
        if self.step != last_saved or not self._find_checkpoint():
            if cfg.validate_every and (not self.history or "validation" not in self.history[-1]):
                validation = self._validate()
                self.history.append({"step": self.step, "validation": validation, "seconds": self.elapsed})
            self.save_checkpoint()
            self.export(validation)
        self.accelerator.wait_for_everyone()
        if self.is_main:
            print(f"stopped at step {self.step} ({stop_reason}); {self.elapsed / 60:.1f} min; model in {self.out}")
        return {"step": self.step, "elapsed": self.elapsed, "validation": validation, "stop_reason": stop_reason}
