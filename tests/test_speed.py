"""The speed benchmark's plumbing on tiny models (its numbers are measured, not tested)."""

import pytest

from comparisons.speed import COLUMNS, main, speed_rows, summarize
from sr_models.registry import discover
from tests.conftest import tiny_ldm_folder, tiny_sr3_folder


@pytest.mark.slow
def test_speed_rows_time_every_case_and_summarize(tmp_path):
    tiny_ldm_folder(tmp_path / "ldm")
    tiny_sr3_folder(tmp_path / "sr3")
    models = discover(model_dirs=[tmp_path], device="cpu")
    rows = speed_rows(models, "tiny-ldm-x4", "tiny-sr3-x4", 32, 2, ["float32", "bfloat16"], "cpu", repeats=2)
    cases = {(r["case"], r["dtype"]) for r in rows}
    assert cases == {
        ("ours", "float32"),
        ("ours", "bfloat16"),
        ("bare", "float32"),
        ("stock", "float32"),
        ("sr3", "float32"),
        ("sr3", "bfloat16"),
    }
    for r in rows:
        assert set(r) <= set(COLUMNS) and r["repeats"] == 2 and r["seconds_min"] <= r["seconds"] <= r["seconds_max"]
    assert models["tiny-ldm-x4"].dtype.__repr__() == "torch.float32"  # left as found
    text = "\n".join(summarize(rows))
    assert "ours / stock diffusers" in text and "loop overhead" in text and "bfloat16" in text


def test_speed_command_refuses_unknown_models(tmp_path, capsys):
    assert main(["--out", str(tmp_path), "--ldm", "no-such-model"]) == 2
    assert "unknown model" in capsys.readouterr().err


@pytest.mark.slow
def test_psnr_rows_score_each_dtype_like_the_benchmark(tmp_path, image_folder):
    import numpy as np
    import pytest

    from comparisons.speed import psnr_rows
    from sr_models.data import eval_pairs
    from sr_models.metrics import psnr
    from sr_models.types import SamplingSettings

    tiny_ldm_folder(tmp_path / "ldm")
    models = discover(model_dirs=[tmp_path], device="cpu")
    out = psnr_rows(models, "tiny-ldm-x4", ["float32"], "cpu", str(image_folder), 32, 2)
    settings = SamplingSettings(steps=2, seed=0, lr_projection=0)
    model = models["tiny-ldm-x4"]
    expected = np.mean(
        [psnr(model.upscale(p.lr, settings=settings).image, p.hr, 4) for p in eval_pairs(image_folder, 4, crop=32)]
    )
    assert list(out) == ["float32"] and out["float32"] == pytest.approx(expected, abs=1e-9)
