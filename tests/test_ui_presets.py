"""Fidelity / detail presets from the model cards (issue 14): what each model runs under a preset, the radio
filling steps and eta, a card without presets (fidelity = defaults, no detail, said so)."""

from __future__ import annotations

import asyncio
import shutil

import gradio as gr
import pytest

from sr_models.cards import read_card, write_card
from sr_models.types import SamplingSettings
from tests.compare_request import compare_inputs
from tests.conftest import app_models
from ui.handlers import CompareOutputs, Handlers
from ui.lab import Lab
from ui.parse import MODES
from ui.posterior import PosteriorHandlers
from ui.presets import model_presets, preset_settings

HR_MODE = list(MODES)[0]
PRESETS = {"fidelity": {"steps": 1, "eta": 0.0}, "detail": {"steps": 3, "eta": 1.0}}


@pytest.fixture(scope="module")
def models_dir(tiny_models_dir, tmp_path_factory):
    """The tiny models, plus a copy of the tiny LDM whose card has presets."""
    root = tmp_path_factory.mktemp("preset_models")
    for folder in tiny_models_dir.iterdir():
        shutil.copytree(folder, root / folder.name)
    shutil.copytree(tiny_models_dir / "tiny-ldm-x4", root / "tiny-ldm-x4-presets")
    card = read_card(root / "tiny-ldm-x4-presets")
    write_card(root / "tiny-ldm-x4-presets", {**card, "name": "tiny-ldm-x4-presets", "presets": PRESETS})
    return root


@pytest.fixture
def handlers(models_dir):
    handlers = Handlers(Lab(app_models(models_dir)))
    yield handlers
    handlers.lab.scratch.close()


def test_presets_come_from_the_card_else_fidelity_is_the_defaults(handlers):
    models = handlers.models
    assert model_presets(models["tiny-ldm-x4-presets"]) == PRESETS
    assert model_presets(models["tiny-ldm-x4"]) == {"fidelity": {"steps": 2, "eta": 0.0}}  # default_steps 2
    assert model_presets(models["bicubic"]) == {}
    asked = SamplingSettings(steps=9, eta=0.5, seed=4)
    settings, note = preset_settings(models["tiny-ldm-x4-presets"], asked, "detail")
    assert (settings.steps, settings.eta, settings.seed, note) == (3, 1.0, 4, None)
    settings, note = preset_settings(models["tiny-ldm-x4"], asked, "detail")
    assert (settings.steps, settings.eta) == (2, 0.0) and "no detail preset in its card" in note
    assert preset_settings(models["tiny-ldm-x4"], asked, "custom") == (asked, None)


def test_the_radio_fills_steps_and_eta_and_says_what_each_model_runs(handlers):
    names = ["bicubic", "tiny-ldm-x4", "tiny-ldm-x4-presets"]
    steps, eta, text = handlers.fill_preset("detail", names, 0, 0)
    assert (steps, eta) == (3, 1.0)
    assert "tiny-ldm-x4: no detail preset in its card" in text and "tiny-ldm-x4-presets 3 steps, eta 1" in text
    # custom fills nothing: no update, so an answer arriving after the user typed cannot undo the typing
    assert handlers.fill_preset("custom", names, 7, 0.3)[:2] == (gr.skip(), gr.skip())
    tab = PosteriorHandlers(handlers.lab)
    assert tab.fill_preset("tiny-ldm-x4-presets", "fidelity", 0, 1)[:2] == (1, 0.0)
    assert "no detail preset" in tab.fill_preset("tiny-ldm-x4", "detail", 5, 1)[2]


@pytest.mark.slow
def test_a_comparison_under_a_preset_runs_each_models_own_settings(handlers, hr_png):
    names = ["tiny-ldm-x4", "tiny-ldm-x4-presets"]
    inputs = compare_inputs(
        str(hr_png), HR_MODE, 4, names, steps=9, eta=0.5, seed=3, record=False, projection=0, preset="detail"
    )
    outputs = asyncio.run(handlers.compare(*inputs, progress=None))
    comparison = outputs[-1]["comparison"]
    ran = {r.model: (r.settings.steps, r.settings.eta) for r in comparison.results}
    assert ran == {"tiny-ldm-x4": (2, 0.0), "tiny-ldm-x4-presets": (3, 1.0)}
    shown = dict(zip(CompareOutputs.api_names(), outputs))
    assert "tiny-ldm-x4 has no detail preset in its card" in shown["status"]
