"""The continuous-scale study (comparisons/studies/scales.py) on tiny models and small images: which
route runs at each scale, the rows and their scores, the answer, the page, the card and the command."""

import csv
import gc
import json
import math

import pytest

from comparisons.studies.cli import main
from comparisons.studies.scales import COLUMNS, answer, hr_crop, scales_study
from sr_models.registry import discover, get_models
from tests.helpers import save_routing_models

SCALES = (2, 2.5, 4, 6, 16)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_routing_models(tmp_path_factory.mktemp("scales-models"))


@pytest.fixture(scope="module")
def study(model_dir, image_folder, tmp_path_factory):
    known = discover(model_dirs=[model_dir], device="cpu", dtype="float32")
    groups = [
        get_models(["tiny-liif"], known),
        get_models(["bicubic"], known),
        get_models(["tiny-x2", "tiny-x4"], known),
    ]
    cascades = get_models(["tiny-x4>tiny-x2", "tiny-x4>tiny-x4"], known)
    out = tmp_path_factory.mktemp("scales-out")
    gc.freeze()  # each run's memory meter collects garbage: keep the libraries' objects out of it (seconds)
    try:
        rows = scales_study(groups, [image_folder], out, cascades=cascades, scales=SCALES, crop=64, progress=print)
    finally:
        gc.unfreeze()
    return rows, out


def test_hr_crops_round_up_to_the_scales_multiple_and_keep_an_8_px_lr():
    assert [hr_crop(s, 128) for s in (2, 2.5, 3, 4, 6, 8, 12, 16)] == [128, 130, 129, 128, 132, 128, 132, 128]
    assert hr_crop(16, 64) == 128 and hr_crop(16, 64, min_lr=4) == 64 and hr_crop(3, None) is None


@pytest.mark.slow
def test_every_line_has_a_row_at_every_scale_it_applies_to(study):
    rows, _ = study
    pooled = {(r["line"], r["scale"]): r for r in rows if r["dataset"] == "all"}
    group = "tiny-x2+tiny-x4 (+ resize)"
    expected = {(line, s) for line in ("tiny-liif", "bicubic", group) for s in SCALES}
    expected |= {("cascades", 6)}  # beyond every stage's own scale only; at 16x the group ran tiny-x4>tiny-x4
    assert set(pooled) == expected
    routes = {s: (pooled[(group, s)]["model"], pooled[(group, s)]["route"]) for s in SCALES}
    assert routes == {
        2: ("tiny-x2", "direct"),
        2.5: ("tiny-x4 then resize to 2.5x", "resize"),
        4: ("tiny-x4", "direct"),
        6: ("tiny-x2>tiny-x2>tiny-x2 then resize to 6x", "cascade + resize"),
        16: ("tiny-x4>tiny-x4", "cascade"),
    }
    assert pooled[("cascades", 6)]["model"] == "tiny-x4>tiny-x2 then resize to 6x"
    assert pooled[("tiny-liif", 6)]["route"] == "continuous" and pooled[("bicubic", 2.5)]["family"] == "bicubic"
    assert pooled[(group, 6)]["runs_at"] == 8 and pooled[(group, 6)]["nfe"] == 3


def test_rows_carry_scores_swd_and_gains_over_bicubic(study, image_folder):
    rows, _ = study
    per_set = [r for r in rows if r["dataset"] != "all"]
    assert {r["dataset"] for r in per_set} == {image_folder.name} and all(r["n_images"] == 3 for r in rows)
    for row in rows:
        assert all(math.isfinite(row[k]) for k in ("psnr_y", "ssim_y", "lr_psnr", "swd", "swd_l1", "nfe"))
        assert row["in_training"] == int(row["scale"] <= 4)
    bicubic = {r["scale"]: r for r in rows if r["line"] == "bicubic" and r["dataset"] == "all"}
    for row in (r for r in rows if r["dataset"] == "all"):
        assert row["psnr_gain"] == pytest.approx(row["psnr_y"] - bicubic[row["scale"]]["psnr_y"])
    assert all(r["psnr_gain"] == 0 for r in bicubic.values())
    liif = {r["scale"]: r for r in rows if r["line"] == "tiny-liif" and r["dataset"] == "all"}
    assert liif[2.5]["psnr_y"] != bicubic[2.5]["psnr_y"]  # a trained-looking decoder, not bicubic


def test_the_answer_names_the_largest_scale_the_wins_and_the_gains(study):
    rows, _ = study
    text = answer(rows)
    assert text[0].startswith("At 16x (all), tiny-liif gives") and "against tiny-x4>tiny-x4" in text[0]
    assert "bicubic" not in text[0]
    (wins,) = [t for t in text if "beats every fixed model + resize" in t]
    assert "2.5x" in wins and "6x" in wins and "16x" not in wins  # 16x is reached without a resize
    assert not any(t.startswith("all: bicubic") for t in text)  # the baseline is no continuous model
    (gains,) = [t for t in text if "over bicubic" in t]
    assert all(f"at {s:g}x" in gains for s in SCALES)


def test_the_answer_sorts_scales_by_who_wins():
    def row(model, scale, psnr, route):
        return {
            "dataset": "all",
            "scale": scale,
            "model": model,
            "route": route,
            "family": "x",
            "psnr_y": psnr,
            "psnr_gain": "",
            "swd": 1.0,
            "nfe": 1.0,
        }

    rows = [row("c", 3, 30.0, "continuous"), row("f then resize to 3x", 3, 29.0, "resize")]
    rows += [row("c", 6, 25.0, "continuous"), row("g then resize to 6x", 6, 25.5, "resize")]
    (line,) = [t for t in answer(rows) if "beats" in t]
    assert "at 3x (+1.00 dB vs f then resize to 3x)" in line
    assert "does not at 6x (-0.50 dB vs g then resize to 6x)" in line
    alone = [r for r in rows if r["route"] == "continuous"]
    assert "all: no fixed model + resize ran at c's scales" in answer(alone)


def test_the_csv_page_and_card_are_written(study, image_folder):
    rows, out = study
    with open(out / "scales.csv") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == COLUMNS and len(list(reader)) == len(rows)
    page = (out / "scales.html").read_text()
    assert "trained scales [1, 4]" in page and '"type":"log"' in page and "tiny-x2+tiny-x4 (+ resize)" in page
    card = json.loads((out / "run_card.json").read_text())
    assert card["answer"] == answer(rows) and card["crops"]["2.5"] == 65 and card["data"] == {image_folder.name: 3}
    assert any(k.startswith("tiny-liif/") for k in card["weights"])
    assert "## Answer" in (out / "run_card.md").read_text()


@pytest.mark.slow
def test_the_command_runs_notes_missing_models_and_refuses_bad_scales(model_dir, image_folder, tmp_path, capsys):
    common = ["--data", str(image_folder), "--model-dir", str(model_dir), "--crop", "64", "--limit", "1"]
    code = main(
        ["scales", *common, "--out", str(tmp_path), "--scales", "2.5,3"]
        + ["--models", "tiny-liif,bicubic,tiny-x4,nope", "--cascades", "", "--device", "cpu"]
    )
    captured = capsys.readouterr()
    assert code == 0 and "note: skipped nope: not found" in captured.err
    assert "tiny-liif beats every fixed model + resize" in captured.out and (tmp_path / "scales.csv").exists()
    assert main(["scales", *common, "--out", str(tmp_path), "--scales", "2,3x"]) == 2
    assert "--scales: '3x' is not a number" in capsys.readouterr().err
    assert main(["scales", *common, "--out", str(tmp_path), "--scales", "17"]) == 2
    assert "from 1 to 16" in capsys.readouterr().err
