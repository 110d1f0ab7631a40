"""Result rows (``UpscaleResult.facts()`` plus scores) to CSV and back: one convention for every report."""

from __future__ import annotations

import csv
from pathlib import Path

# The columns of a stage's ``StageResult.facts()`` every stage table shares, in their order.
STAGE_SETTING_COLUMNS = ["scale", "input", "output", "steps", "sampler", "eta", "seed", "strength"]
STAGE_COST_COLUMNS = ["nfe", "tiles", "seconds", "projection_seconds", "peak_memory_mb"]
# ``sr_models.swd.swd``'s keys at its default 4 levels, the mean first: the SWD columns of every study.
SWD_COLUMNS = ["swd", "swd_l1", "swd_l2", "swd_l3", "swd_l4"]


def write_csv(path: Path, rows: list[dict], columns: list[str]) -> None:
    """Columns in the given order (extra keys dropped, missing ones empty); floats to 4 decimals."""
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()})


def read_csv(path: Path, integers=(), texts=(), empty="") -> list[dict]:
    """Rows of a CSV written here, numbers back as floats: the one reader of every report.

    ``integers``: columns read as ``int``; ``texts``: columns kept as text even when they look like
    numbers; ``empty``: what an empty cell of any other column becomes ("" by default).
    """

    def value(key: str, text: str):
        if key in texts:
            return text
        if text == "":
            return empty
        if key in integers:
            return int(text)
        try:
            return float(text)
        except ValueError:
            return text

    with open(path, newline="") as f:
        return [{k: value(k, v) for k, v in row.items()} for row in csv.DictReader(f)]
