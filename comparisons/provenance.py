"""Where a result came from: git state, weight hashes, library versions, machine.

The one implementation behind every run card (the cascade study's ``run_card.json``, the app's
run-record zip), so they state the same facts the same way.
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WEIGHT_PATTERN = "*.safetensors"
_HASHES: dict[tuple[str, int, int], str] = {}  # (path, size, mtime) -> sha256: weights hashed once


def git_state(root: Path = ROOT) -> dict:
    """The commit the code ran from and whether tracked files differed from it (None outside git)."""

    def git(*args):
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10, check=True).stdout

    try:
        return {
            "commit": git("rev-parse", "HEAD").strip(),
            "dirty": bool(git("status", "--porcelain", "--untracked-files=no").strip()),
        }
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


@functools.lru_cache(maxsize=1)
def run_commit() -> str:
    """The commit the code of this process came from, read once: every study calls it before it runs, so a
    commit made while a long study runs is not what its card names. "+ uncommitted changes" when tracked
    files differed from it."""
    state = git_state()
    return (state["commit"] or "unknown") + (" + uncommitted changes" if state["dirty"] else "")


def start_run(out: Path) -> None:
    """What every study does first: fix the commit its card will name (``run_commit``), make its folder."""
    run_commit()
    Path(out).mkdir(parents=True, exist_ok=True)


def _update_from_file(digest, path: Path) -> None:
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)


def file_sha256(path: str | Path) -> str:
    """sha256 (hex) of one file, remembered while its size and modification time stay the same."""
    path = Path(path)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _HASHES:
        digest = hashlib.sha256()
        _update_from_file(digest, path)
        _HASHES[key] = digest.hexdigest()
    return _HASHES[key]


def weight_files(folder: str | Path) -> list[Path]:
    """The weight files of a model folder, sorted (subfolders included)."""
    return sorted(Path(folder).rglob(WEIGHT_PATTERN))


def weight_hashes(parts) -> dict[str, str]:
    """``{"model/relative/path.safetensors": sha256}`` for every local weight file of the models in
    ``parts`` (a cascade's stage models); models without a local folder (bicubic, a Hub model not yet
    downloaded) have none."""
    out = {}
    for part in parts:
        folder = getattr(part, "folder", None)
        if folder is None or not Path(folder).is_dir():
            continue
        for path in weight_files(folder):
            out[f"{part.name}/{path.relative_to(folder).as_posix()}"] = file_sha256(path)
    return out


def folder_digest(folder: str | Path, length: int = 16) -> str:
    """One sha256 over the bytes of all of a folder's weight files in sorted order (first ``length`` hex)."""
    digest = hashlib.sha256()
    for path in weight_files(folder):
        _update_from_file(digest, path)
    return digest.hexdigest()[:length]


def versions() -> dict:
    """Python's version and those of the main libraries this process has imported (None: not imported)."""
    out = {"python": sys.version.split()[0]}
    for name in ("numpy", "torch", "diffusers", "gradio", "PIL"):
        module = sys.modules.get(name)
        out[name] = getattr(module, "__version__", None) if module else None
    return out


def machine() -> dict:
    """The machine as fields: platform, processor, CPU count, torch threads, and the GPU if there is one."""
    import torch

    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }
    if torch.cuda.is_available():
        info["cuda"] = torch.cuda.get_device_name(0)
    return info


def machine_description() -> str:
    """The machine in one line: the device (GPU name or CPU model and threads), platform, torch version."""
    import torch

    from sr_models.device import hardware_description

    return f"{hardware_description()}, {platform.platform()}, torch {torch.__version__}"


def run_header(command: str, seconds: float) -> dict:
    """The fields every run card opens with: the command, the commit it started from, the machine, the
    number of processes it ran on (``comparisons.distributed``) and its seconds."""
    from comparisons import distributed

    return {
        "command": command,
        "commit": run_commit(),
        "machine": machine_description(),
        "processes": distributed.processes(),
        "seconds": round(seconds, 1),
    }
