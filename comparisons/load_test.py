"""Does the app hold up under a class? A load test against a real ``python app.py`` process.

    python -m comparisons.load_test --out results/load

1. alone: one heavy diffusion job through ``/upscale``, its reported seconds;
2. under load: 8 clients (bicubic runs through the same queue) and 2 heavy jobs at once: every
   request answered, each heavy job's reported seconds against the alone run (one heavy job runs
   at a time across every endpoint, so the ratio should stay near 1);
3. cancel: a long job cancelled by its client; how long until the server's CPU use falls;
4. a 16x request on the largest allowed input: refused, and how much the server's memory grew.

``--warm-only``: a warm 4x comparison of bicubic, regression-x4, ldm-x4 and sr3-x4 (their defaults) on a
256x256 LR through ``gradio_client``, its time at the client and in the app against the app's estimate.

Writes ``load.json`` and prints a summary. Timings depend on the machine: run it on a quiet one.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import httpx
import numpy as np
from PIL import Image

from comparisons.serving import MODE_LR

ROOT = Path(__file__).resolve().parent.parent


def _proc_stat(pid: int) -> tuple[float, float]:
    """(CPU seconds, resident MB) of a process."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    with open(f"/proc/{pid}/statm") as f:
        rss = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    return (int(fields[11]) + int(fields[12])) / ticks, rss / 2**20


@contextmanager
def app_process(log_path: Path, port: int, env: dict | None = None, timeout: float = 180):
    """``python app.py`` as a real server process (its output in ``log_path``): yields its URL once it
    answers, stops it (SIGTERM, then kill) afterwards. The load test and the server tests start it so."""
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "GRADIO_ANALYTICS_ENABLED": "False",
        "PYTHONUNBUFFERED": "1",
        **(env or {}),
    }
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "app.py", "--port", str(port)], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env
        )
    url = f"http://127.0.0.1:{port}/"
    try:
        _wait_until_up(proc, url, log_path, timeout)
        yield SimpleNamespace(url=url, pid=proc.pid, log=log_path)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_until_up(proc: subprocess.Popen, url: str, log_path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the app did not start:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.5)


def _image(folder: Path, side: int, name: str) -> str:
    rng = np.random.default_rng(side)
    smooth = np.kron(rng.integers(0, 256, (side // 8 + 1, side // 8 + 1, 3)), np.ones((8, 8, 1)))[:side, :side]
    path = folder / f"{name}.png"
    Image.fromarray(smooth.astype(np.uint8)).save(path)
    return str(path)


def _upscale(url: str, model: str, steps: int, image: str, scale: int = 4):
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False)
    return client.predict(handle_file(image), model, scale, steps, "ddim", 0, "", api_name="/upscale")


def _under_load(url: str, image: str, heavy: str, heavy_steps: int, alone: float) -> dict:
    """8 bicubic clients and 2 heavy jobs at once: every request answered, heavy seconds vs alone."""
    results, errors = {}, []

    def client_job(key, model, steps):
        try:
            results[key] = _upscale(url, model, steps, image)[1]["seconds"]
        except Exception as err:  # noqa: BLE001 (a load test records every failure)
            errors.append(f"{key}: {err}")

    threads = [threading.Thread(target=client_job, args=(f"light{i}", "bicubic", 1)) for i in range(8)]
    threads += [threading.Thread(target=client_job, args=(f"heavy{i}", heavy, heavy_steps)) for i in range(2)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    heavy_seconds = [results.get(f"heavy{i}") for i in range(2)]
    return {
        "load_wall_seconds": time.perf_counter() - t0,
        "answered": len(results),
        "errors": errors,
        "heavy_under_load_seconds": heavy_seconds,
        "heavy_ratio": max(s / alone for s in heavy_seconds if s),
    }


def _cancel(url: str, pid: int, image: str, heavy: str) -> float | None:
    """A long run cancelled by its client after 3 s: seconds until the server's CPU use falls."""
    from gradio_client import Client, handle_file

    job = Client(url, verbose=False).submit(handle_file(image), heavy, 4, 200, "ddim", 0, "", api_name="/upscale")
    time.sleep(3)
    cpu0, _ = _proc_stat(pid)
    job.cancel()
    t_cancel, last = time.perf_counter(), (cpu0, time.perf_counter())
    while time.perf_counter() - t_cancel < 10:
        time.sleep(0.1)
        cpu, now = _proc_stat(pid)[0], time.perf_counter()
        if (cpu - last[0]) / (now - last[1]) < 0.2:  # under a fifth of a core
            return now - t_cancel
        last = (cpu, now)
    return None


def _large_16x(url: str, pid: int, image: str) -> dict:
    """16x on the largest allowed input: refused before the server's memory grows."""
    _, rss0 = _proc_stat(pid)
    peak, stop = [rss0], threading.Event()

    def watch():
        while not stop.is_set():
            peak.append(_proc_stat(pid)[1])
            time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        _upscale(url, "bicubic", 1, image, 16)
        outcome = "ran (not refused)"
    except Exception as err:  # noqa: BLE001 (the refusal is the expected outcome)
        outcome = f"refused: {err}"
    stop.set()
    watcher.join()
    return {"large_16x": outcome, "large_16x_memory_growth_mb": max(peak) - rss0}


WARM_MODELS = ("bicubic", "regression-x4", "ldm-x4", "sr3-x4")  # the 4x comparison issue 17 times
TOOK = re.compile(r"time: ([\d.]+) s for the run(?: \(estimated before it: ([\d.]+) s\))?")


def warm_compare(url: str, image: str, names=WARM_MODELS, runs: int = 2) -> dict:
    """``names`` at 4x with their defaults through /compare, ``runs`` times (the first loads the weights):
    the last run's wall clock at the client, the app's own timing and the estimate it made before it."""
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False)
    report = {"warm_models": list(names)}
    for run in range(runs):
        t0 = time.perf_counter()
        outputs = client.predict(handle_file(image), MODE_LR, 4, list(names), api_name="/compare")
        wall = time.perf_counter() - t0
        took = TOOK.search(outputs[0])
        app, estimate = (float(took[1]), float(took[2]) if took[2] else None) if took else (None, None)
        which = "warm" if run == runs - 1 else f"run{run + 1}"  # run1: the estimate before any run was measured
        report |= {
            f"{which}_client_seconds": round(wall, 2),
            f"{which}_app_seconds": app,
            f"{which}_estimate_seconds": estimate,
            f"{which}_estimate_ratio": round(estimate / app, 3) if estimate and app else None,
        }
    return report


def load_test(out: Path, port: int = 7871, heavy: str = "sr3-x4", heavy_steps: int = 10) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp())
    small, large = _image(tmp, 64, "lr64"), _image(tmp, 1000, "lr1000")
    report: dict = {"heavy_model": heavy, "heavy_steps": heavy_steps, "input": "64x64 -> 256x256"}
    with app_process(out / "server.log", port) as server:
        _upscale(server.url, heavy, heavy_steps, small)  # warm-up: loading weights is not the job's time
        report["alone_seconds"] = _upscale(server.url, heavy, heavy_steps, small)[1]["seconds"]
        report.update(_under_load(server.url, small, heavy, heavy_steps, report["alone_seconds"]))
        report["cancel_cpu_quiet_after_seconds"] = _cancel(server.url, server.pid, small, heavy)
        report.update(_large_16x(server.url, server.pid, large))
        report["tracebacks_in_log"] = (out / "server.log").read_text().count("Traceback")
    (out / "load.json").write_text(json.dumps(report, indent=2))
    return report


def warm_test(out: Path, port: int = 7871, side: int = 256) -> dict:
    """Only ``warm_compare`` on a ``side``² LR (a natural image: scikit-image's astronaut), in ``warm.json``."""
    from comparisons.speed import test_image
    from sr_models.device import hardware_description

    out.mkdir(parents=True, exist_ok=True)
    image = Path(tempfile.mkdtemp()) / f"lr{side}.png"
    Image.fromarray(test_image(side)).save(image)
    with app_process(out / "server.log", port) as server:
        report = {"machine": hardware_description(), "input": f"{side}x{side} -> {4 * side}x{4 * side}"}
        report.update(warm_compare(server.url, str(image)))
        report["tracebacks_in_log"] = (out / "server.log").read_text().count("Traceback")
    (out / "warm.json").write_text(json.dumps(report, indent=2))
    return report


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m comparisons.load_test", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--port", type=int, default=7871)
    p.add_argument("--heavy", default="sr3-x4", help="the diffusion model of the heavy jobs")
    p.add_argument("--heavy-steps", type=int, default=10)
    p.add_argument(
        "--warm-only",
        action="store_true",
        help=f"only time a warm 4x comparison of {', '.join(WARM_MODELS)} on a 256x256 LR against the app's estimate",
    )
    args = p.parse_args(argv)
    if args.warm_only:
        report = warm_test(Path(args.out), args.port)
    else:
        report = load_test(Path(args.out), args.port, args.heavy, args.heavy_steps)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
