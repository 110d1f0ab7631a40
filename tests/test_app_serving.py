"""What a shared server (a classroom, a Space) needs from the app: Stop, limits and an estimate before
running, a bound on loaded models, the run record, comparison views, trajectories frame by frame,
no growing temp folders, ZeroGPU. Driven through gradio_client like a script, or the functions the
app calls."""

from __future__ import annotations

import csv
import gc
import hashlib
import io
import json
import tempfile
import threading
import time
import types
import weakref
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

import ui.lab  # noqa: E402
from comparisons.animation import frame_pair, frames_to_keep  # noqa: E402
from comparisons.compare import Comparison, RunStopped, run_comparison  # noqa: E402
from comparisons.run_record import safe_name, seed_text  # noqa: E402
from comparisons.serving import MODE_HR, MODE_LR, LoadedModels, TimeEstimator, check_output_size  # noqa: E402
from comparisons.views import INPUT_VIEW, zoom_crops  # noqa: E402
from sr_models.registry import discover, get_models  # noqa: E402
from sr_models.types import SamplingSettings  # noqa: E402
from tests.conftest import NO_CASCADE, SlowUNet, compare_output, served, shown, started_app, wait_for  # noqa: E402
from tests.conftest import app_models as tiny  # noqa: E402
from ui.layout import build_app  # noqa: E402
from ui.parse import MAX_VIEWS, MODES, Job  # noqa: E402

HR_MODE, LR_MODE = list(MODES)


def view_path(result, file_name: str) -> str:
    """The grid's image file whose name is ``file_name``."""
    views = [shown(result, f"view{i}") for i in range(MAX_VIEWS)]
    return next(v for v in views if v and Path(v).name == file_name)


# --- 1. Stop ----------------------------------------------------------------------------------------
@pytest.mark.slow
def test_stop_event_ends_the_sampler_between_steps(tiny_models_dir, lr_png):
    models = tiny(tiny_models_dir)
    slow = SlowUNet(models["tiny-ldm-x4"], delay=0.01)
    stop, outcome = threading.Event(), {}

    def run():
        try:
            run_comparison(
                str(lr_png), MODE_LR, 4, [models["tiny-ldm-x4"]], settings=SamplingSettings(steps=200), stop=stop
            )
        except RunStopped as err:
            outcome["stopped"] = err

    worker = threading.Thread(target=run)
    worker.start()
    wait_for(lambda: slow.calls >= 3, 30, "the first UNet calls")
    stop.set()
    calls_when_stopped = slow.calls
    worker.join(timeout=2)
    assert not worker.is_alive(), "the run did not stop within 2 s"
    assert "stopped" in outcome
    assert slow.calls <= calls_when_stopped + 1  # at most the step under way finishes


@pytest.mark.server
def test_cancelling_a_request_stops_the_unet_within_two_seconds(tiny_models_dir, lr_png, tmp_path):
    models = tiny(tiny_models_dir)
    slow = SlowUNet(models["tiny-ldm-x4"])
    with served(models, tmp_path / "examples") as (demo, client):
        job = client.submit(handle_file(str(lr_png)), "tiny-ldm-x4", 4, 200, "", 0, "", api_name="/upscale")
        wait_for(lambda: slow.calls >= 3, 60, "the run to start")
        t0 = time.monotonic()
        job.cancel()
        assert demo.lab.wait_idle(2.0), "the worker thread kept running more than 2 s after the cancel"
        latency = time.monotonic() - t0
        calls = slow.calls
        assert calls < 200 and latency < 2.0
        print(f"cancel -> worker idle in {latency:.3f} s after {calls} of 200 UNet calls")
        # the app still answers, and the next run is not blocked by the stopped one
        path, info = client.predict(handle_file(str(lr_png)), "bicubic", 2, 0, "", 0, "", api_name="/upscale")
        assert info["model"] == "bicubic" and slow.calls == calls


@pytest.mark.server
def test_stop_endpoint_stops_the_sessions_run_with_a_plain_message(tiny_models_dir, lr_png, tmp_path):
    models = tiny(tiny_models_dir)
    slow = SlowUNet(models["tiny-ldm-x4"])
    with served(models, tmp_path / "examples") as (demo, client):
        job = client.submit(
            handle_file(str(lr_png)),
            LR_MODE,
            4,
            ["tiny-ldm-x4"],
            200,
            "",
            0,
            0,
            True,
            -1,
            *NO_CASCADE,
            api_name="/compare",
        )
        wait_for(lambda: slow.calls >= 3, 60, "the run to start")
        t0 = time.monotonic()
        assert client.predict(api_name="/stop") == "**Stopped.**"
        with pytest.raises(AppError, match="^Stopped: the run was cancelled"):
            job.result(timeout=10)
        assert time.monotonic() - t0 < 2.0 and demo.lab.wait_idle(2.0)
        assert slow.calls < 200
        assert client.predict(api_name="/stop") == "Nothing was running."


# --- 2. limits and the estimate ---------------------------------------------------------------------
def test_output_pixel_limit(monkeypatch):
    with pytest.raises(Exception, match=r"268\.4 MP per output, above this server's limit of 4\.0 MP"):
        check_output_size(1024, 1024, MODE_LR, 16)  # 1 MP at 16x
    with pytest.raises(Exception, match="16.8 MP"):
        check_output_size(256, 256, MODE_LR, 16)
    assert check_output_size(500, 500, MODE_LR, 4) == (2000, 2000)
    assert check_output_size(125, 125, MODE_LR, 16) == (2000, 2000)
    assert check_output_size(1000, 1000, MODE_HR, 16) == (992, 992)  # HR mode: outputs are the reference's size
    monkeypatch.setenv("SR_MAX_OUTPUT_PIXELS", "10000")
    with pytest.raises(Exception, match="limit of 0.0 MP"):
        check_output_size(30, 30, MODE_LR, 4)


@pytest.mark.server
def test_too_large_output_is_refused_before_any_model_loads(tiny_models_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("SR_MAX_OUTPUT_PIXELS", str(200 * 200))
    big = tmp_path / "big.png"
    Image.new("RGB", (60, 60)).save(big)
    models = tiny(tiny_models_dir)
    with served(models, tmp_path / "examples") as (demo, client):
        with pytest.raises(AppError, match=r"240x240 = 0\.1 MP per output, above this server's limit"):
            client.predict(handle_file(str(big)), "tiny-ldm-x4", 4, 0, "", 0, "", api_name="/upscale")
        with pytest.raises(AppError, match="above this server's limit"):
            client.predict(
                handle_file(str(big)),
                LR_MODE,
                4,
                ["tiny-regression-x4"],
                0,
                "",
                0,
                0,
                True,
                -1,
                *NO_CASCADE,
                api_name="/compare",
            )
        assert not models["tiny-ldm-x4"].loaded and not models["tiny-regression-x4"].loaded


@pytest.mark.slow
def test_time_estimate_grows_with_pixels_and_steps_and_learns_from_the_last_run(tiny_models_dir, lr_png):
    models = tiny(tiny_models_dir)
    ldm, estimator = models["tiny-ldm-x4"], TimeEstimator()
    small = estimator.predict(ldm, 32, 32, 4, SamplingSettings(steps=2))
    assert estimator.predict(ldm, 64, 64, 4, SamplingSettings(steps=2)) > small
    assert estimator.predict(ldm, 32, 32, 4, SamplingSettings(steps=20)) > small
    comparison = run_comparison(
        str(lr_png), MODE_LR, 4, [ldm], settings=SamplingSettings(steps=3), on_result=estimator.observe
    )
    seconds = comparison.results[0].stages[0].seconds  # the stage's own time, loading excluded
    assert estimator.predict(ldm, 24, 20, 4, SamplingSettings(steps=3)) == pytest.approx(seconds, rel=1e-6)
    cascade = get_models(["tiny-regression-x2>tiny-ldm-x4"], models)[0]
    assert estimator.predict(cascade, 24, 20, 8) > estimator.predict(ldm, 48, 40, 4, SamplingSettings(steps=2))


def test_an_estimate_at_a_size_and_step_count_already_run_is_that_runs_time():
    from types import SimpleNamespace

    from sr_models.types import StageResult, UpscaleResult

    estimator, model = TimeEstimator(), SimpleNamespace(name="m", family="sr3", card={"tile": 256}, scales=(4,))
    model.resolve = lambda settings: settings

    def run(side: int, seconds: float) -> UpscaleResult:  # a 1-step run of ``side``² output taking ``seconds``
        image = np.zeros((side, side, 3), np.uint8)
        stage = StageResult("m", 4, SamplingSettings(steps=1), image, (side // 4, side // 4), 1, seconds, 0.0)
        return UpscaleResult(image, 4, "m", [stage], seconds)

    estimator.observe(model, run(1024, 20.0))
    assert estimator.predict(model, 256, 256, 4, SamplingSettings(steps=1)) == 20.0  # measured at that size
    estimator.observe(model, run(256, 1.5))
    assert estimator.predict(model, 256, 256, 4, SamplingSettings(steps=1)) == 20.0  # still its own measure
    # a size never run: the family model rescaled by the last run (256² output: one tile; 512²: 9 of 256)
    unseen = estimator.predict(model, 128, 128, 4, SamplingSettings(steps=1))
    assert 4 * 1.5 < unseen < 9 * 1.5 * 1.2


def test_tile_overhead_counts_the_pixels_overlapping_tiles_run_on():
    from sr_models.tiling import tile_overhead

    assert tile_overhead(200, 256, 256, 16) == 1.0  # one tile
    assert tile_overhead(1024, 1024, 256, 16) == pytest.approx(25 * 256**2 / 1024**2)  # 5 x 5 tiles of 256
    assert tile_overhead(256, 256, 64, 16) == pytest.approx(25 * 64**2 / 256**2)


# --- 4. bound on loaded models ------------------------------------------------------------------------
def test_loaded_model_bound_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv("SR_MAX_LOADED_MODELS", raising=False)
    assert LoadedModels().limit == 4
    monkeypatch.setenv("SR_MAX_LOADED_MODELS", "2")
    assert LoadedModels().limit == 2


@pytest.mark.slow
def test_at_most_n_models_stay_loaded_least_recently_used_go(tiny_models_dir, lr_png):
    models = tiny(tiny_models_dir)
    loaded = LoadedModels(limit=2)
    first, x4 = models["tiny-regression-x2"], models["tiny-regression-x4"]
    run_comparison(str(lr_png), MODE_LR, 2, [first], loaded=loaded)
    weights = weakref.ref(first._model)
    run_comparison(str(lr_png), MODE_LR, 4, [models["tiny-ldm-x4"]], loaded=loaded)
    assert loaded.loaded() == [first.name, "tiny-ldm-x4"]
    run_comparison(str(lr_png), MODE_LR, 4, [x4], loaded=loaded)
    assert loaded.loaded() == ["tiny-ldm-x4", x4.name] and not first.loaded
    gc.collect()
    assert weights() is None, "the unloaded model's weights are still referenced"
    run_comparison(str(lr_png), MODE_LR, 2, [first], loaded=loaded)  # loads again on use
    assert loaded.loaded() == [x4.name, first.name]


# --- 5, 6, 7. run record, views, trajectories through the app -----------------------------------------
@pytest.fixture(scope="module")
def compared(tiny_models_dir, hr_png, tmp_path_factory):
    """One HR-mode comparison at 4x with bicubic, a regression model, a diffusion model and a cascade."""
    models = tiny(tiny_models_dir)
    with served(models, tmp_path_factory.mktemp("examples")) as (demo, client):
        result = client.predict(
            handle_file(str(hr_png)),
            HR_MODE,
            4,
            ["bicubic", "tiny-regression-x4", "tiny-ldm-x4"],
            4,
            "ddim",
            0,
            7,
            True,
            2,
            "bicubic@2",
            "tiny-regression-x2",
            "",
            0,
            0,
            0,
            api_name="/compare",
        )
        record = client.predict(api_name="/run_record")
        record = record.get("value") if isinstance(record, dict) else record  # a DownloadButton update
        yield types.SimpleNamespace(result=result, record=record, demo=demo, client=client, models=models)


@pytest.mark.server
def test_grid_shows_the_reference_the_input_and_every_output(compared):
    visible = [v for v in (shown(compared.result, f"view{i}") for i in range(MAX_VIEWS)) if v]
    assert len(visible) == 6  # reference, input, bicubic, regression, ldm, cascade
    names = [Path(v).name for v in visible]
    assert names[:2] == ["reference.png", "input.png"]
    assert "tiny-ldm-x4_x4_seed7.png" in names and "bicubic_at_2_then_tiny-regression-x2_x4_seed7.png" in names
    sizes = {Image.open(v).size for v in visible}
    assert sizes == {(64, 64)}  # every view at the output size: a click means the same pixel in all


@pytest.mark.server
def test_slider_sides_are_any_two_views(compared):
    left, right = shown(compared.result, "left"), shown(compared.result, "right")
    assert left == INPUT_VIEW and right == "bicubic"
    slider = shown(compared.result, "slider")
    assert len(slider) == 2 and all(Path(p).suffix == ".png" for p in slider)


def test_zoom_crops_take_the_same_region_of_every_view():
    lr = np.arange(8 * 8 * 3, dtype=np.uint8).reshape(8, 8, 3)
    hr = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    result = types.SimpleNamespace(model="m", image=hr[::-1].copy())
    comparison = Comparison(lr=lr, hr=hr, scale=4, results=[result])
    crops = zoom_crops(comparison, x=10, y=22, size=8, magnify=2)
    assert [c for _, c in crops] == ["reference (HR)", "input (LR, nearest)", "m"]
    region = (slice(16, 24), slice(4, 12))  # centred on (10, 22), on the 4-pixel LR grid, inside the image
    assert np.array_equal(crops[0][0][::2, ::2], hr[region])
    assert np.array_equal(crops[2][0][::2, ::2], hr[::-1][region])
    assert np.array_equal(crops[1][0][::8, ::8], lr[4:6, 1:3])
    edge = zoom_crops(comparison, x=1000, y=-5, size=1000, magnify=1)  # clipped, never an error
    assert edge[0][0].shape == (32, 32, 3)


@pytest.mark.server
def test_run_record_zip(compared):
    path = compared.record
    assert path and path.endswith(".zip")
    with zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())
        assert {"metrics.csv", "stages.csv", "run_card.json", "input.png", "reference.png"} <= names
        outputs = {
            "bicubic_x4_seed7.png",
            "tiny-regression-x4_x4_seed7.png",
            "tiny-ldm-x4_x4_seed7.png",
            "bicubic_at_2_then_tiny-regression-x2_x4_seed7.png",
        }
        assert outputs <= names
        rows = list(csv.DictReader(io.StringIO(zf.read("metrics.csv").decode())))
        card = json.loads(zf.read("run_card.json"))
        png = np.asarray(Image.open(io.BytesIO(zf.read("tiny-ldm-x4_x4_seed7.png"))))
    assert [r["model"] for r in rows] == [
        "bicubic",
        "tiny-regression-x4",
        "tiny-ldm-x4",
        "bicubic@2>tiny-regression-x2",
    ]
    ldm = rows[2]
    assert (ldm["steps"], ldm["sampler"], ldm["eta"], ldm["seed"], ldm["lr_projection"]) == ("4", "ddim", "0", "7", "2")
    assert float(ldm["psnr_y"]) > 0 and ldm["file"] == "tiny-ldm-x4_x4_seed7.png"
    grid = view_path(compared.result, "tiny-ldm-x4_x4_seed7.png")
    assert np.array_equal(png, np.asarray(Image.open(grid)))  # the zip holds exactly what the grid showed
    commit = card["git"]["commit"]
    assert commit is None or len(commit) == 40
    assert card["scale"] == 4 and card["settings_asked"]["seed"] == 7 and card["device"]["ran_on"]
    run = next(r for r in card["runs"] if r["model"] == "tiny-ldm-x4")
    assert run["seed"] == 7 and run["settings"]["steps"] == 4
    assert card["settings_asked"]["seed_text"] == "7" and run["seed_text"] == "7"  # exact in a browser too
    assert seed_text(2**63 - 1) == "9223372036854775807" and seed_text(None) == ""
    folder = compared.models["tiny-ldm-x4"].folder
    for key, digest in run["weights_sha256"].items():
        assert digest == hashlib.sha256((folder / key.split("/", 1)[1]).read_bytes()).hexdigest()
    assert len(run["weights_sha256"]) == 2  # the UNet and the autoencoder
    cascade = next(r for r in card["runs"] if ">" in r["model"])
    assert [s["model"] for s in cascade["stages"]] == ["bicubic", "tiny-regression-x2"]
    assert all(s["seed_text"] == str(s["seed"]) for s in cascade["stages"])
    assert safe_name("a>b@4") == "a_then_b_at_4" and safe_name("../x y") == "x_y"


@pytest.mark.server
def test_trajectory_frame_slider_ends_on_the_returned_image(compared):
    assert shown(compared.result, "trajectory_model") == "tiny-ldm-x4"
    frame = compare_output(compared.result, "frame")
    assert frame["value"] == 4 and frame["maximum"] == 4  # 4 steps, then the back-projected image
    last = np.asarray(Image.open(shown(compared.result, "frame_image")).convert("RGB"))
    output = np.asarray(Image.open(view_path(compared.result, "tiny-ldm-x4_x4_seed7.png")))
    assert np.array_equal(last[:, -output.shape[1] :], output)


def test_every_step_is_kept_up_to_25_steps():
    assert frames_to_keep(256 * 256) == 25 and frames_to_keep(1_000_000) == 25
    assert 8 <= frames_to_keep(4_000_000) < 25  # big outputs: fewer frames, bounded memory


@pytest.mark.slow
def test_last_frame_is_the_output_for_ldm_x4_with_back_projection():
    models = discover()
    if "ldm-x4" not in models or not models["ldm-x4"].availability().ok:
        pytest.skip("the shipped ldm-x4 is not here")
    from skimage import data

    lr = np.ascontiguousarray(data.astronaut()[100:132, 180:212])
    settings = SamplingSettings(steps=10, lr_projection=5)
    comparison = run_comparison(
        Image.fromarray(lr), MODE_LR, 4, [models["ldm-x4"]], settings=settings, keep_frames=frames_to_keep(128 * 128)
    )
    result = comparison.results[0]
    assert len(result.frames) == 11  # every one of the 10 steps, then the back-projected image
    image, label = frame_pair(result, -1)
    assert np.array_equal(image[:, -128:], result.image) and "back-projected" in label
    first, _ = frame_pair(result, 0)
    assert not np.array_equal(first[:, -128:], result.image)


# --- 8. temp files -------------------------------------------------------------------------------------
@pytest.mark.server
def test_runs_leave_no_temp_folders_behind(tiny_models_dir, lr_png, tmp_path, monkeypatch):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    monkeypatch.delenv("GRADIO_TEMP_DIR", raising=False)
    models = tiny(tiny_models_dir)
    # the client downloads nothing: gradio_client leaves empty folders of its own in the temp dir
    with served(models, tmp_path / "examples", downloads=False) as (demo, client):
        assert demo.delete_cache == (600, 3600)  # Gradio's cache: served files older than an hour go
        scratch = demo.lab.scratch
        scratch.keep = 2
        for seed in range(4):
            client.predict(
                handle_file(str(lr_png)),
                LR_MODE,
                4,
                ["tiny-ldm-x4"],
                2,
                "",
                0,
                seed,
                True,
                -1,
                *NO_CASCADE,
                api_name="/compare",
            )
            client.predict(handle_file(str(lr_png)), "bicubic", 2, 0, "", seed, "", api_name="/upscale")
        assert len([p for p in scratch.root.iterdir()]) <= 2
        assert sorted(p.name for p in tmp.iterdir()) == sorted(["gradio", scratch.root.name])
    assert not scratch.root.exists()
    assert [p.name for p in tmp.iterdir()] == ["gradio"]


# --- 9. ZeroGPU -----------------------------------------------------------------------------------------
@pytest.mark.slow
def test_zerogpu_wraps_the_heavy_function_when_spaces_is_importable(tiny_models_dir, lr_png, tmp_path, monkeypatch):
    calls = []

    def gpu(duration=60):
        def wrap(fn):
            def run(*args, **kwargs):
                calls.append(duration)
                return fn(*args, **kwargs)

            return run

        return wrap

    monkeypatch.setattr(ui.lab, "spaces", types.SimpleNamespace(GPU=gpu))
    demo = build_app(tiny(tiny_models_dir), example_dir=tmp_path / "examples")
    job = Job(source=str(lr_png), mode=MODE_LR, scale=2, names=["bicubic"], settings=SamplingSettings())
    comparison = demo.lab.compare_work(threading.Event(), job)
    assert comparison.results[0].image.shape == (40, 48, 3) and calls == [ui.lab.GPU_SECONDS]
    demo.lab.scratch.close()
    monkeypatch.setattr(ui.lab, "spaces", None)
    assert ui.lab.on_gpu(len) is len  # no `spaces`: unchanged


def test_readme_front_matter_is_a_valid_space_config():
    import yaml

    root = Path(__file__).resolve().parent.parent
    text = (root / "README.md").read_text()
    assert text.startswith("---\n")
    meta = yaml.safe_load(text.split("---\n")[1])
    assert meta["sdk"] == "gradio" and (root / meta["app_file"]).is_file()
    pinned = next(
        line.split("==")[1].strip()
        for line in (root / "requirements.txt").read_text().splitlines()
        if line.startswith("gradio==")
    )
    assert str(meta["sdk_version"]) == pinned
    assert {"title", "emoji", "colorFrom", "colorTo", "pinned"} <= set(meta)


# --- 10. checks before the run slot -----------------------------------------------------------------------
@pytest.mark.server
def test_a_bad_request_is_answered_at_once_while_a_long_run_holds_the_slot(tiny_models_dir, lr_png, tmp_path):
    models = tiny(tiny_models_dir)
    slow = SlowUNet(models["tiny-ldm-x4"], delay=0.05)
    with served(models, tmp_path / "examples") as (demo, client):
        long_run = client.submit(handle_file(str(lr_png)), "tiny-ldm-x4", 4, 200, "", 0, "", api_name="/upscale")
        wait_for(lambda: slow.calls >= 3, 60, "the long run to start")
        answers = []
        for endpoint, args in (
            ("/upscale", [handle_file(str(lr_png)), "bicubic", 2, -3, "", 0, ""]),
            ("/compare", [handle_file(str(lr_png)), LR_MODE, 2, ["bicubic"], 0, "", 2, 0, True, -1, *NO_CASCADE]),
        ):
            t0 = time.monotonic()
            with pytest.raises(AppError, match="steps must be at least 0|eta must be a number from 0 to 1"):
                client.predict(*args, api_name=endpoint)
            answers.append(time.monotonic() - t0)
        other = Client(client.src, verbose=False)  # another visitor: a cancel in one session stops only its runs
        waiting = other.submit(handle_file(str(lr_png)), "bicubic", 2, 0, "", 0, "", api_name="/upscale")
        wait_for(lambda: demo.lab.queue_ahead()[0] == 2, 10, "the second run to wait")
        estimate = demo.handlers.estimate(str(lr_png), LR_MODE, 2, ["bicubic"], 0, "", *NO_CASCADE)
        assert slow.calls < 200, "the long run ended before the bad requests were answered"
        long_run.cancel()
        waiting.result(timeout=60)
    print(f"bad requests answered in {answers} s during a 200-step run")
    assert max(answers) < 1.0
    assert "**2 run(s) ahead** of yours" in estimate


@pytest.mark.server
def test_gradios_cache_goes_with_the_server(lr_png, tmp_path):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    with started_app(tmp_path / "server.log", {"TMPDIR": str(tmp)}) as app:
        Client(app.url, verbose=False).predict(
            handle_file(str(lr_png)), "bicubic", 2, 0, "", 0, "", api_name="/upscale"
        )
        caches = [p for p in tmp.iterdir() if p.name.startswith("sr_lab_gradio_")]
        assert len(caches) == 1 and any(caches[0].rglob("*.png")), "the upload was not cached in the app's folder"
    assert not caches[0].exists(), "Gradio's cache was left behind"
    assert not (tmp / "gradio").exists()


def test_a_routes_estimate_and_loading_are_its_inner_models(tiny_models_dir):
    """ldm-x4 routed to 3x costs what ldm-x4 at 4x costs (the resize is cheap), and its weights are ldm-x4's."""
    from comparisons.serving import TimeEstimator, output_size, stage_models
    from sr_models.resized import at_scale

    models = tiny(tiny_models_dir)
    ldm, estimator = models["tiny-ldm-x4"], TimeEstimator()
    routed = at_scale(ldm, 3)
    assert routed.name == "tiny-ldm-x4 then resize to 3x" and stage_models(routed) == [ldm]
    assert estimator.predict(routed, 20, 20, 3) == estimator.predict(ldm, 20, 20, 4)
    assert estimator.predict(routed, 20, 20, 3) > estimator.predict(ldm, 20, 20, 3)  # 4x pixels, not 3x
    twice = at_scale(models["tiny-regression-x2"], 3)  # x2>x2 then resize
    assert stage_models(twice) == [models["tiny-regression-x2"]] * 2
    assert output_size(24, 20, "lr", 2.5) == (60, 50) and output_size(64, 64, "hr", 2.5) == (60, 60)
