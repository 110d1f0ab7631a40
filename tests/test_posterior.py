"""Posterior explorer (issue 14): K seeded samples, their mean and std map, refusals before any run, colour bars,
the record folder and the command line, on a tiny seeded latent diffusion model (CPU, 2 steps)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image

from comparisons.colormaps import BAR_WIDTH, GAP, bar_ticks, colorize, colormap_table, is_clipped, map_image
from comparisons.compare import RunStopped
from comparisons.posterior import (
    MAX_SAMPLES,
    SAMPLE_COLUMNS,
    check_posterior_request,
    explore_posterior,
    main,
    sparsification_figure,
    write_posterior_record,
)
from sr_models.base import SRModel
from sr_models.bicubic import BicubicSR
from sr_models.cascade import CascadeSR
from sr_models.degradation import center_crop, degrade
from sr_models.metrics import psnr, shave_border
from sr_models.registry import FolderModel
from sr_models.types import SamplingSettings as S
from tests.conftest import tiny_ldm_folder

SETTINGS = S(steps=2, sampler="ddim", eta=1.0, seed=5)


def reference_pair() -> tuple[np.ndarray, np.ndarray]:
    """(HR 32x48, LR 8x12): a crop of scikit-image's astronaut degraded by the benchmark protocol at 4x."""
    from skimage import data

    return degrade(center_crop(data.astronaut(), 64)[:32, :48], 4)


HR, LR = reference_pair()


@pytest.fixture(scope="module")
def ldm_folder(tmp_path_factory):
    return tiny_ldm_folder(tmp_path_factory.mktemp("posterior") / "tiny-ldm-x4")


@pytest.fixture(scope="module")
def ldm(ldm_folder):
    return FolderModel(ldm_folder)  # as the app and the command line find it: with its folder, for the hashes


@pytest.fixture(scope="module")
def posterior(ldm):
    return explore_posterior(ldm, LR, 4, SETTINGS, 3, hr=HR)


class CountingModel(SRModel):
    """A deterministic 4x model (pixel repetition) that counts its runs."""

    name, family, scales = "counting", "test", (4,)

    def __init__(self):
        self.calls = 0

    def _upscale(self, lr, *, scale, settings, on_step, keep_frames):
        self.calls += 1
        return np.repeat(np.repeat(lr, scale, axis=0), scale, axis=1), 1, None


@pytest.mark.slow
def test_diffusion_samples_spread_and_the_std_map_is_the_numpy_std(posterior):
    stacked = np.stack(posterior.samples).astype(np.float64)
    assert posterior.seeds == (5, 6, 7)
    assert posterior.summary["mean_spread"] > 0 and posterior.summary["diversity"] > 0
    assert not posterior.summary["deterministic"]
    np.testing.assert_allclose(posterior.std_map, stacked.std(axis=0, ddof=1).mean(axis=2), atol=1e-9)
    np.testing.assert_array_equal(posterior.mean, np.round(stacked.mean(axis=0)).astype(np.uint8))
    np.testing.assert_allclose(posterior.error_map, np.abs(posterior.mean - HR.astype(np.float64)).mean(axis=2))
    assert posterior.lr_map.shape == HR.shape[:2] and posterior.summary["nfe"] == 3 * 2


@pytest.mark.slow
def test_each_sample_is_a_single_run_with_its_seed_and_its_row_is_scored(ldm, posterior):
    for i in (0, 2):
        alone = ldm.upscale(LR, 4, S(steps=2, sampler="ddim", eta=1.0, seed=5 + i)).image
        np.testing.assert_array_equal(posterior.samples[i], alone)
        expected = psnr(alone, HR, crop_border=shave_border(4))
        assert posterior.rows[i]["psnr_y"] == pytest.approx(expected)
        assert posterior.rows[i]["seed"] == 5 + i and posterior.rows[i]["file"] == f"tiny-ldm-x4_x4_seed{5 + i}.png"
    mean_psnr = psnr(posterior.mean, HR, crop_border=shave_border(4))
    assert posterior.summary["psnr_y_mean_image"] == pytest.approx(mean_psnr)
    assert set(SAMPLE_COLUMNS) <= set(posterior.rows[0])


def test_uncertainty_numbers_follow_the_maps(posterior):
    curves, summary = posterior.curves, posterior.summary
    assert curves["model"][0] == pytest.approx(1.0) and np.all(curves["oracle"] <= curves["model"] + 1e-9)
    assert summary["ause"] >= 0 and summary["ause_random"] >= summary["ause"] - 1e-9 or summary["spearman"] < 0
    assert -1 <= summary["spearman"] <= 1
    figure = sparsification_figure(posterior)
    assert [len(trace.y) for trace in figure.data] == [100, 100, 100]


@pytest.mark.slow
def test_a_deterministic_model_is_allowed_and_has_no_spread():
    posterior = explore_posterior(BicubicSR(), LR, 4, S(seed=0), 2, hr=HR)
    summary = posterior.summary
    assert summary["deterministic"] and summary["mean_spread"] == 0 and summary["diversity"] == 0
    assert "deterministic" in summary["note"] and np.isnan(summary["spearman"])
    assert summary["ause"] == pytest.approx(summary["ause_random"])
    np.testing.assert_array_equal(posterior.samples[0], posterior.samples[1])


@pytest.mark.slow
def test_a_cascade_sample_is_the_cascade_run_with_that_seed(ldm):
    cascade = CascadeSR([(ldm, 4), (BicubicSR(), 2)])
    posterior = explore_posterior(cascade, LR, None, SETTINGS, 2)
    alone = cascade.upscale(LR, settings=S(steps=2, sampler="ddim", eta=1.0, seed=6)).image
    np.testing.assert_array_equal(posterior.samples[1], alone)
    assert posterior.samples[0].shape == (64, 96, 3) and posterior.summary["mean_spread"] > 0
    assert posterior.error_map is None and posterior.curves is None and posterior.summary["spearman"] is None


@pytest.mark.parametrize("k", [1, 17, 0, 2.0, True, "8"])
def test_bad_k_is_refused_before_any_run(k):
    model = CountingModel()
    with pytest.raises(ValueError, match="number of samples K"):
        explore_posterior(model, LR, 4, None, k)
    assert model.calls == 0


@pytest.mark.slow
def test_k_times_the_output_over_the_limit_is_refused_before_any_run():
    model = CountingModel()
    pixels = LR.shape[0] * LR.shape[1] * 16
    with pytest.raises(ValueError, match="above this server's limit"):
        explore_posterior(model, LR, 4, None, 4, limit=4 * pixels - 1)
    with pytest.raises(ValueError, match="limit"):
        explore_posterior(model, LR, 4, None, MAX_SAMPLES, limit=pixels)  # one output fits, 16 do not
    assert model.calls == 0
    explore_posterior(model, LR, 4, None, 4, limit=4 * pixels)  # exactly at the limit: runs
    assert model.calls == 4
    check_posterior_request(MAX_SAMPLES, 10, 10, limit=1600)
    with pytest.raises(ValueError):
        check_posterior_request(MAX_SAMPLES, 10, 10, limit=1599)


def test_a_reference_of_the_wrong_size_is_refused_before_any_run():
    model = CountingModel()
    with pytest.raises(ValueError, match="reference"):
        explore_posterior(model, LR, 4, None, 2, hr=HR[:-4])
    assert model.calls == 0


@pytest.mark.slow
def test_stop_ends_the_run_between_samples_and_progress_is_reported():
    model, seen = CountingModel(), []
    with pytest.raises(RunStopped):
        explore_posterior(
            model, LR, 4, None, 4, should_stop=lambda: model.calls >= 2, on_sample=lambda i, k: seen.append((i, k))
        )
    assert model.calls == 2 and seen == [(0, 4), (1, 4)]


def test_colorize_and_map_image_have_the_map_on_the_left_and_a_bar_beside_it():
    values = np.tile(np.linspace(0, 20, 40), (64, 1))
    table = colormap_table("viridis")
    mapped = colorize(values, vmax=10)
    assert mapped.shape == (64, 40, 3) and mapped.dtype == np.uint8
    np.testing.assert_array_equal(mapped[0, 0], table[0])
    np.testing.assert_array_equal(mapped[0, -1], table[255])  # above vmax: the top colour
    image = map_image(values, label="std (grey levels)")
    assert image.shape[0] == 64 and image.shape[1] > 40 + 30 and image.dtype == np.uint8
    np.testing.assert_array_equal(image[:, :40], colorize(values))
    gradient = image[:, 40 + GAP + BAR_WIDTH // 2]
    np.testing.assert_array_equal(gradient[0], table[255])  # vmax at the top
    np.testing.assert_array_equal(gradient[-1], table[0])
    labels = image[:, 40 + GAP + BAR_WIDTH :]
    assert (labels.sum(axis=2) < 300).sum() > 20  # tick marks and their values in dark ink
    assert bar_ticks(10.0, 64, clipped=True)[-1] == (10.0, ">10") and bar_ticks(10.0, 64)[0] == (0.0, "0")
    assert is_clipped(values, 10.0) and not is_clipped(values, 20.0)


def test_the_record_folder_has_every_file(posterior, tmp_path):
    folder = write_posterior_record(posterior, tmp_path / "record")
    samples = [f"tiny-ldm-x4_x4_seed{s}.png" for s in (5, 6, 7)]
    maps = ["std_map.png", "error_map.png", "lr_map.png"] + [f"error_{name}" for name in samples]
    tables = ["samples.csv", "summary.csv", "sparsification.csv", "run_card.json", "maps.npz"]
    expected = {*samples, *maps, *tables, "mean.png", "input.png", "reference.png"}
    assert expected == {p.name for p in folder.iterdir()}
    np.testing.assert_array_equal(np.asarray(Image.open(folder / samples[1])), posterior.samples[1])
    with open(folder / "samples.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["seed"]) for r in rows] == [5, 6, 7] and list(rows[0]) == SAMPLE_COLUMNS
    card = json.loads((folder / "run_card.json").read_text())
    assert [s["seed"] for s in card["samples"]] == [5, 6, 7] and card["weights_sha256"]
    assert Image.open(folder / "std_map.png").size[1] == HR.shape[0]


@pytest.mark.slow
def test_command_line_writes_a_record_and_refuses_bad_input_in_one_line(ldm_folder, tmp_path, capsys):
    lr_path, hr_path = tmp_path / "lr.png", tmp_path / "hr.png"
    Image.fromarray(LR).save(lr_path)
    Image.fromarray(HR).save(hr_path)
    common = ["--model-dir", str(ldm_folder.parent), "--steps", "2", "--eta", "1", "--out", str(tmp_path / "o")]
    assert main(["--model", "tiny-ldm-x4", "--hr", str(hr_path), "--k", "2", *common]) == 0
    assert "Spearman" in capsys.readouterr().out and (tmp_path / "o" / "tiny-ldm-x4_x4_seed1.png").exists()
    bad = [
        ["--model", "tiny-ldm-x4", "--input", str(lr_path), "--k", "17"],
        ["--model", "tiny-ldm-x4", "--input", str(tmp_path / "missing.png"), "--k", "2"],
        ["--model", "no-such-model", "--input", str(lr_path)],
        ["--model", "tiny-ldm-x4", "--input", str(lr_path), "--k", "two"],
    ]
    for argv in bad:
        assert exit_code(argv + common) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err


def exit_code(argv) -> int:
    """What ``python -m comparisons.posterior`` would exit with (argparse exits, main returns)."""
    try:
        return main(argv)
    except SystemExit as exit:
        return exit.code
