"""Where models run and in what precision, and how much memory a run takes there.

Every command takes ``--device`` / ``--dtype`` (environment: ``SR_DEVICE`` / ``SR_DTYPE``); left
unset, the best device present is used (CUDA, then Apple MPS, then the CPU) in ``auto`` precision,
resolved per model (``auto_dtype``): bfloat16 network calls on a CPU with native bf16 units
(AVX512-BF16 or AMX, read from the CPU flags) for a model whose card records that bfloat16 moves
its validation PSNR by at most 0.05 dB (``python -m comparisons.precision``), half precision on
CUDA, float32 everywhere else. ``python -m comparisons.speed`` measures what it gains. Noise is always drawn from a CPU
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
AUTO = "auto"
HALF_PSNR_TOLERANCE_DB = 0.05  # what a half precision may move a model's validation PSNR-Y and still be its default
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # x86 units that compute in bfloat16 (Zen 4, Sapphire Rapids)


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


def pick_dtype(
    name: str | torch.dtype | None = None, device: torch.device | str = "cpu", card: dict | None = None
) -> torch.dtype:
    """``name`` ("auto", "float32", "float16", "bfloat16"), else $SR_DTYPE, else auto: the precision
    ``auto_dtype`` picks for the model with this ``card`` on ``device``."""
    if isinstance(name, torch.dtype):
        return name
    name = (name or os.environ.get(DTYPE_ENV) or AUTO).strip().lower()
    if name == AUTO:
        return auto_dtype(torch.device(device), card)
    if name not in DTYPES:
        raise SRInputError(f"unknown dtype {name!r}; choose from {AUTO}, {', '.join(DTYPES)}")
    return DTYPES[name]


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (/proc/cpuinfo; empty where it is missing)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def native_bf16() -> bool:
    """Whether this CPU computes in bfloat16 itself. Elsewhere torch emulates it, 15-400x slower than
    float32 (measured on an AVX2-only AMD EPYC: a 3x3 convolution at 0.3-8.5 GFLOP/s vs 87-131)."""
    return any(flag in cpu_flags() for flag in NATIVE_BF16_FLAGS)


def validated_half(card: dict | None, dtype: str) -> bool:
    """Whether the card records ``dtype`` moving the model's validation PSNR-Y by at most the tolerance."""
    measured = ((card or {}).get("precision") or {}).get(dtype) or {}
    delta = measured.get("val_psnr_y_delta_db")
    return delta is not None and abs(delta) <= HALF_PSNR_TOLERANCE_DB


def auto_dtype(device: torch.device, card: dict | None = None) -> torch.dtype:
    """The fastest precision that keeps the answer: float32 unless a half precision is both fast here and
    validated for this model (its card), or the device is a GPU. On CUDA, float16, or bfloat16 for a model
    whose card says float16 overflows (the SD x4 upscaler's known NaNs) where the GPU has it."""
    if device.type == "cuda":
        if not (card or {}).get("float16_overflows"):
            return torch.float16
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    if device.type == "cpu" and native_bf16() and validated_half(card, "bfloat16"):
        return torch.bfloat16
    return torch.float32


def auto_reason(device: torch.device | str, card: dict | None, dtype: torch.dtype) -> str:
    """Why ``auto`` chose ``dtype`` for this model here, in a few words (the run card and the app say it)."""
    device = torch.device(device)
    if device.type == "cuda":
        return "half precision on the GPU" if dtype != torch.float32 else "float16 overflows and no bfloat16 here"
    if dtype == torch.bfloat16:
        return "native bfloat16 on this CPU, validated on the model's validation split"
    if device.type == "cpu" and not native_bf16():
        return "no native bfloat16 on this CPU (no AVX512-BF16 / AMX)"
    return "bfloat16 not validated for this model" if device.type == "cpu" else "float32 on this device"


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def place(module: torch.nn.Module, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    """Move and cast a whole module (every layer: these small models keep nothing in float32).

    On the CPU the weights are also stored channels_last: oneDNN's convolutions then run without a
    layout change, measured here (2-core AVX2 EPYC, float32) 25 % faster on the SR3 UNet at 256² and
    17 % on the VAE decoder, the same images within float error (max 4e-6 on the UNet's output)."""
    module = torch.nn.Module.to(module, device, dtype)  # diffusers' ModelMixin.to warns on dtype casts
    memory_format = torch.channels_last if torch.device(device).type == "cpu" else torch.contiguous_format
    return module.to(memory_format=memory_format)


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
        choices=[AUTO, *DTYPES],
        help=f"precision of the networks (default: ${DTYPE_ENV}, else auto: bfloat16 on a CPU with native bf16 "
        "for models validated in it, half precision on CUDA, float32 otherwise)",
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
    units = [flag for flag in (*NATIVE_BF16_FLAGS, "avx512f", "avx2") if flag in cpu_flags()]
    bf16 = "native bfloat16" if native_bf16() else "no native bfloat16"
    return f"CPU ({cpu}; {', '.join(units) or 'no AVX'}; {bf16}), {torch.get_num_threads()} threads"


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
