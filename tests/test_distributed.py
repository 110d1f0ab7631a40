"""Evaluation sharded over two gloo CPU processes (torchrun, as ``accelerate launch`` runs them) writes the
same reports as one process, apart from what is measured (time, memory), and its run card says 2."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from comparisons import distributed
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parent.parent
MEASURED = {"seconds", "seconds_per_image", "peak_memory_mb", "projection_seconds"}  # differ from run to run


def run(module: list[str], processes: int, cwd=ROOT) -> subprocess.CompletedProcess:
    """``python -m ...`` as one plain process (one thread, as each of two processes gets on 2 cores) or under
    torchrun with ``processes`` gloo processes."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if processes == 1:
        command = [sys.executable, "-m", *module, "--threads", "1"]
    else:
        launcher = ["-m", "torch.distributed.run", "--nproc_per_node", str(processes)]
        command = [sys.executable, *launcher, "--master_port", str(free_port()), "-m", *module]
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def unmeasured(path: Path) -> list[list[str]]:
    """A CSV's rows without the measured columns, as text: what must not depend on the process count."""
    header, *rows = [line.split(",") for line in path.read_text().splitlines()]
    keep = [i for i, name in enumerate(header) if name not in MEASURED]
    return [[row[i] for i in keep] for row in [header, *rows]]


@pytest.mark.multiprocess
def test_benchmark_on_two_processes_writes_what_one_process_writes(image_folder, tiny_models_dir, tmp_path):
    # three images over two processes: uneven shares (2 + 1), so the gathered order is checked too
    args = ["--models", "bicubic,tiny-ldm-x4,tiny-regression-x4", "--scale", "4", "--data", str(image_folder)]
    args += ["--model-dir", str(tiny_models_dir), "--steps", "2", "--device", "cpu"]
    one = run(["comparisons.benchmark", *args, "--out", str(tmp_path / "one")], 1)
    two = run(["comparisons.benchmark", *args, "--out", str(tmp_path / "two")], 2)
    for name in ("summary.csv", "per_image.csv", "stages.csv"):
        assert unmeasured(tmp_path / "two" / name) == unmeasured(tmp_path / "one" / name), name
    assert [r[3] for r in unmeasured(tmp_path / "two" / "per_image.csv")[1:4]] == [
        "astronaut",
        "camera_gray",
        "coffee",
    ]
    cards = [json.loads((tmp_path / run / "run_card.json").read_text()) for run in ("one", "two")]
    assert [card["processes"] for card in cards] == [1, 2]
    assert two.stdout.count("| tiny-ldm-x4 |") == one.stdout.count("| tiny-ldm-x4 |") == 1  # main prints alone


@pytest.mark.multiprocess
def test_spread_study_on_two_processes_writes_what_one_process_writes(image_folder, tiny_models_dir, tmp_path):
    args = ["comparisons.studies", "spread", "--models", "tiny-ldm-x4", "--scale", "4", "--steps-list", "1"]
    args += ["--seeds", "2", "--data", str(image_folder), "--model-dir", str(tiny_models_dir), "--device", "cpu"]
    run([*args, "--out", str(tmp_path / "one")], 1)
    run([*args, "--out", str(tmp_path / "two")], 2)
    assert unmeasured(tmp_path / "two" / "spread.csv") == unmeasured(tmp_path / "one" / "spread.csv")


LEAVE_SCRIPT = """
import os
import time
from comparisons import distributed
from sr_models.registry import discover

distributed.start("cpu")
discover(model_dirs=[os.environ["MODELS"]])["tiny-ldm-x4"].load()  # imports diffusers, so torch._dynamo
distributed.map_images(str, [1, 2, 3])
distributed._leave()  # what runs at exit


def gloo_threads():
    names = []
    for task in os.listdir("/proc/self/task"):
        try:
            names.append(open(f"/proc/self/task/{task}/comm").read())
        except OSError:  # gone while listed
            pass
    return sum("gloo" in name for name in names)


for _ in range(50):  # a joined thread can stay listed a moment
    if gloo_threads() == 0:
        break
    time.sleep(0.1)
os.write(1, f"gloo threads left: {gloo_threads()}\\n".encode())  # one write: the two processes share stdout
"""


@pytest.mark.multiprocess
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="counts threads in /proc")
def test_leaving_the_group_stops_gloo_threads_after_a_model_loads(tiny_models_dir, tmp_path):
    # threads left running into interpreter shutdown aborted a process now and then (exit -6)
    script = tmp_path / "leave.py"
    script.write_text(LEAVE_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MODELS": str(tiny_models_dir), "PYTHONPATH": str(ROOT)}
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    command = [*launcher, "--master_port", str(free_port()), str(script)]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("gloo threads left: 0") == 2, done.stdout


def test_a_plain_run_is_one_process_and_maps_in_order(monkeypatch):
    for variable in distributed.WORLD_SIZE_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    assert distributed.processes() == 1 and distributed.is_main()
    assert distributed.map_images(lambda x: x * x, [3, 1, 2]) == [9, 1, 4]
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "3")  # mpirun's count, as accelerate launch --cpu uses it
    assert distributed.processes() == 3
