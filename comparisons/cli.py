"""Command-line options that become one ``SamplingSettings`` value (benchmark, studies).

Run-wide options (``--steps``, ``--sampler``, ...) apply to every model and stage; the
``--stage-*`` options give a cascade's stages their own values, comma-separated in stage order
(an empty item keeps the run-wide value: ``--stage-steps 10,`` sets stage 1 only).
"""

from __future__ import annotations

import argparse

from sr_models.types import SamplingSettings, SRInputError

RUN_OPTIONS = {  # option -> (settings field, type, help)
    "steps": ("steps", int, "sampling steps of diffusion models (default: each model's)"),
    "sampler": ("sampler", str, "sampler: ddim, ddpm, dpmsolver++ (default: each model's)"),
    "eta": ("eta", float, "DDIM eta, 0 (deterministic) to 1 (default 0)"),
    "seed": ("seed", int, "seed of the run; cascade stages derive theirs from it (default 0)"),
    "tile": ("tile", int, "tile side in the network's working resolution (default: each model's)"),
    "lr-projection": (
        "lr_projection",
        int,
        "back-projection iterations onto the original LR after each model/stage (default: each model's; 0 off)",
    ),
    "strength": ("strength", float, "SDEdit strength in (0, 1]: below 1 starts from the noised bicubic guess"),
    "spacing": ("spacing", str, "timestep spacing: leading, trailing or linspace (default: each model's)"),
}


def add_settings_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("sampling settings (SamplingSettings; cascades: --stage-*)")
    for option, (_, kind, text) in RUN_OPTIONS.items():
        group.add_argument(f"--{option}", type=kind, help=text)
    for option, (_, _, _) in RUN_OPTIONS.items():
        group.add_argument(f"--stage-{option}", metavar="A,B", help=f"per-stage {option} of a cascade, e.g. 10,5")


def _stage_values(text: str | None, kind, option: str) -> list:
    if text is None:
        return []
    values = []
    for item in text.split(","):
        item = item.strip()
        try:
            values.append(kind(item) if item else None)
        except ValueError:
            raise SRInputError(f"--stage-{option}: {item!r} is not a {kind.__name__}") from None
    return values


def settings_from_args(args: argparse.Namespace) -> SamplingSettings:
    """The one settings value of a command line (plain errors on bad numbers)."""
    run = {field: getattr(args, option.replace("-", "_")) for option, (field, _, _) in RUN_OPTIONS.items()}
    per_stage = {
        field: _stage_values(getattr(args, "stage_" + option.replace("-", "_")), kind, option)
        for option, (field, kind, _) in RUN_OPTIONS.items()
    }
    n = max((len(v) for v in per_stage.values()), default=0)
    stages = None
    if n:
        stages = tuple(
            SamplingSettings(**{f: (v[i] if i < len(v) else None) for f, v in per_stage.items()}) for i in range(n)
        )
    return SamplingSettings(**run, stages=stages)
