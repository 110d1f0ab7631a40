import csv

import numpy as np
import pytest
import torch
from PIL import Image

from comparisons.benchmark import main, run_benchmark
from sr_models.bicubic import BicubicSR
from sr_models.degradation import degrade, imresize
from sr_models.metrics import psnr, ssim


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_benchmark_command_writes_reports_matching_direct_metrics(image_folder, tiny_models_dir, tmp_path, capsys):
    out = tmp_path / "bench"
    code = main(
        [
            "--models",
            "bicubic,tiny-regression-x2",
            "--scale",
            "2",
            "--data",
            str(image_folder),
            "--out",
            str(out),
            "--model-dir",
            str(tiny_models_dir),
        ]
    )
    assert code == 0
    summary = read_csv(out / "summary.csv")
    assert {"dataset", "model", "scale", "n_images", "psnr_y", "ssim_y", "lr_psnr", "seconds_per_image"} <= set(
        summary[0]
    )
    assert [r["model"] for r in summary] == ["bicubic", "tiny-regression-x2"]
    assert all(r["n_images"] == "3" and r["dataset"] == image_folder.name for r in summary)
    # recompute bicubic by hand
    ps, ss = [], []
    for path in sorted(image_folder.glob("*.png")):
        hr, lr = degrade(np.asarray(Image.open(path).convert("RGB")), 2)
        sr = imresize(lr, 2)
        ps.append(psnr(sr, hr, 2))
        ss.append(ssim(sr, hr, 2))
    assert float(summary[0]["psnr_y"]) == pytest.approx(np.mean(ps), abs=1e-4)
    assert float(summary[0]["ssim_y"]) == pytest.approx(np.mean(ss), abs=1e-4)
    assert len(read_csv(out / "per_image.csv")) == 6
    md = (out / "summary.md").read_text()
    assert md.startswith("Protocol: x2;") and "BT.601 Y, 2 px border" in md
    assert (out / "summary.html").exists()
    assert "| tiny-regression-x2 |" in capsys.readouterr().out


@pytest.mark.slow
def test_limit_and_crop(image_folder, tmp_path):
    summary = run_benchmark([BicubicSR()], 4, [str(image_folder)], tmp_path, limit=2, crop=32)
    assert summary[0]["n_images"] == 2
    rows = read_csv(tmp_path / "per_image.csv")
    assert all(r["height"] == "32" and r["width"] == "32" for r in rows)


def test_unsupported_scale_and_unknown_model_are_clear_errors(image_folder, tiny_models_dir, tmp_path, capsys):
    args = ["--scale", "4", "--data", str(image_folder), "--out", str(tmp_path), "--model-dir", str(tiny_models_dir)]
    assert main(["--models", "tiny-regression-x2", *args]) == 2
    assert "not 4x" in capsys.readouterr().err
    assert main(["--models", "nope", *args]) == 2
    assert "unknown model" in capsys.readouterr().err


def test_list_models(tiny_models_dir, capsys):
    assert main(["--list", "--model-dir", str(tiny_models_dir)]) == 0
    out = capsys.readouterr().out
    assert "bicubic" in out and "tiny-regression-x4" in out


class TinyFeatures(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 6, 5, stride=4)

    def forward(self, x):
        return self.conv(x.float() / 255).mean(dim=(2, 3))


@pytest.mark.slow
def test_perceptual_columns_with_random_backbones(image_folder, tmp_path):
    from comparisons.perceptual import load_lpips

    summary = run_benchmark(
        [BicubicSR()],
        2,
        [str(image_folder)],
        tmp_path,
        perceptual=True,
        lpips_model=load_lpips(random_backbone=True),
        feature_extractor=TinyFeatures(),
        fid_patch=16,
    )
    assert summary[0]["lpips"] > 0 and summary[0]["fid"] >= 0
    assert "patch" in (tmp_path / "summary.md").read_text()


@pytest.mark.slow
def test_perceptual_without_weights_says_so_and_computes_the_rest(image_folder, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    summary = run_benchmark([BicubicSR()], 2, [str(image_folder)], tmp_path / "out", perceptual=True)
    assert "psnr_y" in summary[0] and "lpips" not in summary[0]
    err = capsys.readouterr().err
    assert "LPIPS skipped" in err and "--prefetch" in err
    assert "LPIPS skipped" in (tmp_path / "out" / "summary.md").read_text()


@pytest.mark.slow
def test_perceptual_adds_swd_and_diversity_without_weights(image_folder, tiny_models_dir, tmp_path, monkeypatch):
    from sr_models.registry import discover, get_models
    from sr_models.types import SamplingSettings

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    models = get_models(["bicubic", "tiny-ldm-x4"], discover(model_dirs=[tiny_models_dir]))
    settings = SamplingSettings(steps=2, eta=1.0, lr_projection=0)
    summary = run_benchmark(models, 4, [str(image_folder)], tmp_path, crop=64, settings=settings, perceptual=True)
    by = {r["model"]: r for r in summary}
    assert by["bicubic"]["diversity"] == 0.0 and by["tiny-ldm-x4"]["diversity"] > 0
    assert all(r["swd"] > 0 and r["swd_l1"] > 0 for r in summary)
    header = (tmp_path / "summary.csv").read_text().splitlines()[0].split(",")
    assert {"swd", "swd_l1", "swd_l4", "diversity"} <= set(header)
    plain = run_benchmark(models[:1], 4, [str(image_folder)], tmp_path / "plain", crop=64, settings=settings)
    assert "swd" not in plain[0] and "diversity" not in plain[0]


@pytest.mark.slow
def test_update_cards_writes_measured_rows(image_folder, tmp_path):
    from sr_models.cards import read_card
    from tests.conftest import save_tiny_regression

    root = tmp_path / "models"
    save_tiny_regression(root / "m", scale=2, name="card-model")
    args = [
        "--models",
        "bicubic,card-model",
        "--scale",
        "2",
        "--data",
        str(image_folder),
        "--out",
        str(tmp_path / "o"),
        "--model-dir",
        str(root),
        "--update-cards",
    ]
    assert main(args) == 0
    assert main(args) == 0  # a second run replaces its row instead of adding one
    meta = read_card(root / "m")
    assert len(meta["metrics"]) == 1
    row = meta["metrics"][0]
    summary = read_csv(tmp_path / "o" / "summary.csv")
    assert row["psnr_y"] == pytest.approx(float(summary[1]["psnr_y"]), abs=1e-3)
    assert row["bicubic_psnr_y"] == pytest.approx(float(summary[0]["psnr_y"]), abs=1e-3)
    card = (root / "m" / "README.md").read_text()
    assert "## Measured" in card and str(row["psnr_y"]) in card


@pytest.mark.slow
def test_steps_study_runs_each_setting(image_folder, tmp_path):
    from comparisons.studies.cli import main as study_main
    from tests.conftest import tiny_ldm_folder

    tiny_ldm_folder(tmp_path / "models" / "ldm")
    code = study_main(
        [
            "steps",
            "--models",
            "tiny-ldm-x4",
            "--scale",
            "4",
            "--steps-list",
            "1,2",
            "--data",
            str(image_folder),
            "--crop",
            "32",
            "--out",
            str(tmp_path / "s"),
            "--model-dir",
            str(tmp_path / "models"),
        ]
    )
    assert code == 0
    rows = read_csv(tmp_path / "s" / "study.csv")
    assert [(r["steps"], r["nfe"]) for r in rows] == [("1", "1.0"), ("2", "2.0")]
    assert (tmp_path / "s" / "study.html").exists()


@pytest.mark.slow
def test_spread_study_splits_sample_error_into_mean_error_and_spread(image_folder, tmp_path):
    from comparisons.studies.cli import main as study_main
    from sr_models.data import eval_pairs
    from sr_models.metrics import mse
    from sr_models.registry import discover
    from sr_models.types import SamplingSettings
    from tests.conftest import tiny_sr3_folder

    tiny_sr3_folder(tmp_path / "models" / "sr3")
    args = [
        "spread",
        "--models",
        "bicubic,tiny-sr3-x4",
        "--scale",
        "4",
        "--steps-list",
        "1,2",
        "--seeds",
        "3",
        "--eta",
        "1",
        "--lr-projection",
        "0",
        "--data",
        str(image_folder),
        "--crop",
        "32",
        "--limit",
        "2",
        "--out",
        str(tmp_path / "v"),
        "--model-dir",
        str(tmp_path / "models"),
    ]
    assert study_main(args) == 0
    rows = read_csv(tmp_path / "v" / "spread.csv")
    bicubic, *sr3 = rows
    assert bicubic["model"] == "bicubic" and float(bicubic["spread_rms"]) == 0  # deterministic: no spread
    assert bicubic["psnr_y_single"] == bicubic["psnr_y_of_mean"]
    assert [r["steps"] for r in sr3] == ["1", "2"]
    # recompute the 2-step row's first image by hand: MSE of the samples = MSE of their mean + spread
    model = discover(model_dirs=[tmp_path / "models"])["tiny-sr3-x4"]
    pair = next(eval_pairs(image_folder, 4, crop=32))
    samples = [
        model.upscale(pair.lr, settings=SamplingSettings(steps=2, eta=1.0, seed=k, lr_projection=0)).image
        for k in range(3)
    ]
    mean = np.mean(np.stack(samples).astype(np.float64), axis=0)
    spread = np.mean([mse(s, mean, 4) for s in samples])
    assert spread > 0  # eta = 1: the seeds give different images
    assert np.mean([mse(s, pair.hr, 4) for s in samples]) == pytest.approx(mse(mean, pair.hr, 4) + spread, rel=1e-9)
    assert float(sr3[1]["psnr_y_of_mean"]) > float(sr3[1]["psnr_y_single"])  # averaging removes the spread
    assert study_main(args[:8] + ["1"] + args[9:]) == 2  # one seed has no spread: a plain error


def test_reconstruction_study_updates_the_first_stage_card(image_folder, tmp_path):
    import torch

    from comparisons.studies.cli import main as study_main
    from sr_models.cards import read_card, write_card
    from sr_models.first_stage import build_autoencoder

    torch.manual_seed(0)
    folder = tmp_path / "ae"
    build_autoencoder((8, 8, 8)).save_pretrained(str(folder), safe_serialization=True)
    write_card(folder, {"name": "ae", "family": "first-stage", "scales": [1]})
    assert (
        study_main(["reconstruction", "--first-stage", str(folder), "--data", str(image_folder), "--update-card"]) == 0
    )
    rows = read_card(folder)["metrics"]
    assert rows[0]["n_images"] == 3 and 0 < rows[0]["psnr_y"] < 40  # an untrained AE is far from exact
