"""Cascades and the settings / per-stage record types, on tiny seeded models (CPU, 2 steps)."""

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from sr_models.cascade import CascadeSR, parse_cascade
from sr_models.consistency import back_project
from sr_models.metrics import lr_consistency
from sr_models.registry import discover, get_models
from sr_models.sampling import make_scheduler, sample, schedule, start_state
from sr_models.types import SamplingSettings as S
from sr_models.types import SRInputError, derive_seed

ROOT = Path(__file__).resolve().parent.parent
LR = np.random.default_rng(0).integers(0, 256, (8, 10, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def models(tiny_models_dir):
    return discover(model_dirs=[tiny_models_dir])


@pytest.mark.slow
def test_stage_two_receives_stage_one_output(models):
    (cascade,) = get_models(["tiny-regression-x2>tiny-regression-x4"], models)
    assert isinstance(cascade, CascadeSR) and cascade.scales == (8,)
    result = cascade.upscale(LR, settings=S(lr_projection=0))
    first = models["tiny-regression-x2"].upscale(LR, settings=S(lr_projection=0)).image
    second = models["tiny-regression-x4"].upscale(first, settings=S(lr_projection=0)).image
    assert np.array_equal(result.stages[0].image, first)
    assert result.stages[1].input_shape == first.shape[:2]
    assert np.array_equal(result.image, second) and result.image.shape == (64, 80, 3)


@pytest.mark.slow
def test_per_stage_records_sum_to_the_totals(models):
    (cascade,) = get_models(["tiny-ldm-x4>tiny-regression-x2"], models)
    result = cascade.upscale(LR, settings=S(seed=3, stages=(S(steps=3), S())))
    assert [s.nfe for s in result.stages] == [3, 1]
    assert result.nfe == 4 == result.facts()["nfe"]
    assert sum(s.seconds for s in result.stages) <= result.seconds + 1e-6
    assert result.seconds <= sum(s.seconds for s in result.stages) + 0.5  # nothing big outside the stages
    assert result.facts()["steps"] == "3" and result.facts()["n_stages"] == 2
    assert result.settings.stages[0].steps == 3 and result.settings.stages[1].steps is None


@pytest.mark.slow
def test_cascade_nfe_is_evaluations_and_tiles_are_counted_apart(models):
    (cascade,) = get_models(["tiny-ldm-x4>tiny-ldm-x4"], models)
    result = cascade.upscale(LR, settings=S(seed=1, tile=24, stages=(S(steps=1), S(steps=1))))
    assert result.image.shape == (128, 160, 3)
    assert [s.nfe for s in result.stages] == [1, 1] and result.nfe == 2 == result.facts()["nfe"]
    assert result.stages[0].tiles == 1 and result.stages[1].tiles > 1  # stage 2's 32x40 latent needs tiles
    assert result.tiles == sum(s.tiles for s in result.stages) == result.facts()["tiles"] > 2


@pytest.mark.slow
def test_seeds_reproduce_and_are_derived_per_stage(models):
    (cascade,) = get_models(["tiny-ldm-x4>tiny-ldm-x4"], models)
    run = S(seed=5, sampler="ddpm", steps=2, lr_projection=0)
    a, b = cascade.upscale(LR[:4, :4], settings=run), cascade.upscale(LR[:4, :4], settings=run)
    c = cascade.upscale(LR[:4, :4], settings=S(seed=6, sampler="ddpm", steps=2, lr_projection=0))
    assert np.array_equal(a.image, b.image) and not np.array_equal(a.image, c.image)
    assert [s.settings.seed for s in a.stages] == [5, derive_seed(5, 1)] and derive_seed(5, 1) != 5
    # a stage's own seed wins; stage 1 of a cascade equals the model run alone with the run's seed
    own = cascade.upscale(
        LR[:4, :4], settings=S(seed=5, sampler="ddpm", steps=2, lr_projection=0, stages=(S(), S(seed=11)))
    )
    assert own.stages[1].settings.seed == 11
    alone = models["tiny-ldm-x4"].upscale(LR[:4, :4], settings=run)
    assert np.array_equal(alone.image, a.stages[0].image)


@pytest.mark.slow
def test_back_projection_targets_the_original_lr(models):
    (cascade,) = get_models(["tiny-regression-x2>tiny-regression-x2"], models)
    raw = cascade.upscale(LR, settings=S(lr_projection=0))
    projected = cascade.upscale(LR, settings=S(stages=(S(lr_projection=0), S(lr_projection=3))))
    assert projected.stages[0].settings.lr_projection == 0 and projected.stages[1].settings.lr_projection == 3
    assert np.array_equal(projected.image, back_project(raw.image, LR, 4, 3))
    assert lr_consistency(projected.image, LR, 4) > lr_consistency(raw.image, LR, 4) + 3


def test_bad_specs_get_clear_messages(models):
    with pytest.raises(KeyError, match="unknown model 'nope'"):
        get_models(["tiny-regression-x2>nope"], models)
    with pytest.raises(SRInputError, match="several scales"):
        parse_cascade("bicubic>tiny-regression-x2", models)
    with pytest.raises(SRInputError, match="empty stage"):
        parse_cascade("tiny-regression-x2>", models)
    with pytest.raises(SRInputError, match="not 5x"):
        parse_cascade("bicubic@5>tiny-regression-x2", models)
    with pytest.raises(SRInputError, match="whole number"):
        parse_cascade("bicubic@four>tiny-regression-x2", models)
    (cascade,) = get_models(["bicubic@2>tiny-regression-x2"], models)
    with pytest.raises(SRInputError, match="supports scale 4x, not 16x"):
        cascade.upscale(LR, scale=16)
    with pytest.raises(SRInputError, match="3 stage settings"):
        cascade.upscale(LR, settings=S(stages=(S(), S(), S())))


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(seed=2**63), "below 2\\^63"),
        (dict(seed=-1), "at least 0"),
        (dict(eta=float("nan")), "eta must be"),
        (dict(eta=1.5), "eta must be"),
        (dict(steps=2.5), "whole number"),
        (dict(steps=0), "at least 1"),
        (dict(strength=0.0), "strength"),
    ],
)
def test_bad_numbers_are_refused_before_running(settings, message):
    with pytest.raises(SRInputError, match=message):
        S(**settings)


def test_the_loop_continues_from_a_given_state(models):
    """Starting at step k from the x_t a full run had there finishes exactly like the full run."""
    model = models["tiny-ldm-x4"].load()
    cond, shape = model._prepare(torch.zeros(1, 3, 8, 8), 4)

    def denoise(x_t, t):
        return model.unet(torch.cat([x_t, cond], dim=1), t).sample

    states = []
    with torch.inference_mode():
        scheduler = make_scheduler("ddim", model.scheduler_config)
        steps = schedule(scheduler, 4)
        x = start_state(shape, scheduler, steps, torch.Generator().manual_seed(0))
        full, nfe = sample(
            denoise, x, scheduler, steps, torch.Generator(), on_step=lambda i, n, t, x_t, x0: states.append(x_t)
        )
        scheduler = make_scheduler("ddim", model.scheduler_config)
        schedule(scheduler, 4)
        rest, rest_nfe = sample(denoise, states[1], scheduler, steps[2:], torch.Generator())
    assert nfe == 4 and rest_nfe == 2
    assert torch.allclose(full, rest, atol=1e-6)


@pytest.mark.slow
def test_sdedit_strength_runs_the_last_part_of_the_schedule(models):
    model = models["tiny-ldm-x4"]
    full = model.upscale(LR, settings=S(steps=4, lr_projection=0))
    part = model.upscale(LR, settings=S(steps=4, strength=0.5, lr_projection=0))
    assert full.nfe == 4 and part.nfe == 2 and part.settings.strength == 0.5
    assert not np.array_equal(full.image, part.image)


@pytest.mark.slow
def test_benchmark_cascade_rows_and_stage_file(tiny_models_dir, image_folder, tmp_path):
    from comparisons.benchmark import main

    code = main(
        [
            "--models",
            "bicubic,tiny-regression-x2>tiny-ldm-x4",
            "--scale",
            "8",
            "--data",
            str(image_folder),
            "--out",
            str(tmp_path),
            "--model-dir",
            str(tiny_models_dir),
            "--stage-steps",
            ",2",
            "--crop",
            "32",
            "--limit",
            "2",
        ]
    )
    assert code == 0
    summary = list(csv.DictReader(open(tmp_path / "summary.csv")))
    stages = list(csv.DictReader(open(tmp_path / "stages.csv")))
    assert [r["model"] for r in summary] == ["bicubic", "tiny-regression-x2>tiny-ldm-x4"]
    cascade = summary[1]
    assert float(cascade["nfe"]) == 3 and cascade["n_stages"] == "2"
    rows = [r for r in stages if r["model"] == cascade["model"]]
    assert [(r["stage"], r["stage_model"], r["nfe"]) for r in rows[:2]] == [
        ("1", "tiny-regression-x2", "1"),
        ("2", "tiny-ldm-x4", "2"),
    ]
    per_image = list(csv.DictReader(open(tmp_path / "per_image.csv")))
    for image in {r["image"] for r in rows}:
        total = [float(r["nfe"]) for r in per_image if r["image"] == image and r["model"] == cascade["model"]][0]
        assert total == sum(float(r["nfe"]) for r in rows if r["image"] == image)


def test_cli_stage_options_become_one_settings_value():
    from comparisons.benchmark import build_parser
    from comparisons.cli import settings_from_args

    args = build_parser().parse_args(["--seed", "4", "--stage-steps", "10,5", "--stage-lr-projection", "0,"])
    settings = settings_from_args(args)
    assert settings.seed == 4 and settings.stages == (S(steps=10, lr_projection=0), S(steps=5))
    with pytest.raises(SRInputError, match="not a int"):
        settings_from_args(build_parser().parse_args(["--stage-steps", "ten"]))


def test_sdedit_starts_from_the_noised_guess_at_the_right_step():
    from sr_models.sampling import TRAIN_SCHEDULER

    scheduler = make_scheduler("ddim", TRAIN_SCHEDULER)
    full = schedule(scheduler, 10).clone()
    part = schedule(scheduler, 10, strength=0.3)
    assert torch.equal(part, full[-3:])
    guess = torch.full((1, 3, 4, 4), 0.5)
    x = start_state(guess.shape, scheduler, part, torch.Generator().manual_seed(1), guess)
    noise = torch.randn(guess.shape, generator=torch.Generator().manual_seed(1))
    alpha = scheduler.alphas_cumprod[int(part[0])]
    assert torch.allclose(x, alpha.sqrt() * guess + (1 - alpha).sqrt() * noise, atol=1e-6)
    pure = start_state(guess.shape, scheduler, full, torch.Generator().manual_seed(1))
    assert torch.allclose(pure, noise * scheduler.init_noise_sigma)
