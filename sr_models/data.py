"""The evaluation protocol: image folders, the held-out validation split, and test pairs.

Test pairs get their LR from the benchmark's degradation (``sr_models.degradation``), as do the
training patches (``sr_models.training.patches``), so training validation and the benchmark
measure the same thing.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from sr_models.degradation import center_crop, degrade, hr_multiple

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


SPLITS = ("train", "val", "all")
VAL_EVERY = 10  # one image in ten (by a stable hash of its folder and name) is held out for validation


def is_validation(path: Path) -> bool:
    """Whether an image belongs to the held-out validation split of a training pool.

    The split is a hash of ``folder/name`` (not of a listing order), so it is the same on every
    machine and does not move when images are added to the pool.
    """
    return zlib.crc32(f"{path.parent.name}/{path.name}".encode()) % VAL_EVERY == 0


def split_images(files: list[Path], split: str) -> list[Path]:
    """``train``: the pool minus its validation images; ``val``: those only; ``all``: every image."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")
    if split == "all":
        return list(files)
    return [f for f in files if is_validation(f) == (split == "val")]


def find_images(folder: str | Path) -> list[Path]:
    """Image files below ``folder`` (recursive), sorted for reproducibility."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"data folder {folder} does not exist")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) found below {folder}")
    return files


@dataclass
class EvalPair:
    name: str
    hr: np.ndarray  # mod-cropped (and center-cropped if asked) uint8 RGB
    lr: np.ndarray


def list_images(folder: str | Path, split: str = "all") -> list[Path]:
    """Image files directly in ``folder``, sorted; ``split`` picks a part of a training pool."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"test folder {folder} does not exist")
    files = split_images(sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), split)
    if not files:
        raise FileNotFoundError(f"no images in {folder}" + (f" (split {split!r})" if split != "all" else ""))
    return files


def eval_pairs(
    folder: str | Path, scale: int, limit: int | None = None, crop: int | None = None, split: str = "all"
) -> Iterator[EvalPair]:
    """HR/LR pairs of a test folder with the benchmark degradation.

    ``crop``: evaluate on the HR center crop of that size (a multiple of the scale), for slow models.
    """
    for path in list_images(folder, split)[:limit]:
        hr = np.asarray(Image.open(path).convert("RGB"))
        if crop:
            hr = center_crop(hr, crop, multiple=hr_multiple(scale))  # HR / scale whole, also for 2.5x
        hr, lr = degrade(hr, scale)
        yield EvalPair(path.stem, hr, lr)
