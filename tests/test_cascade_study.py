"""The cascade study end to end on tiny models (16x grid of 1 and 2 steps), and its pieces."""

import json

import pytest

from comparisons.studies.cascade import answer, cascade_study, load_rows, pareto_front
from sr_models.bicubic import BicubicSR
from sr_models.registry import load_model
from tests.conftest import save_tiny_regression, tiny_ldm_folder


def test_pareto_front_keeps_only_undominated_points():
    points = [(1, 20.0), (2, 19.0), (2, 21.0), (3, 21.0), (5, 22.0), (0, 18.0)]
    assert sorted(pareto_front(points)) == [0, 2, 4, 5]


def test_answer_compares_at_equal_nfe_and_time():
    rows = [
        {
            "dataset": "Set14",
            "projection": "raw",
            "scale": 16,
            "group": "ldm-x16",
            "model": "ldm-x16",
            "config": "x16 [4]",
            "n1": 4,
            "psnr_y": 21.0,
            "nfe": 4,
            "seconds": 1.0,
        },
        {
            "dataset": "Set14",
            "projection": "raw",
            "scale": 16,
            "group": "ldm-x4>ldm-x4",
            "model": "a>b",
            "config": "c [1,2]",
            "n1": 1,
            "n2": 2,
            "psnr_y": 21.5,
            "nfe": 3,
            "seconds": 2.0,
        },
        {
            "dataset": "Set14",
            "projection": "raw",
            "scale": 16,
            "group": "ldm-x4>ldm-x4",
            "model": "a>b",
            "config": "c [5,5]",
            "n1": 5,
            "n2": 5,
            "psnr_y": 22.0,
            "nfe": 10,
            "seconds": 0.5,
        },
    ]
    text = " ".join(answer(rows, "Set14", "raw"))
    assert "at no more NFE: c [1,2] 21.50 dB (+0.50" in text
    assert "at no more wall clock: c [5,5] 22.00 dB (+1.00" in text


@pytest.fixture(scope="module")
def study_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("study-models")
    return {
        "bicubic": BicubicSR(),
        "ldm-x4": load_model(tiny_ldm_folder(root / "x4", scale=4)),
        "ldm-x16": load_model(tiny_ldm_folder(root / "x16", scale=16)),
        "regression-x4": load_model(save_tiny_regression(root / "r4", scale=4)),
    }


@pytest.mark.slow
def test_cascade_study_writes_its_reports(study_models, image_folder, tmp_path):
    card = cascade_study(
        [str(image_folder)],
        tmp_path,
        grid=(1, 2),
        aug_model="ldm-x4-aug",
        scales=(16, 8),
        crop=48,
        models=study_models,
        command="test",
    )
    rows = load_rows(tmp_path / "cascade.csv")
    configs = {r["config"] for r in rows}
    assert {"bicubic", "regression-x4>regression-x4", "ldm-x16 [1]", "ldm-x16 [2]", "ldm-x4>ldm-x4 [2,1]"} <= configs
    assert len(configs) == 2 + 2 + 4  # references, single at 1 and 2 steps, the 2x2 grid
    cascades = [r for r in rows if r["group"] == "ldm-x4>ldm-x4"]
    assert all(r["nfe"] == r["n1"] + r["n2"] == r["stage1_nfe"] + r["stage2_nfe"] for r in cascades)
    by = {(r["config"], r["projection"], r["dataset"]): r for r in rows}
    for config in configs:  # back-projection onto the original LR makes every output more LR-consistent
        assert by[(config, "bp", "all")]["lr_psnr"] >= by[(config, "raw", "all")]["lr_psnr"] - 1e-6
    saved = json.loads((tmp_path / "run_card.json").read_text())
    assert saved["answer"] == card["answer"] and any("ldm-x16 at 2 steps" in a for a in saved["answer"])
    assert any("skipped" in n and "ldm-x4-aug" in n for n in saved["notes"])  # missing models are said, not fatal
    assert any("ldm-x8" in n for n in saved["notes"])
    html = (tmp_path / "cascade.html").read_text()
    assert "Pareto front" in html and "split of steps" in html


def test_load_rows_reads_numbers_and_empty_cells_back(tmp_path):
    from comparisons.records import write_csv
    from comparisons.studies.cascade import COLUMNS

    row = {c: "" for c in COLUMNS} | {"scale": 16, "config": "bicubic", "model": "bicubic", "dataset": "1"}
    row |= {"psnr_y": 21.57251, "n_images": 5, "settings": "bicubic: seed 0"}
    write_csv(tmp_path / "c.csv", [row], COLUMNS)
    (back,) = load_rows(tmp_path / "c.csv")
    assert back["scale"] == 16 and isinstance(back["scale"], int) and back["n_images"] == 5
    assert back["psnr_y"] == 21.5725 and back["n1"] is None and back["lpips"] is None
    assert back["dataset"] == "1" and back["group"] == ""  # text columns stay text
