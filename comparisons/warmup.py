"""Start-up work in background threads, so a server answers its first page at once.

* The weights of the models a page starts with (its ticked models) load in one thread, at most as
  many as ``LoadedModels`` keeps, in the order they run. A run that arrives mid-load waits for that
  load (the model's own lock, ``sr_models.registry``); a load that fails is kept and reported by the
  model's first run, never raised here.
* On a Hugging Face Space with internet (``SPACE_ID`` set), the LPIPS / Inception weights are fetched
  (``comparisons.perceptual.fetch_missing_weights``). Offline nothing is fetched: the weight-free
  metrics (SWD) work as before.

Nothing here prints a stack trace: a failure is one line in the log.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable

from comparisons.serving import LoadedModels

SPACE_ENV = "SPACE_ID"  # set by Hugging Face Spaces (owner/name)


def on_a_space() -> bool:
    return bool(os.environ.get(SPACE_ENV))


def preload_models(models: Iterable, loaded: LoadedModels) -> list[str]:
    """Load the weights of the first models that ``loaded`` may keep; returns the names that loaded."""
    deferred = [m for m in models if callable(getattr(m, "preload", None))][: loaded.limit]
    done = []
    for model in deferred:
        loaded.before_run(model)  # counted by the bound like a run's model (nothing else unloads here)
        if model.preload():
            done.append(model.name)
        else:
            print(f"start-up: {model.name} did not load; its first run says why", flush=True)
    return done


def fetch_perceptual_weights(fetch: Callable[[], dict[str, str]] | None = None) -> dict[str, str]:
    """On a Space, fetch the missing LPIPS / FID weights (``fetch``: a stand-in for tests); elsewhere nothing."""
    if not on_a_space():
        return {}
    if fetch is None:
        from comparisons.perceptual import fetch_missing_weights as fetch  # torch-fidelity, lpips: imported here
    outcome = fetch()
    failed = [line for line in outcome.values() if not line.startswith(("ok", "fetched"))]
    for line in failed:
        print(f"start-up: perceptual weights: {line}", flush=True)
    return outcome


def _quietly(work: Callable, *args) -> Callable[[], None]:
    """``work(*args)`` with any error as one log line (a thread's default is a stack trace)."""

    def run():
        try:
            work(*args)
        except Exception as err:  # start-up work is optional: the page and every run go on without it
            print(f"start-up: {getattr(work, '__name__', 'work')} stopped ({type(err).__name__}: {err})", flush=True)

    return run


def in_background(work: Callable, *args, name: str) -> threading.Thread:
    thread = threading.Thread(target=_quietly(work, *args), name=name, daemon=True)
    thread.start()
    return thread


def start(models: Iterable, loaded: LoadedModels) -> list[threading.Thread]:
    """The start-up threads: the models' weights, and on a Space the perceptual metrics' weights."""
    threads = [in_background(preload_models, list(models), loaded, name="sr-lab-preload")]
    if on_a_space():
        threads.append(in_background(fetch_perceptual_weights, name="sr-lab-perceptual-weights"))
    return threads
