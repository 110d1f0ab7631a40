"""The app's parts without a server: request parsing, the handlers called as plain methods."""

from __future__ import annotations

import asyncio
import re
import types

import numpy as np
import pytest
from PIL import Image

from comparisons.compare import Comparison, prepare_input
from comparisons.plots import log_axis, rename_traces, tidy_log_axes
from comparisons.serving import MODE_LR, image_size
from sr_models.types import SamplingSettings, SRInputError, StepInfo
from tests.compare_request import compare_inputs
from tests.conftest import NO_CASCADE
from ui.handlers import CompareOutputs, Handlers
from ui.lab import ProgressLine
from ui.parse import MODES, compare_job, parse_settings, upscale_job

HR_MODE, LR_MODE = list(MODES)


@pytest.fixture
def handlers(tiny_lab):
    return Handlers(tiny_lab)


def test_parsing_leaves_defaults_and_ranges_to_the_settings():
    settings = parse_settings("", "", "", "", "")
    assert settings == SamplingSettings()  # an empty seed stays None: resolve picks the default
    assert parse_settings("12", "ddim", "0.5", "7", 3) == SamplingSettings(
        steps=12, sampler="ddim", eta=0.5, seed=7, lr_projection=3
    )
    assert parse_settings(0, "", 0, 4.0, -1).seed == 4  # a whole float is a whole number
    with pytest.raises(SRInputError, match="eta must be a number from 0 to 1, got 2"):  # check_settings' message
        parse_settings(0, "", 2, 0, -1)
    with pytest.raises(SRInputError, match="seed must be at least 0, got -1"):
        parse_settings(0, "", 0, -1, -1)
    with pytest.raises(SRInputError, match="steps must be at most 200, got 1000000000"):
        parse_settings("1e9", "", 0, 0, -1)
    with pytest.raises(SRInputError, match="steps must be at least 0, got -3"):
        parse_settings(-3, "", 0, 0, -1)


def test_a_long_model_name_is_not_echoed_whole():
    name = "x" * 10_000
    with pytest.raises(SRInputError) as caught:
        upscale_job("a.png", name, 4, 0, "", 0, "")
    message = str(caught.value)
    assert "10000 characters" in message and len(message) < 200
    with pytest.raises(SRInputError, match="10000 characters"):
        compare_job("a.png", LR_MODE, 4, [name], 0, "", 0, 0, True, -1, NO_CASCADE)


def test_compare_outputs_name_every_api_output_once():
    names = CompareOutputs.api_names()
    assert names[0] == "status" and names[1:13] == tuple(f"view{i}" for i in range(12))
    assert names[13:] == (
        "left",
        "right",
        "slider",
        "table",
        "plot",
        "trajectory_model",
        "frame",
        "frame_image",
        "gifs",
    )
    filled = CompareOutputs(*range(1, 2), [0] * 12, *range(2, 12))
    assert len(filled.flat()) == len(names) + 1  # and the State last


@pytest.mark.slow
def test_handlers_run_without_a_server(handlers, hr_png):
    inputs = compare_inputs(str(hr_png), HR_MODE, 4, ["bicubic", "tiny-regression-x4"], seed=3, record=False)
    outputs = asyncio.run(handlers.compare(*inputs, progress=None))
    shown = dict(zip(CompareOutputs.api_names(), outputs))
    assert "64x64 (4x)" in shown["status"]
    table = shown["table"].value
    assert [row[0] for row in table["data"]] == ["bicubic", "tiny-regression-x4"]
    state = outputs[-1]
    comparison = state["comparison"]
    assert comparison.results[1].model == "tiny-regression-x4"
    assert comparison.seconds >= sum(r.seconds for r in comparison.results) and comparison.estimated_seconds > 0
    took = re.search(r"time: ([\d.]+) s for the run \(estimated before it: ([\d.]+) s\)", shown["status"])
    assert took and float(took[1]) == round(comparison.seconds, 1)
    crops, x, y = handlers.zoom_centre(state, 16, 2)
    assert (x, y) == (32, 32) and len(crops) == 4
    record = handlers.run_record(state)
    assert record.visible and record.label.startswith("Download the run record (sr_lab_run_x4_")


def test_upscale_estimate_and_stop_without_a_server(handlers, lr_png):
    path, info = asyncio.run(handlers.upscale(str(lr_png), "tiny-regression-x2", 2, 0, "", 5))
    assert path.endswith(".png") and info["model"] == "tiny-regression-x2" and info["seed"] == 5
    text = handlers.estimate(str(lr_png), LR_MODE, 4, ["tiny-ldm-x4"], 0, "", *NO_CASCADE)
    assert "**Output** 96x80" in text and "estimated time" in text and "tiny-ldm-x4" in text
    assert handlers.estimate(str(lr_png), LR_MODE, 4, [], 0, "", *NO_CASCADE).startswith("⚠ choose at least one")
    assert handlers.stop() == "Nothing was running."


def test_a_cascade_at_a_scale_it_does_not_reach_names_the_scales_it_does(handlers, lr_png):
    spec = "tiny-regression-x2>tiny-regression-x2"
    with pytest.raises(Exception, match=r"= 4x, not 8x; its first stages reach 2x, 4x \(a cascade has at most 4"):
        asyncio.run(handlers.upscale(str(lr_png), spec, 8, 0, "", 0))
    path, info = asyncio.run(handlers.upscale(str(lr_png), spec, 3, 0, "", 0))  # above the scale: resized
    assert info["model"] == f"{spec} then resize to 3x" and info["route"] == "cascade + resize"
    assert Image.open(path).size == (72, 60)  # the 24x20 input at 3x


def test_the_cascade_builder_says_when_the_scale_already_fits(handlers):
    builder = ("tiny-regression-x2", "tiny-ldm-x4", "", 0, 0, 0)
    assert "runs at the chosen Scale" in handlers.describe_cascade(8, *builder)
    assert "set the Scale to 8" not in handlers.describe_cascade(8, *builder)
    assert "runs, then resizes to 4x (or set the Scale to 8)" in handlers.describe_cascade(4, *builder)
    assert "set the Scale to 8 to run it" in handlers.describe_cascade(16, *builder)


def test_no_empty_plot_without_a_reference_and_seeds_as_text(handlers, lr_png):
    seed = 5836529245451711556  # above 2^53: a JavaScript number would round it
    inputs = compare_inputs(str(lr_png), LR_MODE, 2, ["tiny-regression-x2"], seed=str(seed), record=False)
    outputs = asyncio.run(handlers.compare(*inputs))
    shown = dict(zip(CompareOutputs.api_names(), outputs))
    assert shown["plot"] is None  # low-resolution mode: nothing to score, no "Quality vs time" box
    assert handlers.show_plot(outputs[-1]).visible is False
    table = shown["table"].value
    row = dict(zip(table["headers"], table["data"][0]))
    assert row["seed"] == str(seed)


def test_estimate_uses_the_upright_size_of_an_exif_rotated_jpeg(handlers, tmp_path):
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 40 wide and 20 high, shown 20 wide and 40 high
    Image.new("RGB", (40, 20)).save(path, exif=exif)
    assert image_size(path) == (20, 40)
    text = handlers.estimate(str(path), LR_MODE, 2, ["bicubic"], 0, "", *NO_CASCADE)
    assert "**Output** 40x80" in text


def test_an_animated_gif_gets_a_note_about_its_frames(tmp_path):
    path = tmp_path / "anim.gif"
    frames = [Image.new("RGB", (24, 24), colour) for colour in ("red", "green", "blue")]
    frames[0].save(path, save_all=True, append_images=frames[1:])
    _, _, notes = prepare_input(str(path), MODE_LR, 2)
    assert any("frame" in note and "first" in note for note in notes), notes


def test_log_axes_are_labelled_in_whole_numbers():
    axis = log_axis([0.03, 0.4, 7.0], "seconds")
    assert axis["type"] == "log" and axis["ticktext"][0] == "0.02" and "5" in axis["ticktext"]
    assert all(not label.endswith(".0") for label in axis["ticktext"])
    assert axis["tickvals"] == sorted(axis["tickvals"]) and max(axis["tickvals"]) <= 14


def test_optional_cost_facts_get_their_own_short_columns():
    stage = types.SimpleNamespace(settings=SamplingSettings(seed=3), facts=lambda: {})
    facts = {"nfe": 2, "tiles": 9, "seconds": 1.23456, "trajectory_seconds": 0.5, "peak_memory_mb": 10.0}
    result = types.SimpleNamespace(model="m", stages=[stage], facts=lambda: facts)
    scores = {"psnr_y": None, "ssim_y": None, "lr_psnr": 40.0}
    comparison = Comparison(lr=np.zeros((4, 4, 3), np.uint8), hr=None, scale=2, results=[result], scores=[scores])
    row = comparison.table()[0]
    assert (row["NFE"], row["tiles"], row["seconds"], row["traj. s"], row["seed"]) == (2, 9, 1.235, 0.5, "3")


def test_the_progress_line_names_the_phase_and_a_run_over_its_estimate(monkeypatch):
    calls = []
    line = ProgressLine(lambda value, desc, unit="steps": calls.append((value, desc, unit)), estimate=10.0)
    line.model(0, 2, "ldm-x4")
    line.step(StepInfo(step=0, total=3, timestep=999, stage="ldm-x4"))
    line.step(StepInfo(step=2, total=3, timestep=1, stage="ldm-x4"))
    assert calls[0] == ((0, 2), "ldm-x4 (1/2): loading, encoding the input", "models")
    assert calls[1][:2] == ((1, 3), "ldm-x4 (1/2): step 1/3, sampling")
    assert calls[2][1] == "ldm-x4 (1/2): step 3/3, decoding, tiles and back-projection"
    monkeypatch.setattr(line, "start", line.start - 12)
    line.step(StepInfo(step=1, total=3, timestep=500, stage="ldm-x4"))
    assert "over the estimate of 10 s" in calls[-1][1]


def test_study_figures_get_whole_number_log_ticks_and_baselines_in_the_legend():
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2)
    fig.add_trace(go.Scatter(x=[1, 2, 20], y=[1, 2, 3], name="reference", legendgroup="reference"), row=1, col=1)
    fig.add_trace(go.Scatter(x=[0.01, 0.3], y=[1, 2], name="ldm-x4"), row=1, col=2)
    fig.update_xaxes(type="log")
    tidy = rename_traces(tidy_log_axes(fig), {"reference": "baselines"})
    assert list(tidy.layout.xaxis.ticktext) == ["1", "2", "5", "10", "20"]
    assert list(tidy.layout.xaxis2.ticktext) == ["0.01", "0.02", "0.05", "0.1", "0.2", "0.5"]
    assert [t.name for t in tidy.data] == ["baselines", "ldm-x4"]


def test_the_cascade_figure_draws_nfe_0_at_the_axis_start_and_names_the_baselines():
    from comparisons.studies.cascade import ZERO_NFE_AT, figure

    def row(group, config, nfe, psnr):
        return {
            "dataset": "all",
            "scale": 16,
            "projection": "raw",
            "group": group,
            "config": config,
            "nfe": nfe,
            "seconds": 0.1 + nfe / 100,
            "psnr_y": psnr,
            "ssim_y": 0.5,
            "lr_psnr": 40.0,
            "hf_ratio": 0.5,
        }

    rows = [row("reference", "bicubic", 0, 20.0), row("reference", "regression", 2, 21.0)]
    rows += [row("ldm-x16", "ldm-x16 5", 5, 22.0), row("ldm-x16", "ldm-x16 50", 50, 22.5)]
    fig = figure(rows)
    baselines = next(t for t in fig.data if t.name == "baselines" and t.xaxis == "x")
    assert "reference" not in {t.name for t in fig.data}
    assert list(baselines.x) == [ZERO_NFE_AT, 2] and list(baselines.marker.symbol) == ["diamond-open", "circle"]
    assert fig.layout.xaxis.tickvals[0] == ZERO_NFE_AT and fig.layout.xaxis.ticktext[0] == "0"
    assert list(fig.layout.xaxis.ticktext[1:4]) == ["1", "2", "5"]  # the measured NFEs in whole numbers
    seconds_baselines = next(t for t in fig.data if t.name == "baselines" and t.xaxis == "x2")
    assert list(seconds_baselines.marker.symbol) == ["circle", "circle"]  # only the NFE axis has no 0


@pytest.mark.slow
def test_a_width_sets_the_scale_and_every_row_names_its_route(handlers, lr_png):
    """Any output size (issue 15): 60 px wide from a 24x20 input is 2.5x; bicubic runs at 2.5x itself, the fixed
    models by their routes (own scale then a resize, or a cascade of themselves then a resize)."""
    names = ["bicubic", "tiny-regression-x4", "tiny-regression-x2"]
    text = handlers.estimate(str(lr_png), LR_MODE, 4, names, 0, "", *NO_CASCADE, 60)
    assert "**Output** 60x50 = **2.5x** for width 60 px" in text
    inputs = compare_inputs(str(lr_png), LR_MODE, 4, names, record=False, preset="custom", width=60)
    outputs = asyncio.run(handlers.compare(*inputs))
    shown = dict(zip(CompareOutputs.api_names(), outputs))
    comparison = outputs[-1]["comparison"]
    assert comparison.scale == 2.5 and all(r.image.shape == (50, 60, 3) for r in comparison.results)
    table = shown["table"].value
    rows = {row[0]: dict(zip(table["headers"], row)) for row in table["data"]}
    assert rows["bicubic"]["route"] == "continuous"  # imresize at 2.5x itself
    assert rows["tiny-regression-x4 then resize to 2.5x"]["route"] == "resize"
    assert rows["tiny-regression-x2>tiny-regression-x2 then resize to 2.5x"]["route"] == "cascade + resize"
    assert "→ **output** 60x50 (2.5x)" in shown["status"]
    crops, x, y = handlers.zoom(outputs[-1], 59, 49, 8, 2)  # no LR grid at 2.5x: the box ends at the edge
    assert (x, y) == (59, 49) and crops[0][1].endswith("[52:60, 42:50]")


def test_the_ticks_for_a_scale_are_the_models_that_reach_it_without_a_resize(handlers):
    at_4, at_2_5 = handlers.models_for(4), handlers.models_for(2.5)
    assert "bicubic" in at_4 and "tiny-regression-x4" in at_4 and "tiny-regression-x2" not in at_4
    assert "bicubic" in at_2_5  # imresize at 2.5x itself
    assert not any(name.startswith("tiny-regression") for name in at_2_5)  # they would run a resize
