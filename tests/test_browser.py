"""The app in a real browser (Debian's chromium driven by playwright): pick an example, run a 4x
comparison of bicubic and a fast model, see the outputs, move the before/after slider, click an
output to zoom, download the run record.

Skipped, with the reason, where chromium or playwright is missing; ``.ci/run`` sets
SR_REQUIRE_BROWSER=1, and then a missing browser is a failure instead."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import zipfile
from pathlib import Path

import pytest

from tests.conftest import started_app

CHROMIUM_ENV = "SR_CHROMIUM"  # path of the browser; default: chromium on PATH
REQUIRE_ENV = "SR_REQUIRE_BROWSER"
WANTED = ("bicubic", "regression-x4")
pytestmark = [pytest.mark.browser, pytest.mark.server]


def _browser_or_reason() -> tuple[str | None, str]:
    chromium = os.environ.get(CHROMIUM_ENV) or shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        return None, "no chromium on PATH (Debian: apt-get install chromium; or set SR_CHROMIUM)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return None, "the playwright package is not installed (pip install playwright)"
    return chromium, ""


@pytest.fixture(scope="module")
def chromium():
    path, reason = _browser_or_reason()
    if path is None:
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{REQUIRE_ENV}=1 but the browser test cannot run: {reason}")
        pytest.skip(reason)
    return path


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    log = tmp_path_factory.mktemp("browser") / "server.log"
    with started_app(log) as app:
        yield app.url
    assert "Traceback" not in log.read_text()


def _tick_only(page, wanted):
    """Tick exactly the models named in ``wanted``."""
    from playwright.sync_api import expect

    boxes = page.locator("input[type=checkbox]")
    expect(boxes.first).to_be_visible()
    for i in range(boxes.count()):
        box = boxes.nth(i)
        name = box.evaluate("e => e.closest('label') ? e.closest('label').innerText : ''").split(" (")[0]
        if name in wanted and not box.is_checked():
            box.check()
        elif name not in wanted and box.is_checked():
            box.uncheck()


def _start_long_run(page, url):
    """ldm-x4 at 200 steps on the first example, until its progress shows steps."""
    from playwright.sync_api import expect

    page.goto(url)
    page.locator(".gallery-item").first.click()
    _tick_only(page, ["ldm-x4"])
    page.get_by_text("Diffusion sampling").click()
    steps = page.get_by_label("number input for Steps (0 = model default)")
    steps.fill("200")
    steps.press("Enter")
    expect(page.locator("#estimate")).to_contain_text(
        re.compile(r"about (\d\d+ s|[\d.]+ min) \(ldm-x4"), timeout=30_000
    )
    page.click("#run")
    expect(page.locator(".progress-text").first).to_contain_text(re.compile(r"[1-9]\d*/200 steps"), timeout=120_000)


def _quick_run(page, url, timeout_ms):
    """bicubic alone on the first example: done within ``timeout_ms`` only if no other run holds the server."""
    from playwright.sync_api import expect

    page.goto(url)
    page.locator(".gallery-item").first.click()
    _tick_only(page, ["bicubic"])
    page.click("#run")
    expect(page.locator("#view2 img")).to_be_visible(timeout=timeout_ms)
    expect(page.locator("#view2")).to_contain_text("bicubic")


def test_a_class_runs_a_comparison_in_the_browser(chromium, app_url, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 720}, accept_downloads=True)
            page.set_default_timeout(60_000)
            page.goto(app_url)
            page.locator(".gallery-item").first.click()  # the first example (astronaut, 256x256)
            _tick_only(page, WANTED)  # bicubic and one fast model
            expect(page.locator("#estimate")).to_contain_text("estimated time")
            expect(page.locator("#estimate")).to_contain_text("Output 256x256")

            page.click("#run")
            # the grid: reference, input, bicubic, regression-x4
            for i, caption in enumerate(["reference (HR)", "input (LR, nearest)", *WANTED]):
                expect(page.locator(f"#view{i} img")).to_be_visible(timeout=180_000)
                expect(page.locator(f"#view{i}")).to_contain_text(caption)
            expect(page.locator("#view4")).to_be_hidden()
            expect(page.locator("#status")).to_contain_text("256x256 (4x)")

            # the before/after slider: drag its handle from the middle to a quarter
            page.get_by_role("tab", name="Slider").click()
            pair = page.locator("#pair")
            expect(pair).to_contain_text("input (LR, nearest) ◀ ▶ bicubic")
            handle = pair.locator("[data-testid=slider]").first
            expect(handle).to_be_visible()
            pair.scroll_into_view_if_needed()
            box = pair.locator("img").first.bounding_box()
            before = handle.bounding_box()
            page.mouse.move(before["x"] + before["width"] / 2, before["y"] + before["height"] / 2)
            page.mouse.down()
            page.mouse.move(box["x"] + box["width"] * 0.25, before["y"] + before["height"] / 2, steps=8)
            page.mouse.up()
            after = handle.bounding_box()
            assert after["x"] < before["x"] - box["width"] * 0.1, (before, after)

            # click a point of an output: every image zooms into the same spot
            view = page.locator("#view3 img")
            shown = view.bounding_box()
            view.click(position={"x": shown["width"] * 0.25, "y": shown["height"] * 0.75})
            page.get_by_role("tab", name="Zoom").click()
            crops = page.locator("#crops img")
            expect(crops).to_have_count(4)
            x = page.get_by_label("centre x (output px)")
            y = page.get_by_label("centre y (output px)")
            expect(x).not_to_have_value("")
            assert abs(int(x.input_value()) - 64) <= 3 and abs(int(y.input_value()) - 192) <= 3
            expect(page.locator("#crops")).to_contain_text("regression-x4 [")
            x.fill("200")  # typed coordinates work too: centre (200, 40), 64 px, on the 4-px LR grid
            y.fill("40")
            y.press("Enter")
            expect(page.locator("#crops")).to_contain_text("regression-x4 [168:232, 8:72]")

            # the run record
            page.get_by_role("tab", name="Run record").click()
            button = page.locator("#download")
            expect(button).to_be_visible()
            with page.expect_download() as caught:
                button.click()
            path = tmp_path / caught.value.suggested_filename
            caught.value.save_as(path)
        finally:
            browser.close()
    with zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())
        rows = list(csv.DictReader(io.StringIO(zf.read("metrics.csv").decode())))
        card = json.loads(zf.read("run_card.json"))
    assert {"bicubic_x4_seed0.png", "regression-x4_x4_seed0.png", "reference.png", "input.png"} <= names
    assert [r["model"] for r in rows] == list(WANTED) and all(float(r["psnr_y"]) > 20 for r in rows)
    assert card["input"]["name"] == "astronaut.png" and card["scale"] == 4
    assert any(k.startswith("regression-x4/") for r in card["runs"] for k in r["weights_sha256"])
    assert Path(path).name.startswith("sr_lab_run_x4_")


def test_stop_and_a_closed_tab_free_the_server(chromium, app_url):
    """A 200-step run stopped with the Stop button, then one left running in a closed tab: each time a
    quick run right after finishes in seconds, so the server really stopped (one run at a time)."""
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 720})
            page.set_default_timeout(60_000)
            _start_long_run(page, app_url)
            page.click("#stop")
            expect(page.locator("#status")).to_contain_text("Stopped.", timeout=5_000)
            _quick_run(page, app_url, timeout_ms=30_000)

            closing = browser.new_page(viewport={"width": 1280, "height": 720})
            _start_long_run(closing, app_url)
            closing.close()  # Gradio notices the lost heartbeat and calls the app's unload: the run stops
            _quick_run(page, app_url, timeout_ms=45_000)
        finally:
            browser.close()
