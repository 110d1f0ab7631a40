"""The app answers through gradio_client: the same path a browser or a script takes."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

from tests.compare_request import compare_inputs  # noqa: E402
from tests.conftest import app_models, compare_output, served  # noqa: E402
from ui.parse import MODES  # noqa: E402
from ui.studies import STUDIES, studies_tab  # noqa: E402

HR_MODE, LR_MODE = list(MODES)


@pytest.fixture(scope="module")
def client(tiny_models_dir, tmp_path_factory):
    with served(app_models(tiny_models_dir), tmp_path_factory.mktemp("examples")) as (_, client):
        yield client


@pytest.mark.server
def test_upscale_endpoint(client, lr_png):
    path, info = client.predict(handle_file(str(lr_png)), "tiny-regression-x2", 2, 0, "", 0, api_name="/upscale")
    out = np.asarray(Image.open(path))
    assert path.endswith(".png") and out.shape == (40, 48, 3)
    assert info["model"] == "tiny-regression-x2" and info["nfe"] == 1 and info["lr_psnr"] > 10


@pytest.mark.server
def test_compare_endpoint_scores_against_the_reference(client, lr_png):
    inputs = compare_inputs(handle_file(str(lr_png)), HR_MODE, 2, ["bicubic", "tiny-regression-x2"])
    result = client.predict(*inputs, api_name="/compare")
    status, table = compare_output(result, "status"), compare_output(result, "table")
    assert "→" in status
    assert table["headers"][:3] == ["model", "PSNR-Y (dB)", "SSIM-Y"]
    assert [row[0] for row in table["value"]["data"]] == ["bicubic", "tiny-regression-x2"]
    for column in ("steps", "sampler", "eta", "seed", "back-proj."):  # every row says how it ran
        assert column in table["headers"]


@pytest.mark.server
def test_bad_inputs_get_a_message_not_a_stack_trace(client, lr_png, tmp_path):
    bogus = tmp_path / "bogus.png"
    bogus.write_text("not an image at all")
    with pytest.raises(AppError, match="not an image file"):
        client.predict(handle_file(str(bogus)), "bicubic", 4, 0, "", 0, api_name="/upscale")
    with pytest.raises(AppError, match="scale must be a number from 1 to 16 .e.g. 2.5 or 3., got '3x'"):
        client.predict(handle_file(str(lr_png)), "tiny-regression-x2", "3x", 0, "", 0, api_name="/upscale")
    with pytest.raises(AppError, match="unknown model"):
        client.predict(handle_file(str(lr_png)), "nope", 4, 0, "", 0, api_name="/upscale")


@pytest.mark.server
def test_upscale_takes_a_real_scale_and_says_the_route(client, lr_png):
    """Any output size (issue 15): the scale argument takes 2.5; a fixed 2x model reaches 4x by a cascade of
    itself, 2.5x by that cascade then a resize, 1.5x by its own scale then a resize; the facts name the route."""
    path, info = client.predict(handle_file(str(lr_png)), "tiny-regression-x2", 2.5, 0, "", 0, api_name="/upscale")
    assert info["model"] == "tiny-regression-x2>tiny-regression-x2 then resize to 2.5x"
    assert info["route"] == "cascade + resize" and info["scale"] == 2.5 and Image.open(path).size == (60, 50)
    path, info = client.predict(handle_file(str(lr_png)), "tiny-regression-x2", 1.5, 0, "", 0, api_name="/upscale")
    assert info["model"] == "tiny-regression-x2 then resize to 1.5x" and info["route"] == "resize"
    assert Image.open(path).size == (36, 30)
    path, info = client.predict(handle_file(str(lr_png)), "tiny-regression-x2", 4, 0, "", 0, api_name="/upscale")
    assert info["model"] == "tiny-regression-x2>tiny-regression-x2" and info["route"] == "cascade"
    path, info = client.predict(handle_file(str(lr_png)), "bicubic", 3, 0, "", 0, api_name="/upscale")
    assert info["model"] == "bicubic" and info["route"] == "direct" and Image.open(path).size == (72, 60)


@pytest.mark.server
def test_diffusion_model_in_the_app_gives_a_trajectory(client, lr_png):
    inputs = compare_inputs(
        handle_file(str(lr_png)), LR_MODE, 4, ["bicubic", "tiny-ldm-x4"], steps=3, sampler="ddim", seed=1, projection=0
    )
    result = client.predict(*inputs, api_name="/compare")
    table = compare_output(result, "table")["value"]
    assert [row[0] for row in table["data"]] == ["bicubic", "tiny-ldm-x4"]
    assert "PSNR-Y (dB)" not in table["headers"]  # no reference in LR mode
    row = dict(zip(table["headers"], table["data"][1]))
    assert (row["steps"], row["sampler"], row["eta"], row["seed"], row["back-proj."]) == ("3", "ddim", "0", "1", "0")
    gallery = compare_output(result, "gifs")
    assert len(gallery) == 1 and gallery[0]["image"].endswith(".gif")
    frames = Image.open(gallery[0]["image"])
    assert frames.n_frames == 3  # 3 steps, 8 frames asked: one per step


@pytest.mark.server
def test_cascade_through_the_api_returns_per_stage_facts(client, lr_png):
    path, info = client.predict(
        handle_file(str(lr_png)), "tiny-regression-x2>tiny-ldm-x4", 8, 0, "", 3, "0,2", api_name="/upscale"
    )
    assert np.asarray(Image.open(path)).shape == (160, 192, 3)
    assert info["model"] == "tiny-regression-x2>tiny-ldm-x4" and info["scale"] == 8
    assert [(s["model"], s["nfe"], s["input"]) for s in info["stages"]] == [
        ("tiny-regression-x2", 1, "24x20"),
        ("tiny-ldm-x4", 2, "48x40"),
    ]
    assert info["nfe"] == 3 and info["stages"][0]["seed"] == 3
    assert info["seed_text"] == "3" and info["stages"][1]["seed_text"] == str(info["stages"][1]["seed"])
    with pytest.raises(AppError, match="unknown model 'nope'"):
        client.predict(handle_file(str(lr_png)), "tiny-regression-x2>nope", 8, 0, "", 0, "", api_name="/upscale")
    with pytest.raises(AppError, match="seed must be below"):
        client.predict(handle_file(str(lr_png)), "bicubic", 2, 0, "", 2**63, "", api_name="/upscale")


@pytest.mark.server
def test_cascade_builder_runs_next_to_single_models(client, lr_png):
    result = client.predict(
        handle_file(str(lr_png)),
        LR_MODE,
        8,
        ["bicubic"],
        0,
        "",
        0,
        0,
        True,
        -1,
        "tiny-regression-x2",
        "tiny-ldm-x4",
        "",
        0,
        2,
        0,
        api_name="/compare",
    )
    table = compare_output(result, "table")["value"]
    names = [row[0] for row in table["data"]]
    assert names[:2] == ["bicubic", "tiny-regression-x2>tiny-ldm-x4"]
    assert "stage 1: tiny-regression-x2" in names[2] and "stage 2: tiny-ldm-x4" in names[3]
    gallery = compare_output(result, "gifs")
    assert len(gallery) == 1 and Image.open(gallery[0]["image"]).n_frames == 2  # stage 2's two steps


@pytest.mark.slow
def test_studies_tab_shows_the_shipped_cascade_study(tmp_path):
    import gradio as gr

    with gr.Blocks() as empty:
        studies_tab(tmp_path)  # no results: a plain message, no error
    assert any(isinstance(b, gr.Markdown) and "No shipped study" in b.value for b in empty.blocks.values())
    if not (STUDIES / "cascade" / "cascade.csv").exists():
        pytest.skip("no shipped cascade study")
    with gr.Blocks() as shipped:
        studies_tab()
    plots = [b for b in shipped.blocks.values() if isinstance(b, gr.Plot)]
    assert "Pareto front" in str(plots[0].value)
    labels = [p.label for p in plots]
    assert labels[:2] == ["quality vs cost", "the split of steps between the stages"]
    if (STUDIES / "steps" / "steps.csv").exists():
        assert "quality vs steps" in labels and "ldm-x4" in str(plots[labels.index("quality vs steps")].value)
    if (STUDIES / "speed" / "speed.csv").exists():
        assert "seconds per image" in labels and "stock" in str(plots[labels.index("seconds per image")].value)
    if (STUDIES / "spread" / "spread.csv").exists():
        spread = str(plots[labels.index("one sample vs the mean of seeds")].value)
        assert "mean of seeds" in spread and "sr3-x4" in spread


@pytest.mark.slow
def test_studies_tab_plots_every_shipped_study_it_lists(tmp_path):
    """Each SHIPPED entry whose CSV exists gets its plot, in the listed order."""
    import shutil

    import gradio as gr

    from ui.studies import SHIPPED

    shutil.copytree(STUDIES / "cascade", tmp_path / "cascade")
    present = [entry for entry in SHIPPED if (STUDIES / entry[0]).exists()]
    for csv_path, *_ in present:
        shutil.copytree((STUDIES / csv_path).parent, tmp_path / Path(csv_path).parent, dirs_exist_ok=True)
    with gr.Blocks() as tab:
        studies_tab(tmp_path)
    labels = [b.label for b in tab.blocks.values() if isinstance(b, gr.Plot)]
    assert labels[2:] == [label for *_, label in present] and len(present) >= 4
