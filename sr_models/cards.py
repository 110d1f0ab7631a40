"""A model folder's card: the dict in ``sr_model.json``, and ``README.md`` rendered from it.

The card is what the registry reads to know a folder's family, name, scales and defaults, what
training and the benchmark write into, and what ``README.md`` shows, so the two never disagree.
"""

from __future__ import annotations

import json
from pathlib import Path

CARD_FILE = "sr_model.json"
METRIC_COLUMNS = [  # the card's table: these, in this order, where any row has a value
    "dataset",
    "scale",
    "crop",
    "n_images",
    "psnr_y",
    "ssim_y",
    "lr_psnr",
    "hf_ratio",
    "swd",
    "diversity",
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


def read_card(folder: str | Path) -> dict:
    return json.loads((Path(folder) / CARD_FILE).read_text())


def write_card(folder: str | Path, card: dict) -> None:
    """``sr_model.json`` (replaced atomically) and the ``README.md`` rendered from it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / (CARD_FILE + ".tmp")
    tmp.write_text(json.dumps(card, indent=2, default=str) + "\n")
    tmp.replace(folder / CARD_FILE)
    (folder / "README.md").write_text(render_card(card))


def _table(rows: list[dict], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(str(row.get(c, "")) for c in columns) + " |")
    return "\n".join(lines)


def _presets_lines(presets: dict) -> list[str]:
    """The fidelity / detail presets (steps, eta; the validation numbers they were picked by), if any."""
    picked = [(name, presets[name]) for name in ("fidelity", "detail") if isinstance(presets.get(name), dict)]
    if not picked:
        return []
    lines = ["## Presets", ""]
    for name, p in picked:
        measured = f" (validation PSNR-Y {p['psnr_y']}, SWD {p['swd']})" if "psnr_y" in p and "swd" in p else ""
        lines.append(f"- **{name}**: {p['steps']} step{'s' if p['steps'] != 1 else ''}, eta {p['eta']:g}{measured}")
    return lines + ([f"- {presets['protocol']}"] if presets.get("protocol") else []) + [""]


def _precision_lines(precision: dict) -> list[str]:
    """What each half precision moved the validation PSNR-Y by: what ``--dtype auto`` decides on."""
    if not precision:
        return []
    lines = ["## Precision", ""]
    for dtype, p in precision.items():
        how = [f"{p.get('images')} images", f"{p.get('crop')} px crops"]
        how += [f"{p['steps']} step{'s' if p['steps'] != 1 else ''}"] if p.get("steps") else []
        how += [] if p.get("native", True) else ["bfloat16 emulated"]
        lines.append(
            f"- **{dtype}**: validation PSNR-Y {p['val_psnr_y_delta_db']:+.4f} dB against float32 "
            f"({', '.join(how)}; {p.get('measured_on')})"
        )
    lines.append("- `--dtype auto` runs it where the CPU computes it natively and the change is within 0.05 dB.")
    return lines + [""]


def render_card(card: dict) -> str:
    t = card.get("training", {})
    out = [
        f"# {card['name']}",
        "",
        f"Family: **{card['family']}** · scale: **{'/'.join(str(s) for s in card['scales'])}x** · "
        f"{card.get('description', '')}",
        "",
    ]
    if card.get("default_steps"):
        out += [
            f"Default sampling: {card['default_steps']} steps, {card.get('default_sampler')}, "
            f"{card.get('timestep_spacing', 'leading')} timestep spacing.",
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
            f"- data: {card.get('data', 'see command')}",
            f"- steps: {t.get('steps')} (batch {t.get('batch_size')}, lr {t.get('learning_rate')}, "
            f"EMA {t.get('ema_decay')}, seed {t.get('seed')})",
            f"- wall clock: {t.get('wall_clock_minutes')} min on {t.get('hardware')} (torch {t.get('torch')})",
            f"- last validation: {t.get('last_validation')}",
        ]
        if card.get("init_from"):
            out.append(f"- started from the weights of `{card['init_from']}` (`--init-from`)")
        if card.get("conditioning_augmentation"):
            aug = card["conditioning_augmentation"]
            out.append(
                f"- conditioning augmentation (a later cascade stage's inputs): {aug['probability']:.0%} of the "
                f"LRs blurred (sigma up to {aug['blur_sigma_max']} LR px) and noised (std up to "
                f"{aug['noise_std_max']}), level not given to the model"
            )
        out.append("")
    if card.get("lr_projection"):
        out += [
            f"Outputs are back-projected onto the LR ({card['lr_projection']} iterations, "
            "`sr_models.consistency.back_project`; `lr_projection=0` turns it off).",
            "",
        ]
    out += _presets_lines(card.get("presets") or {})
    out += _precision_lines(card.get("precision") or {})
    if card.get("notes"):
        out += ["## Notes", "", *[f"- {n}" for n in card["notes"]], ""]
    metrics = card.get("metrics")
    if metrics:
        out += [
            "## Measured",
            "",
            card.get("metrics_protocol", ""),
            "",
            _table(metrics, [c for c in METRIC_COLUMNS if any(row.get(c) not in (None, "") for row in metrics)]),
            "",
        ]
    out += ["Weights: safetensors, loaded with `sr_models.registry.load_model(folder)`.", ""]
    return "\n".join(out)
