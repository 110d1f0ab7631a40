"""The record of one comparison run as one zip file, enough to reproduce and cite it.

* one PNG per output, ``{model}_x{scale}_seed{seed}.png`` (a cascade's ``>`` and ``@`` made
  filesystem-safe), and ``input.png`` / ``reference.png``;
* ``metrics.csv`` (a row per model) and ``stages.csv`` (a row per stage), written with
  ``comparisons.records.write_csv`` from the results' ``facts()`` and scores, like the benchmark;
* ``run_card.json``: git commit, every weight file's sha256, device, library versions (all from
  ``comparisons.provenance``), the settings asked for and each model's resolved settings and seeds,
  notes and errors.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import tempfile
import zipfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from PIL import Image

from comparisons import provenance
from comparisons.compare import Comparison, stage_models
from comparisons.provenance import git_state, machine, versions
from comparisons.records import STAGE_COST_COLUMNS, STAGE_SETTING_COLUMNS, write_csv
from sr_models.types import SamplingSettings

METRIC_COLUMNS = [
    "model",
    "file",
    "scale",
    "n_stages",
    "steps",
    "sampler",
    "eta",
    "seed",
    "lr_projection",
    "psnr_y",
    "ssim_y",
    "lr_psnr",
    "hf_ratio",
    "nfe",
    "seconds",
    "load_seconds",
    "peak_memory_mb",
    "device",
    "dtype",
    "settings",
]
STAGE_COLUMNS = [
    "model",
    "stage",
    "stage_model",
    *STAGE_SETTING_COLUMNS,
    "spacing",
    "lr_projection",
    *STAGE_COST_COLUMNS,
    "device",
    "dtype",
]


def safe_name(text: str) -> str:
    """A model name or cascade spec as a file name: ``ldm-x4>bicubic@4`` -> ``ldm-x4_then_bicubic_at_4``."""
    text = str(text).replace(">", "_then_").replace("@", "_at_")
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "model"


def output_name(result) -> str:
    return f"{safe_name(result.model)}_x{result.scale}_seed{result.settings.seed or 0}.png"


def seed_text(seed) -> str:
    """A seed as exact text ("" when none was set)."""
    return "" if seed is None else str(seed)


def weight_hashes(model) -> dict[str, str]:
    """``{"model/relative/path.safetensors": sha256}`` for every local weight file of ``model``
    (a cascade: of each stage); models without a local folder (bicubic, not yet downloaded) have none."""
    return provenance.weight_hashes(stage_models(model))


def device_info(comparison: Comparison) -> dict:
    """Where the comparison ran: each stage's device and dtype, then the machine."""
    return {"ran_on": sorted({f"{s.device} {s.dtype}" for r in comparison.results for s in r.stages}), **machine()}


def rows(comparison: Comparison) -> tuple[list[dict], list[dict]]:
    """(a row per model, a row per stage), the benchmark's keys plus the file each image is in."""
    per_model, per_stage = [], []
    for result, scores in zip(comparison.results, comparison.scores):
        facts = result.facts()
        facts["eta"] = "+".join(f"{s.settings.eta:g}" for s in result.stages if s.settings.eta is not None)
        per_model.append({**facts, **scores, "file": output_name(result)})
        for i, stage in enumerate(result.stages):
            per_stage.append({**stage.facts(), "model": result.model, "stage": i + 1, "stage_model": stage.model})
    return per_model, per_stage


def run_card(
    comparison: Comparison, models: dict, *, mode: str, settings: SamplingSettings | None, source_name: str = ""
) -> dict:
    """Everything needed to run this comparison again and check it gave the same images. Seeds are also
    given as text (``seed_text``): exact where a browser or a JavaScript tool reads the JSON (numbers there
    stop being exact at 2^53, and seeds go up to 2^63 - 1)."""
    asked = settings or SamplingSettings()
    runs = []
    for result, scores in zip(comparison.results, comparison.scores):
        model = models.get(result.model)
        runs.append(
            {
                "model": result.model,
                "file": output_name(result),
                "seed": result.settings.seed,
                "seed_text": seed_text(result.settings.seed),
                "settings": result.settings.as_dict(),
                "facts": result.facts(),
                "scores": scores,
                "stages": [{**s.facts(), "seed_text": seed_text(s.settings.seed)} for s in result.stages],
                "weights_sha256": weight_hashes(model) if model is not None else {},
            }
        )
    return {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git": git_state(),
        "device": device_info(comparison),
        "versions": versions(),
        "input": {
            "name": source_name,
            "mode": mode,
            "lr_size": f"{comparison.lr.shape[1]}x{comparison.lr.shape[0]}",
            "lr_sha256": hashlib.sha256(np.ascontiguousarray(comparison.lr).tobytes()).hexdigest(),
        },
        "scale": comparison.scale,
        "settings_asked": {**asked.as_dict(), "seed_text": seed_text(asked.seed)},
        "protocol": "PSNR-Y / SSIM-Y against the reference, border cropped by the scale; LR-PSNR: the output "
        "downscaled (MATLAB bicubic) against the input",
        "runs": runs,
        "notes": comparison.notes,
        "errors": comparison.errors,
    }


def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def write_run_record(
    comparison: Comparison,
    models: dict,
    path: str | Path,
    *,
    mode: str,
    settings: SamplingSettings | None = None,
    source_name: str = "",
) -> Path:
    """Write the zip to ``path`` and return it. ``models``: name -> model object of the run (for hashes)."""
    path = Path(path)
    per_model, per_stage = rows(comparison)
    card = run_card(comparison, models, mode=mode, settings=settings, source_name=source_name)
    with tempfile.TemporaryDirectory() as tmp, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        write_csv(Path(tmp) / "metrics.csv", per_model, METRIC_COLUMNS)
        write_csv(Path(tmp) / "stages.csv", per_stage, STAGE_COLUMNS)
        zf.write(Path(tmp) / "metrics.csv", "metrics.csv")
        zf.write(Path(tmp) / "stages.csv", "stages.csv")
        zf.writestr("run_card.json", json.dumps(card, indent=2, default=str))
        zf.writestr("input.png", _png(comparison.lr))
        if comparison.hr is not None:
            zf.writestr("reference.png", _png(comparison.hr))
        for result in comparison.results:
            zf.writestr(output_name(result), _png(result.image))
    return path
