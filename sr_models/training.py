"""A small training loop shared by every family: EMA, atomic safetensors checkpoints, resume,
time budget, periodic validation, NaN stop, progress bar.

Layout of a run folder ``OUT``:

* ``OUT/`` — the exported model (diffusers ``save_pretrained`` layout with EMA weights,
  ``sr_model.json`` with the training record, ``README.md`` model card), rewritten at every
  checkpoint so a killed run always leaves a usable model;
* ``OUT/checkpoint/`` — the training state (weights, EMA, optimizer, step, clock). It is replaced
  atomically (write ``checkpoint.tmp``, then rename), so a kill at any instant leaves either the
  old or the new checkpoint, never a torn one.
"""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from diffusers.training_utils import EMAModel
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

CHECKPOINT = "checkpoint"


class NonFiniteLossError(RuntimeError):
    pass


def hardware_description() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"CPU ({cpu}), {torch.get_num_threads()} threads"


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


class Trainer:
    """Trains ``model`` on ``loss_fn(model, step) -> scalar``.

    ``validate_fn(model) -> dict`` runs on the EMA weights; ``export_fn(model, out, record)``
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
        record: dict | None = None,
    ):
        self.model, self.loss_fn, self.cfg = model, loss_fn, config
        self.validate_fn, self.export_fn = validate_fn, export_fn
        self.model_config = model_config or {}
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.params, lr=config.learning_rate, weight_decay=0.0)
        self.ema = EMAModel(self.params, decay=config.ema_decay)
        self.step = 0
        self.elapsed = 0.0  # seconds of training over all resumed runs
        self.history: list[dict] = []
        self.record = dict(record or {})
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
        tensors = load_file(path / "state.safetensors")
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
        record = dict(self.record)
        record["training"] = {
            "command": self.cfg.command,
            "steps": self.step,
            "batch_size": self.cfg.batch_size,
            "learning_rate": self.cfg.learning_rate,
            "ema_decay": self.cfg.ema_decay,
            "wall_clock_minutes": round(self.elapsed / 60, 2),
            "hardware": hardware_description(),
            "torch": torch.__version__,
            "seed": self.cfg.seed,
            "last_validation": validation,
        }
        if self.export_fn is not None:
            self._with_ema(lambda m: self.export_fn(m, self.out, record))

    # ----- loop --------------------------------------------------------------------------------
    def _validate(self) -> dict | None:
        if self.validate_fn is None:
            return None
        self.model.eval()
        with torch.no_grad():
            result = self._with_ema(self.validate_fn)
        self.model.train()
        return result

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
        bar = tqdm(total=cfg.max_steps, initial=self.step, desc="train", dynamic_ncols=True,
                   mininterval=0.5 if sys.stderr.isatty() else 30)
        last_saved = self.step
        while self.step < cfg.max_steps:
            if self.elapsed >= budget:
                stop_reason = "time budget"
                break
            t0 = time.perf_counter()
            loss = self.loss_fn(self.model, self.step)
            if not torch.isfinite(loss):
                bar.close()
                raise NonFiniteLossError(
                    f"loss became {loss.item()} at step {self.step}; stopped without saving it. "
                    f"The last good checkpoint (step {last_saved}) is in {self.ckpt_dir}: "
                    "lower --learning-rate and resume."
                )
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(self.params, cfg.grad_clip)
            self.optimizer.step()
            self.ema.step(self.params)
            self.step += 1
            dt = time.perf_counter() - t0
            self.elapsed += dt
            entry = {"step": self.step, "loss": float(loss.item()), "seconds": round(self.elapsed, 2)}
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
        print(f"stopped at step {self.step} ({stop_reason}); {self.elapsed / 60:.1f} min; model in {self.out}")
        return {"step": self.step, "elapsed": self.elapsed, "validation": validation, "stop_reason": stop_reason}
