"""The precision command on tiny models: CSV numbers, the card entry auto reads, the test-set refusal."""

import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from comparisons import precision
from comparisons.evaluate import evaluate
from comparisons.records import read_csv
from sr_models.cards import read_card
from sr_models.data import eval_pairs, is_validation
from sr_models.device import HALF_PSNR_TOLERANCE_DB, validated_half
from sr_models.registry import discover, get_models
from sr_models.types import SamplingSettings
from tests.conftest import tiny_ldm_folder, tiny_sr3_folder


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("precision-models")
    tiny_ldm_folder(root / "tiny-ldm-x4")
    tiny_sr3_folder(root / "tiny-sr3-x4")
    return root


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    """A training pool of 40x40 crops: two images in its validation split, the rest not."""
    from skimage import data

    folder = tmp_path_factory.mktemp("pools") / "pool"  # the split hashes folder/name: a fixed folder name
    folder.mkdir()
    astronaut = data.astronaut()
    for n, i in enumerate((0, 1, 2, 29)):
        Image.fromarray(astronaut[40 * n : 40 * n + 40, 200:240]).save(folder / f"img{i:02d}.png")
    assert [p.name for p in sorted(folder.iterdir()) if is_validation(p)] == ["img02.png", "img29.png"]
    return folder


@pytest.fixture
def one_thread():
    """--threads 1 (quicker on a busy 2-core machine) sets torch's threads for the process: put them back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def run(models_dir, pool, out, *extra) -> int:
    base = ["--data", str(pool), "--crop", "32", "--out", str(out), "--model-dir", str(models_dir), "--threads", "1"]
    return precision.main(["--models", "tiny-ldm-x4,tiny-sr3-x4", *base, *extra])


@pytest.mark.slow
def test_csv_and_card_entry_on_the_validation_split(models_dir, pool, tmp_path, one_thread):
    """One run: the CSV's delta is its two columns' difference and evaluate's by hand; the card entry
    holds that delta where ``validated_half`` reads it."""
    shutil.copytree(models_dir, tmp_path / "models")
    assert run(tmp_path / "models", pool, tmp_path / "out", "--split", "val", "--update-cards") == 0
    rows = {r["model"]: r for r in read_csv(tmp_path / "out" / "precision.csv")}
    assert set(rows) == {"tiny-ldm-x4", "tiny-sr3-x4"}
    for row in rows.values():
        assert row["dtype"] == "bfloat16" and row["images"] == 2 and row["steps"] == 2
        assert row["delta_db"] == pytest.approx(row["psnr_y"] - row["psnr_y_float32"], abs=2e-4)
        assert row["max_abs_pixel_diff"] >= 0 and row["seconds"] > 0
    [model] = get_models(["tiny-ldm-x4"], discover(model_dirs=[models_dir]))
    by_hand = {dtype: _mean_psnr_y(model, pool, dtype) for dtype in ("float32", "bfloat16")}
    ldm = rows["tiny-ldm-x4"]
    assert (ldm["psnr_y_float32"], ldm["psnr_y"]) == pytest.approx((by_hand["float32"], by_hand["bfloat16"]), abs=1e-3)
    card = read_card(tmp_path / "models" / "tiny-ldm-x4")
    entry = card["precision"]["bfloat16"]
    assert entry["val_psnr_y_delta_db"] == pytest.approx(ldm["delta_db"], abs=2e-4)
    assert (entry["images"], entry["crop"], entry["steps"], entry["data"]) == (2, 32, 2, "pool (split val)")
    assert entry["native"] == precision.computes_natively("cpu", "bfloat16") and entry["commit"]
    assert validated_half(card, "bfloat16") == (abs(ldm["delta_db"]) <= HALF_PSNR_TOLERANCE_DB)


def _mean_psnr_y(model, pool, dtype: str) -> float:
    model.to("cpu", dtype)
    settings = SamplingSettings(seed=0, lr_projection=0)
    pairs = list(eval_pairs(pool, 4, crop=32, split="val"))
    return float(np.mean([evaluate(model, p.lr, 4, settings, p.hr).scores["psnr_y"] for p in pairs]))


@pytest.mark.parametrize("delta, validated", [(0.03, True), (-0.05, True), (0.2, False), (-0.06, False)])
def test_recorded_delta_decides_validated_half(models_dir, tmp_path, delta, validated):
    folder = tmp_path / "tiny-ldm-x4"
    shutil.copytree(models_dir / "tiny-ldm-x4", folder)
    row = {"model": "tiny-ldm-x4", "dtype": "bfloat16", "steps": 2, "images": 3, "psnr_y_float32": 30.0}
    model = SimpleNamespace(name="tiny-ldm-x4", folder=folder)
    written = precision.update_cards([model], [{**row, "delta_db": delta}], data=["pool"], crop=128, device="cpu")
    assert written == [("tiny-ldm-x4", folder)]
    assert validated_half(read_card(folder), "bfloat16") is validated
    assert read_card(folder)["default_steps"] == 2  # the rest of the card is kept


def test_emulated_bfloat16_is_said_and_recorded(monkeypatch, capsys):
    monkeypatch.setattr(precision, "native_bf16", lambda: False)
    precision.say_emulated("cpu", ["bfloat16"])
    assert "bfloat16 is emulated on this CPU" in capsys.readouterr().out
    row = {"delta_db": 0.01, "psnr_y_float32": 30.0, "images": 1, "steps": 2}
    assert precision.card_entry(row, data=["pool"], crop=128, native=False)["native"] is False
    monkeypatch.setattr(precision, "native_bf16", lambda: True)
    assert precision.computes_natively("cpu", "bfloat16")


def test_update_cards_on_a_test_set_is_refused(image_folder, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        precision.main(
            ["--models", "tiny-ldm-x4", "--data", str(image_folder), "--out", str(tmp_path / "o"), "--update-cards"]
        )
    assert exit_.value.code == 2
    assert "--split val" in capsys.readouterr().err
    assert not Path(tmp_path / "o").exists()  # refused before anything ran


def test_help_names_the_options(capsys):
    with pytest.raises(SystemExit) as exit_:
        precision.main(["--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert all(option in text for option in ("--dtypes", "--update-cards", "--split", "--crop"))


def test_the_model_card_shows_each_measured_precision():
    from sr_models.cards import render_card

    card = {"name": "m", "family": "ldm", "scales": [4]}
    assert "## Precision" not in render_card(card)
    entry = {"val_psnr_y_delta_db": -0.0011, "images": 30, "crop": 128, "steps": 1, "native": False, "measured_on": "X"}
    text = render_card({**card, "precision": {"bfloat16": entry}})
    assert "## Precision" in text and "**bfloat16**: validation PSNR-Y -0.0011 dB" in text
    assert "30 images, 128 px crops, 1 step, bfloat16 emulated; X" in text
