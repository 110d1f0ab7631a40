"""Any output size for every model (sr_models.resized): a fixed-scale model routed to a real scale,
its exact bicubic resize, back-projection onto the original LR, the ``MODEL~SCALE`` spec, bad scales."""

import math

import numpy as np
import pytest

from sr_models.bicubic import BicubicSR
from sr_models.cascade import CascadeSR
from sr_models.degradation import imresize, scaled_size
from sr_models.metrics import lr_consistency
from sr_models.registry import discover, get_models
from sr_models.resized import AnyScaleBicubic, ResizedSR, at_scale, route_kind, route_parts
from sr_models.types import SamplingSettings, SRInputError
from tests.helpers import save_routing_models

LR = np.random.default_rng(1).integers(0, 256, (13, 17, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = save_routing_models(tmp_path_factory.mktemp("routed"))
    found = discover(model_dirs=[root], device="cpu", dtype="float32")
    return {k: v for k, v in found.items() if k in ("bicubic", "tiny-x4", "tiny-x2", "tiny-liif")}


@pytest.mark.parametrize("scale", [2.5, 3, 1.5])
def test_a_4x_model_gives_round_s_times_the_lr_at_a_real_scale(models, scale):
    routed = at_scale(models["tiny-x4"], scale)
    assert isinstance(routed, ResizedSR) and routed.inner_scale == 4
    assert routed.name == f"tiny-x4 then resize to {scale:g}x" and route_kind(routed) == "resize"
    result = routed.upscale(LR, scale)
    assert result.image.shape == (*scaled_size(*LR.shape[:2], scale), 3) == (round(13 * scale), round(17 * scale), 3)
    assert result.scale == scale and result.model == routed.name


@pytest.mark.slow
def test_the_resize_is_the_protocols_imresize_of_the_4x_output_exactly(models):
    raw = SamplingSettings(lr_projection=0)
    four = models["tiny-x4"].upscale(LR, 4, raw).image
    routed = at_scale(models["tiny-x4"], 2.5).upscale(LR, 2.5, raw)
    expected = imresize(four, 2.5 / 4, output_shape=scaled_size(13, 17, 2.5))
    assert np.array_equal(routed.image, expected)
    assert not np.array_equal(routed.image, imresize(LR, 2.5, output_shape=scaled_size(13, 17, 2.5)))


def test_the_result_keeps_the_inner_models_facts(models):
    result = at_scale(models["tiny-x4"], 3).upscale(LR, settings=SamplingSettings(seed=5))
    (stage,) = result.stages
    assert stage.model == "tiny-x4" and stage.scale == 4 and stage.settings.seed == 5
    assert stage.image is result.image and stage.input_shape == LR.shape[:2]
    facts = result.facts()
    assert facts["model"] == "tiny-x4 then resize to 3x" and facts["scale"] == 3 and facts["nfe"] == 1
    assert facts["n_stages"] == 1 and facts["seconds"] >= stage.seconds > 0


@pytest.mark.slow
def test_back_projection_runs_onto_the_original_lr_at_the_real_scale(models):
    routed = at_scale(models["tiny-x4"], 2.5)
    raw = routed.upscale(LR, settings=SamplingSettings(lr_projection=0))
    projected = routed.upscale(LR, settings=SamplingSettings(lr_projection=3))
    assert projected.stages[0].settings.lr_projection == 3 and projected.stages[0].projection_seconds > 0
    assert lr_consistency(projected.image, LR, 2.5) > lr_consistency(raw.image, LR, 2.5) + 3
    # not back-projected at 4x and then resized: the 4x stage ran raw, the projection came after the resize
    four_projected = models["tiny-x4"].upscale(LR, 4, SamplingSettings(lr_projection=3)).image
    resized = imresize(four_projected, 2.5 / 4, output_shape=scaled_size(13, 17, 2.5))
    assert not np.array_equal(projected.image, resized)


def test_beyond_the_models_own_scale_it_cascades_with_itself(models):
    x2 = models["tiny-x2"]
    six = at_scale(x2, 6)
    assert isinstance(six.inner, CascadeSR) and [s for _, s in six.inner.stages] == [2, 2, 2]
    assert six.name == "tiny-x2>tiny-x2>tiny-x2 then resize to 6x" and route_kind(six) == "cascade + resize"
    assert route_parts(six) == [x2]
    result = six.upscale(LR)
    assert result.image.shape[:2] == (78, 102) and len(result.stages) == 3 and result.nfe == 3
    exact = at_scale(x2, 8)  # reached exactly: the cascade itself, no resize
    assert isinstance(exact, CascadeSR) and exact.name == "tiny-x2>tiny-x2>tiny-x2" and route_kind(exact) == "cascade"
    assert [s for _, s in at_scale(models["tiny-x4"], 12).inner.stages] == [4, 4]


def test_exact_scales_and_continuous_models_pass_through(models):
    assert at_scale(models["tiny-x4"], 4) is models["tiny-x4"]
    assert at_scale(models["tiny-x4"], 4.0) is models["tiny-x4"]
    liif = models["tiny-liif"]
    assert at_scale(liif, 2.5) is liif and at_scale(liif, 7) is liif and route_kind(liif) == "continuous"
    routed = at_scale(models["tiny-x4"], 3)
    assert at_scale(routed, 2.5).inner_scale == 4 and at_scale(routed, 4) is models["tiny-x4"]


@pytest.mark.slow
def test_bicubic_runs_at_the_real_scale_directly(models):
    bicubic = at_scale(models["bicubic"], 2.5)
    assert isinstance(bicubic, AnyScaleBicubic) and bicubic.name == "bicubic"
    image = bicubic.upscale(LR, 2.5).image
    assert np.array_equal(image, imresize(LR, 2.5, output_shape=scaled_size(13, 17, 2.5)))
    assert np.array_equal(AnyScaleBicubic().upscale(LR, 4).image, BicubicSR().upscale(LR, 4).image)
    assert at_scale(models["bicubic"], 4) is models["bicubic"]


@pytest.mark.parametrize("bad", [0, -1, 17, math.nan, "3x", math.inf, True])
def test_bad_scales_are_refused_with_a_plain_message(models, bad):
    with pytest.raises(SRInputError, match=r"tiny-x4: the scale must be (a number|a finite number|from 1 to 16)"):
        at_scale(models["tiny-x4"], bad)
    with pytest.raises(SRInputError, match="the scale must be"):
        at_scale(models["tiny-liif"], bad)


def test_a_routed_model_runs_at_its_scale_only(models):
    routed = at_scale(models["tiny-x4"], 3)
    with pytest.raises(SRInputError, match=r"runs at 3x only, not 2.5x: .*tiny-x4~2.5"):
        routed.upscale(LR, 2.5)
    with pytest.raises(SRInputError, match="from 1 to 16"):
        routed.upscale(LR, 17)
    assert routed.upscale(LR, 3.0).image.shape[:2] == (39, 51)


def test_the_spec_syntax_routes_names_cascades_and_stages(models):
    three, cascade, stage, same = get_models(["tiny-x4~3", "tiny-x4>tiny-x2~6", "bicubic@4~2.5", "tiny-x4~4"], models)
    assert three.name == "tiny-x4 then resize to 3x" and three.spec == "tiny-x4~3"
    assert cascade.name == "tiny-x4>tiny-x2 then resize to 6x" and cascade.inner_scale == 8
    assert stage.name == "bicubic@4 then resize to 2.5x" and stage.inner_scale == 4
    assert same is models["tiny-x4"]
    assert get_models(["tiny-liif~2.5"], models)[0] is models["tiny-liif"]


@pytest.mark.parametrize(
    "spec, message",
    [
        ("tiny-x4~3x", r"the scale after ~ must be a number, e\.g\. ldm-x4~3 .*got '3x'"),
        ("tiny-x4~", "the scale after ~ must be a number"),
        ("tiny-x4~nan", "finite number"),
        ("tiny-x4~0", "from 1 to 16"),
        ("tiny-x4~-1", "from 1 to 16"),
        ("tiny-x4~17", "from 1 to 16"),
        ("~3", "name the model before ~"),
        ("tiny-x2>tiny-x2~6", r"reaches 4x, not 6x"),
        ("bicubic@2~3", "runs at 2x, below 3x"),
    ],
)
def test_bad_specs_say_what_is_wrong(models, spec, message):
    with pytest.raises(SRInputError, match=message):
        get_models([spec], models)


def test_an_unknown_model_in_a_spec_is_named(models):
    with pytest.raises(KeyError, match="unknown model 'nope'"):
        get_models(["nope~3"], models)
