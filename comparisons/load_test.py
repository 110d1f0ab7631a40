"""Does the app hold up under a class? A load test against a real ``python app.py`` process.

    python -m comparisons.load_test --out results/load

1. alone: one heavy diffusion job through ``/upscale``, its reported seconds;
2. under load: 8 clients (bicubic runs through the same queue) and 2 heavy jobs at once: every
   request answered, each heavy job's reported seconds against the alone run (one heavy job runs
   at a time across every endpoint, so the ratio should stay near 1);
3. cancel: a long job cancelled by its client; how long until the server's CPU use falls;
4. a 16x request on the largest allowed input: refused, and how much the server's memory grew.

Writes ``load.json`` and prints a summary. Timings depend on the machine: run it on a quiet one.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent


def _proc_stat(pid: int) -> tuple[float, float]:
    """(CPU seconds, resident MB) of a process."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    with open(f"/proc/{pid}/statm") as f:
        rss = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    return (int(fields[11]) + int(fields[12])) / ticks, rss / 2**20


def _start(port: int, log: Path) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "app.py", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=open(log, "w"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError(f"the app did not start; see {log}")


def _image(folder: Path, side: int, name: str) -> str:
    rng = np.random.default_rng(side)
    smooth = np.kron(rng.integers(0, 256, (side // 8 + 1, side // 8 + 1, 3)), np.ones((8, 8, 1)))[:side, :side]
    path = folder / f"{name}.png"
    Image.fromarray(smooth.astype(np.uint8)).save(path)
    return str(path)


def load_test(out: Path, port: int = 7871, heavy: str = "sr3-x4", heavy_steps: int = 10) -> dict:
    from gradio_client import Client, handle_file

    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp())
    small, large = _image(tmp, 64, "lr64"), _image(tmp, 1000, "lr1000")
    proc = _start(port, out / "server.log")
    report: dict = {"heavy_model": heavy, "heavy_steps": heavy_steps, "input": "64x64 -> 256x256"}
    try:
        url = f"http://127.0.0.1:{port}/"

        def upscale(model, steps, image=small, scale=4):
            client = Client(url, verbose=False)
            return client.predict(handle_file(image), model, scale, steps, "ddim", 0, "", api_name="/upscale")

        upscale(heavy, heavy_steps)  # warm-up: loading weights is not the job's time
        report["alone_seconds"] = upscale(heavy, heavy_steps)[1]["seconds"]

        results, errors = {}, []

        def client_job(key, model, steps):
            try:
                results[key] = upscale(model, steps)[1]["seconds"]
            except Exception as err:  # noqa: BLE001 (a load test records every failure)
                errors.append(f"{key}: {err}")

        threads = [threading.Thread(target=client_job, args=(f"light{i}", "bicubic", 1)) for i in range(8)]
        threads += [threading.Thread(target=client_job, args=(f"heavy{i}", heavy, heavy_steps)) for i in range(2)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=600)
        report["load_wall_seconds"] = time.perf_counter() - t0
        report["answered"] = len(results)
        report["errors"] = errors
        report["heavy_under_load_seconds"] = [results.get(f"heavy{i}") for i in range(2)]
        report["heavy_ratio"] = max(s / report["alone_seconds"] for s in report["heavy_under_load_seconds"] if s)

        # cancel: a long run, cancelled by its client after 3 s; CPU use sampled every 0.1 s
        client = Client(url, verbose=False)
        job = client.submit(handle_file(small), heavy, 4, 200, "ddim", 0, "", api_name="/upscale")
        time.sleep(3)
        cpu0, _ = _proc_stat(proc.pid)
        job.cancel()
        t_cancel, last, quiet_after = time.perf_counter(), (cpu0, time.perf_counter()), None
        while time.perf_counter() - t_cancel < 10:
            time.sleep(0.1)
            cpu, now = _proc_stat(proc.pid)[0], time.perf_counter()
            if (cpu - last[0]) / (now - last[1]) < 0.2:  # under a fifth of a core
                quiet_after = now - t_cancel
                break
            last = (cpu, now)
        report["cancel_cpu_quiet_after_seconds"] = quiet_after

        # 16x on the largest allowed input: refused before memory grows
        _, rss0 = _proc_stat(proc.pid)
        peak, stop = [rss0], threading.Event()

        def watch():
            while not stop.is_set():
                peak.append(_proc_stat(proc.pid)[1])
                time.sleep(0.02)

        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            upscale("bicubic", 1, large, 16)
            report["large_16x"] = "ran (not refused)"
        except Exception as err:  # noqa: BLE001 (the refusal is the expected outcome)
            report["large_16x"] = f"refused: {err}"
        stop.set()
        watcher.join()
        report["large_16x_memory_growth_mb"] = max(peak) - rss0
        report["tracebacks_in_log"] = (out / "server.log").read_text().count("Traceback")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    (out / "load.json").write_text(json.dumps(report, indent=2))
    return report


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m comparisons.load_test", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--port", type=int, default=7871)
    p.add_argument("--heavy", default="sr3-x4", help="the diffusion model of the heavy jobs")
    p.add_argument("--heavy-steps", type=int, default=10)
    args = p.parse_args(argv)
    report = load_test(Path(args.out), args.port, args.heavy, args.heavy_steps)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
