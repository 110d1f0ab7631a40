"""One comparison run, as the app shows it: load a user image, optionally degrade it, upscale it
with several models, score each output. The app only lays this out; tests call it directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from sr_models.base import SRInputError, StepInfo, UpscaleResult
from sr_models.degradation import degrade
from sr_models.image_io import load_image
from sr_models.metrics import detail_ratio, lr_consistency, score
from sr_models.types import SamplingSettings

MODE_HR = "hr"  # the image is a reference: degrade it, upscale the LR, compare to it
MODE_LR = "lr"  # the image is the low-resolution input: upscale it, nothing to compare to


@dataclass
class Comparison:
    lr: np.ndarray
    hr: np.ndarray | None
    scale: int
    results: list[UpscaleResult] = field(default_factory=list)
    scores: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)  # model name -> message

    def table(self) -> list[dict]:
        """One row per model that ran (fidelity if a reference exists, cost, settings), then a row
        per stage under each cascade: the same ``facts()`` the benchmark's CSVs are made of."""
        rows = []
        for result, s in zip(self.results, self.scores):
            facts = result.facts()
            row = {"model": result.model}
            if s["psnr_y"] is not None:
                row.update({"PSNR-Y (dB)": round(s["psnr_y"], 2), "SSIM-Y": round(s["ssim_y"], 4),
                            "detail (HF ratio)": round(s["hf_ratio"], 3)})  # fmt: skip
            row["LR-PSNR (dB)"] = round(s["lr_psnr"], 2)
            row.update({"NFE": facts["nfe"], "seconds": round(facts["seconds"], 3),
                        "peak MB": round(facts["peak_memory_mb"], 1), "settings": facts["settings"]})  # fmt: skip
            rows.append(row)
            if len(result.stages) > 1:
                for i, stage in enumerate(result.stages):
                    st = stage.facts()
                    rows.append({"model": f"  stage {i + 1}: {stage.model} ({st['input']} → {st['output']})",
                                 "NFE": st["nfe"], "seconds": round(st["seconds"], 3),
                                 "peak MB": round(st["peak_memory_mb"], 1),
                                 "settings": stage.settings.describe()})  # fmt: skip
        return rows


def prepare_input(source, mode: str, scale: int, max_pixels: int | None = None):
    """(lr, hr or None, notes) from a user image in the chosen mode."""
    if mode not in (MODE_HR, MODE_LR):
        raise SRInputError(f"unknown mode {mode!r}")
    image, notes = load_image(source, max_pixels=max_pixels)
    if mode == MODE_LR:
        return image, None, notes
    h, w = image.shape[:2]
    if min(h, w) < 4 * scale:
        raise SRInputError(f"a {w}x{h} reference is too small to degrade by {scale}x (need at least {4 * scale} px a side)")
    hr, lr = degrade(image, scale)
    if hr.shape != image.shape:
        notes.append(f"reference cropped from {w}x{h} to {hr.shape[1]}x{hr.shape[0]} (a multiple of {scale})")
    return lr, hr, notes


def run_comparison(
    source,
    mode: str,
    scale: int,
    models,
    *,
    settings: SamplingSettings | None = None,
    keep_frames: int = 0,
    max_pixels: int | None = None,
    on_model: Callable[[int, int, str], None] | None = None,
    on_step: Callable[[StepInfo], None] | None = None,
) -> Comparison:
    """Upscale with every model; a model that fails is reported in ``errors``, the others still run."""
    if not models:
        raise SRInputError("choose at least one model")
    settings = settings or SamplingSettings()
    lr, hr, notes = prepare_input(source, mode, scale, max_pixels)
    comparison = Comparison(lr=lr, hr=hr, scale=scale, notes=notes)
    for i, model in enumerate(models):
        if on_model:
            on_model(i, len(models), model.name)
        try:
            result = model.upscale(lr, scale=scale, settings=settings, on_step=on_step, keep_frames=keep_frames)
        except (SRInputError, RuntimeError) as err:  # unsupported scale, unavailable weights, ...
            comparison.errors[model.name] = str(err)
            continue
        comparison.results.append(result)
        if hr is not None:
            comparison.scores.append({**score(result.image, hr, lr, scale), "hf_ratio": detail_ratio(result.image, hr, scale)})
        else:
            comparison.scores.append(_lr_only(result, lr, scale))
    return comparison


def _lr_only(result: UpscaleResult, lr: np.ndarray, scale: int) -> dict:
    return {"psnr_y": None, "ssim_y": None, "lr_psnr": lr_consistency(result.image, lr, scale)}


def nearest_upscale(lr: np.ndarray, scale: int) -> np.ndarray:
    """The LR shown at the output size without smoothing: what the model had to work from."""
    return np.repeat(np.repeat(lr, scale, axis=0), scale, axis=1)



def zoom_crops(comparison: Comparison, cx: float, cy: float, size: int = 64, magnify: int = 4):
    """The same region of the reference, the input and every output, enlarged without smoothing.

    ``cx``/``cy`` are the region's centre as fractions (0-1) of the output; ``size`` is its side
    in output pixels. Returns a list of (uint8 image, caption) pairs.
    """
    scale = comparison.scale
    out_h, out_w = comparison.lr.shape[0] * scale, comparison.lr.shape[1] * scale
    size = max(scale, min(size, out_h, out_w)) // scale * scale
    top = int(np.clip(round(cy * out_h - size / 2), 0, out_h - size)) // scale * scale
    left = int(np.clip(round(cx * out_w - size / 2), 0, out_w - size)) // scale * scale
    crops = [("input (LR, nearest)", nearest_upscale(comparison.lr, scale))]
    if comparison.hr is not None:
        crops.insert(0, ("reference (HR)", comparison.hr))
    crops += [(r.model, r.image) for r in comparison.results]
    out = []
    for caption, image in crops:
        crop = image[top : top + size, left : left + size]
        out.append((nearest_upscale(crop, magnify), caption))
    return out
