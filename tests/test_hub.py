"""Stock diffusers pipeline repos behind our interface (sr_models.hub, sr_models.stock_sr).

The diffusers test pattern: tiny seeded random components, saved with the stock pipeline's own
``save_pretrained`` in the Hub repos' exact layouts (the LDM one also with ``.bin`` weights), then
loaded through ``load_model(folder)`` and checked against the stock pipeline on the same
components, seed and steps. Nothing here reaches the Hub.
"""

import json

import numpy as np
import pytest
import torch
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    DDPMScheduler,
    LDMSuperResolutionPipeline,
    StableDiffusionUpscalePipeline,
    UNet2DConditionModel,
    UNet2DModel,
    VQModel,
)

from sr_models.base import ModelUnavailableError
from sr_models.bicubic import BicubicSR
from sr_models.diffusion_sr import to_model_range
from sr_models.registry import discover, get_models, load_model
from sr_models.sampling import make_scheduler
from sr_models.types import SamplingSettings as S

LR = np.random.default_rng(0).integers(0, 256, (8, 12, 3), dtype=np.uint8)
TOLERANCE = 1e-3  # as tests/test_diffusion.py: float32 on the CPU, same ops in the same order


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny networks run fastest on one thread (and the CPU is shared); restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --- tiny components ------------------------------------------------------------------------------

# What the tiny first stages of both layouts (VQModel, AutoencoderKL: f=4) share.
TINY_AUTOENCODER = {
    "block_out_channels": (8, 8, 8),
    "down_block_types": ("DownEncoderBlock2D",) * 3,
    "up_block_types": ("UpDecoderBlock2D",) * 3,
    "layers_per_block": 1,
    "norm_num_groups": 4,
}


def tiny_unet(unet_class, in_channels: int, out_channels: int, widths: tuple, attention: str, **extra):
    """A two-level UNet of either layout, with ``attention`` blocks ("Attn", "CrossAttn") at the lower level."""
    return unet_class(
        sample_size=8,
        in_channels=in_channels,
        out_channels=out_channels,
        block_out_channels=widths,
        layers_per_block=1,
        down_block_types=("DownBlock2D", f"{attention}DownBlock2D"),
        up_block_types=(f"{attention}UpBlock2D", "UpBlock2D"),
        norm_num_groups=8,
        attention_head_dim=8,
        **extra,
    )


def tiny_ldm_pipeline() -> LDMSuperResolutionPipeline:
    """CompVis LDM-SR's layout: VQModel f=4 with 3 latent channels, UNet2DModel on latent + LR (6 channels)."""
    torch.manual_seed(0)
    vqvae = VQModel(**TINY_AUTOENCODER, latent_channels=3, num_vq_embeddings=32, vq_embed_dim=3)
    unet = tiny_unet(UNet2DModel, 6, 3, (16, 16), "Attn")
    scheduler = DDIMScheduler(beta_start=0.0015, beta_end=0.0155, beta_schedule="scaled_linear", clip_sample=False)
    return LDMSuperResolutionPipeline(vqvae=vqvae, unet=unet, scheduler=scheduler)


def tiny_clip_tokenizer(folder):
    """A byte-level CLIP BPE vocabulary with no merges: a real CLIPTokenizer, built offline."""
    from transformers import CLIPTokenizer

    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars = [chr(b) for b in printable] + [chr(256 + i) for i in range(256 - len(printable))]
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for suffix in ("", "</w>"):
        vocab.update({c + suffix: len(vocab) + i for i, c in enumerate(chars)})
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer.from_pretrained(str(folder), model_max_length=16)


def tiny_clip_text_encoder(vocab_size: int):
    from transformers import CLIPTextConfig, CLIPTextModel

    config = CLIPTextConfig(
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
        hidden_size=16,
        intermediate_size=32,
        num_attention_heads=2,
        num_hidden_layers=2,
        vocab_size=vocab_size,
        max_position_embeddings=16,
        hidden_act="gelu",
        projection_dim=16,
    )
    return CLIPTextModel(config)


def tiny_sd_upscale_pipeline(tmp) -> StableDiffusionUpscalePipeline:
    """SD x4 upscaler's layout: AutoencoderKL f=4 (4 latent channels, scaling 0.08333), a text- and
    class-conditioned UNet2DConditionModel on latent + noised LR (7 channels), CLIP text encoder."""
    tokenizer = tiny_clip_tokenizer(tmp / "tokenizer-src")
    torch.manual_seed(0)
    vae = AutoencoderKL(**TINY_AUTOENCODER, latent_channels=4, scaling_factor=0.08333)
    text_and_class = {"cross_attention_dim": 16, "use_linear_projection": True, "num_class_embeds": 1000}
    unet = tiny_unet(UNet2DConditionModel, 7, 4, (16, 32), "CrossAttn", **text_and_class)
    text_encoder = tiny_clip_text_encoder(len(tokenizer))  # drawn after the VAE and UNet, as before
    low_res_scheduler = DDPMScheduler(beta_schedule="linear", beta_start=0.0001, beta_end=0.02)
    scheduler = DDIMScheduler(
        prediction_type="v_prediction",
        beta_schedule="scaled_linear",
        beta_start=0.00085,
        beta_end=0.012,
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    return StableDiffusionUpscalePipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        low_res_scheduler=low_res_scheduler,
        scheduler=scheduler,
        max_noise_level=350,
    )


@pytest.fixture(scope="module")
def ldm_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ldm-sr-4x-openimages")
    tiny_ldm_pipeline().save_pretrained(str(folder), safe_serialization=True)
    return folder


@pytest.fixture(scope="module")
def ldm_bin_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ldm-sr-bin")
    tiny_ldm_pipeline().save_pretrained(str(folder), safe_serialization=False)
    return folder


@pytest.fixture(scope="module")
def sd_folder(tmp_path_factory):
    pytest.importorskip("transformers")  # the SD upscaler's text encoder and tokenizer
    folder = tmp_path_factory.mktemp("sd-x4-upscaler")
    tiny_sd_upscale_pipeline(tmp_path_factory.mktemp("tok")).save_pretrained(str(folder), safe_serialization=True)
    return folder


def as_float_image(x: torch.Tensor) -> np.ndarray:
    """Our [-1, 1] output as the stock pipelines' ``output_type="np"`` image."""
    return (x.clamp(-1, 1) / 2 + 0.5)[0].permute(1, 2, 0).numpy()


# --- loading ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "which, family", [("ldm_folder", "stock-ldm"), ("ldm_bin_folder", "stock-ldm"), ("sd_folder", "sd-upscale")]
)
def test_stock_folders_load_without_sr_model_json(request, which, family):
    folder = request.getfixturevalue(which)
    assert not (folder / "sr_model.json").exists()
    if which == "ldm_bin_folder":
        assert not list(folder.glob("**/*.safetensors")) and list(folder.glob("**/*.bin"))
    model = load_model(folder)
    assert model.family == family and model.scales == (4,)
    assert model.default_steps == 20 and model.default_sampler == "ddim" and model.lr_projection_default == 0
    # epsilon / v prediction come from the repos' scheduler configs
    expected = "v_prediction" if family == "sd-upscale" else "epsilon"
    assert model.scheduler_config.get("prediction_type", "epsilon") == expected


@pytest.mark.slow
def test_bin_weights_are_loaded_weights_only(ldm_bin_folder, ldm_folder, monkeypatch):
    calls = []
    real_load = torch.load

    def recording_load(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", recording_load)
    model = load_model(ldm_bin_folder)
    assert len(calls) == 2 and all(w is True for w in calls)  # vqvae and unet, no pickled code
    monkeypatch.undo()
    # same weights as the safetensors copy: the same image
    settings = S(steps=2, seed=1)
    assert np.array_equal(
        model.upscale(LR, settings=settings).image, load_model(ldm_folder).upscale(LR, settings=settings).image
    )


def test_unknown_pipeline_class_is_a_clear_error(tmp_path):
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    with pytest.raises(ModelUnavailableError, match="'StableDiffusionPipeline'.*no super-resolution family") as err:
        load_model(tmp_path)
    assert "LDMSuperResolutionPipeline" in str(err.value) and "StableDiffusionUpscalePipeline" in str(err.value)
    (tmp_path / "model_index.json").unlink()
    with pytest.raises(ModelUnavailableError, match="not a model folder"):
        load_model(tmp_path)


def test_missing_component_is_a_clear_error(tmp_path, ldm_folder):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(ldm_folder, broken)
    shutil.rmtree(broken / "unet")
    with pytest.raises(ModelUnavailableError, match="could not load the LDMSuperResolutionPipeline components"):
        load_model(broken)


# --- the same image as the stock pipelines ----------------------------------------------------------


@pytest.mark.parametrize("sampler", ["ddim", "dpmsolver++"])
@pytest.mark.slow
def test_stock_ldm_pipeline_gives_our_image(ldm_folder, sampler):
    ours = load_model(ldm_folder)
    pipe = LDMSuperResolutionPipeline.from_pretrained(str(ldm_folder), torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    if sampler != "ddim":  # DDIM: the repo's own scheduler as saved; others from its config, like ours
        pipe.scheduler = make_scheduler(sampler, ours.scheduler_config)
    x = to_model_range(LR)
    stock = pipe(x, num_inference_steps=2, generator=torch.Generator().manual_seed(7), output_type="np").images[0]
    mine, calls, _ = ours.run(x, 4, ours.resolve(S(steps=2, sampler=sampler, seed=7)))
    assert stock.shape == (32, 48, 3) and calls.nfe == 2
    diff = np.abs(stock - as_float_image(mine)).max()
    print(f"stock-ldm {sampler}: max abs diff vs LDMSuperResolutionPipeline {diff:.2e}")
    assert diff <= TOLERANCE
    # upscale() returns the stock image quantised (no back-projection by default for stock models)
    image = ours.upscale(LR, settings=S(steps=2, sampler=sampler, seed=7)).image
    assert np.abs(np.round(stock * 255).astype(int) - image).max() <= 1


@pytest.mark.parametrize("prompt, nfe_per_step", [("a red squirrel", 2), ("", 1)])
def test_stock_sd_upscale_pipeline_gives_our_image(sd_folder, prompt, nfe_per_step):
    ours = load_model(sd_folder)
    ours.prompt = prompt
    pipe = StableDiffusionUpscalePipeline.from_pretrained(str(sd_folder), torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = make_scheduler("ddim", ours.scheduler_config)  # as the repo's own 4x test does
    x, seed = to_model_range(LR), 5
    # the same seed: the LR noise, then x_T, drawn from one generator in the stock pipeline's order
    stock = pipe(
        prompt,
        image=x,
        num_inference_steps=2,
        guidance_scale=9.0,
        noise_level=20,
        generator=torch.Generator().manual_seed(seed),
        output_type="np",
    ).images[0]
    mine, calls, _ = ours.run(x, 4, ours.resolve(S(steps=2, sampler="ddim", seed=seed)))
    assert stock.shape == (32, 48, 3)
    assert calls.nfe == 2 * nfe_per_step  # guidance doubles the network evaluations; an empty prompt needs none
    assert calls.tiles == calls.nfe  # untiled: the tiles count the same evaluations
    diff = np.abs(stock - as_float_image(mine)).max()
    print(f"sd-upscale prompt={prompt!r}: max abs diff vs StableDiffusionUpscalePipeline {diff:.2e}")
    assert diff <= TOLERANCE


# --- the interface: seeds, trajectory, registry, cascades -------------------------------------------


@pytest.mark.parametrize("which", ["ldm", "sd"])
@pytest.mark.slow
def test_upscale_seeds_and_trajectory(which, ldm_folder, sd_folder):
    model = load_model(ldm_folder if which == "ldm" else sd_folder)
    seen = []
    result = model.upscale(LR, settings=S(steps=2, sampler="ddpm", seed=1), keep_frames=2, on_step=seen.append)
    assert result.image.shape == (32, 48, 3) and result.image.dtype == np.uint8
    assert [s.step for s in seen] == [0, 1] and seen[0].x_t.shape[-2:] == (8, 12)
    assert len(result.frames) == 2 and result.frames[0].shape == (32, 48, 3)
    assert len(result.noisy_frames) == 2 and result.frame_labels[0].startswith("step 1/2")
    again = model.upscale(LR, settings=S(steps=2, sampler="ddpm", seed=1)).image
    other = model.upscale(LR, settings=S(steps=2, sampler="ddpm", seed=2)).image
    assert np.array_equal(result.image, again) and not np.array_equal(result.image, other)
    # non-multiple sizes are padded and cropped back; SDEdit strength and other samplers run too
    odd = model.upscale(LR[:7, :9], settings=S(steps=2, sampler="dpmsolver++", strength=0.5))
    assert odd.image.shape == (28, 36, 3)


@pytest.fixture
def empty_hub_cache(monkeypatch, tmp_path):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    return tmp_path


def test_well_known_entries_are_listed_offline_with_a_plain_reason(empty_hub_cache):
    from sr_models.hub import HUB_MODELS

    models = discover()
    for entry in HUB_MODELS:
        model = models[entry.name]
        status = model.availability()
        assert not status.ok and status.reason.startswith("needs internet: not in the local Hub cache")
        assert f"python -m sr_models.prefetch {entry.name}" in status.reason and "MB" in status.reason
        assert model.scales == (4,) and model.default_steps == 20 and "ddim" in model.samplers
        with pytest.raises(ModelUnavailableError, match="needs internet"):
            model.upscale(LR)
    # as a cascade stage: listed, not available, a plain message
    cascade = get_models(["bicubic@4>ldm-sr-openimages"], models)[0]
    assert cascade.scales == (16,) and "needs internet" in cascade.availability().reason
    with pytest.raises(ModelUnavailableError, match="needs internet"):
        cascade.upscale(LR)


def test_download_failure_is_a_plain_error(empty_hub_cache):
    from sr_models.hub import download

    with pytest.raises(ModelUnavailableError, match="^needs internet: could not reach .*HF_HUB_OFFLINE is set"):
        download("sr-lab-tests/no-such-repo", pipeline=True)


@pytest.mark.slow
def test_cached_entry_runs_as_a_cascade_stage(monkeypatch, ldm_folder):
    from sr_models.registry import builtin_models

    hub = next(m for m in builtin_models() if m.name == "ldm-sr-openimages")
    monkeypatch.setattr(hub, "_cached_snapshot", lambda: ldm_folder)
    assert hub.availability().ok
    models = {"bicubic": BicubicSR(), hub.name: hub}
    cascade = get_models(["bicubic@2>ldm-sr-openimages"], models)[0]
    result = cascade.upscale(LR, settings=S(steps=2, seed=3))
    assert result.image.shape == (64, 96, 3) and result.nfe == 2
    assert [s.model for s in result.stages] == ["bicubic", "ldm-sr-openimages"]


def test_cached_folder_needs_every_component(tmp_path, ldm_folder):
    import shutil

    from sr_models.hub import is_complete_pipeline

    assert is_complete_pipeline(ldm_folder)
    partial = tmp_path / "partial"
    shutil.copytree(ldm_folder, partial)
    for weights in (partial / "unet").glob("*.safetensors"):
        weights.unlink()  # an interrupted download
    assert not is_complete_pipeline(partial)


def test_prefetch_command(monkeypatch, capsys, empty_hub_cache):
    from sr_models import prefetch

    with pytest.raises(SystemExit) as exit_:
        prefetch.main(["--help"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0 and "ldm-sr-openimages" in out and "sd-x4-upscaler" in out and "--prefetch" in out

    def offline(repo_id, pipeline=None):
        raise ModelUnavailableError(f"needs internet: could not download {repo_id} from the Hub")

    monkeypatch.setattr(prefetch, "download", offline)
    assert prefetch.main(["ldm-sr-openimages"]) == 1
    err = capsys.readouterr().err
    assert "needs internet" in err and "Traceback" not in err
    assert prefetch.main(["no-such-name"]) == 1 and "unknown name" in capsys.readouterr().err
    assert prefetch.main(["--check"]) == 1 and "not in the local Hub cache" in capsys.readouterr().out


def test_sampler_names_are_written_once():
    from sr_models import diffusion_sr, hub, sampling, types
    from sr_models.training.cli import build_parser

    stock_card = hub.PIPELINES["LDMSuperResolutionPipeline"].card()
    assert stock_card["samplers"] == list(types.SAMPLERS)
    assert sampling.SAMPLERS is types.SAMPLERS and diffusion_sr.DiffusionSR.samplers is types.SAMPLERS
    sub = next(a for a in build_parser()._actions if a.dest == "family").choices["ldm"]
    assert tuple(next(a for a in sub._actions if a.dest == "default_sampler").choices) == types.SAMPLERS


@pytest.mark.parametrize("which", ["ldm_folder", "sd_folder"])
@pytest.mark.slow
def test_runs_in_bfloat16(request, which):
    model = load_model(request.getfixturevalue(which)).to("cpu", "bfloat16")
    model.prompt = "a red squirrel"  # ignored by the LDM; guidance on for the SD upscaler
    result = model.upscale(LR, settings=S(steps=2, strength=0.5))
    assert result.image.shape == (32, 48, 3) and result.stages[0].dtype == "bfloat16"
