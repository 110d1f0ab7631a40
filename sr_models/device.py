"""Where models run and in what precision, and how much memory a run takes there.

Every command takes ``--device`` / ``--dtype`` (environment: ``SR_DEVICE`` / ``SR_DTYPE``); left
unset, the best device present is used (CUDA, then Apple MPS, then the CPU) in float32, the
precision every published number here was measured in (half precision is one flag away, and
``python -m comparisons.speed`` measures what it gains). Noise is always drawn from a CPU
``torch.Generator`` (see ``sr_models.sampling.start_state``), so a seed gives the same image on
every device up to float error.
"""

from __future__ import annotations

import ctypes
import gc
import os
import platform
import threading

import torch

from sr_models.types import SRInputError

DEVICE_ENV, DTYPE_ENV = "SR_DEVICE", "SR_DTYPE"
DEVICES = ("auto", "cpu", "cuda", "mps")
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def best_device() -> str:
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def pick_device(name: str | torch.device | None = None) -> torch.device:
    """``name`` ("auto", "cpu", "cuda", "cuda:1", "mps"), else $SR_DEVICE, else the best present."""
    if isinstance(name, torch.device):
        return name
    name = (name or os.environ.get(DEVICE_ENV) or "auto").strip().lower()
    if name == "auto":
        return torch.device(best_device())
    kind = name.split(":")[0]
    if kind not in DEVICES:
        raise SRInputError(f"unknown device {name!r}; choose from {', '.join(DEVICES)} (or cuda:N)")
    if kind == "cuda" and not torch.cuda.is_available():
        raise SRInputError("device 'cuda' asked for, but torch sees no CUDA GPU here (use --device cpu or auto)")
    if kind == "mps" and best_device() != "mps":
        raise SRInputError("device 'mps' asked for, but Apple's MPS backend is not available here")
    return torch.device(name)


def pick_dtype(name: str | torch.dtype | None = None) -> torch.dtype:
    """``name`` ("float32", "float16", "bfloat16"), else $SR_DTYPE, else float32."""
    if isinstance(name, torch.dtype):
        return name
    name = (name or os.environ.get(DTYPE_ENV) or "float32").strip().lower()
    if name not in DTYPES:
        raise SRInputError(f"unknown dtype {name!r}; choose from {', '.join(DTYPES)}")
    return DTYPES[name]


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def place(module: torch.nn.Module, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    """Move and cast a whole module (every layer: these small models keep nothing in float32)."""
    return torch.nn.Module.to(module, device, dtype)  # diffusers' ModelMixin.to warns on dtype casts


def add_device_arguments(parser) -> None:
    """``--device`` and ``--dtype``, the same on every command."""
    parser.add_argument(
        "--device",
        choices=None,
        default=None,
        metavar="{auto,cpu,cuda,cuda:N,mps}",
        help=f"where models run (default: ${DEVICE_ENV}, else the best present: cuda, mps, cpu)",
    )
    parser.add_argument(
        "--dtype",
        default=None,
        choices=list(DTYPES),
        help=f"precision of the networks (default: ${DTYPE_ENV}, else float32)",
    )


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


def _release_freed_memory() -> None:
    """Hand freed heap pages back to the OS, so the next run's resident-set growth is its own."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the measure is then an upper bound of new pages only
        pass


def rss_bytes() -> int:
    """The process's resident set now (0 where /proc is missing)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):  # not Linux: no sampling, report 0
        return 0


_OPEN: list[PeakMemory] = []  # the meters now measuring, outermost first (cascades nest stages)


class PeakMemory:
    """Peak memory of a block above what was in use when it began.

    On CUDA: the allocator's peak (``max_memory_allocated``). Elsewhere: the process's resident
    set, sampled every 5 ms, after returning freed pages to the OS at the start, so a warm run
    (weights loaded, buffers cached by the allocator) reports what it really uses instead of 0.
    """

    def __init__(self, device: torch.device | str = "cpu", interval: float = 0.005):
        self.device = torch.device(device)
        self.interval = interval
        self.peak_mb = 0.0

    @property
    def _cuda(self) -> bool:
        return self.device.type == "cuda"

    def _sample(self):
        while not self._stop.wait(self.interval):
            rss = rss_bytes()
            for meter in list(_OPEN):  # one sampling thread serves nested meters (a wake-up steals CPU)
                if not meter._cuda:
                    meter._max = max(meter._max, rss)

    def __enter__(self):
        if self._cuda:
            torch.cuda.synchronize(self.device)
            self._start = torch.cuda.memory_allocated(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._max = self._start
        else:
            outermost = not _OPEN
            if outermost:  # once per run: a cascade's stages share their run's clean start
                _release_freed_memory()
            self._start = self._max = rss_bytes()
            self._thread = None
            if outermost or all(m._cuda for m in _OPEN):
                self._stop = threading.Event()
                self._thread = threading.Thread(target=self._sample, daemon=True)
                self._thread.start()
        _OPEN.append(self)
        return self

    def __exit__(self, *exc):
        _OPEN.remove(self)
        if self._cuda:
            torch.cuda.synchronize(self.device)
            self._max = max(self._max, torch.cuda.max_memory_allocated(self.device))
        else:
            if self._thread is not None:
                self._stop.set()
                self._thread.join()
            self._max = max(self._max, rss_bytes())
        for outer in _OPEN:  # an inner reset of CUDA's peak must not hide this block from the outer one
            outer._max = max(outer._max, self._max)
        self.peak_mb = max(0.0, (self._max - self._start) / 2**20)
        return False
