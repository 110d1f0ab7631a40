"""The speed benchmark's plumbing on tiny models (its numbers are measured, not tested)."""

import pytest

from comparisons.speed import COLUMNS, main, speed_rows, summarize
from sr_models.registry import discover
from tests.conftest import tiny_ldm_folder, tiny_sr3_folder


@pytest.mark.slow
def test_speed_rows_time_every_case_with_its_roofline_and_summarize(tmp_path):
    tiny_ldm_folder(tmp_path / "ldm")
    tiny_sr3_folder(tmp_path / "sr3")
    models = discover(model_dirs=[tmp_path], device="cpu")
    rows = speed_rows(models, "tiny-ldm-x4", "tiny-sr3-x4", 32, 2, ["bfloat16"], "cpu", repeats=2)
    cases = {(r["case"], r["dtype"]) for r in rows}
    assert cases == {
        ("peak", "float32"),
        ("peak", "bfloat16"),
        ("ours", "float32"),  # float32 always runs: the stock and bare cases are float32
        ("ours", "bfloat16"),
        ("bare", "float32"),
        ("stock", "float32"),
        ("sr3", "float32"),
        ("sr3", "bfloat16"),
    }
    timed = [r for r in rows if r["case"] != "peak"]
    for r in timed:
        assert set(r) <= set(COLUMNS) and r["repeats"] == 2 and r["seconds_min"] <= r["seconds"] <= r["seconds_max"]
        assert r["gflop"] > 0 and r["gflops_achieved"] == pytest.approx(r["gflop"] / r["seconds"], rel=0.01, abs=0.01)
        assert r["of_peak"] == pytest.approx(r["gflops_achieved"] / r["peak_gflops"], abs=0.002)
    by = {(r["case"], r["dtype"]): r for r in timed}
    assert by[("ours", "float32")]["gflop"] == by[("ours", "bfloat16")]["gflop"]  # FLOPs do not depend on dtype
    assert by[("sr3", "float32")]["gflop_per_step"] > by[("ours", "float32")]["gflop_per_step"]  # pixel space
    # the tiny models carry no validated precision: auto means float32 on every CPU
    assert [r["dtype"] for r in timed if r["default"]] == ["float32", "float32"]
    assert models["tiny-ldm-x4"].dtype.__repr__() == "torch.float32"  # left as found
    text = "\n".join(summarize(rows))
    assert "vs stock diffusers in float32" in text and "loop overhead" in text and "matmul peak" in text


@pytest.mark.slow
def test_step_flops_is_one_network_call_per_step(tmp_path):
    import numpy as np
    import torch

    from comparisons.roofline import flops_of, step_flops
    from sr_models.types import SamplingSettings

    tiny_sr3_folder(tmp_path / "sr3")
    model = discover(model_dirs=[tmp_path], device="cpu")["tiny-sr3-x4"].load()
    lr = np.full((16, 16, 3), 128, np.uint8)
    per_step, fixed = step_flops(model, lr, SamplingSettings(seed=0, lr_projection=0))
    x = torch.zeros(1, model.unet.config.in_channels, 64, 64)
    with torch.inference_mode():
        call = flops_of(lambda: model.unet(x, torch.tensor(10)))
    assert per_step == call and fixed == 0  # pixel space: nothing but the UNet calls


def test_matmul_peak_is_a_positive_rate():
    import torch

    from comparisons.roofline import matmul_peak

    assert matmul_peak(torch.float32, side=128, repeats=2) > 0.1


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
