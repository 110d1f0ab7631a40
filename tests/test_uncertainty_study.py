"""The uncertainty study on a tiny diffusion model and bicubic: per-image rows and their means."""

import csv

import numpy as np
import pytest

from comparisons.studies.cli import main
from comparisons.studies.uncertainty import NUMBERS, summarize


@pytest.mark.slow
def test_uncertainty_study_cli_writes_calibration(image_folder, tiny_models_dir, tmp_path):
    out = tmp_path / "u"
    args = [
        "uncertainty",
        "--models",
        "tiny-ldm-x4,bicubic",
        "--scale",
        "4",
        "--data",
        str(image_folder),
        "--out",
        str(out),
        "--crop",
        "32",
        "--limit",
        "2",
        "--k",
        "3",
        "--steps-list",
        "2",
        "--eta",
        "1",
        "--model-dir",
        str(tiny_models_dir),
    ]
    assert main(args) == 0
    rows = list(csv.DictReader(open(out / "uncertainty.csv")))
    assert len(rows) == 4 and {r["model"] for r in rows} == {"tiny-ldm-x4", "bicubic"}
    ldm = [r for r in rows if r["model"] == "tiny-ldm-x4"]
    assert all(float(r["mean_spread"]) > 0 and -1 <= float(r["spearman"]) <= 1 for r in ldm)
    assert all(float(r["mean_spread"]) == 0 for r in rows if r["model"] == "bicubic")
    summary = list(csv.DictReader(open(out / "uncertainty_summary.csv")))
    assert {r["n_images"] for r in summary} == {"2"}
    card = (out / "run_card.md").read_text()
    assert "uncertainty --models tiny-ldm-x4,bicubic" in card and "AUSE" in card
    assert "AUSE of a random order" in (out / "uncertainty.html").read_text()


def test_bad_k_is_a_plain_error(image_folder, tiny_models_dir, tmp_path, capsys):
    args = [
        "uncertainty",
        "--models",
        "tiny-ldm-x4",
        "--scale",
        "4",
        "--data",
        str(image_folder),
        "--out",
        str(tmp_path),
        "--k",
        "1",
        "--model-dir",
        str(tiny_models_dir),
    ]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "Traceback" not in err


def test_summary_means_ignore_undefined_correlations():
    rows = [
        {
            "dataset": "d",
            "model": "m",
            "k": 3,
            "steps": 2,
            "eta": 1.0,
            "spearman": s,
            **dict.fromkeys([n for n in NUMBERS if n != "spearman"], 1.0),
        }
        for s in (0.2, 0.4, float("nan"))
    ]
    (row,) = summarize(rows)
    assert np.isclose(row["spearman"], 0.3) and row["n_images"] == 3
