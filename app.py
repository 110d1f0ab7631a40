"""Gradio app: every SR model family behind one interface, side by side.

    python app.py            # http://127.0.0.1:7860 (also works as a Hugging Face Space)
    python app.py --hub      # also tick the Hub pipelines in the local cache (or SR_HUB=1)

The page lays out what ``comparisons.compare.run_comparison`` computes; the benchmark and the tests
call the same function. The parts live in ``ui/``: input components that pass values through
unconverted (``ui.inputs``), request parsing (``ui.parse``), one run at a time with Stop and scratch
files (``ui.lab``), the handlers (``ui.handlers``) and the page (``ui.layout``). This file only
starts the server: the page is served at once, while the ticked models' weights load in a background
thread (``comparisons.warmup``; a run arriving mid-load waits for that load).
"""

from __future__ import annotations

import argparse
import atexit
import gc
import os
import shutil
import signal
import sys
import tempfile

from sr_models.device import DEVICE_ENV, DTYPE_ENV, add_device_arguments, pick_device, pick_dtype
from sr_models.hub import HUB_MODELS
from sr_models.registry import TICK_HUB_ENV
from sr_models.types import SRInputError

GRADIO_CACHE_ENV = "GRADIO_TEMP_DIR"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Diffusion SR lab: compare SR models in the browser.")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)))
    parser.add_argument("--share", action="store_true", help="create a public gradio.live link")
    parser.add_argument(
        "--hub",
        action="store_true",
        help=f"tick the Hub pipelines ({', '.join(e.name for e in HUB_MODELS)}) in the model list when they are "
        f"in the local Hub cache (python -m sr_models.prefetch); same as {TICK_HUB_ENV}=1. Without it they are "
        "listed, not ticked (minutes per run on a CPU)",
    )
    add_device_arguments(parser)
    args = parser.parse_args(argv)
    if args.hub:
        os.environ[TICK_HUB_ENV] = "1"  # what the page's ticks read (ui.handlers.Handlers.models_for)
    for env, value in ((DEVICE_ENV, args.device), (DTYPE_ENV, args.dtype)):
        if value:
            os.environ[env] = value  # what discover() reads: the models and any later reload use it
    try:
        pick_device(None), pick_dtype(None)
    except SRInputError as err:
        parser.error(str(err))
    return args


def private_gradio_cache() -> str:
    """Gradio's cache (uploads and served files, tens of MB) in a folder of this process, removed at
    exit; a folder set in GRADIO_TEMP_DIR is the user's and stays."""
    if os.environ.get(GRADIO_CACHE_ENV):
        return os.environ[GRADIO_CACHE_ENV]
    folder = tempfile.mkdtemp(prefix="sr_lab_gradio_")
    os.environ[GRADIO_CACHE_ENV] = folder  # before gradio is imported: some of it reads this once
    atexit.register(shutil.rmtree, folder, True)
    return folder


def main(argv=None):
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # a stopped server still removes its folders
    private_gradio_cache()
    import gradio as gr

    from ui.layout import CSS, build_app

    demo = build_app()
    demo.handlers.start_background_work()  # weights load while the page is already served
    # torch's, gradio's and the models' objects out of the collection each run's memory meter starts with
    # (sr_models.device.PeakMemory): about 0.3 s per model run, 8 per posterior exploration, otherwise
    gc.freeze()
    demo.queue(default_concurrency_limit=1, max_size=32)  # one CPU job at a time, a waiting line for a class
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, theme=gr.themes.Soft(), css=CSS)


if __name__ == "__main__":
    main()
