"""The perception-distortion study on tiny models: rows, Pareto marks, diversity, the GAN answer."""

import csv
from pathlib import Path

import numpy as np
import pytest

from comparisons.studies.perception import (
    Point,
    dominating,
    mark_pareto,
    perception_study,
    pick_presets,
    study_points,
    update_cards,
)
from sr_models.cards import read_card
from sr_models.registry import discover, get_models


@pytest.fixture(scope="module")
def models(tiny_models_dir):
    return get_models(["bicubic", "tiny-regression-x4", "tiny-ldm-x4"], discover(model_dirs=[tiny_models_dir]))


def test_points_cover_the_grid_once(models):
    points = study_points(models, [1, 2], [0.0, 1.0], mean_seeds=3, mean_at=[(2, 1.0)])
    labels = [p.label for p in points]
    assert labels.count("bicubic") == 1 and labels.count("tiny-regression-x4") == 1
    diffusion = [p for p in points if p.steps is not None]
    # eta is moot at 1 step: (1, 0) once, (2, 0), (2, 1), and the mean of 3 seeds at (2, 1)
    assert [(p.steps, p.eta, p.seeds) for p in diffusion] == [(1, 0.0, 1), (2, 0.0, 1), (2, 1.0, 1), (2, 1.0, 3)]


@pytest.mark.slow
def test_study_writes_rows_with_swd_and_diversity(models, image_folder, tmp_path):
    rows = perception_study(
        models,
        4,
        [image_folder],
        tmp_path,
        steps_list=[1, 2],
        etas=[1.0],
        mean_seeds=2,
        mean_at=[(2, 1.0)],
        crop=32,
        diversity_images=2,
        progress=lambda _: None,
    )
    by = {(r["dataset"], r["model"]): r for r in rows}
    name = image_folder.name
    assert by[(name, "bicubic")]["diversity"] == 0.0 and by[(name, "tiny-regression-x4")]["diversity"] == 0.0
    sampled = by[(name, "tiny-ldm-x4 [2 steps, eta 1]")]
    assert sampled["diversity"] > 0 and sampled["nfe"] == 2
    assert by[(name, "tiny-ldm-x4 [2 steps, eta 1, mean of 2]")]["nfe"] == 4
    assert all(np.isfinite(r["swd"]) and r["swd"] > 0 for r in rows)
    assert {r["dataset"] for r in rows} == {name, "all"}
    written = list(csv.DictReader(open(tmp_path / "perception.csv")))
    assert len(written) == len(rows) and (tmp_path / "perception.html").exists()
    assert "SWD" in (tmp_path / "run_card.md").read_text()


def test_pareto_and_domination_answer():
    rows = [
        {"dataset": "all", "model": "gan", "family": "gan", "psnr_y": 25.0, "swd": 50.0, "nfe": 1},
        {"dataset": "all", "model": "ldm [5]", "family": "ldm", "psnr_y": 25.5, "swd": 40.0, "nfe": 5},
        {"dataset": "all", "model": "ldm [20]", "family": "ldm", "psnr_y": 25.2, "swd": 30.0, "nfe": 20},
        {"dataset": "all", "model": "regression", "family": "regression", "psnr_y": 26.0, "swd": 60.0, "nfe": 1},
    ]
    mark_pareto(rows)
    assert [r["pareto"] for r in rows] == [0, 1, 1, 1]
    (line,) = dominating(rows)
    assert "2 diffusion settings dominate gan" in line and "ldm [5] at NFE 5" in line
    rows[1]["psnr_y"] = rows[2]["psnr_y"] = 24.0
    assert "no diffusion setting" in dominating(rows)[0]


def test_point_label_names_its_setting(models):
    assert Point(models[2], 10, 1.0, 4).label == "tiny-ldm-x4 [10 steps, eta 1, mean of 4]"


def _row(model, steps, eta, psnr, swd, seeds=1, dataset="all"):
    label = model if steps == "" else f"{model} [{steps} steps, eta {eta:g}]"
    return {
        "dataset": dataset,
        "model": label,
        "steps": steps,
        "eta": eta,
        "seeds": seeds,
        "psnr_y": psnr,
        "swd": swd,
        "nfe": steps or 1,
    }


def test_presets_pick_best_psnr_then_lowest_swd_within_the_loss():
    rows = [
        _row("bicubic", "", "", 24.0, 50.0),
        _row("ldm", 1, 0.0, 28.0, 40.0),
        _row("ldm", 5, 0.0, 27.5, 35.0),
        _row("ldm", 20, 1.0, 27.1, 30.0),  # within 1 dB: the detail preset
        _row("ldm", 50, 1.0, 26.5, 20.0),  # lower SWD, but 1.5 dB below fidelity
        _row("ldm", 20, 1.0, 29.0, 10.0, seeds=4),  # a mean of seeds is no single-sample setting
        _row("ldm", 50, 1.0, 30.0, 5.0, dataset="Set14"),  # another dataset's row is ignored
    ]
    presets = pick_presets(rows, psnr_loss=1.0)
    assert list(presets) == ["ldm"]
    assert presets["ldm"]["fidelity"]["steps"] == 1 and presets["ldm"]["fidelity"]["eta"] == 0.0
    assert (presets["ldm"]["detail"]["steps"], presets["ldm"]["detail"]["eta"]) == (20, 1.0)
    assert pick_presets(rows, psnr_loss=2.0)["ldm"]["detail"]["steps"] == 50


def test_presets_go_into_the_card_the_app_reads(tiny_models_dir, tmp_path):
    import shutil

    from sr_models.registry import discover, get_models
    from ui.presets import model_presets

    folder = tmp_path / "tiny-ldm-x4"
    shutil.copytree(Path(tiny_models_dir) / "tiny-ldm-x4", folder)
    [model] = get_models(["tiny-ldm-x4"], discover(model_dirs=[tmp_path]))
    presets = {"tiny-ldm-x4": {"fidelity": {"steps": 1, "eta": 0.0}, "detail": {"steps": 7, "eta": 1.0}}}
    assert update_cards([model], presets, "picked on val") == [("tiny-ldm-x4", folder)]
    assert read_card(folder)["presets"]["protocol"] == "picked on val"
    assert "- **detail**: 7 steps, eta 1\n" in (folder / "README.md").read_text()  # the rendered card says it
    [reloaded] = get_models(["tiny-ldm-x4"], discover(model_dirs=[tmp_path]))
    assert model_presets(reloaded)["detail"] == {"steps": 7, "eta": 1.0}
