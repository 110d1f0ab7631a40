"""Gradio app: every SR model family behind one interface, side by side.

    python app.py            # http://127.0.0.1:7860 (also works as a Hugging Face Space)

The app only lays out what ``comparisons.compare.run_comparison`` computes; the benchmark and the
tests call the same function. What a shared server needs on top lives in ``Lab``: one model run at
a time, a Stop that ends a run between two denoising steps, limits checked before anything runs,
a bound on loaded models, and a scratch folder that does not grow. Every value a request carries
reaches our own checks unconverted (``*In`` components), so bad input gets one plain message and
no stack trace in the server log.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
from gradio import utils as gradio_utils
from gradio.data_classes import ImageData
from gradio.exceptions import InvalidPathError
from PIL import Image
from pydantic import ConfigDict, ValidationError, model_validator

from comparisons.animation import frame_pair, frames_to_keep, trajectory_gif
from comparisons.compare import (
    INPUT_VIEW,
    MODE_HR,
    MODE_LR,
    LoadedModels,
    RunStopped,
    TimeEstimator,
    check_output_size,
    format_seconds,
    image_size,
    max_output_pixels,
    run_comparison,
    views,
    zoom_box,
    zoom_crops,
)
from comparisons.examples import example_images
from comparisons.plots import benchmark_figure
from comparisons.run_record import output_name, safe_name, write_run_record
from sr_models.base import ModelUnavailableError, SRInputError
from sr_models.cascade import MAX_STAGES as MAX_CASCADE_STAGES
from sr_models.cascade import SEPARATOR, is_cascade_spec, parse_cascade
from sr_models.device import (
    DEVICE_ENV,
    DTYPE_ENV,
    add_device_arguments,
    dtype_name,
    pick_device,
    pick_dtype,
)
from sr_models.diffusion import SAMPLERS
from sr_models.registry import discover, get_models
from sr_models.types import SamplingSettings

try:  # Hugging Face ZeroGPU Spaces ship the `spaces` package: runs then get a GPU for their duration
    import spaces
except ImportError:
    spaces = None

GIF_FRAMES = 8  # frames of the animated GIF; the frame slider shows every kept step
MAX_VIEWS = 12  # image panels of the grid, laid out in advance (Gradio needs a fixed number)
MAX_MODELS = MAX_VIEWS - 2  # per run: the grid also shows the reference and the input
MAX_STAGES = 3  # stages of the cascade builder (``compare`` names their boxes)
MAX_STEPS = 200
MAX_PROJECTION = 10
GPU_SECONDS = 120  # ZeroGPU duration of one comparison
HEAVY = "heavy"  # the concurrency group of every model run
STUDIES = Path(__file__).resolve().parent / "assets" / "studies"
SCALES = [2, 3, 4, 8, 16]
MODES = {
    "High-resolution image: degrade it, then compare against it": MODE_HR,
    "My low-resolution image: just upscale it": MODE_LR,
}
# The /compare endpoint's outputs, in order (the State is not part of the API).
COMPARE_OUTPUTS = (
    "status",
    *(f"view{i}" for i in range(MAX_VIEWS)),
    "left",
    "right",
    "slider",
    "table",
    "plot",
    "trajectory_model",
    "frame",
    "frame_image",
    "gifs",
)


# --- components whose value reaches our checks as sent -------------------------------------------
class LabBlocks(gr.Blocks):
    """gr.Blocks that answers two malformed requests Gradio itself refuses with a plain message instead
    of a stack trace in the server log: too few values, and a file path that was not uploaded."""

    def validate_inputs(self, block_fn, inputs):
        try:
            super().validate_inputs(block_fn, inputs)
        except ValueError:
            raise gr.Error(
                f"this endpoint takes {len(block_fn.inputs)} values, got {len(inputs)}", print_exception=False
            ) from None

    async def preprocess_data(self, *args, **kwargs):
        try:
            return await super().preprocess_data(*args, **kwargs)
        except InvalidPathError:
            raise gr.Error(
                "the image must be a file uploaded with the request (gradio_client: handle_file(path))",
                print_exception=False,
            ) from None


class AnyImageData(ImageData):
    """Gradio's ImageData (same JSON schema, so clients still see a file parameter) that never fails
    validation: a value that is not a file (a bare path string, a number) arrives without a path and
    gets a plain message from ``UploadImage`` instead of a pydantic stack trace in the log."""

    model_config = ConfigDict(title="ImageData")

    @model_validator(mode="wrap")
    @classmethod
    def _lenient(cls, value, handler):
        try:
            return handler(value)
        except ValidationError:
            return handler({"path": None})


class UploadImage(gr.Image):
    """gr.Image whose upload is checked by our loader, not Gradio's: a broken or non-image file
    reaches ``load_image``, which explains the problem instead of failing inside Gradio. Only files
    in Gradio's upload folder are read (uploads and the examples), never another path on the server."""

    is_template = True  # rendered by the frontend of gr.Image
    data_model = AnyImageData

    def preprocess(self, payload):
        if payload is None:
            return None
        path = getattr(payload, "path", None)
        if not path:
            raise gr.Error("send an image file (from gradio_client: handle_file(path))", print_exception=False)
        if not gradio_utils.is_in_or_equal(os.path.abspath(path), gradio_utils.get_upload_folder()):
            raise gr.Error(
                "the image must be a file uploaded with the request (gradio_client: handle_file(path))",
                print_exception=False,
            )
        try:
            return super().preprocess(payload)
        except Exception:  # Pillow could not open it: hand the raw file to our loader
            return path


class NumberIn(gr.Number):
    """A gr.Number in the browser; its value reaches the handler as sent (checked there, plain message)."""

    is_template = True

    def preprocess(self, payload):
        return payload


class SliderIn(gr.Slider):
    is_template = True

    def preprocess(self, payload):
        return payload


class DropdownIn(gr.Dropdown):
    is_template = True

    def preprocess(self, payload):
        return payload


class CheckboxGroupIn(gr.CheckboxGroup):
    is_template = True

    def preprocess(self, payload):
        return payload


class RadioIn(gr.Radio):
    is_template = True

    def preprocess(self, payload):
        return payload


class CheckboxIn(gr.Checkbox):
    is_template = True

    def preprocess(self, payload):
        return payload


class TextboxIn(gr.Textbox):
    is_template = True

    def preprocess(self, payload):
        return payload


# --- checking what a request carries ---------------------------------------------------------------
def _user_error(err: Exception) -> gr.Error:
    return gr.Error(str(err.args[0] if err.args else err), print_exception=False)


def _whole(value, what: str, low: int, high: int | None = None) -> int:
    """A number from the browser (or a raw HTTP call) as a whole number in [low, high], or a plain message."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise SRInputError(f"{what} must be a whole number, got {value!r}")
    number = value
    if isinstance(value, str):
        text = value.strip()
        try:
            number = int(text)
        except ValueError:
            try:
                number = float(text)
            except ValueError:
                raise SRInputError(f"{what} must be a number, got {value!r}") from None
    if isinstance(number, float):
        if not math.isfinite(number) or not number.is_integer():
            raise SRInputError(f"{what} must be a whole number, got {value!r}")
        number = int(number)
    if number < low:
        raise SRInputError(f"{what} must be at least {low}, got {number}")
    if high is not None and number > high:
        raise SRInputError(f"{what} must be at most {high}, got {number}")
    return number


def _fraction(value, what: str) -> float:
    """A finite number from 0 to 1."""
    try:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ValueError
        number = float(value)
    except ValueError:
        raise SRInputError(f"{what} must be a number from 0 to 1, got {value!r}") from None
    if not math.isfinite(number) or not 0 <= number <= 1:
        raise SRInputError(f"{what} must be a number from 0 to 1, got {value!r}")
    return number


def _text(value, what: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise SRInputError(f"{what} must be text, got {value!r}")
    return value.strip()


def _flag(value, what: str) -> bool:
    if isinstance(value, bool) or value in (0, 1):
        return bool(value)
    raise SRInputError(f"{what} must be true or false, got {value!r}")


def _optional(value) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def parse_mode(value) -> str:
    if value in MODES:
        return MODES[value]
    if value in MODES.values():
        return value
    raise SRInputError(f"unknown mode {value!r}; choose one of: {', '.join(map(repr, MODES))}")


def parse_scale(value) -> int:
    if _optional(value):
        raise SRInputError("choose a scale")
    scale = _whole(value, "scale", 1)
    if scale not in SCALES:
        raise SRInputError(f"scale must be one of {', '.join(map(str, SCALES))}, got {scale}")
    return scale


def parse_names(value) -> list[str]:
    """The ticked models, in order, without repeats; at least one is checked later (with the cascade)."""
    if value is None:
        return []
    if not isinstance(value, (list, tuple)):
        raise SRInputError(f"models must be a list of model names, got {value!r}")
    names = [_text(v, "a model name") for v in value]
    if any(not n for n in names):
        raise SRInputError("a model name is empty")
    return list(dict.fromkeys(names))


def parse_steps(value, what: str = "steps") -> int | None:
    """0 or empty: the model's default (None)."""
    return None if _optional(value) else (_whole(value, what, 0, MAX_STEPS) or None)


def settings_from_ui(steps, sampler, eta, seed, projection, stages=None) -> SamplingSettings:
    """Every sampling value as sent, checked; empty means the default."""
    sampler = _text(sampler, "sampler")
    if sampler and sampler not in SAMPLERS:
        raise SRInputError(f"unknown sampler {sampler!r}; choose from {', '.join(SAMPLERS)} (or empty for the default)")
    projection = -1 if _optional(projection) else _whole(projection, "back-projection iterations", -1, MAX_PROJECTION)
    return SamplingSettings(
        steps=parse_steps(steps),
        sampler=sampler or None,
        eta=0.0 if _optional(eta) else _fraction(eta, "DDIM eta"),
        seed=0 if _optional(seed) else _whole(seed, "seed", 0),
        stages=stages,  # < 2^63: SamplingSettings
        lr_projection=None if projection < 0 else projection,
    )


def cascade_from_builder(stages, stage_steps) -> tuple[str | None, tuple[SamplingSettings, ...] | None]:
    """(spec, per-stage settings) from the builder's dropdowns and step boxes; (None, None) if unused."""
    picked = [(_text(name, "a cascade stage"), steps) for name, steps in zip(stages, stage_steps)]
    picked = [(name, steps) for name, steps in picked if name]
    if not picked:
        return None, None
    if len(picked) == 1:
        raise SRInputError("a cascade needs at least two stages: pick a second one, or clear the first")
    settings = tuple(SamplingSettings(steps=parse_steps(steps, "stage steps")) for _, steps in picked)
    return SEPARATOR.join(name for name, _ in picked), settings


def parse_stage_steps(value, spec: str) -> tuple[SamplingSettings, ...] | None:
    """ "10,5": steps per cascade stage (0 = that stage's default); empty: the defaults."""
    text = _text(value, "stage steps")
    if not text:
        return None
    if not is_cascade_spec(spec):
        raise SRInputError("stage steps are for a cascade (a>b); for one model use steps")
    parts = text.split(",")
    if len(parts) > MAX_CASCADE_STAGES:
        raise SRInputError(f"at most {MAX_CASCADE_STAGES} stage steps, got {len(parts)}")
    return tuple(SamplingSettings(steps=parse_steps(p, "stage steps")) for p in parts)


def model_choices(models) -> list[tuple[str, str]]:
    choices = []
    for name, model in models.items():
        available = model.availability()
        scales = "/".join(f"{s}x" for s in model.scales)
        reason = available.reason.split(":")[0].split(";")[0]  # the gist; the estimate box gives the rest
        label = f"{name} ({model.family}, {scales})" + ("" if available.ok else f" - unavailable: {reason}")
        choices.append((label, name))
    return choices


def stage_choices(models) -> list[str]:
    """What a cascade stage can be: single-scale models, and multi-scale ones at each scale."""
    out = []
    for name, model in models.items():
        out += [name] if len(model.scales) == 1 else [f"{name}@{s}" for s in model.scales]
    return out


def studies_tab(folder: Path = STUDIES):
    """The shipped study results as interactive plots: a class sees them without running anything."""
    from comparisons.cascade_study import figure, heatmaps, load_rows

    cascade = folder / "cascade" / "cascade.csv"
    if not cascade.exists():
        gr.Markdown(f"No shipped study results in {folder} (run `python -m comparisons.studies cascade ...`).")
        return
    rows = load_rows(cascade)
    gr.Markdown(
        "### Cascades vs one large-scale model\nPSNR-Y against total network evaluations and seconds, with and "
        "without back-projection onto the LR (`bp` / `raw`), pooled over Set5, Set14 and BSD100; dashed: the "
        "Pareto front. Hover a point for its configuration. How it was run: `assets/studies/cascade/run_card.md`."
    )
    gr.Plot(figure(rows), label="quality vs cost")
    gr.Plot(heatmaps(rows), label="the split of steps between the stages")
    from comparisons.records import read_csv
    from comparisons.speed import figure as speed_figure
    from comparisons.spread_study import spread_figure
    from comparisons.studies import steps_figure

    for csv_path, text, make_figure, label in (
        (
            "steps/steps.csv",
            "### Quality against sampling steps\nPSNR-Y (raw, no back-projection) and seconds per image "
            "of each diffusion model against its number of DDIM steps, on the held-out validation split of the training "
            "pool (where the defaults were picked), leading and trailing timestep spacing.",
            steps_figure,
            "quality vs steps",
        ),
        (
            "spread/spread.csv",
            "### Why more steps can cost PSNR\nOne sample (solid) against the pixel mean of several "
            "seeds (dashed) and the sampler's estimated expectation (dotted) at each step count: where the mean of "
            "many-step samples scores like the 1-step output, the steps' cost is the spread of the samples (detail "
            "drawn from the posterior), not a drifting denoiser.",
            spread_figure,
            "one sample vs the mean of seeds",
        ),
        (
            "speed/speed.csv",
            "### Latent vs pixel, and where the time goes\nSeconds per image at one output size and "
            "step count: our LDM-4x pipeline in float32 and bfloat16, stock diffusers on the same weights, the bare UNet "
            "calls, and SR3-4x (pixel space) at the same steps.",
            speed_figure,
            "seconds per image",
        ),
    ):
        path = folder / csv_path
        if path.exists():
            gr.Markdown(f"{text} How it was run: `assets/studies/{path.parent.name}/README.md`.")
            gr.Plot(make_figure(read_csv(path)), label=label)


# --- serving: one run at a time, Stop, limits, scratch files --------------------------------------
@dataclass
class Job:
    """A checked request: only names and plain values, so it can cross into a ZeroGPU worker."""

    source: object  # a file path (or an image) as uploaded
    mode: str
    scale: int
    names: list[str]
    settings: SamplingSettings
    record: bool = True
    source_name: str = ""


class Stopped:
    """What a run that was stopped returns instead of a comparison."""


STOPPED = Stopped()


class Scratch:
    """Files the app hands to Gradio (PNGs, GIFs, zips), one folder per run under one root. Gradio
    copies what it serves into its own cache (cleaned by ``delete_cache``), so only the newest
    ``keep`` run folders stay, and the root is removed when the app closes or the process exits."""

    def __init__(self, keep: int = 8):
        self.root = Path(tempfile.mkdtemp(prefix="sr_lab_"))
        self.keep = keep
        self._lock = threading.Lock()
        self._cleanup = weakref.finalize(self, shutil.rmtree, str(self.root), True)  # at exit too

    def run_folder(self) -> Path:
        with self._lock:
            folder = Path(tempfile.mkdtemp(prefix=f"{time.time_ns():020d}_", dir=self.root))
            for old in sorted(p for p in self.root.iterdir() if p.is_dir())[: -self.keep]:
                shutil.rmtree(old, ignore_errors=True)
        return folder

    def close(self):
        self._cleanup()


def on_gpu(fn, duration: int = GPU_SECONDS):
    """``spaces.GPU`` around the heavy function on a ZeroGPU Space; unchanged everywhere else."""
    if spaces is None:
        return fn
    return spaces.GPU(duration=duration)(fn)


def _save_png(image, path: Path) -> str:
    Image.fromarray(image).save(path, compress_level=3)
    return str(path)


class Lab:
    """What the handlers share: the models, one heavy run at a time (a lock: a stopped run's last step
    still finishes before the next run starts), Stop per browser session, the loaded-model bound, the
    time estimator and the scratch folder."""

    def __init__(self, models: dict):
        self.models = models
        self.run_lock = threading.Lock()
        self.loaded = LoadedModels()
        self.estimator = TimeEstimator()
        self.scratch = Scratch()
        self._stops: dict[str, set[threading.Event]] = {}
        self._guard = threading.Lock()
        self._running = 0
        self._idle = threading.Condition(self._guard)
        self._gpu_compare = on_gpu(self._compare_on_gpu)

    # runs and Stop ---------------------------------------------------------------------------------
    async def run(self, session: str, fn, *args):
        """``fn(stop, *args)`` in a worker thread; a cancelled request (Stop button, a client's
        ``job.cancel()``, a closed tab) sets ``stop``, and the run ends before its next step."""
        stop = threading.Event()
        with self._guard:
            self._stops.setdefault(session, set()).add(stop)
        try:
            return await asyncio.to_thread(self._worker, fn, stop, *args)
        except asyncio.CancelledError:
            stop.set()
            raise
        finally:
            with self._guard:
                self._stops.get(session, set()).discard(stop)

    def _worker(self, fn, stop: threading.Event, *args):
        with self._guard:
            self._running += 1
        try:
            while not self.run_lock.acquire(timeout=0.05):  # waiting for the previous run's last step
                if stop.is_set():
                    return STOPPED
            try:
                return fn(stop, *args)
            except RunStopped:
                return STOPPED
            finally:
                self.run_lock.release()
        finally:
            with self._guard:
                self._running -= 1
                self._idle.notify_all()

    def stop(self, session: str) -> int:
        """Stop every run of this session; returns how many were running or waiting."""
        with self._guard:
            events = list(self._stops.get(session, ()))
        for event in events:
            event.set()
        return len(events)

    def wait_idle(self, timeout: float) -> bool:
        """True once no run is in a worker thread (within ``timeout`` seconds)."""
        with self._guard:
            return self._idle.wait_for(lambda: self._running == 0, timeout)

    # checking ---------------------------------------------------------------------------------------
    def chosen(self, names: list[str]):
        if not names:
            raise SRInputError("choose at least one model (tick one, or build a cascade)")
        if len(names) > MAX_MODELS:
            raise SRInputError(f"at most {MAX_MODELS} models per run, got {len(names)}")
        return get_models(names, self.models)

    def check_size(self, job: Job) -> tuple[int, int] | None:
        """The output size from the file header (the limit refuses before anything runs); None if unknown."""
        size = image_size(job.source)  # (the input limit is the loader's: it reads the same header)
        return None if size is None else check_output_size(*size, job.mode, job.scale)

    def estimate(self, job: Job) -> list[tuple[str, float]]:
        """(model, estimated seconds) per model, from the file header and each model's defaults."""
        size = image_size(job.source)
        if size is None:
            return []
        lr_w, lr_h = (size[0] // job.scale, size[1] // job.scale) if job.mode == MODE_HR else size
        out = []
        for model in self.chosen(job.names):
            if job.scale not in model.scales:
                continue
            out.append((model.name, self.estimator.predict(model, lr_w, lr_h, job.scale, job.settings)))
        return out

    # the heavy part --------------------------------------------------------------------------------
    def compare_work(self, stop, job: Job, progress=None):
        if spaces is not None:  # ZeroGPU: the run happens in its GPU worker (no Stop between steps there)
            return self._gpu_compare(job)
        return self._compare(job, stop, progress)

    def _compare_on_gpu(self, job: Job):
        return self._compare(job, None, None)

    def _compare(self, job: Job, stop=None, progress=None):
        models = self.chosen(job.names)
        size = self.check_size(job)
        keep = frames_to_keep(size[0] * size[1] if size else 1_000_000) if job.record else 0
        on_model = on_step = None
        if progress is not None:
            on_model = lambda i, n, name: progress((i, n), desc=f"{name} ({i + 1}/{n})")  # noqa: E731
            on_step = lambda info: progress((info.step + 1, info.total), desc=f"{info.stage}: step")  # noqa: E731
        return run_comparison(
            job.source,
            job.mode,
            job.scale,
            models,
            settings=job.settings,
            keep_frames=keep,
            on_model=on_model,
            on_step=on_step,
            stop=stop,
            loaded=self.loaded,
            on_result=self.estimator.observe,
        )

    def files(self, comparison) -> dict:
        """PNGs of every view and GIFs of every trajectory, written once into a fresh run folder."""
        folder = self.scratch.run_folder()
        named = []
        for caption, image in views(comparison):
            name = {INPUT_VIEW: "input.png"}.get(caption, "reference.png")
            result = next((r for r in comparison.results if r.model == caption), None)
            if result is not None:
                name = output_name(result)
            named.append((caption, _save_png(image, folder / name)))
        gifs = []
        for r in comparison.results:
            if r.frames:
                frames, noisy, labels = (
                    _every(r.frames, GIF_FRAMES),
                    _every(r.noisy_frames, GIF_FRAMES),
                    _every(r.frame_labels, GIF_FRAMES),
                )
                gif = trajectory_gif(frames, labels, folder / f"{safe_name(r.model)}.gif", noisy=noisy)
                gifs.append((str(gif), f"{r.model}: x_t (left) and x̂0 (right) per step ({r.facts()['settings']})"))
        return {"folder": folder, "views": named, "gifs": gifs}


def _every(items: list, n: int) -> list:
    """At most ``n`` items evenly spread, first and last included."""
    if len(items) <= n:
        return list(items)
    return [items[round(i * (len(items) - 1) / (n - 1))] for i in range(n)]


def _session(request) -> str:
    return getattr(request, "session_hash", None) or ""


def _trajectory_view(comparison, model: str | None, index: int | None):
    """(frame image or None, slider update, caption) for a model's kept frame ``index`` (None: the last)."""
    result = (
        next((r for r in comparison.results if r.model == model and r.stages and r.frames), None)
        if comparison
        else None
    )
    if result is None:
        return None, gr.Slider(minimum=0, maximum=1, value=0, interactive=False), "No trajectory kept for this model."
    n = sum(len(s.trajectory) for s in result.stages)
    index = n - 1 if index is None else max(0, min(int(index), n - 1))
    image, label = frame_pair(result, index)
    return (
        image,
        gr.Slider(minimum=0, maximum=max(1, n - 1), value=index, step=1, interactive=n > 1),
        (f"{result.model} · frame {index + 1}/{n}: {label} · x_t left, x̂0 right"),
    )


def device_note(models: dict) -> str:
    """Where this server runs the models: one device for every visitor (set with --device / --dtype
    or SR_DEVICE / SR_DTYPE), since switching per request would reload weights under a class."""
    model = next(iter(models.values()), None)
    return f"Models run on **{model.device}** in **{dtype_name(model.dtype)}**." if model else ""


def build_app(models: dict | None = None, example_dir: str | Path | None = None) -> gr.Blocks:
    models = models if models is not None else discover()
    lab = Lab(models)
    example_dir = Path(example_dir or Path(tempfile.gettempdir()) / "sr_lab_examples")
    examples = [str(p) for p in example_images(example_dir)]

    def models_for(scale) -> list[str]:
        """Every available model that runs at this scale: the natural comparison to start from."""
        return [n for n, m in models.items() if int(scale) in m.scales and m.availability().ok][:MAX_MODELS]

    def job_from_ui(image, mode_label, scale, names, steps, sampler, eta, seed, record, projection, builder) -> Job:
        """Every value checked (numbers, then models, then the image's size from its header)."""
        spec, stage_settings = cascade_from_builder(builder[:MAX_STAGES], builder[MAX_STAGES:])
        names = parse_names(names) + ([spec] if spec else [])
        settings = settings_from_ui(steps, sampler, eta, seed, projection, stage_settings)
        mode, scale, record = parse_mode(mode_label), parse_scale(scale), _flag(record, "record")
        if image is None:
            raise SRInputError("Upload an image or pick an example first.")
        job = Job(
            source=image,
            mode=mode,
            scale=scale,
            names=list(dict.fromkeys(names)),
            settings=settings,
            record=record,
            source_name=Path(str(image)).name,
        )
        lab.chosen(job.names)  # unknown names, bad cascade specs, too many: before queueing a run
        lab.check_size(job)
        return job

    async def compare(
        image,
        mode_label,
        scale,
        names,
        steps,
        sampler,
        eta,
        seed,
        record,
        projection,
        stage1,
        stage2,
        stage3,
        stage1_steps,
        stage2_steps,
        stage3_steps,
        progress=gr.Progress(),
        request: gr.Request = None,
    ):
        # the builder's boxes are named (not *args): Gradio passes ``request`` only to named signatures
        builder = (stage1, stage2, stage3, stage1_steps, stage2_steps, stage3_steps)
        try:
            job = job_from_ui(image, mode_label, scale, names, steps, sampler, eta, seed, record, projection, builder)
            comparison = await lab.run(_session(request), lab.compare_work, job, progress)
            if comparison is STOPPED:
                raise gr.Error(
                    "Stopped: the run was cancelled before it finished; nothing was kept.", print_exception=False
                )
            files = await asyncio.to_thread(lab.files, comparison)
        except (SRInputError, ModelUnavailableError, KeyError) as err:
            raise _user_error(err) from None
        for note in comparison.notes:
            gr.Info(note)
        lr = comparison.lr
        status = [
            f"**Input** {lr.shape[1]}x{lr.shape[0]} → **output** {lr.shape[1] * comparison.scale}x"
            f"{lr.shape[0] * comparison.scale} ({comparison.scale}x). Click any image to zoom into that spot "
            "in all of them."
        ]
        status += [f"- note: {n}" for n in comparison.notes]
        status += [f"- **{name} did not run**: {msg}" for name, msg in comparison.errors.items()]
        named = files["views"]
        height = 190 if len(named) <= 8 else 130  # two rows of four, or three smaller ones: one 720p screen
        grid = [gr.Image(value=path, label=caption, visible=True, height=height) for caption, path in named]
        grid += [gr.Image(value=None, visible=False) for _ in range(MAX_VIEWS - len(named))]
        captions = [c for c, _ in named]
        right_name = comparison.results[0].model if comparison.results else captions[-1]
        paths = dict(named)
        left = gr.Dropdown(choices=captions, value=INPUT_VIEW)
        right = gr.Dropdown(choices=captions, value=right_name)
        slider = gr.ImageSlider(value=(paths[INPUT_VIEW], paths[right_name]), label=f"{INPUT_VIEW} ◀ ▶ {right_name}")
        table = comparison.table()
        headers = list(dict.fromkeys(h for row in table for h in row)) or ["model"]
        frame = gr.Dataframe(value=[[row.get(h, "") for h in headers] for row in table], headers=headers)
        plot = None
        if comparison.hr is not None and table:
            plot = benchmark_figure(
                [
                    {**r.facts(), "dataset": "this image", "seconds_per_image": r.seconds, **s}
                    for r, s in zip(comparison.results, comparison.scores)
                ],
                title="quality vs time on this image",
            )
        with_frames = [r.model for r in comparison.results if r.frames]
        first = with_frames[0] if with_frames else None
        frame_image, frame_slider, frame_caption = _trajectory_view(comparison, first, None)
        trajectory_model = gr.Dropdown(choices=with_frames, value=first)
        state = {
            "comparison": comparison,
            "names": job.names,
            "mode": job.mode,
            "settings": job.settings,
            "source_name": job.source_name,
            "views": named,
            "folder": str(files["folder"]),
        }
        return [
            "\n".join(status),
            *grid,
            left,
            right,
            slider,
            frame,
            plot,
            trajectory_model,
            frame_slider,
            gr.Image(value=frame_image, label=frame_caption),
            files["gifs"],
            state,
        ]

    def upscale_work(stop, job: Job, stages):
        model = lab.chosen(job.names)[0]
        comparison = run_comparison(
            job.source,
            MODE_LR,
            job.scale,
            [model],
            settings=job.settings,
            stop=stop,
            loaded=lab.loaded,
            on_result=lab.estimator.observe,
        )
        if comparison.errors:
            raise SRInputError(next(iter(comparison.errors.values())))
        r = comparison.results[0]
        path = _save_png(r.image, lab.scratch.run_folder() / output_name(r))
        info = {
            **r.facts(),
            "lr_psnr": comparison.scores[0]["lr_psnr"],
            "settings": r.settings.as_dict(),
            "stages": [st.facts() for st in r.stages],
            "notes": comparison.notes,
        }
        return path, info

    async def upscale_api(image, model, scale, steps, sampler, seed, stage_steps="", request: gr.Request = None):
        """Plain API: one model or cascade ("a>b"), the image is the LR input; returns the PNG path and
        the run's facts with one record per stage. ``stage_steps``: "10,5" for a cascade's stages."""
        try:
            spec = _text(model, "model")
            if not spec:
                raise SRInputError("choose a model (a name, or a cascade a>b)")
            stages = parse_stage_steps(stage_steps, spec)
            settings, scale = settings_from_ui(steps, sampler, 0, seed, None, stages), parse_scale(scale)
            if image is None:
                raise SRInputError("send an image")
            job = Job(source=image, mode=MODE_LR, scale=scale, names=[spec], settings=settings)
            lab.chosen(job.names)
            lab.check_size(job)
            out = await lab.run(_session(request), upscale_work, job, stages)
        except (SRInputError, ModelUnavailableError, KeyError) as err:
            raise _user_error(err) from None
        if out is STOPPED:
            raise gr.Error("Stopped: the run was cancelled before it finished.", print_exception=False)
        return out

    def stop_runs(request: gr.Request = None):
        n = lab.stop(_session(request))
        return "**Stopped.**" if n else "Nothing was running."

    def closed_tab(request: gr.Request = None):
        """A closed or reloaded tab: Gradio does not cancel its running job, so stop it here."""
        lab.stop(_session(request))

    def estimate(image, mode_label, scale, names, steps, sampler, *builder):
        """The output size against the limit and the expected run time, before running."""
        if image is None:
            return f"Upload an image or pick an example. Outputs up to {max_output_pixels() / 1e6:.1f} MP."
        try:
            job = job_from_ui(image, mode_label, scale, names, steps, sampler, 0, 0, True, -1, builder)
            size = lab.check_size(job)
            per_model = lab.estimate(job)
        except (SRInputError, ModelUnavailableError, KeyError) as err:
            return f"⚠ {err.args[0] if err.args else err}"
        if size is None:
            return "⚠ the file is not an image the server can read."
        total = sum(s for _, s in per_model)
        parts = ", ".join(f"{n} {format_seconds(s).removeprefix('about ')}" for n, s in per_model)
        return (
            f"**Output** {size[0]}x{size[1]} ({size[0] * size[1] / 1e6:.2f} of {max_output_pixels() / 1e6:.1f} MP "
            f"allowed) · **estimated time** {format_seconds(total)} ({parts}); weights load once, on first use."
        )

    def show_pair(state, left_name, right_name):
        if not state:
            return gr.ImageSlider(value=None)
        paths = dict(state["views"])
        if not all(isinstance(n, str) and n in paths for n in (left_name, right_name)):
            return gr.ImageSlider()
        return gr.ImageSlider(value=(paths[left_name], paths[right_name]), label=f"{left_name} ◀ ▶ {right_name}")

    def zoom(state, x, y, size, magnify):
        if not state:
            return [], x, y
        comparison = state["comparison"]
        try:
            out_h, out_w = comparison.lr.shape[0] * comparison.scale, comparison.lr.shape[1] * comparison.scale
            x = out_w // 2 if _optional(x) else _whole(x, "x", 0, out_w - 1)
            y = out_h // 2 if _optional(y) else _whole(y, "y", 0, out_h - 1)
            size, magnify = _whole(size, "region size", 1, 4096), _whole(magnify, "magnification", 1, 16)
        except SRInputError as err:
            raise _user_error(err) from None
        left, top, side = zoom_box(comparison, x, y, size)
        crops = [
            (image, f"{caption} [{left}:{left + side}, {top}:{top + side}]")
            for image, caption in zoom_crops(comparison, x, y, size, magnify)
        ]
        return crops, x, y

    def zoom_at(state, size, magnify, evt: gr.SelectData):
        x, y = evt.index if isinstance(evt.index, (list, tuple)) and len(evt.index) == 2 else (None, None)
        return zoom(state, x, y, size, magnify)

    def zoom_centre(state, size, magnify):
        return zoom(state, None, None, size, magnify)

    def show_frame(state, model, index):
        try:
            index = None if _optional(index) else _whole(index, "frame", 0)
        except SRInputError as err:
            raise _user_error(err) from None
        image, slider, caption = _trajectory_view(state and state["comparison"], model, index)
        return gr.Image(value=image, label=caption), slider

    def run_record(state):
        if not state:
            return gr.DownloadButton(visible=False)
        comparison = state["comparison"]
        chosen = {m.name: m for m in lab.chosen(state["names"])}
        stamp = time.strftime("%Y%m%d-%H%M%S")
        path = Path(state["folder"]) / f"sr_lab_run_x{comparison.scale}_{stamp}.zip"
        write_run_record(
            comparison, chosen, path, mode=state["mode"], settings=state["settings"], source_name=state["source_name"]
        )
        return gr.DownloadButton(value=str(path), visible=True, label=f"Download the run record ({path.name})")

    def describe_cascade(*builder):
        try:
            spec, _ = cascade_from_builder(builder[:MAX_STAGES], builder[MAX_STAGES:])
            if spec is None:
                return "Pick two or more stages; the cascade runs next to the ticked models."
            cascade = parse_cascade(spec, models)
        except (SRInputError, KeyError) as err:
            return f"⚠ {err.args[0] if err.args else err}"
        return f"**{cascade.name}** = {cascade.scales[0]}x: set the Scale to {cascade.scales[0]} to run it."

    # delete_cache: outputs and uploads older than an hour are removed every 10 minutes
    with LabBlocks(title="Diffusion SR lab", delete_cache=(600, 3600)) as demo:
        gr.Markdown(
            "## Diffusion SR lab\nCompare super-resolution models on one image: bicubic, regression CNNs and "
            "diffusion models. *High-resolution* mode degrades the image (MATLAB bicubic) and scores every output "
            "against it (PSNR/SSIM on Y, border = scale). " + device_note(models)
        )
        state = gr.State(None, time_to_live=3600)
        with gr.Tab("Compare"):
            with gr.Row():
                with gr.Column(scale=1, min_width=320):
                    image = UploadImage(
                        label="Image", type="filepath", image_mode=None, sources=["upload", "clipboard"], height=220
                    )
                    gr.Examples(examples=examples, inputs=image, label="Examples (scikit-image samples, a test chart)")
                    mode = RadioIn(list(MODES), value=list(MODES)[0], label="What is this image?")
                    scale = DropdownIn(SCALES, value=4, label="Scale")
                    with gr.Row():
                        run = gr.Button("Upscale", variant="primary", elem_id="run")
                        stop = gr.Button("Stop", variant="stop", elem_id="stop")
                    estimate_box = gr.Markdown(elem_id="estimate")
                    names = CheckboxGroupIn(
                        model_choices(models),
                        value=models_for(4),
                        label="Models (all that run at the chosen scale are ticked)",
                    )
                    with gr.Accordion("Diffusion sampling", open=False):
                        steps = SliderIn(0, MAX_STEPS, value=0, step=1, label="Steps (0 = model default)")
                        sampler = DropdownIn(["", *SAMPLERS], value="", label="Sampler (empty = model default)")
                        eta = SliderIn(0, 1, value=0, step=0.05, label="DDIM eta")
                        seed = NumberIn(0, precision=0, minimum=0, label="Seed")
                        record = CheckboxIn(True, label="Record the denoising trajectory (every step up to 25)")
                    with gr.Accordion("Cascade: chain models (stage 2 upscales stage 1's output)", open=False):
                        stage_models, stage_steps = [], []
                        for i in range(MAX_STAGES):
                            with gr.Row():
                                stage_models.append(
                                    DropdownIn(
                                        ["", *stage_choices(models)],
                                        value="",
                                        label=f"stage {i + 1}" + (" (optional)" if i > 1 else ""),
                                    )
                                )
                                stage_steps.append(NumberIn(0, precision=0, minimum=0, label="steps (0 = default)"))
                        cascade_info = gr.Markdown(
                            "Pick two or more stages; the cascade runs next to the ticked models."
                        )
                    projection = SliderIn(
                        -1,
                        MAX_PROJECTION,
                        value=-1,
                        step=1,
                        label="LR back-projection iterations (-1 = each model's default, 0 = off)",
                    )
                with gr.Column(scale=3):
                    status = gr.Markdown(elem_id="status")
                    grid = []
                    for row in range(MAX_VIEWS // 4):
                        with gr.Row(equal_height=True):
                            grid += [
                                gr.Image(
                                    visible=False,
                                    type="filepath",
                                    format="png",
                                    interactive=False,
                                    height=190,
                                    min_width=150,
                                    buttons=["fullscreen"],
                                    elem_classes=["view"],
                                    elem_id=f"view{4 * row + i}",
                                )
                                for i in range(4)
                            ]
                    with gr.Tab("Slider"):
                        with gr.Row():
                            left = DropdownIn([], label="left side", allow_custom_value=True)
                            right = DropdownIn([], label="right side", allow_custom_value=True)
                        slider = gr.ImageSlider(
                            type="filepath", format="png", label="compare two images", max_height=420, elem_id="pair"
                        )
                    with gr.Tab("Zoom"):
                        with gr.Row():
                            zx = NumberIn(None, precision=0, label="centre x (output px)", minimum=0)
                            zy = NumberIn(None, precision=0, label="centre y (output px)", minimum=0)
                            zsize = SliderIn(8, 256, value=64, step=8, label="region (output px)")
                            zmag = SliderIn(1, 8, value=4, step=1, label="magnify (nearest)")
                            zgo = gr.Button("Zoom", size="sm")
                        crops = gr.Gallery(
                            label="The same region of every image",
                            columns=4,
                            format="png",
                            object_fit="contain",
                            height=420,
                            elem_id="crops",
                        )
                    with gr.Tab("Metrics"):
                        table = gr.Dataframe(
                            value=[],
                            headers=[
                                "model",
                                "PSNR-Y (dB)",
                                "SSIM-Y",
                                "LR-PSNR (dB)",
                                "steps",
                                "sampler",
                                "eta",
                                "seed",
                                "back-proj.",
                                "NFE",
                                "seconds",
                            ],
                            label="Metrics",
                            interactive=False,
                            wrap=True,
                        )
                        plot = gr.Plot(label="Quality vs time")
                    with gr.Tab("Trajectories"):
                        with gr.Row():
                            trajectory_model = DropdownIn([], label="model", allow_custom_value=True)
                            frame = SliderIn(
                                0, 1, value=0, step=1, label="frame (step)", interactive=False, elem_id="frame"
                            )
                        with gr.Row():
                            frame_image = gr.Image(
                                type="numpy",
                                format="png",
                                interactive=False,
                                height=320,
                                label="x_t (left) and x̂0 (right)",
                            )
                            gifs = gr.Gallery(
                                label="Animated: x_t and x̂0 per step", columns=1, height=320, object_fit="contain"
                            )
                    with gr.Tab("Run record"):
                        gr.Markdown(
                            "A zip of the whole run: every output as PNG, the metrics CSV and a run card "
                            "(git commit, weight hashes, device, seeds and settings)."
                        )
                        download = gr.DownloadButton("Download the run record", visible=False, elem_id="download")
        with gr.Tab("Studies (shipped results)"):
            studies_tab()
        with gr.Row(visible=False):  # the plain API endpoint, for gradio_client and scripts
            api_in = [
                UploadImage(type="filepath", image_mode=None),
                TextboxIn(),
                NumberIn(),
                NumberIn(),
                TextboxIn(),
                NumberIn(),
                TextboxIn(value=""),
            ]
            api_out = [gr.Image(type="filepath", format="png"), gr.JSON()]
            api_button = gr.Button()
        # One heavy job at a time across every endpoint (the app and the API share one queue slot):
        # concurrent runs would only slow each other down and make the reported seconds wrong.
        api_event = api_button.click(
            upscale_api, api_in, api_out, api_name="upscale", concurrency_id=HEAVY, concurrency_limit=1
        )

        scale.change(
            lambda s: gr.CheckboxGroup(value=models_for(s) if s in SCALES else []), scale, names, api_name=False
        )
        for control in (*stage_models, *stage_steps):
            control.change(describe_cascade, [*stage_models, *stage_steps], cascade_info, api_name=False)
        estimate_inputs = [image, mode, scale, names, steps, sampler, *stage_models, *stage_steps]
        for control in estimate_inputs:
            control.change(
                estimate,
                estimate_inputs,
                estimate_box,
                api_name=False,
                trigger_mode="always_last",
                show_progress="hidden",
            )
        demo.load(estimate, estimate_inputs, estimate_box, api_name=False, show_progress="hidden")
        outputs = [status, *grid, left, right, slider, table, plot, trajectory_model, frame, frame_image, gifs, state]
        run_event = run.click(
            compare,
            [image, mode, scale, names, steps, sampler, eta, seed, record, projection, *stage_models, *stage_steps],
            outputs,
            api_name="compare",
            concurrency_id=HEAVY,
            concurrency_limit=1,
        )
        run_event.success(zoom_centre, [state, zsize, zmag], [crops, zx, zy], api_name=False).success(
            run_record, state, download, api_name="run_record"
        )
        stop.click(stop_runs, None, status, api_name="stop", cancels=[run_event, api_event], concurrency_limit=None)
        demo.unload(closed_tab)
        for view in grid:
            view.select(zoom_at, [state, zsize, zmag], [crops, zx, zy], api_name=False)
        zoom_inputs = [state, zx, zy, zsize, zmag]
        zgo.click(zoom, zoom_inputs, [crops, zx, zy], api_name=False)
        for box in (zx, zy):
            box.submit(zoom, zoom_inputs, [crops, zx, zy], api_name=False)
        for control in (zsize, zmag):
            control.release(zoom, zoom_inputs, [crops, zx, zy], api_name=False)
        for side in (left, right):
            side.change(show_pair, [state, left, right], slider, api_name=False)
        trajectory_model.input(
            lambda s, m: show_frame(s, m, None), [state, trajectory_model], [frame_image, frame], api_name=False
        )
        frame.release(show_frame, [state, trajectory_model, frame], [frame_image, frame], api_name=False)
    demo.lab = lab  # for tests and scripts: the run lock, Stop, loaded models, scratch folder
    return demo


def main():
    parser = argparse.ArgumentParser(description="Diffusion SR lab: compare SR models in the browser.")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)))
    parser.add_argument("--share", action="store_true", help="create a public gradio.live link")
    add_device_arguments(parser)
    args = parser.parse_args()
    for env, value in ((DEVICE_ENV, args.device), (DTYPE_ENV, args.dtype)):
        if value:
            os.environ[env] = value  # what discover() reads: the models and any later reload use it
    try:
        pick_device(None), pick_dtype(None)
    except SRInputError as err:
        parser.error(str(err))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # a stopped server still removes its scratch folder
    demo = build_app()
    demo.queue(default_concurrency_limit=1, max_size=32)  # one CPU job at a time, a waiting line for a class
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, theme=gr.themes.Soft())


if __name__ == "__main__":
    main()
