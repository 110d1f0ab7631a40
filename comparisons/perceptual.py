"""Perceptual metrics (LPIPS, FID, IS) whose pretrained weights are checked before use.

* LPIPS: ``lpips.LPIPS(net='alex')``; its linear calibration layers ship inside the ``lpips``
  package, its AlexNet backbone is torchvision's ImageNet checkpoint in the torch hub cache.
* FID / IS: ``torchmetrics`` on torch-fidelity's Inception-v3 (the TF FID weights), also a torch hub
  checkpoint. A benchmark test set has 5-100 images, far too few for a whole-image FID (the
  2048-d feature covariance needs thousands of samples), so both are computed on patches; see
  :func:`distribution_metrics` and the ``protocol`` string it returns.

Nothing here downloads: the metric functions look for the weight files in the cache first and
raise :class:`PerceptualWeightsMissing` (with the prefetch command) instead of letting a library
try the network. ``python -m comparisons.perceptual --prefetch`` is the one place that downloads.
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import socket
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import lpips
import numpy as np
import torch
from skimage.util import view_as_windows
from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3
from torchmetrics.image.fid import FrechetInceptionDistance, NoTrainInceptionV3
from torchmetrics.image.inception import InceptionScore
from torchvision.models import AlexNet_Weights

PREFETCH_COMMAND = "python -m comparisons.perceptual --prefetch"
DEFAULT_PATCH = 64
_DOWNLOAD_TIMEOUT_S = 60  # a stalled connection fails instead of hanging the prefetch


class PerceptualWeightsMissing(RuntimeError):
    """A pretrained network a perceptual metric needs is not on disk."""


@dataclass(frozen=True)
class WeightFile:
    """One pretrained checkpoint: where the library reads it from and where it comes from."""

    name: str
    description: str
    url: str | None  # None: ships inside a package, cannot be fetched separately

    @property
    def path(self) -> Path:
        if self.url is None:  # lpips' linear layers, read by LPIPS.__init__ from its package dir
            return Path(lpips.__file__).parent / "weights" / "v0.1" / "alex.pth"
        # Same rule as torch.hub.load_state_dict_from_url (used by torchvision and torch-fidelity):
        # <torch.hub.get_dir()>/checkpoints/<basename of the URL>; get_dir follows $TORCH_HOME.
        return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(self.url).path)

    def present(self) -> bool:
        return self.path.is_file()


WEIGHTS: dict[str, WeightFile] = {
    "alexnet": WeightFile(
        "alexnet", "torchvision AlexNet ImageNet weights (LPIPS backbone)", AlexNet_Weights.IMAGENET1K_V1.url
    ),
    "lpips_linear": WeightFile("lpips_linear", "LPIPS v0.1 AlexNet linear layers (ship with lpips)", None),
    "inception": WeightFile("inception", "torch-fidelity Inception-v3 FID weights", URL_INCEPTION_V3),
}

# Which weight files each metric reads.
METRIC_WEIGHTS: dict[str, tuple[str, ...]] = {
    "lpips": ("lpips_linear", "alexnet"),
    "fid": ("inception",),
    "inception_score": ("inception",),
}


def _missing_message(metric: str) -> str | None:
    missing = [WEIGHTS[n] for n in METRIC_WEIGHTS[metric] if not WEIGHTS[n].present()]
    if not missing:
        return None
    parts = []
    for w in missing:
        source = f"from {w.url}" if w.url else "reinstall the lpips package"
        parts.append(f"{w.description} not found at {w.path} ({source})")
    return (
        f"{metric} unavailable: "
        + "; ".join(parts)
        + f". Fetch with: {PREFETCH_COMMAND} (needs internet; cache dir follows $TORCH_HOME)"
    )


def require_weights(metric: str) -> None:
    """Raise :class:`PerceptualWeightsMissing` if ``metric``'s weights are not cached."""
    message = _missing_message(metric)
    if message is not None:
        raise PerceptualWeightsMissing(message)


def available_perceptual_metrics() -> dict[str, str | None]:
    """Metric name -> None if its weights are on disk, else the reason it cannot run."""
    return {metric: _missing_message(metric) for metric in METRIC_WEIGHTS}


# --------------------------------------------------------------------------------------- LPIPS


@functools.lru_cache(maxsize=2)
def _build_lpips(random_backbone: bool) -> lpips.LPIPS:
    # Seeded so a random backbone gives the same distances in every process.
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        torch.manual_seed(0)
        warnings.simplefilter("ignore")  # torchvision's "pretrained is deprecated"
        model = lpips.LPIPS(net="alex", pnet_rand=random_backbone, verbose=False)
    return model.eval()


def load_lpips(random_backbone: bool = False) -> lpips.LPIPS:
    """Cached LPIPS-AlexNet (v0.1). ``random_backbone``: seeded random AlexNet, for offline tests only.

    Raises :class:`PerceptualWeightsMissing` when the pretrained AlexNet is not cached.
    """
    if random_backbone:
        if not WEIGHTS["lpips_linear"].present():
            raise PerceptualWeightsMissing(_missing_message("lpips"))
    else:
        require_weights("lpips")
    return _build_lpips(random_backbone)


def _check_rgb(img: np.ndarray, what: str) -> None:
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"{what}: expected a uint8 HxWx3 RGB array, got {img.dtype} {img.shape}")


def lpips_distance(sr: np.ndarray, hr: np.ndarray, model: lpips.LPIPS | None = None) -> float:
    """LPIPS (AlexNet, v0.1) between two uint8 HxWx3 RGB images; 0 = identical, lower is better."""
    _check_rgb(sr, "SR")
    _check_rgb(hr, "HR")
    if sr.shape != hr.shape:
        raise ValueError(f"SR {sr.shape} and HR {hr.shape} differ in shape")
    model = model if model is not None else load_lpips()
    with torch.no_grad():
        # im2tensor maps uint8 [0, 255] to [-1, 1], the range LPIPS was trained on.
        return float(model(lpips.im2tensor(sr), lpips.im2tensor(hr)).item())


def lpips_function(
    model: lpips.LPIPS | None = None,
) -> tuple[Callable[[np.ndarray, np.ndarray], float] | None, str | None]:
    """The one LPIPS set-up of every report: ``(fn(sr, hr) -> distance, None)`` with ``model`` or the
    pretrained LPIPS, or ``(None, reason)`` when the pretrained weights are not on disk."""
    if model is None:
        missing = _missing_message("lpips")
        if missing is not None:
            return None, missing
        model = load_lpips()
    return functools.partial(lpips_distance, model=model), None


# ------------------------------------------------------------------------------------ FID / IS


def split_patches(img: np.ndarray, patch: int = DEFAULT_PATCH) -> np.ndarray:
    """Non-overlapping ``patch`` x ``patch`` tiles from the top-left corner, N x patch x patch x 3.

    The right and bottom remainders (narrower than a patch) are dropped.
    """
    _check_rgb(img, "image")
    if patch < 1:
        raise ValueError(f"patch must be positive, got {patch}")
    if img.shape[0] < patch or img.shape[1] < patch:
        return np.empty((0, patch, patch, 3), dtype=np.uint8)
    tiles = view_as_windows(img, (patch, patch, 3), step=patch)
    return tiles.reshape(-1, patch, patch, 3)


def _patch_set(images: Sequence[np.ndarray], patch: int) -> torch.Tensor:
    """All patches of all images as a uint8 N x 3 x patch x patch tensor (torchmetrics' layout)."""
    patches = np.concatenate([split_patches(img, patch) for img in images])
    return torch.from_numpy(patches).permute(0, 3, 1, 2).contiguous()


@functools.lru_cache(maxsize=1)
def _inception_logits() -> NoTrainInceptionV3:
    # Built here with the explicit cached path, so torch-fidelity never calls the downloader.
    return NoTrainInceptionV3(
        name="inception-v3-compat",
        features_list=["logits_unbiased"],
        feature_extractor_weights_path=str(WEIGHTS["inception"].path),
    )


def _feed(metric: FrechetInceptionDistance | InceptionScore, patches: torch.Tensor, batch: int, **kw) -> None:
    for start in range(0, len(patches), batch):
        metric.update(patches[start : start + batch], **kw)


def _protocol(patch: int, n_images: int, n_patches: int, splits: int, extractor: str) -> str:
    return (
        f"patch protocol: each of the {n_images} SR and HR images cut into non-overlapping "
        f"{patch}x{patch} patches from the top-left corner (partial border patches dropped), "
        f"{n_patches} SR vs {n_patches} HR patches; features: {extractor}; "
        f"FID = Frechet distance between Gaussian fits of SR and HR patch features; "
        f"IS = exp(E_x KL(p(y|x) || p(y))) over the SR patches, {splits} split(s). "
        f"Comparable only across runs with the same test set and patch size, "
        f"not to whole-image FID/IS in papers."
    )


def _fid_and_is(feature_extractor: torch.nn.Module | None, patch: int, is_splits: int):
    """(FID metric, Inception Score metric, a sentence naming their features) on the default or a given extractor."""
    if feature_extractor is None:
        require_weights("fid")
        fid = FrechetInceptionDistance(feature=2048, feature_extractor_weights_path=str(WEIGHTS["inception"].path))
        is_extractor: torch.nn.Module = _inception_logits()
        extractor = (
            "torch-fidelity Inception-v3 (TF FID weights) via torchmetrics, patches upsampled "
            "bilinearly to 299x299, pool3 2048-d for FID, unbiased logits for IS"
        )
    else:
        fid = FrechetInceptionDistance(feature=feature_extractor)
        is_extractor = feature_extractor
        extractor = f"custom {type(feature_extractor).__name__} on raw {patch}x{patch} uint8 patches"
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*will save all extracted features.*")
        inception_score = InceptionScore(feature=is_extractor, splits=is_splits)
    return fid, inception_score, extractor


def distribution_metrics(
    sr_images: Sequence[np.ndarray],
    hr_images: Sequence[np.ndarray],
    patch: int = DEFAULT_PATCH,
    feature_extractor: torch.nn.Module | None = None,
    is_splits: int = 1,
    batch_size: int = 32,
) -> dict[str, float | int | str]:
    """Patch FID (SR patches vs HR patches) and Inception Score (SR patches).

    ``sr_images[i]`` and ``hr_images[i]`` are uint8 HxWx3 RGB of the same shape. The default
    extractor is torch-fidelity's Inception-v3 via torchmetrics (pool3 2048-d for FID, unbiased
    logits for IS); it upsamples each patch bilinearly to 299x299 itself. ``feature_extractor``
    replaces it for both metrics: it gets uint8 N x 3 x patch x patch tensors, returns N x d
    (its output is read as class logits for IS); nothing is resized for it.

    Returns ``fid``, ``is_mean``, ``is_std`` (std over splits; NaN with one split),
    ``n_patches`` (per set) and ``protocol``, a sentence saying what was computed.
    """
    if len(sr_images) != len(hr_images):
        raise ValueError(f"{len(sr_images)} SR images but {len(hr_images)} HR images")
    for i, (sr, hr) in enumerate(zip(sr_images, hr_images)):
        if sr.shape != hr.shape:
            raise ValueError(f"image {i}: SR {sr.shape} and HR {hr.shape} differ in shape")

    fid, inception_score, extractor = _fid_and_is(feature_extractor, patch, is_splits)
    sr_patches, hr_patches = _patch_set(sr_images, patch), _patch_set(hr_images, patch)
    n = len(sr_patches)
    if n < 2:
        raise ValueError(f"{n} patch(es) of {patch}x{patch}: FID needs at least 2; use a smaller patch")
    if is_splits > n:
        raise ValueError(f"is_splits={is_splits} exceeds the {n} SR patches")

    # Fixed seed: InceptionScore shuffles the features before splitting them.
    with torch.no_grad(), torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        torch.manual_seed(0)
        warnings.filterwarnings("ignore", message=".*degrees of freedom.*")  # std of a single split
        _feed(fid, hr_patches, batch_size, real=True)
        _feed(fid, sr_patches, batch_size, real=False)
        _feed(inception_score, sr_patches, batch_size)
        fid_value = float(fid.compute())
        is_mean, is_std = (float(v) for v in inception_score.compute())

    return {
        "fid": fid_value,
        "is_mean": is_mean,
        "is_std": is_std if is_splits > 1 else math.nan,
        "n_patches": n,
        "protocol": _protocol(patch, len(sr_images), n, is_splits, extractor),
    }


# ----------------------------------------------------------------------------------------- CLI


def _download(weight: WeightFile) -> None:
    """Fetch one checkpoint into the torch hub cache, exactly where its library will read it."""
    if weight.url == AlexNet_Weights.IMAGENET1K_V1.url:
        AlexNet_Weights.IMAGENET1K_V1.get_state_dict(progress=True, check_hash=True)
    else:
        torch.hub.load_state_dict_from_url(weight.url, progress=True)


def fetch_missing_weights(download: Callable[[WeightFile], None] | None = None) -> dict[str, str]:
    """Fetch every missing checkpoint; weight name -> one line: ``ok``, ``fetched``, ``MISSING`` or ``FAILED``
    with the reason (no stack trace). The CLI's ``--prefetch`` and the app's start-up on a Space call it."""
    download = download or _download
    outcome = {}
    for weight in WEIGHTS.values():
        if weight.present():
            outcome[weight.name] = f"ok       {weight.name}: {weight.path}"
        elif weight.url is None:
            outcome[weight.name] = (
                f"MISSING  {weight.name}: {weight.path} ships with lpips; reinstall it (pip install lpips)"
            )
        else:
            try:
                download(weight)
            except Exception as exc:  # one line per item, no traceback: the cause is what matters
                reason = getattr(exc, "reason", None) or exc
                outcome[weight.name] = (
                    f"FAILED   {weight.name}: could not download {weight.url} to {weight.path}: {reason}"
                )
            else:
                outcome[weight.name] = f"fetched  {weight.name}: {weight.path}"
    return outcome


def _prefetch() -> int:
    previous_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(_DOWNLOAD_TIMEOUT_S)
    try:
        outcome = fetch_missing_weights()
    finally:
        socket.setdefaulttimeout(previous_timeout)
    for line in outcome.values():
        print(line)
    return 1 if any(line.startswith(("MISSING", "FAILED")) for line in outcome.values()) else 0


def _check() -> int:
    for weight in WEIGHTS.values():
        print(f"{'present' if weight.present() else 'MISSING':8} {weight.name}: {weight.path}")
    status = available_perceptual_metrics()
    for metric, reason in status.items():
        print(f"{metric}: {'usable' if reason is None else 'unavailable'}")
    if any(reason is not None for reason in status.values()):
        print(f"fetch missing weights with: {PREFETCH_COMMAND}")
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m comparisons.perceptual",
        description="Check or download the pretrained weights of LPIPS (AlexNet) and FID/IS (Inception-v3). "
        "They are stored in the torch hub cache, $TORCH_HOME/hub/checkpoints (default ~/.cache/torch).",
    )
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--prefetch", action="store_true", help="download missing weights (needs internet)")
    action.add_argument("--check", action="store_true", help="list weights present/missing; exit 1 if any missing")
    args = parser.parse_args(argv)
    return _prefetch() if args.prefetch else _check()


if __name__ == "__main__":
    sys.exit(main())
