"""liif-x: the implicit decoder (local ensemble, cell, chunks, tiles), the model behind the common
interface at real-valued scales, and the ``train liif`` recipe (2 steps, tiny)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sr_models.degradation import degrade, scaled_size
from sr_models.liif import LIIFSR, liif_loss, lr_coordinates, random_queries, upsample
from sr_models.metrics import lr_consistency
from sr_models.registry import FolderModel, load_model
from sr_models.training.cli import main
from sr_models.training.scale_patches import ScalePatchSampler
from sr_models.types import SamplingSettings, SRInputError
from tests.helpers import ANY_SCALE_LR as LR
from tests.helpers import ANY_SCALES as SCALES
from tests.helpers import save_tiny_liif, tiny_liif


def bicubic(lr, size):
    return F.interpolate(lr, size=size, mode="bicubic", align_corners=False)


def test_an_untrained_model_is_exactly_bicubic_at_any_size():
    lr = torch.rand(2, 3, 9, 11)
    net = tiny_liif(trained=False)
    for size in [(9, 11), (22, 27), (13, 40), (63, 77)]:
        assert torch.equal(net(lr, size), bicubic(lr, size))


def test_local_ensemble_on_a_code_centre_uses_that_code_only():
    net = tiny_liif()
    codes = net.encode(torch.rand(1, 3, 6, 7))
    cell = torch.tensor([0.5, 0.5])
    ys, xs = torch.tensor([[2.0]]), torch.tensor([[3.0]])
    geometry = torch.tensor([[0.0, 0.0, 1.0, 1.0]])  # relative (0, 0), cell in LR half-pixels
    alone = net.mlp(codes[:, :, 2, 3] + net.geometry_in(geometry))
    assert torch.allclose(net.query(codes, ys, xs, cell)[0], alone, atol=1e-6)


def test_the_decoded_image_is_continuous_across_code_boundaries():
    """Without the local ensemble the nearest code switches at x.5 and the output jumps there."""
    net = tiny_liif()
    torch.nn.init.normal_(net.mlp[-1].weight, std=1.0)
    codes = net.encode(torch.rand(1, 3, 6, 7))
    cell = torch.tensor([0.25, 0.25])
    ys = torch.full((1, 2), 2.3)
    xs = torch.tensor([[2.5 - 1e-4, 2.5 + 1e-4]])
    left, right = net.query(codes, ys, xs, cell)[0]
    assert (left - right).abs().max() < 1e-2
    far = net.query(codes, ys, torch.tensor([[2.0, 3.0]]), cell)[0]
    assert (far[0] - far[1]).abs().max() > 10 * (left - right).abs().max()


def test_chunks_and_tiles_bound_memory_without_changing_the_image():
    net = tiny_liif()
    lr = torch.rand(1, 3, 17, 20)
    whole = net(lr, (42, 50))
    assert torch.equal(net.decode(net.encode(lr), lr, (42, 50), chunk=37), whole)
    one_tile, calls = upsample(net, lr, (42, 50), tile=64)
    assert calls == 1 and torch.equal(one_tile, whole)
    tiles, calls = upsample(net, lr, (42, 50), tile=12, overlap=4)
    assert calls > 1 and (tiles - whole).abs().max() < 0.05  # the encoder's tile seams, blended


def test_training_loss_is_l1_of_the_full_decode_at_the_sampled_pixels():
    net = tiny_liif()
    lr, hr = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 20, 20)
    pixels = random_queries((20, 20), 50, 2, torch.Generator().manual_seed(0))
    assert pixels.shape == (2, 50) and len(set(pixels[0].tolist())) == 50
    index = pixels[:, None].expand(-1, 3, -1)
    full = torch.gather(net(lr, (20, 20)).flatten(2), 2, index)
    expected = F.l1_loss(full, torch.gather(hr.flatten(2), 2, index))
    assert torch.allclose(liif_loss(net, lr, hr, pixels), expected, atol=1e-6)
    assert random_queries((4, 5), 50, 2, torch.Generator()).shape == (2, 20)  # fewer pixels: all of them


def test_lr_coordinates_align_pixel_centres():
    assert torch.allclose(lr_coordinates(4, 2), torch.tensor([-0.25, 0.25, 0.75, 1.25]))
    assert torch.allclose(lr_coordinates(5, 5), torch.arange(5.0))


@pytest.fixture(scope="module")
def liif_folder(tmp_path_factory):
    return save_tiny_liif(tmp_path_factory.mktemp("liif") / "tiny-liif")


@pytest.mark.slow
def test_a_liif_folder_serves_any_scale_at_round_s_times_the_size(liif_folder):
    model = load_model(liif_folder)
    deferred = FolderModel(liif_folder)
    assert model.continuous and deferred.continuous and deferred.family == "liif" and model.scales == (2, 3, 4)
    for s in SCALES:
        expected = (round(s * 17), round(s * 20), 3)
        assert model.upscale(LR, s).image.shape == expected == deferred.upscale(LR, s).image.shape
    assert model.upscale(LR, 3.0).scale == 3 and isinstance(model.upscale(LR, 3.0).scale, int)
    tiled = model.upscale(LR, 2.5, SamplingSettings(tile=17))  # the 16 px overlap needs a larger tile
    assert tiled.nfe == 1 and tiled.stages[0].tiles > 1  # one forward pass, its encoder in several tiles


@pytest.mark.parametrize("bad", [0, -1, 17, float("nan"), "3x", None])
def test_bad_scales_are_refused_with_a_plain_message(liif_folder, bad):
    with pytest.raises(SRInputError, match="tiny-liif"):
        load_model(liif_folder).upscale(LR, bad)


@pytest.mark.slow
def test_back_projection_at_a_real_valued_scale(liif_folder):
    model = load_model(liif_folder)
    hr, lr = degrade(np.random.default_rng(1).integers(0, 256, (50, 45, 3), dtype=np.uint8), 2.5)
    raw = model.upscale(lr, 2.5).image
    projected = model.upscale(lr, 2.5, SamplingSettings(lr_projection=3)).image
    assert raw.shape == projected.shape == hr.shape
    assert lr_consistency(projected, lr, 2.5) > lr_consistency(raw, lr, 2.5) + 3


@pytest.mark.slow
def test_liif_sr_works_in_bfloat16(liif_folder):
    model = LIIFSR.from_folder(liif_folder, "tiny").to("cpu", "bfloat16")
    out = model.upscale(LR, 2.5).image
    reference = load_model(liif_folder).upscale(LR, 2.5).image
    assert out.shape == reference.shape and np.abs(out.astype(int) - reference).mean() < 3


def test_scale_patches_have_a_whole_lr_and_one_scale_per_batch(image_folder):
    fixed_lr = ScalePatchSampler(image_folder, 1, 4, lr_patch=12, seed=1)
    fixed_hr = ScalePatchSampler(image_folder, 1, 4, hr_patch=40, seed=1)
    scales = []
    for step in range(6):
        lr, hr, scale = fixed_lr.batch(step, 3)
        assert lr.shape == (3, 3, 12, 12) and hr.shape[-1] == hr.shape[-2] == round(12 * scale)
        lr, hr, scale = fixed_hr.batch(step, 2)
        assert hr.shape == (2, 3, 40, 40) and 40 / lr.shape[-1] == scale and 1 <= scale <= 4
        scales.append(scale)
    assert len(set(scales)) > 2
    again = fixed_hr.batch(3, 2)
    assert torch.equal(again[0], fixed_hr.batch(3, 2)[0])  # seeded by (seed, step): resumable
    with pytest.raises(ValueError):
        ScalePatchSampler(image_folder, 1, 4, hr_patch=40, lr_patch=10)


@pytest.mark.slow
def test_liif_recipe_trains_two_steps_and_exports_an_any_scale_folder(image_folder, tmp_path):
    out = tmp_path / "liif-x"
    args = ["liif", "--data", str(image_folder), "--out", str(out), "--max-steps", "2", "--batch-size", "2"]
    args += ["--lr-patch", "12", "--queries", "64", "--channels", "4", "--blocks", "1", "--hidden", "8"]
    args += ["--split", "all", "--threads", "1", "--val-data", str(image_folder), "--val-images", "1"]
    args += ["--val-crop", "32", "--validate-every", "2", "--checkpoint-every", "2"]
    assert main(args) == 0
    model = load_model(out)
    assert model.name == "liif-x" and model.card["trained_scales"] == [1.0, 4.0]
    assert set(model.card["training"]["last_validation"]) == {"psnr_y", "ssim_y", "lr_psnr"}
    for s in SCALES:
        assert model.upscale(LR, s).image.shape == (*scaled_size(17, 20, s), 3)
