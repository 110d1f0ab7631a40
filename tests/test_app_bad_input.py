"""The bad-input matrix: the app started as a real server process (its log in a file), every kind of bad
value sent through /upscale and /compare with gradio_client (and NaN / Infinity as raw JSON over HTTP,
which gradio_client cannot send). Each must get one plain message, and the server log must show no
stack trace at the end."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

from tests.compare_request import compare_inputs  # noqa: E402
from tests.conftest import NO_CASCADE, started_app  # noqa: E402
from ui.parse import MODES  # noqa: E402

HR, LR = list(MODES)
pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(folder / "ok.png")
    (folder / "text.png").write_text("this is not an image")
    (folder / "empty.png").write_bytes(b"")
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(folder / "full.png")
    full = (folder / "full.png").read_bytes()
    (folder / "truncated.png").write_bytes(full[: len(full) // 2])
    Image.new("RGB", (300, 300)).save(folder / "huge.png")  # over SR_MAX_INPUT_PIXELS below
    Image.new("RGB", (100, 100)).save(folder / "big.png")  # fine as input, too big at 8x
    return folder


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``python app.py`` on a free port, stdout and stderr in a log file."""
    log_path = tmp_path_factory.mktemp("server") / "server.log"
    env = {"SR_MAX_INPUT_PIXELS": str(200 * 200), "SR_MAX_OUTPUT_PIXELS": str(500 * 500)}
    with started_app(log_path, env) as app:
        yield {"url": app.url, "client": Client(app.url, verbose=False, download_files=False), "log": log_path}


def upscale(image="ok.png", model="bicubic", scale=2, steps=0, sampler="", seed=0, stage_steps=""):
    return "/upscale", [image, model, scale, steps, sampler, seed, stage_steps]


def compare(
    image="ok.png", mode=LR, scale=2, names=("bicubic",), builder=tuple(NO_CASCADE), preset=(), width=None, **values
):
    """A /compare request; ``preset=()`` leaves the appended inputs out, as older scripts do, and a width
    alone comes after the "custom" preset."""
    if width is not None:
        preset = (*(preset or ("custom",)), width)
    names = list(names) if isinstance(names, tuple) else names
    appended = dict(zip(("preset", "width"), preset))
    return "/compare", compare_inputs(image, mode, scale, names, builder, **values, **appended)


def posterior(
    image="ok.png", mode=LR, model="ldm-x4", scale=4, k=4, steps=1, sampler="", eta=1, seed=0, preset="custom"
):
    return "/posterior", [image, mode, model, scale, k, steps, sampler, eta, seed, -1, preset]


# (kind of bad input, request, the message it must get)
CASES = [
    # files
    ("non-image file", upscale(image="text.png"), "not an image file"),
    ("truncated file", compare(image="truncated.png"), "could not be decoded .truncated or corrupt"),
    ("zero-size file", upscale(image="empty.png"), "not an image file"),
    (
        "over-size input",
        compare(image="huge.png", mode=HR),
        r"300x300 = 0\.1 MP, above the limit of 0\.0 MP for an input",
    ),
    ("output over the limit", upscale(image="big.png", model="bicubic", scale=8), r"800x800 = 0\.6 MP per output"),
    ("no image", compare(image=None), "Upload an image or pick an example first"),
    ("no image (API)", upscale(image=None), "send an image"),
    ("a path string instead of handle_file", upscale(image=Path("lr.png")), "send an image file"),
    # the scale
    ("3x as scale", upscale(scale="3x"), r"scale must be a number from 1 to 16 \(e\.g\. 2\.5 or 3\), got '3x'"),
    ("scale 0", upscale(scale=0), "scale must be from 1 to 16, got 0"),
    ("scale -1", compare(scale=-1), "scale must be from 1 to 16, got -1"),
    ("scale 17", upscale(scale=17), "scale must be from 1 to 16, got 17"),
    ("NaN scale as a string", compare(scale="nan"), "scale must be a number from 1 to 16, got 'nan'"),
    ("string for the scale", upscale(scale="four"), "scale must be a number from 1 to 16 .e.g. 2.5 or 3., got 'four'"),
    ("empty scale", compare(scale=None), "choose a scale"),
    (
        "a reference at a scale with no small ratio",
        compare(mode=HR, scale=3.14159265),
        r"the scale 3\.14159 is not a ratio of whole numbers with a denominator up to 1000",
    ),
    ("output over the limit at 5.5x", upscale(image="big.png", scale=5.5), r"5\.5x of a 100x100 image is 550x550"),
    (
        "a route whose own scale is over the limit",
        upscale(image="big.png", model="regression-x8", scale=4.5),
        r"regression-x8 then resize to 4\.5x first upscales 8x to 800x800 = 0\.6 MP",
    ),
    ("a cascade below the scale", upscale(model="bicubic@2>regression-x2", scale=8), r"= 4x, not 8x"),
    ("a width beyond 16x", compare(width=5000), r"an output 5000 px wide is 208x of this 24 px wide image"),
    ("a width below 1x", compare(width=10), r"an output 10 px wide is 0\.417x of this 24 px wide image"),
    ("a width for a reference", compare(mode=HR, width=48), "an output width is for a low-resolution image"),
    ("a negative width", compare(width=-5), "output width must be at least 0, got -5"),
    ("a fractional width", compare(width=60.5), "output width must be a whole number, got 60.5"),
    # steps
    ("2.5 as steps", upscale(steps=2.5), "steps must be a whole number, got 2.5"),
    ("negative steps", compare(steps=-3), "steps must be at least 0, got -3"),
    ("too many steps", upscale(steps=10**6), "steps must be at most 200"),
    ("string for steps", compare(steps="ten"), "steps must be a number, got 'ten'"),
    ("NaN as a string", upscale(steps="nan"), "steps must be a whole number, got 'nan'"),
    ("inf as a string", compare(steps="inf"), "steps must be a whole number, got 'inf'"),
    ("true for steps", upscale(steps=True), "steps must be a whole number, got True"),
    # seed
    ("negative seed", upscale(seed=-1), "seed must be at least 0"),
    ("seed of 2^63", compare(seed=2**63), "seed must be below 2.63"),
    ("fractional seed", upscale(seed=1.5), "seed must be a whole number"),
    ("list for the seed", compare(seed=[1]), r"seed must be a whole number, got \[1\]"),
    # eta, back-projection, sampler, flags
    ("NaN eta", compare(eta="nan"), "eta must be a number from 0 to 1, got nan"),
    ("infinite eta", compare(eta="-inf"), "eta must be a number from 0 to 1"),
    ("eta above 1", compare(eta=1.5), "eta must be a number from 0 to 1, got 1.5"),
    ("negative eta", compare(eta=-0.1), "eta must be a number from 0 to 1"),
    ("fractional back-projection", compare(projection=4.5), "back-projection iterations must be a whole number"),
    ("too much back-projection", compare(projection=99), "back-projection iterations must be at most 10"),
    ("unknown sampler", upscale(sampler="euler"), "unknown sampler 'euler'"),
    ("record not a flag", compare(record="yes"), "record must be true or false"),
    ("unknown mode", compare(mode="sideways"), "unknown mode 'sideways'"),
    # models and cascades
    ("unknown model", upscale(model="nope"), "unknown model.s. nope; known: bicubic"),
    ("empty model list", compare(names=[]), "choose at least one model"),
    ("empty model name", upscale(model="  "), "choose a model"),
    ("models not a list", compare(names="bicubic"), "models must be a list of model names"),
    ("number as a model name", compare(names=[5]), "a model name must be text"),
    ("too many models", compare(names=["bicubic"] + [f"m{i}" for i in range(10)]), "at most 10 models per run"),
    ("cascade with an empty stage", upscale(model="bicubic@2>", scale=4), "a cascade has an empty stage"),
    ("cascade with a doubled separator", upscale(model="ldm-x2>>ldm-x2", scale=4), "a cascade has an empty stage"),
    ("too many stages", upscale(model=">".join(["bicubic@2"] * 5), scale=16), "at most 4 stages"),
    ("stage at a scale it lacks", upscale(model="bicubic@5>ldm-x4", scale=16), "bicubic runs at 2/3/4/8/16x, not 5x"),
    ("unknown cascade stage", upscale(model="bicubic@2>nope", scale=4), "unknown model 'nope' in the cascade"),
    ("bad stage steps", upscale(model="bicubic@2>ldm-x2", scale=4, stage_steps="10,x"), "stage steps must be a number"),
    ("stage steps for one model", upscale(stage_steps="10,5"), "stage steps are for a cascade"),
    (
        "more stage steps than stages",
        upscale(model="bicubic@2>ldm-x2", scale=4, stage_steps="1,2,3"),
        "3 stage settings given for a cascade of 2 stages",
    ),
    (
        "a one-stage builder cascade",
        compare(builder=("ldm-x2", "", "", 0, 0, 0)),
        "a cascade needs at least two stages",
    ),
    (
        "builder stage steps negative",
        compare(builder=("bicubic@2", "ldm-x2", "", 0, -2, 0)),
        "stage steps must be at least 0",
    ),
    # the posterior explorer
    ("one posterior sample", posterior(k=1), "the number of samples K must be from 2 to 16, got 1"),
    ("seventeen posterior samples", posterior(k=17), "the number of samples K must be from 2 to 16, got 17"),
    ("fractional K", posterior(k=2.5), "the number of samples K must be a whole number, got 2.5"),
    ("NaN for K", posterior(k="nan"), "the number of samples K must be a whole number, got 'nan'"),
    (
        "K outputs over the limit",
        posterior(image="big.png", k=2),
        r"2 samples of 400x400 are 0\.32 MP in all, above this server's limit of 0\.25 MP",
    ),
    ("a deterministic model's posterior", posterior(model="bicubic"), "bicubic is deterministic"),
    ("a regression model's posterior", posterior(model="regression-x4"), "regression-x4 is deterministic"),
    ("no model for the posterior", posterior(model=""), "choose a model"),
    ("posterior at 2.5x as text", posterior(scale="2.5x"), "scale must be a number from 1 to 16 .e.g. 2.5 or 3."),
    ("posterior at 20x", posterior(scale=20), "scale must be from 1 to 16, got 20"),
    ("unknown preset", posterior(preset="sharp"), "unknown preset 'sharp'"),
    ("unknown preset for a comparison", compare(preset=("sharp",)), "unknown preset 'sharp'"),
    ("a number as the preset", compare(preset=(3,)), "unknown preset 3"),
    ("no image for the posterior", posterior(image=None), "Upload an image or pick an example first"),
]


def _send(client, files, endpoint, args):
    args = list(args)
    if isinstance(args[0], str):
        args[0] = handle_file(str(files / args[0]))
    elif isinstance(args[0], Path):  # sent as a bare string: the mistake of forgetting handle_file
        args[0] = str(args[0])
    return client.predict(*args, api_name=endpoint)


def _plain(message: str):
    assert message and "Traceback" not in message and "\n" not in message.strip(), message
    assert "Exception" not in message and "Error(" not in message and len(message) < 600, message


@pytest.mark.parametrize("kind,request_,expected", CASES, ids=[c[0] for c in CASES])
def test_bad_input_gets_one_plain_message(server, files, kind, request_, expected):
    endpoint, args = request_
    with pytest.raises(AppError) as caught:
        _send(server["client"], files, endpoint, args)
    message = str(caught.value.message if hasattr(caught.value, "message") else caught.value)
    assert re.search(expected, message), f"{kind}: {message!r}"
    _plain(message)


def _raw_call(url: str, endpoint: str, body: str) -> str:
    """Gradio's two-step HTTP API with a hand-written JSON body (NaN and Infinity are not JSON)."""
    posted = httpx.post(
        f"{url}gradio_api/call{endpoint}", content=body, headers={"Content-Type": "application/json"}, timeout=30
    )
    if posted.status_code != 200:
        return f"HTTP {posted.status_code}: {posted.text}"
    event = posted.json()["event_id"]
    stream = httpx.get(f"{url}gradio_api/call{endpoint}/{event}", timeout=60).text
    lines = stream.splitlines()
    errors = [
        json.loads(lines[i + 1].removeprefix("data:").strip())
        for i, line in enumerate(lines)
        if line.strip() == "event: error" and i + 1 < len(lines)
    ]
    return errors[0] if errors else stream


@pytest.mark.parametrize(
    "kind,endpoint,data,expected",
    [
        (
            "NaN steps as raw JSON",
            "/upscale",
            '[null, "bicubic", 2, NaN, "", 0, ""]',
            "steps must be a whole number, got nan",
        ),
        (
            "NaN scale as raw JSON",
            "/upscale",
            '[null, "bicubic", NaN, 0, "", 0, ""]',
            "scale must be a number from 1 to 16, got nan",
        ),
        (
            "Infinity seed as raw JSON",
            "/upscale",
            '[null, "bicubic", 2, 0, "", Infinity, ""]',
            "seed must be a whole number, got inf",
        ),
        (
            "NaN eta as raw JSON",
            "/compare",
            f'[null, "{LR}", 2, ["bicubic"], 0, "", NaN, 0, true, -1, "", "", "", 0, 0, 0]',
            "eta must be a number from 0 to 1, got nan",
        ),
        ("too few values", "/upscale", '["bicubic", 2]', "this endpoint takes 7 values, got 2"),
        ("a bare path, not a file", "/upscale", '["/work/x.png", "bicubic", 2, 0, "", 0, ""]', "send an image file"),
        (
            "a number for the image",
            "/compare",
            f'[5, "{LR}", 2, ["bicubic"], 0, "", 0, 0, true, -1, "", "", "", 0, 0, 0]',
            "send an image file",
        ),
        (
            "a server path as the image",
            "/upscale",
            '[{"path": "/etc/passwd", "meta": {"_type": "gradio.FileData"}}, "bicubic", 2, 0, "", 0, ""]',
            "the image must be a file uploaded with the request",
        ),
    ],
)
def test_raw_http_nan_and_infinity(server, kind, endpoint, data, expected):
    answer = _raw_call(server["url"], endpoint, '{"data": ' + data + "}")
    message = answer.get("message", "") if isinstance(answer, dict) else str(answer)
    assert re.search(expected, str(answer)), f"{kind}: {answer!r}"
    assert "Traceback" not in str(answer), message


def test_server_log_has_no_traceback(server, files):
    # one good request after all the bad ones: the server still works
    path, info = server["client"].predict(
        handle_file(str(files / "ok.png")), "bicubic", 2, 0, "", 3, "", api_name="/upscale"
    )
    assert info["model"] == "bicubic" and info["seed"] == 3
    log = server["log"].read_text()
    assert "Running on local URL" in log
    assert "Traceback" not in log, log[log.index("Traceback") - 200 :][:4000]
