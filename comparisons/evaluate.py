"""One image through one model, scored: the single per-image evaluation step of every report.

The benchmark, the studies and the app's comparison all call :func:`evaluate`, so an image is
upscaled, scored (PSNR-Y / SSIM-Y with the scale shaved, LR-PSNR; ``sr_models.metrics``) and
measured for detail (``hf_ratio``) the same way everywhere, and its CSV row is built once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from sr_models.metrics import LR_PSNR_CAP, detail_ratio, lr_consistency, score
from sr_models.types import OnStep, SamplingSettings, UpscaleResult

IMAGE_SCORES = ["psnr_y", "ssim_y", "lr_psnr", "hf_ratio"]  # what every scored image has (with a reference)
SCORE_COLUMNS = [*IMAGE_SCORES, "lpips"]  # the scores' columns in every CSV (lpips when asked for)
LpipsFn = Callable[[np.ndarray, np.ndarray], float]  # (SR, HR) -> distance, see comparisons.perceptual


@dataclass(frozen=True)
class Evaluation:
    """What one ``evaluate`` call gives.

    ``result``: the model's ``UpscaleResult`` (image, stages, costs, resolved settings).
    ``scores``: ``psnr_y``, ``ssim_y``, ``lr_psnr``, ``hf_ratio`` (and ``lpips`` when asked for);
    without a reference, ``psnr_y`` / ``ssim_y`` / ``hf_ratio`` are None.
    ``row``: the per-image CSV row, ``result.facts()`` plus ``image`` (the name), ``height``,
    ``width`` and the scores: the benchmark's ``per_image.csv`` row less its ``dataset``.
    """

    result: UpscaleResult
    scores: dict
    row: dict

    @property
    def image(self) -> np.ndarray:
        return self.result.image


def image_scores(
    sr: np.ndarray, lr: np.ndarray, scale: int, hr: np.ndarray | None = None, lpips_fn: LpipsFn | None = None
) -> dict:
    """The scores of one output: fidelity to ``hr`` (if given), consistency with ``lr``, detail, LPIPS."""
    if hr is None:
        scores = {
            "psnr_y": None,
            "ssim_y": None,
            "lr_psnr": min(lr_consistency(sr, lr, scale), LR_PSNR_CAP),
            "hf_ratio": None,
        }
    else:
        scores = {**score(sr, hr, lr, scale), "hf_ratio": detail_ratio(sr, hr, scale)}
    if lpips_fn is not None and hr is not None:
        scores["lpips"] = lpips_fn(sr, hr)
    return scores


def mean_scores(rows: list[dict]) -> dict:
    """Each of ``IMAGE_SCORES`` averaged over per-image rows: a study's numbers for a set of images."""
    return {k: float(np.mean([r[k] for r in rows])) for k in IMAGE_SCORES}


def evaluate(
    model,
    lr: np.ndarray,
    scale: int,
    settings: SamplingSettings | None = None,
    hr: np.ndarray | None = None,
    *,
    name: str = "",
    lpips_fn: LpipsFn | None = None,
    on_step: OnStep | None = None,
    keep_frames: int = 0,
) -> Evaluation:
    """Upscale ``lr`` by ``scale`` with ``model`` (an ``SRModel`` or a cascade) and score the output.

    ``settings``: the run's ``SamplingSettings`` (None: the model's defaults). ``hr``: the reference
    the LR was made from (``sr_models.degradation.degrade``), or None when there is none (an LR
    upload: only LR-PSNR is measured). ``name``: the image's name in the row. ``lpips_fn(sr, hr)``
    adds ``lpips`` (with a reference only). ``on_step`` / ``keep_frames`` go to ``model.upscale``
    unchanged (progress, stopping between steps, trajectory frames). Errors of the model
    (``SRInputError``, ``ModelUnavailableError``, ...) propagate: the caller decides whether one
    failing model ends the run.
    """
    result = model.upscale(lr, scale=scale, settings=settings, on_step=on_step, keep_frames=keep_frames)
    scores = image_scores(result.image, lr, scale, hr, lpips_fn)
    height, width = (hr if hr is not None else result.image).shape[:2]
    row = {**result.facts(), "image": name, "height": height, "width": width, **scores}
    return Evaluation(result, scores, row)
