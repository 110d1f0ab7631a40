"""Model folders' metadata (``sr_model.json``) and the model card (``README.md``) made from it.

``sr_model.json`` is what the registry reads to know a folder's family, name and scales; the
card is rendered from the same record so the two never disagree.
"""

from __future__ import annotations

import json
from pathlib import Path

META_FILE = "sr_model.json"
METRIC_COLUMNS = [  # the card's table: these, in this order, where any row has a value
    "dataset",
    "scale",
    "crop",
    "n_images",
    "psnr_y",
    "ssim_y",
    "lr_psnr",
    "hf_ratio",
    "bicubic_psnr_y",
    "bicubic_ssim_y",
    "mean_error_r",
    "mean_error_g",
    "mean_error_b",
    "steps",
    "sampler",
    "lr_projection",
    "seconds_per_image",
]


def read_meta(folder: str | Path) -> dict:
    return json.loads((Path(folder) / META_FILE).read_text())


def write_meta(folder: str | Path, meta: dict) -> None:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / (META_FILE + ".tmp")
    tmp.write_text(json.dumps(meta, indent=2, default=str) + "\n")
    tmp.replace(folder / META_FILE)
    (folder / "README.md").write_text(render_card(meta))


def _table(rows: list[dict], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(str(row.get(c, "")) for c in columns) + " |")
    return "\n".join(lines)


def render_card(meta: dict) -> str:
    t = meta.get("training", {})
    out = [
        f"# {meta['name']}",
        "",
        f"Family: **{meta['family']}** · scale: **{'/'.join(str(s) for s in meta['scales'])}x** · "
        f"{meta.get('description', '')}",
        "",
    ]
    if meta.get("default_steps"):
        out += [
            f"Default sampling: {meta['default_steps']} steps, {meta.get('default_sampler')}, "
            f"{meta.get('timestep_spacing', 'leading')} timestep spacing.",
            "",
        ]
    if t:
        out += [
            "## Training",
            "",
            "```",
            t.get("command", ""),
            "```",
            "",
            f"- data: {meta.get('data', 'see command')}",
            f"- steps: {t.get('steps')} (batch {t.get('batch_size')}, lr {t.get('learning_rate')}, "
            f"EMA {t.get('ema_decay')}, seed {t.get('seed')})",
            f"- wall clock: {t.get('wall_clock_minutes')} min on {t.get('hardware')} (torch {t.get('torch')})",
            f"- last validation: {t.get('last_validation')}",
        ]
        if meta.get("init_from"):
            out.append(f"- started from the weights of `{meta['init_from']}` (`--init-from`)")
        if meta.get("conditioning_augmentation"):
            aug = meta["conditioning_augmentation"]
            out.append(
                f"- conditioning augmentation (a later cascade stage's inputs): {aug['probability']:.0%} of the "
                f"LRs blurred (sigma up to {aug['blur_sigma_max']} LR px) and noised (std up to "
                f"{aug['noise_std_max']}), level not given to the model"
            )
        out.append("")
    if meta.get("lr_projection"):
        out += [
            f"Outputs are back-projected onto the LR ({meta['lr_projection']} iterations, "
            "`sr_models.consistency.back_project`; `lr_projection=0` turns it off).",
            "",
        ]
    if meta.get("notes"):
        out += ["## Notes", "", *[f"- {n}" for n in meta["notes"]], ""]
    metrics = meta.get("metrics")
    if metrics:
        out += [
            "## Measured",
            "",
            meta.get("metrics_protocol", ""),
            "",
            _table(metrics, [c for c in METRIC_COLUMNS if any(row.get(c) not in (None, "") for row in metrics)]),
            "",
        ]
    out += ["Weights: safetensors, loaded with `sr_models.registry.load_model(folder)`.", ""]
    return "\n".join(out)
