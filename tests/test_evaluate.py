"""comparisons.evaluate: one image through one model, scored the benchmark's way."""

import numpy as np
import pytest

from comparisons.evaluate import evaluate
from sr_models.bicubic import BicubicSR
from sr_models.degradation import degrade, imresize
from sr_models.metrics import LR_PSNR_CAP, detail_ratio, lr_consistency, psnr, ssim
from sr_models.registry import load_model
from sr_models.types import SamplingSettings
from tests.conftest import sample_images, tiny_ldm_folder


@pytest.fixture(scope="module")
def pair():
    return degrade(sample_images()["astronaut"], 4)  # (hr, lr)


@pytest.mark.slow
def test_scores_and_row_match_the_metrics_computed_by_hand(pair):
    hr, lr = pair
    evaluation = evaluate(BicubicSR(), lr, 4, SamplingSettings(seed=5), hr, name="astronaut")
    sr = imresize(lr, 4)
    assert np.array_equal(evaluation.image, sr)
    assert evaluation.scores["psnr_y"] == pytest.approx(psnr(sr, hr, 4))
    assert evaluation.scores["ssim_y"] == pytest.approx(ssim(sr, hr, 4))
    assert evaluation.scores["lr_psnr"] == pytest.approx(min(lr_consistency(sr, lr, 4), LR_PSNR_CAP))
    assert evaluation.scores["hf_ratio"] == pytest.approx(detail_ratio(sr, hr, 4))
    row = evaluation.row
    assert row["image"] == "astronaut" and (row["height"], row["width"]) == hr.shape[:2]
    assert {k: row[k] for k in evaluation.result.facts()} == evaluation.result.facts()
    assert row["seed"] == 5 and row["model"] == "bicubic"
    assert "lpips" not in row


@pytest.mark.slow
def test_without_a_reference_only_lr_consistency_is_measured(pair):
    _, lr = pair
    evaluation = evaluate(BicubicSR(), lr, 4)
    assert evaluation.scores["psnr_y"] is None and evaluation.scores["ssim_y"] is None
    assert evaluation.scores["hf_ratio"] is None
    assert evaluation.scores["lr_psnr"] == pytest.approx(lr_consistency(evaluation.image, lr, 4))
    assert (evaluation.row["height"], evaluation.row["width"]) == (lr.shape[0] * 4, lr.shape[1] * 4)


def test_lpips_function_gets_the_output_and_the_reference(pair):
    hr, lr = pair
    seen = []

    def fake_lpips(sr, ref):
        seen.append((sr, ref))
        return 0.25

    evaluation = evaluate(BicubicSR(), lr, 4, hr=hr, lpips_fn=fake_lpips)
    assert evaluation.row["lpips"] == 0.25
    assert np.array_equal(seen[0][0], evaluation.image) and seen[0][1] is hr


@pytest.mark.slow
def test_progress_and_frames_reach_the_sampler(pair, tmp_path):
    hr, lr = pair
    model = load_model(tiny_ldm_folder(tmp_path / "ldm"))
    steps = []
    evaluation = evaluate(model, lr, 4, SamplingSettings(steps=3, seed=1), hr, on_step=steps.append, keep_frames=3)
    assert [s.step for s in steps] == [0, 1, 2]
    assert len(evaluation.result.frames) == 3
    assert evaluation.row["nfe"] == 3 and evaluation.row["steps"] == "3"
    again = evaluate(model, lr, 4, SamplingSettings(steps=3, seed=1), hr)
    assert np.array_equal(again.image, evaluation.image)  # the same seed gives the same image
