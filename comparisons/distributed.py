"""Evaluation over several processes (GPUs, or CPU processes on gloo), on accelerate's process group.

    accelerate launch --multi_gpu --num_processes 4 -m comparisons.benchmark --models ... --out OUT
    torchrun --nproc_per_node 2 -m comparisons.studies steps ...   # two CPU processes (gloo) on a CPU machine

The benchmark and the studies hand their per-image loop to :func:`map_images`: each process runs its
contiguous share of the images, the results are gathered back in the single-process order, so every
process holds the full rows and computes the same summaries; only the main one (:func:`is_main`) writes
files and prints. Seeds come from the settings and the image, never from the shard, so the outputs equal
a single-process run's. A plain ``python -m ...`` run (no launcher's process count in the environment) never
starts a process group: :func:`map_images` is then a plain loop.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Callable, Sequence
from typing import TypeVar

import torch

Item = TypeVar("Item")
Result = TypeVar("Result")


# Where launchers put the process count: torchrun / ``accelerate launch --multi_gpu``, then mpirun (Intel MPI,
# Open MPI, MVAPICH), as accelerate reads them for ``accelerate launch --cpu --mpirun_hostfile``.
WORLD_SIZE_VARIABLES = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


def processes() -> int:
    """How many processes this run has, as its launcher says; 1 for a plain run."""
    return next((int(os.environ[v]) for v in WORLD_SIZE_VARIABLES if os.environ.get(v)), 1)


_STATE = []  # accelerate's PartialState once this process has joined the group


def _state(cpu: bool = False):
    """The process group, joined on first use (``cpu``: gloo even where GPUs are present)."""
    if not _STATE:
        # torch._dynamo (diffusers imports it) keeps a reference to the world group when it is imported after
        # the group exists: destroy_process_group could then not free the group, and gloo's threads, still
        # running into interpreter shutdown, aborted a process after its work (exit -6) now and then
        import torch._dynamo  # noqa: F401
        from accelerate import PartialState  # only under a launcher: a plain run never imports or starts it

        state = PartialState(cpu=cpu)  # nccl on GPUs (each process on its own), gloo on the CPU
        if state.num_processes != processes():
            raise RuntimeError(f"WORLD_SIZE is {processes()}, but the process group has {state.num_processes}")
        _STATE.append(state)
        atexit.register(_leave)
    return _STATE[0]


def _leave() -> None:
    """Leave the process group before the interpreter shuts down: a gloo worker thread that releases its last
    collective's tensors during shutdown cannot take the GIL and aborts the process ("terminate called without
    an active exception", exit -6) after its work is done. Freeing the group joins those threads."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def is_main() -> bool:
    """Whether this process writes the files and prints the summary (always, in a plain run)."""
    return processes() == 1 or _state().is_main_process


def start(device: str | None = None, threads: int | None = None) -> None:
    """What a command does first: join the process group (when launched with several) and give each process
    its share of the CPU threads when the models run on the CPU, unless ``threads`` says how many."""
    from sr_models.device import pick_device

    on_cpu = pick_device(device).type == "cpu"
    if processes() > 1:
        _state(cpu=on_cpu)
    if threads:
        torch.set_num_threads(threads)
    elif on_cpu and processes() > 1:  # N processes each with every core would fight over them
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // processes()))


def map_images(work: Callable[[Item], Result], items: Sequence[Item]) -> list[Result]:
    """``[work(item) for item in items]``, each process computing its contiguous share; every process gets
    the whole list back, in ``items``' order (results must pickle: images, rows, ``Evaluation``)."""
    items = list(items)
    if processes() == 1:
        return [work(item) for item in items]
    from accelerate.utils import gather_object

    with _state().split_between_processes(items) as share:
        mine = [work(item) for item in share]
    gathered = gather_object(mine)  # rank order; the shares are contiguous, so this is the items' order
    if len(gathered) != len(items):
        raise RuntimeError(f"gathered {len(gathered)} results for {len(items)} items")
    return gathered


def progress_step() -> int:
    """How much one of this process's images advances a bar of the whole run's images (shown on the main
    process only): each process does about 1/N of them."""
    return processes()


def add_threads_argument(parser) -> None:
    """``--threads``, the same on the benchmark and every study."""
    parser.add_argument(
        "--threads",
        type=int,
        help="torch CPU threads per process (default: torch's choice; under N launched CPU processes, cores / N)",
    )
