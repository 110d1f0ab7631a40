"""The posterior explorer tab without a server: a K-sample run of a tiny LDM through the handler, its maps,
numbers, zoom and run record; requests refused before they wait; the progress line names the sample."""

from __future__ import annotations

import asyncio
import json
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from comparisons.views import INPUT_VIEW, MEAN_VIEW, REFERENCE_VIEW
from ui.parse import MODES
from ui.posterior import PosteriorHandlers, PosteriorOutputs

HR_MODE, LR_MODE = list(MODES)


@pytest.fixture
def tab(tiny_lab):
    return PosteriorHandlers(tiny_lab)


class Progress:
    def __init__(self):
        self.lines = []

    def __call__(self, value, desc="", unit=""):
        self.lines.append(desc)


def _run(tab, image, *, mode=HR_MODE, model="tiny-ldm-x4", scale=4, k=4, steps=2, eta=1, seed=7, preset="custom"):
    progress = Progress()
    out = asyncio.run(tab.run(image, mode, model, scale, k, steps, "", eta, seed, -1, preset, progress=progress))
    return dict(zip([*PosteriorOutputs.api_names(), "state"], out)), progress


def _path(value) -> str:
    """The file of an output: a path, or a component update's processed value."""
    value = getattr(value, "value", value)
    return value["path"] if isinstance(value, dict) else value


@pytest.mark.slow
def test_k_samples_give_maps_numbers_zoom_and_a_record(tab, hr_png):
    out, progress = _run(tab, str(hr_png))
    samples = out["samples"].value
    assert [s["caption"] for s in samples] == [f"sample {i} (seed {7 + i})" for i in range(4)]
    for key in ("mean", "std_map", "lr_map"):
        assert Path(_path(out[key])).exists(), key
    error = out["error_map"]
    assert error.visible and Image.open(_path(error)).size[0] > 64  # the map (64 px) and its colour bar
    status = out["status"]
    assert "Spearman(std, |error|)" in status and "AUSE" in status and "PSNR-Y of the mean" in status
    summary = out["summary"]
    assert summary["k"] == 4 and [s["seed_text"] for s in summary["samples"]] == ["7", "8", "9", "10"]
    assert summary["mean_spread"] > 0 and summary["diversity"] > 0  # eta 1: the samples differ
    assert any("sample 1 of 4" in line for line in progress.lines)
    assert any(re_line.startswith("tiny-ldm-x4: sample 4 of 4: step 2/2") for re_line in progress.lines)

    crops, x, y = tab.zoom(out["state"], 10, 50, 16, 2)
    captions = [c.split(" [")[0] for _, c in crops]
    assert captions[:3] == [REFERENCE_VIEW, INPUT_VIEW, MEAN_VIEW] and len(captions) == 3 + 4 + 3
    assert "std map (uncertainty)" in captions and "|error| map" in captions and "LR-consistency map" in captions
    assert all(c.endswith("[0:16, 40:56]") for _, c in crops)  # on the 4-px LR grid, inside the image
    assert all(crop.shape == (32, 32, 3) for crop, _ in crops)

    record = _path(out["record"])
    with zipfile.ZipFile(record) as zf:
        names = set(zf.namelist())
        card = json.loads(zf.read("run_card.json"))
    assert {"std_map.png", "error_map.png", "lr_map.png", "mean.png", "summary.csv", "maps.npz"} <= names
    assert "tiny-ldm-x4_x4_seed9.png" in names and [s["seed"] for s in card["samples"]] == [7, 8, 9, 10]


@pytest.mark.slow
def test_a_click_on_a_maps_colour_bar_zooms_at_its_right_edge(tab, hr_png):
    out, _ = _run(tab, str(hr_png), k=2, steps=1)

    class Click:
        index = (500, 3)  # beyond the 64 px map: on the colour bar

    crops, x, y = tab.zoom_at(out["state"], 16, 1, Click())
    assert (x, y) == (63, 3) and crops[0][1].endswith("[48:64, 0:16]")


@pytest.mark.slow
def test_a_fixed_scale_model_explores_at_2_5x_by_its_route(tab, lr_png):
    out, _ = _run(tab, str(lr_png), mode=LR_MODE, scale=2.5, k=2, steps=1)
    assert out["summary"]["model"] == "tiny-ldm-x4 then resize to 2.5x"
    assert Image.open(_path(out["mean"])).size == (60, 50)  # round(2.5 x 24x20)


@pytest.mark.slow
def test_low_resolution_mode_has_no_error_map(tab, lr_png):
    out, _ = _run(tab, str(lr_png), mode=LR_MODE, k=2, steps=1)
    assert not out["error_map"].visible and "no reference" in out["status"]
    assert out["summary"]["spearman"] is None


@pytest.mark.parametrize(
    "change,message",
    [
        ({"k": 1}, "K must be from 2 to 16, got 1"),
        ({"k": 17}, "K must be from 2 to 16, got 17"),
        ({"k": 2.5}, "K must be a whole number, got 2.5"),
        ({"k": "many"}, "K must be a number, got 'many'"),
        ({"model": "tiny-regression-x4"}, "tiny-regression-x4 is deterministic"),
        ({"model": "bicubic"}, "bicubic is deterministic"),
        ({"model": ""}, "choose a model"),
        ({"scale": 17}, "scale must be from 1 to 16, got 17"),
        ({"scale": "3x"}, "scale must be a number from 1 to 16 (e.g. 2.5 or 3), got '3x'"),
        ({"preset": "sharp"}, "unknown preset 'sharp'"),
    ],
)
def test_bad_requests_are_refused_before_they_wait(tab, hr_png, change, message):
    import gradio as gr

    with pytest.raises(gr.Error, match=re.escape(message)):
        _run(tab, str(hr_png), **change)
    assert tab.lab.queue_ahead() == (0, 0)  # nothing waited for the run slot


def test_k_times_the_output_over_the_limit_is_refused(tab, tmp_path, monkeypatch):
    import gradio as gr

    monkeypatch.setenv("SR_MAX_OUTPUT_PIXELS", str(64 * 64 * 3))
    path = tmp_path / "lr.png"
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(path)
    with pytest.raises(gr.Error, match=r"4 samples of 64x64 are 0.02 MP in all.*at most 3 samples"):
        _run(tab, str(path), mode=LR_MODE, k=4)
    assert "4 samples of 64x64" in tab.estimate(str(path), LR_MODE, "tiny-ldm-x4", 4, 4, 2, "")
    assert "**3 samples** of 64x64" in tab.estimate(str(path), LR_MODE, "tiny-ldm-x4", 4, 3, 2, "")
