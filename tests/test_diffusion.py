"""Diffusion families on tiny seeded models (CPU, 2 steps): layout, seeds, samplers, callbacks, tiling."""

import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from sr_models.diffusion_sr import condition_channels, latent_condition, to_model_range
from sr_models.first_stage import build_autoencoder, fold_latent_scale
from sr_models.registry import discover, load_model
from sr_models.sampling import SAMPLERS, make_scheduler
from sr_models.tiling import tiled
from sr_models.types import SamplingSettings as S
from tests.conftest import tiny_ldm_folder, tiny_sr3_folder

LR = np.random.default_rng(0).integers(0, 256, (8, 12, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def ldm4(tmp_path_factory):
    return tiny_ldm_folder(tmp_path_factory.mktemp("ldm4"))


@pytest.fixture(scope="module")
def sr3(tmp_path_factory):
    return tiny_sr3_folder(tmp_path_factory.mktemp("sr3"))


def test_stock_ldm_pipeline_reproduces_our_4x_output(ldm4):
    from diffusers.pipelines.latent_diffusion.pipeline_latent_diffusion_superresolution import (
        LDMSuperResolutionPipeline,
    )

    ours = load_model(ldm4)
    pipe = LDMSuperResolutionPipeline.from_pretrained(str(ldm4), torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    x = to_model_range(LR)
    for sampler in ("ddim", "dpmsolver++"):
        pipe.scheduler = make_scheduler(sampler, ours.scheduler_config)
        stock = pipe(x, num_inference_steps=2, generator=torch.Generator().manual_seed(7), output_type="np").images[0]
        mine, calls, _ = ours.run(x, 4, ours.resolve(S(steps=2, sampler=sampler, seed=7)))
        mine = (mine.clamp(-1, 1) / 2 + 0.5)[0].permute(1, 2, 0).numpy()
        assert stock.shape == mine.shape == (32, 48, 3)
        assert np.abs(stock - mine).max() <= 1e-3, sampler
        assert calls.nfe == calls.tiles == 2


SHIPPED_LDM4 = Path(__file__).resolve().parent.parent / "assets" / "ldm-x4-stock"


@pytest.mark.skipif(not (SHIPPED_LDM4 / "model_index.json").exists(), reason="no shipped ldm-x4-stock in assets/")
@pytest.mark.slow
def test_stock_ldm_pipeline_reproduces_the_shipped_4x_model():
    from diffusers.pipelines.latent_diffusion.pipeline_latent_diffusion_superresolution import (
        LDMSuperResolutionPipeline,
    )

    ours = load_model(SHIPPED_LDM4)
    pipe = LDMSuperResolutionPipeline.from_pretrained(str(SHIPPED_LDM4), torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = make_scheduler("ddim", ours.scheduler_config)
    lr = np.random.default_rng(1).integers(0, 256, (16, 24, 3), dtype=np.uint8)
    stock = pipe(
        to_model_range(lr), num_inference_steps=2, generator=torch.Generator().manual_seed(3), output_type="np"
    ).images[0]
    mine, _, _ = ours.run(to_model_range(lr), 4, ours.resolve(S(steps=2, sampler="ddim", seed=3)))
    mine = (mine.clamp(-1, 1) / 2 + 0.5)[0].permute(1, 2, 0).numpy()
    assert np.abs(stock - mine).max() <= 1e-3
    # the stock pipeline's output, quantised, is our upscale() without the optional back-projection
    ours_image = ours.upscale(lr, settings=S(steps=2, sampler="ddim", seed=3, lr_projection=0)).image
    assert np.abs(np.round(stock * 255).astype(int) - ours_image).max() <= 1


def test_non_stock_scales_are_marked_so_the_stock_pipeline_refuses_them(tmp_path):
    import json

    folder = tiny_ldm_folder(tmp_path / "x2", scale=2)
    assert json.loads((folder / "model_index.json").read_text())["_class_name"] == "LatentSRPipeline"


@pytest.mark.parametrize("scale", [2, 4, 8, 16])
def test_latent_condition_keeps_every_lr_pixel(scale):
    lr = torch.randn(1, 3, 16, 16)
    cond = latent_condition(lr, scale)
    latent_size = 16 * scale // 4
    assert cond.shape == (1, condition_channels(scale), latent_size, latent_size)
    if scale == 2:
        assert torch.equal(F.pixel_shuffle(cond, 2), lr)  # unshuffle is invertible
    elif scale == 4:
        assert torch.equal(cond, lr)


@pytest.mark.parametrize("scale", [2, 8, 16])
@pytest.mark.slow
def test_ldm_other_scales_run_through_the_interface(tmp_path, scale):
    model = load_model(tiny_ldm_folder(tmp_path / f"x{scale}", scale=scale))
    lr = LR[:6, :10]  # sizes that need padding
    result = model.upscale(lr, settings=S(steps=2))
    assert result.image.shape == (6 * scale, 10 * scale, 3) and result.nfe == 2


@pytest.mark.slow
def test_seed_reproduces_and_differs(ldm4, sr3):
    for folder in (ldm4, sr3):
        model = load_model(folder)
        a = model.upscale(LR, settings=S(steps=2, sampler="ddpm", seed=1)).image
        b = model.upscale(LR, settings=S(steps=2, sampler="ddpm", seed=1)).image
        c = model.upscale(LR, settings=S(steps=2, sampler="ddpm", seed=2)).image
        assert np.array_equal(a, b)
        assert not np.array_equal(a, c)


@pytest.mark.parametrize("sampler", SAMPLERS)
@pytest.mark.slow
def test_every_sampler_any_steps(ldm4, sampler):
    model = load_model(ldm4)
    for steps in (1, 3):
        result = model.upscale(LR, settings=S(steps=steps, sampler=sampler, eta=0.5))
        assert result.image.shape == (32, 48, 3) and result.nfe == steps
        assert result.settings.sampler == sampler and result.settings.steps == steps


def test_unknown_sampler_and_bad_steps_are_input_errors(ldm4):
    from sr_models.base import SRInputError

    model = load_model(ldm4)
    with pytest.raises(SRInputError, match="unknown sampler"):
        model.upscale(LR, settings=S(sampler="euler-magic"))
    with pytest.raises(SRInputError, match="at least 1"):
        model.upscale(LR, settings=S(steps=0))


@pytest.mark.slow
def test_callback_gets_xt_and_decoded_x0_frames_subsampled(ldm4, sr3):
    for folder, xt_channels, xt_size in ((ldm4, 3, (8, 12)), (sr3, 3, (32, 48))):
        model = load_model(folder)
        seen = []
        result = model.upscale(LR, settings=S(steps=5), keep_frames=3, on_step=seen.append)
        assert [s.step for s in seen] == [0, 1, 2, 3, 4] and all(s.total == 5 for s in seen)
        assert seen[0].x_t.shape == (1, xt_channels, *xt_size)
        assert len(result.frames) == 3 and result.frames[0].shape == (32, 48, 3) and result.frames[0].dtype == np.uint8
        assert [label.split(" (")[0] for label in result.frame_labels] == ["step 1/5", "step 3/5", "step 5/5"]
        assert np.array_equal(result.frames[-1], result.image)  # x̂0 of the last step is the returned image
        assert len(result.noisy_frames) == 3 and not np.array_equal(result.noisy_frames[0], result.frames[0])
        # with back-projection the sequence ends on the returned image, labelled as such
        projected = model.upscale(LR, settings=S(steps=2, lr_projection=2), keep_frames=8)
        assert len(projected.frames) == 3 and "back-projected" in projected.frame_labels[-1]
        assert np.array_equal(projected.frames[-1], projected.image)
        assert np.array_equal(projected.noisy_frames[-1], projected.image)


@pytest.mark.slow
def test_recording_frames_costs_the_timed_run_nothing(ldm4):
    """Kept frames are decoded after the clock stops: with a slow decoder, the timed seconds stay those of
    a run without frames, and the decoding is reported apart as trajectory_seconds."""
    model = load_model(ldm4)
    settings = S(steps=4, seed=2)
    model.upscale(LR, settings=settings)  # warm up
    decode, delay = model.decode, 0.5

    def slow_decode(z, tile=None):
        time.sleep(delay)
        return decode(z, tile)

    model.decode = slow_decode
    plain = model.upscale(LR, settings=settings)
    kept = model.upscale(LR, settings=settings, keep_frames=4)
    assert np.array_equal(plain.image, kept.image) and len(kept.frames) == 4
    assert plain.seconds >= delay  # the returned image's own decode is part of the run
    # the 8 frame decodes inside the clock would add 8 x delay; a margin of one delay absorbs a busy machine
    assert kept.seconds < plain.seconds + delay
    assert kept.trajectory_seconds >= 8 * delay  # x_t and x̂0 of 4 frames, after the clock
    assert kept.facts()["trajectory_seconds"] == kept.stages[0].facts()["trajectory_seconds"] > 0
    assert plain.facts()["trajectory_seconds"] == 0


@pytest.mark.slow
def test_trajectory_frames_are_previews_of_at_most_512_px(ldm4, sr3):
    lr = np.random.default_rng(5).integers(0, 256, (150, 132, 3), dtype=np.uint8)  # 600x528 out, padded
    for folder in (ldm4, sr3):
        model = load_model(folder)
        result = model.upscale(lr, settings=S(steps=2, seed=0, tile=64), keep_frames=2)
        frames = result.stages[0].trajectory
        assert len(frames) == 2 and result.image.shape == (600, 528, 3)
        assert all(f.shape == (300, 264, 3) and f.dtype == np.uint8 for f in frames.x0 + frames.x_t)
        assert result.frames[-1].shape == result.noisy_frames[0].shape == (600, 528, 3)  # nearest, output size
        if folder == sr3:  # pixel space: the last x̂0 preview is the returned image reduced (up to rounding)
            reduced = np.asarray(Image.fromarray(result.image).reduce(2)).astype(float)
            assert np.abs(frames.x0[-1] - reduced).mean() < 1.5
        again = model.upscale(lr, settings=S(steps=2, seed=0, tile=64))
        assert np.array_equal(again.image, result.image)  # recording never changes the image


@pytest.mark.slow
def test_a_shrunk_latent_preview_decodes_in_one_piece_and_a_full_size_one_as_the_image(ldm4, monkeypatch):
    model = load_model(ldm4)
    calls = []
    decode = type(model).decode
    monkeypatch.setattr(
        type(model), "decode", lambda self, z, tile=None: calls.append((z.shape[-2:], tile)) or decode(self, z, tile)
    )
    for side, factor in ((150, 2), (40, 1)):  # 600 px out: previews at half size; 160 px out: full size
        calls.clear()
        lr = np.random.default_rng(side).integers(0, 256, (side, side, 3), dtype=np.uint8)
        model.upscale(lr, settings=S(steps=2, seed=0, tile=32), keep_frames=2)
        final, previews = calls[0], calls[1:]  # the run's decode, then the kept frames'
        assert final[1] is None and len(previews) == 4
        for shape, tile in previews:
            assert (tile is not None and tile >= max(shape)) if factor > 1 else tile is None


@pytest.mark.slow
def test_sr3_residual_formulation_starts_from_bicubic(sr3):
    # With a UNet that predicts a zero residual, SR3 returns exactly the bicubic upsample.
    model = load_model(sr3)
    for p in model.unet.conv_out.parameters():
        torch.nn.init.zeros_(p)
    out = model.upscale(LR, settings=S(steps=2)).image
    up = F.interpolate(to_model_range(LR), scale_factor=4, mode="bicubic", align_corners=False)
    expected = np.round(((up.clamp(-1, 1) / 2 + 0.5)[0].permute(1, 2, 0).numpy()) * 255).astype(np.uint8)
    assert np.array_equal(out, expected)


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_banded_ddim_step_is_the_whole_step(eta):
    # Large states step in bands of rows (bounded memory): the same numbers, the same noise.
    from sr_models import sampling

    scheduler = make_scheduler("ddim", sampling.TRAIN_SCHEDULER, "trailing")
    scheduler.set_timesteps(4)
    gen = torch.Generator().manual_seed(0)
    x, out = torch.randn(1, 3, 37, 20, generator=gen), torch.randn(1, 3, 37, 20, generator=gen)
    t = scheduler.timesteps[1]
    whole = scheduler.step(out, t, x, eta=eta, generator=torch.Generator().manual_seed(5)).prev_sample
    old = sampling.BAND_ELEMENTS
    try:
        sampling.BAND_ELEMENTS = 3 * 20 * 8  # 8 rows a band: 5 bands, the last one short
        banded = sampling.step(scheduler, out, t, x, eta=eta, generator=torch.Generator().manual_seed(5))
    finally:
        sampling.BAND_ELEMENTS = old
    assert torch.equal(banded, whole)


@pytest.mark.slow
def test_banded_runs_give_the_same_image(sr3, monkeypatch):
    from sr_models import sampling
    from sr_models.diffusion_sr import to_image

    model = load_model(sr3)
    settings = S(steps=3, eta=1.0, seed=4, lr_projection=0)
    whole = model.upscale(LR, settings=settings).image
    monkeypatch.setattr(sampling, "BAND_ELEMENTS", 3 * 48 * 5)
    assert np.array_equal(model.upscale(LR, settings=settings).image, whole)
    x = torch.rand(1, 3, 37, 11) * 2.2 - 1.1  # out of range too: clamped
    assert np.array_equal(to_image(x, rows=4), to_image(x, rows=100))


def test_tiled_matches_whole_for_local_functions():
    x = torch.randn(1, 3, 37, 53)
    up = lambda t: F.interpolate(t, scale_factor=2, mode="nearest") * 2 + 1  # noqa: E731
    assert torch.allclose(tiled(up, x, tile=16, overlap=4, scale=2), up(x), atol=1e-6)
    conv = torch.nn.Conv2d(3, 3, 3, padding=1)
    with torch.no_grad():
        whole, parts = conv(x), tiled(conv, x, tile=16, overlap=6)
    # a 3x3 conv differs only at tile borders, where the blend weights are small
    assert (whole - parts).abs().mean() < 0.05 * whole.abs().mean()
    with pytest.raises(ValueError):
        tiled(conv, x, tile=8, overlap=8)


@pytest.mark.slow
def test_tiled_diffusion_runs_on_large_inputs_without_seams(ldm4):
    model = load_model(ldm4)
    lr = np.full((40, 40, 3), 128, np.uint8)
    model.tile, model.tile_overlap = 16, 8  # force several latent tiles
    result = model.upscale(lr, settings=S(steps=2, seed=0))
    assert result.image.shape == (160, 160, 3) and result.nfe == 2 and result.tiles > 2  # tiles are not NFE


@pytest.mark.slow
def test_nfe_counts_denoiser_evaluations_whatever_the_tiling(ldm4):
    model = load_model(ldm4)
    lr = np.random.default_rng(3).integers(0, 256, (40, 44, 3), dtype=np.uint8)  # a 40x44 latent
    whole = model.upscale(lr, settings=S(steps=3, seed=0, tile=64))
    parts = model.upscale(lr, settings=S(steps=3, seed=0, tile=24))
    assert whole.nfe == parts.nfe == 3 and whole.tiles == 3  # untiled: one call per evaluation
    assert parts.tiles > 3 and parts.tiles % 3 == 0  # the same tiles in every step
    facts = parts.facts()
    assert (facts["nfe"], facts["tiles"]) == (3, parts.tiles) and parts.stages[0].facts()["tiles"] == parts.tiles


def test_fold_latent_scale_keeps_reconstruction():
    torch.manual_seed(0)
    vae = build_autoencoder((8, 8, 8))
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    folded = fold_latent_scale(vae, 2.5)
    with torch.no_grad():
        z, z2 = vae.encode(x).latent_dist.mode(), folded.encode(x).latent_dist.mode()
        assert torch.allclose(z2, 2.5 * z, atol=1e-5)
        assert torch.allclose(folded.decode(z2).sample, vae.decode(z).sample, atol=1e-4)


def test_registry_lists_both_families_but_not_the_first_stage(tmp_path):
    tiny_ldm_folder(tmp_path / "ldm")
    tiny_sr3_folder(tmp_path / "sr3")
    from sr_models.cards import write_card

    write_card(tmp_path / "ae", {"name": "ae", "family": "first-stage", "scales": [1]})
    models = discover(model_dirs=[tmp_path])
    assert models["tiny-ldm-x4"].family == "ldm" and models["tiny-sr3-x4"].family == "sr3"
    assert "ae" not in models
    assert models["tiny-ldm-x4"].default_steps == 2 and "dpmsolver++" in models["tiny-ldm-x4"].samplers


def test_back_projection_restores_lr_consistency():
    from sr_models.consistency import back_project
    from sr_models.degradation import degrade, imresize
    from sr_models.metrics import lr_consistency

    rng = np.random.default_rng(0)
    y, x = np.mgrid[:64, :64]
    hr = np.stack([128 + 60 * np.sin(x / 4), 128 + 60 * np.cos(y / 5), 100 + 0 * x], -1).astype(np.uint8)
    hr, lr = degrade(hr, 4)
    drifted = np.clip(imresize(lr, 4).astype(int) + 25 + rng.integers(-5, 5, hr.shape), 0, 255).astype(np.uint8)
    fixed = back_project(drifted, lr, 4)
    assert lr_consistency(fixed, lr, 4) > lr_consistency(drifted, lr, 4) + 15
    with pytest.raises(ValueError):
        back_project(drifted, lr[:-1], 4)


@pytest.mark.slow
def test_regression_tiles_large_inputs(tiny_models_dir):
    model = load_model(tiny_models_dir / "tiny-x2")
    big = np.random.default_rng(0).integers(0, 256, (70, 90, 3), dtype=np.uint8)
    whole = model.upscale(big, settings=S(tile=512))
    parts = model.upscale(big, settings=S(tile=32))
    assert whole.nfe == parts.nfe == 1 and whole.tiles == 1 and parts.tiles > 1  # one forward pass, tiled
    assert np.abs(whole.image.astype(int) - parts.image).mean() < 1.0


@pytest.mark.slow
def test_latent_residual_model_starts_as_the_decoded_upsample(tmp_path):
    """A zero-initialised latent-residual LDM returns decode(encode(upsampled LR)) whatever the noise."""
    from sr_models.cards import read_card, write_card
    from sr_models.diffusion_sr import to_image, torch_bicubic_up

    folder = tiny_ldm_folder(tmp_path / "res", scale=4)
    unet_weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    from safetensors.torch import load_file, save_file

    state = load_file(unet_weights)
    state = {k: (torch.zeros_like(v) if k.startswith("conv_out") else v) for k, v in state.items()}
    save_file(state, unet_weights)
    write_card(folder, {**read_card(folder), "latent_residual": True})
    model = load_model(folder)
    assert model.latent_residual
    lr = LR[:8, :8]
    with torch.no_grad():
        x = to_model_range(lr)
        expected = to_image(
            model.decode(model.vae.encode(torch_bicubic_up(x, 4).clamp(-1, 1)).latent_dist.mode()).clamp(-1, 1)
        )
    encodes = []
    encode = model.encode
    model.encode = lambda image: encodes.append(image.shape) or encode(image)
    for seed in (0, 1):
        out = model.upscale(lr, settings=S(steps=2, seed=seed, lr_projection=0)).image
        assert np.abs(out.astype(int) - expected.astype(int)).max() <= 1
    assert len(encodes) == 1  # the second seed of the same LR reuses its base latent
    other = model.upscale(255 - lr, settings=S(steps=2, seed=0, lr_projection=0)).image
    assert len(encodes) == 2 and other.shape == (32, 32, 3)  # another LR is encoded anew


def test_folders_the_stock_pipeline_cannot_run_are_marked(tmp_path):
    import json

    from sr_models.diffusion_sr import build_unet, save_ldm_folder
    from sr_models.sampling import TRAIN_SCHEDULER

    vae = build_autoencoder((8, 8, 8), latent_channels=4)
    save_ldm_folder(
        tmp_path / "c4",
        vae,
        build_unet(7, 4, (16, 16, 16)),
        TRAIN_SCHEDULER,
        4,
        {"name": "c4", "family": "ldm", "scales": [4]},
    )
    assert json.loads((tmp_path / "c4" / "model_index.json").read_text())["_class_name"] == "LatentSRPipeline"
    vae3 = build_autoencoder((8, 8, 8))
    save_ldm_folder(
        tmp_path / "res",
        vae3,
        build_unet(6, 3, (16, 16, 16)),
        TRAIN_SCHEDULER,
        4,
        {"name": "res", "family": "ldm", "scales": [4], "latent_residual": True},
    )
    assert json.loads((tmp_path / "res" / "model_index.json").read_text())["_class_name"] == "LatentSRPipeline"
