"""What the handlers share: one heavy run at a time, Stop per browser session, the loaded-model bound,
the time estimator, the scratch folder, and the ZeroGPU decorator.

Requests are checked by the handlers before they reach ``Lab.run``; only checked jobs wait here for
the run slot, so a bad request is answered at once even while a long run holds the slot.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import threading
import time
import weakref
from pathlib import Path

import numpy as np
from PIL import Image

from comparisons.animation import frames_to_keep, trajectory_gif
from comparisons.compare import RunStopped, prepare_input, run_comparison
from comparisons.posterior import check_posterior_request, explore_posterior, write_posterior_record
from comparisons.run_record import output_name, safe_name
from comparisons.serving import (
    MODE_LR,
    LoadedModels,
    TimeEstimator,
    check_output_size,
    image_size,
    lr_size,
    max_output_pixels,
)
from comparisons.step_budget import SlowRun, slow_run
from comparisons.views import INPUT_VIEW, MAP_VIEWS, posterior_views, sample_caption, views
from sr_models.base import SRInputError
from sr_models.cascade import MAX_STAGES as MAX_CASCADE_STAGES
from sr_models.cascade import CascadeSR
from sr_models.degradation import scaled_size
from sr_models.registry import get_models
from sr_models.resized import ResizedSR, at_scale
from ui.parse import MAX_MODELS, Job, scale_for_width
from ui.presets import preset_settings

try:  # Hugging Face ZeroGPU Spaces ship the `spaces` package: runs then get a GPU for their duration
    import spaces
except ImportError:
    spaces = None

GPU_SECONDS = 120  # ZeroGPU duration of one comparison
GIF_FRAMES = 8  # frames of the animated GIF; the frame slider shows every kept step
MAX_WAITING = 32  # checked runs waiting for the run slot; more are refused (a class, not a crowd)


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


def save_png(image, path: Path) -> str:
    Image.fromarray(image).save(path, compress_level=3)
    return str(path)


def every(items: list, n: int) -> list:
    """At most ``n`` items evenly spread, first and last included."""
    if len(items) <= n:
        return list(items)
    return [items[round(i * (len(items) - 1) / (n - 1))] for i in range(n)]


def cascade_scale_problem(model, scale) -> str | None:
    """Why a cascade cannot reach ``scale`` (its stages' scales multiply), naming what it reaches; a cascade
    that reaches more is resized down (``sr_models.resized``)."""
    if not isinstance(model, CascadeSR) or model.scales[0] >= scale:
        return None
    factors = [s for _, s in model.stages]
    reach, total = [], 1
    for factor in factors:
        total *= factor
        reach.append(f"{total}x")
    return (
        f"{model.name} upscales {'·'.join(f'{f}x' for f in factors)} = {model.scales[0]}x, not {scale:g}x; "
        f"its first stages reach {', '.join(reach)} (a cascade has at most {MAX_CASCADE_STAGES} stages): "
        f"choose Scale {model.scales[0]}, or change the stages"
    )


class ProgressLine:
    """The progress line of a run: which model, its step and phase (preparing, sampling, decoding and
    tiles after the last step), and a word when the run takes longer than its estimate."""

    def __init__(self, progress, estimate: float, label: str = ""):
        self.progress, self.estimate, self.start = progress, estimate, time.monotonic()
        self.name = self.label = label

    def _over(self) -> str:
        elapsed = time.monotonic() - self.start
        if self.estimate and elapsed > self.estimate:
            return f" · {elapsed:.0f} s, over the estimate of {self.estimate:.0f} s"
        return ""

    def model(self, index: int, total: int, name: str) -> None:
        self.name = f"{name} ({index + 1}/{total})"
        self.progress((index, total), desc=f"{self.name}: loading, encoding the input{self._over()}", unit="models")

    def sample(self, index: int, total: int) -> None:
        """A posterior exploration: which sample of K is running (its steps then follow)."""
        self.name = f"{self.label}: sample {index + 1} of {total}"
        self.progress((index, total), desc=f"{self.name}: loading, encoding the input{self._over()}", unit="samples")

    def step(self, info) -> None:
        done = info.step + 1
        phase = "sampling" if done < info.total else "decoding, tiles and back-projection"
        stage = f" · stage {info.stage}" if info.stage and info.stage not in self.name else ""
        self.progress((done, info.total), desc=f"{self.name}{stage}: step {done}/{info.total}, {phase}{self._over()}")


class Lab:
    """One heavy run at a time (a lock: a stopped run's last step still finishes before the next run
    starts), Stop per browser session, the loaded-model bound, estimates and scratch files."""

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
        self._ahead: dict[int, float] = {}  # id of a job running or waiting -> its estimated seconds
        self._gpu_compare = on_gpu(self._compare_on_gpu)
        self._gpu_posterior = on_gpu(self._posterior_on_gpu)

    # runs and Stop ---------------------------------------------------------------------------------
    async def run(self, session: str, fn, job: Job, progress=None):
        """``fn(stop, job, progress)`` in a worker thread once the run slot is free; a cancelled request
        (Stop button, a client's ``job.cancel()``, a closed tab) sets ``stop``, and the run ends before
        its next step. While it waits, ``progress`` says how much runs ahead of it."""
        stop = threading.Event()
        ticket = id(stop)
        with self._guard:
            if len(self._ahead) >= MAX_WAITING:
                raise SRInputError(f"the server is busy ({len(self._ahead)} runs waiting): try again in a minute")
            self._stops.setdefault(session, set()).add(stop)
            self._ahead[ticket] = self._predict_total(job)
        try:
            if not await self._wait_for_slot(stop, ticket, progress):
                return STOPPED
            return await asyncio.to_thread(self._worker, fn, stop, job, progress)
        except asyncio.CancelledError:
            stop.set()
            raise
        finally:
            with self._guard:
                self._stops.get(session, set()).discard(stop)
                self._ahead.pop(ticket, None)

    async def _wait_for_slot(self, stop: threading.Event, ticket: int, progress) -> bool:
        """Poll the run lock without holding a thread (waiting jobs must not fill the thread pool)."""
        while not self.run_lock.acquire(blocking=False):
            if stop.is_set():
                return False
            if progress is not None:
                waiting, seconds = self.queue_ahead(ticket)
                progress(None, desc=f"waiting for the server: {waiting} run(s) ahead, about {seconds:.0f} s")
            await asyncio.sleep(0.05)
        return True

    def _worker(self, fn, stop: threading.Event, job: Job, progress):
        """Runs with the run lock held (taken by ``_wait_for_slot``) and releases it when done."""
        with self._guard:
            self._running += 1
        try:
            return fn(stop, job, progress)
        except RunStopped:
            return STOPPED
        finally:
            self.run_lock.release()
            with self._guard:
                self._running -= 1
                self._idle.notify_all()

    def queue_ahead(self, ticket: int | None = None) -> tuple[int, float]:
        """(runs, estimated seconds) running or waiting before ``ticket`` (None: before a new request)."""
        with self._guard:
            tickets = list(self._ahead)  # in arrival order
            if ticket in self._ahead:
                tickets = tickets[: tickets.index(ticket)]
            seconds = [self._ahead[t] for t in tickets]
        return len(seconds), sum(seconds)

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

    # checking (before a job waits for the slot) ------------------------------------------------------
    def chosen(self, names: list[str]):
        if not names:
            raise SRInputError("choose at least one model (tick one, or build a cascade)")
        if len(names) > MAX_MODELS:
            raise SRInputError(f"at most {MAX_MODELS} models per run, got {len(names)}")
        return get_models(names, self.models)

    def routed(self, job: Job) -> tuple[list, dict[str, str]]:
        """Each chosen model routed to the job's scale (``at_scale``: itself, a continuous model at the scale,
        or its own scale / a self-cascade then a resize): (models, {name: why it cannot reach the scale})."""
        models, errors = [], {}
        for model in self.chosen(job.names):
            problem = cascade_scale_problem(model, job.scale)
            if problem:
                raise SRInputError(problem)
            try:
                models.append(at_scale(model, job.scale))
            except SRInputError as err:
                errors[model.name] = str(err)
        if not models:
            raise SRInputError(next(iter(errors.values())))
        return models, errors

    def apply_width(self, job: Job) -> None:
        """An output width asked instead of a scale: the scale that gives it, from the file header."""
        if job.width:
            job.scale = scale_for_width(job.width, job.mode, image_size(job.source))

    def check_size(self, job: Job, models=()) -> tuple[int, int] | None:
        """The output size from the file header (the limit refuses before anything runs), and the size a
        routed model makes before its resize (``ldm-x4`` at 4x on the way to 3x); None if unknown."""
        size = image_size(job.source)  # (the input limit is the loader's: it reads the same header)
        if size is None:
            return None
        out = check_output_size(*size, job.mode, job.scale)
        lr_w, lr_h = lr_size(*size, job.mode, job.scale)
        limit = max_output_pixels()
        for model in models:
            if isinstance(model, ResizedSR):
                h, w = scaled_size(lr_h, lr_w, model.inner_scale)
                if w * h > limit:
                    raise SRInputError(
                        f"{model.name} first upscales {model.inner_scale}x to {w}x{h} = {w * h / 1e6:.1f} MP, above "
                        f"this server's limit of {limit / 1e6:.1f} MP: crop the image, or untick it"
                    )
        return out

    def check(self, job: Job) -> tuple[int, int] | None:
        """Every check a job can have before it runs: the scale (or the width that sets it), the models
        (names, cascades, their routes to the scale) and the output size. Returns the output size (None
        when the header does not say)."""
        self.apply_width(job)
        models, _ = self.routed(job)
        return self.check_size(job, models)

    def check_posterior(self, job: Job) -> tuple[int, int] | None:
        """The checks of a posterior request (before it waits): one model that draws random samples, at a
        scale it runs, K outputs within the output limit. Returns the output size (None: unknown)."""
        models, errors = self.routed(job)
        if errors:
            raise SRInputError(next(iter(errors.values())))
        [model] = models
        if not model.is_diffusion:
            raise SRInputError(
                f"{model.name} is deterministic: every seed gives the same image, so its samples would not differ; "
                "choose a diffusion model, or a cascade with a diffusion stage"
            )
        model.check_scale(job.scale)
        size = self.check_size(job, models)
        if size is not None:
            check_posterior_request(job.k, *size)
        return size

    def _to_estimate(self, job: Job) -> list[tuple]:
        """(model routed to the scale, LR width, LR height, its settings) per chosen model; [] when the file
        header does not say the size."""
        size = image_size(job.source)
        if size is None:
            return []
        lr_w, lr_h = lr_size(*size, job.mode, job.scale)
        return [(m, lr_w, lr_h, preset_settings(m, job.settings, job.preset)[0]) for m in self.routed(job)[0]]

    def estimate(self, job: Job) -> list[tuple[str, float]]:
        """(model, estimated seconds) per model, from the file header and each model's defaults."""
        return [(m.name, self.estimator.predict(m, w, h, job.scale, s)) for m, w, h, s in self._to_estimate(job)]

    def slow_runs(self, job: Job) -> list[SlowRun]:
        """The diffusion models estimated over a minute, each with the most steps that fit one."""
        runs = (slow_run(self.estimator, m, w, h, job.scale, s) for m, w, h, s in self._to_estimate(job))
        return [run for run in runs if run is not None]

    def _predict_total(self, job: Job) -> float:
        try:
            return sum(seconds for _, seconds in self.estimate(job)) * max(1, job.k)
        except (SRInputError, KeyError, RuntimeError):
            return 0.0

    # the heavy part --------------------------------------------------------------------------------
    def compare_work(self, stop, job: Job, progress=None):
        if spaces is not None:  # ZeroGPU: the run happens in its GPU worker (no Stop between steps there)
            return self._gpu_compare(job)
        return self._compare(job, stop, progress)

    def _compare_on_gpu(self, job: Job):
        return self._compare(job, None, None)

    def _compare(self, job: Job, stop=None, progress=None):
        models, errors = self.routed(job)
        size = self.check_size(job, models)
        keep = frames_to_keep(size[0] * size[1] if size else 1_000_000) if job.record else 0
        estimate = self._predict_total(job)  # before the run: the run then calibrates the estimator
        reporter = ProgressLine(progress, estimate) if progress is not None else None
        presets = {id(m): preset_settings(m, job.settings, job.preset) for m in models}
        comparison = run_comparison(
            job.source,
            job.mode,
            job.scale,
            models,
            settings=job.settings,
            keep_frames=keep,
            on_model=reporter and reporter.model,
            on_step=reporter and reporter.step,
            stop=stop,
            loaded=self.loaded,
            on_result=self.estimator.observe,
            settings_for=lambda model: presets[id(model)][0],
        )
        comparison.notes += [note for _, note in presets.values() if note]
        comparison.errors.update(errors)
        comparison.estimated_seconds = estimate or None
        return comparison

    def posterior_work(self, stop, job: Job, progress=None):
        """K samples of one model: (``comparisons.posterior.Posterior``, notes)."""
        if spaces is not None:  # ZeroGPU: in its GPU worker, as a comparison
            return self._gpu_posterior(job)
        return self._posterior(job, stop, progress)

    def _posterior_on_gpu(self, job: Job):
        return self._posterior(job, None, None)

    def _posterior(self, job: Job, stop=None, progress=None):
        [model] = self.routed(job)[0]
        settings, note = preset_settings(model, job.settings, job.preset)
        lr, hr, notes = prepare_input(job.source, job.mode, job.scale)
        reporter = ProgressLine(progress, self._predict_total(job), model.name) if progress is not None else None
        self.loaded.before_run(model)
        posterior = explore_posterior(
            model,
            lr,
            job.scale,
            settings,
            job.k,
            hr,
            on_step=reporter and reporter.step,
            should_stop=stop.is_set if stop is not None else None,
            on_sample=reporter and reporter.sample,
        )
        self.estimator.observe(model, posterior.results[-1])
        return posterior, notes + ([note] if note else [])

    def posterior_files(self, posterior) -> dict:
        """The run record (``write_posterior_record``'s folder, and a zip of it) in a fresh run folder, the
        PNGs the tab shows, and every image and map at the output size for the linked zoom."""
        folder = self.scratch.run_folder()
        record = write_posterior_record(posterior, folder / "record")
        stamp = time.strftime("%Y%m%d-%H%M%S")
        name = f"sr_lab_posterior_{safe_name(posterior.model)}_x{posterior.scale}_k{posterior.k}_{stamp}"
        archive = shutil.make_archive(str(folder / name), "zip", record)
        maps = {n: np.asarray(Image.open(record / n).convert("RGB")) for n in MAP_VIEWS if (record / n).exists()}
        return {
            "folder": folder,
            "record": archive,
            "samples": [
                (str(record / output_name(r)), sample_caption(i, r.settings.seed))
                for i, r in enumerate(posterior.results)
            ],
            "mean": str(record / "mean.png"),
            "maps": {n: str(record / n) for n in maps},
            "views": posterior_views(posterior, maps),
        }

    def upscale_work(self, stop, job: Job, progress=None) -> tuple[str, dict]:
        """One model (or cascade) on an LR image: the PNG's path and the run's facts."""
        comparison = run_comparison(
            job.source,
            MODE_LR,
            job.scale,
            self.routed(job)[0][:1],
            settings=job.settings,
            stop=stop,
            loaded=self.loaded,
            on_result=self.estimator.observe,
        )
        if comparison.errors:
            raise SRInputError(next(iter(comparison.errors.values())))
        r = comparison.results[0]
        path = save_png(r.image, self.scratch.run_folder() / output_name(r))
        info = {
            **r.facts(),
            "lr_psnr": comparison.scores[0]["lr_psnr"],
            "settings": r.settings.as_dict(),
            "stages": [{**st.facts(), "seed_text": str(st.settings.seed)} for st in r.stages],
            "notes": comparison.notes,
            "seed_text": str(r.facts()["seed"]),  # exact in a browser (JavaScript numbers stop at 2^53)
            "route": comparison.routes.get(r.model, ""),  # direct, continuous, resize, cascade, cascade + resize
        }
        return path, info

    def files(self, comparison) -> dict:
        """PNGs of every view and GIFs of every trajectory, written once into a fresh run folder."""
        folder = self.scratch.run_folder()
        named = []
        for caption, image in views(comparison):
            name = {INPUT_VIEW: "input.png"}.get(caption, "reference.png")
            result = next((r for r in comparison.results if r.model == caption), None)
            if result is not None:
                name = output_name(result)
            named.append((caption, save_png(image, folder / name)))
        gifs = []
        for r in comparison.results:
            if r.frames:
                frames, noisy = every(r.frames, GIF_FRAMES), every(r.noisy_frames, GIF_FRAMES)
                gif = trajectory_gif(
                    frames, every(r.frame_labels, GIF_FRAMES), folder / f"{safe_name(r.model)}.gif", noisy=noisy
                )
                gifs.append((str(gif), f"{r.model}: x_t (left) and x̂0 (right) per step ({r.facts()['settings']})"))
        return {"folder": folder, "views": named, "gifs": gifs}
