"""Writing result rows (``UpscaleResult.facts()`` plus scores) to CSV: one convention for every report."""

from __future__ import annotations

import csv
from pathlib import Path


def write_csv(path: Path, rows: list[dict], columns: list[str]) -> None:
    """Columns in the given order (extra keys dropped, missing ones empty); floats to 4 decimals."""
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()})


def read_csv(path: Path) -> list[dict]:
    """Rows of a CSV written here, numbers back as floats (empty cells stay "")."""

    def value(text: str):
        try:
            return float(text)
        except ValueError:
            return text

    with open(path, newline="") as f:
        return [{k: value(v) for k, v in row.items()} for row in csv.DictReader(f)]
