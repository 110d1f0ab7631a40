"""Every event of the page as a method of one object, so each can be called (and tested) without a
server: parse the request into a ``Job``, check it, run it in the ``Lab``'s slot, lay out the result.

Each input check runs here, before a job waits for the single run slot: a bad request is answered at
once, even while a long run holds the slot.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import gradio as gr

from comparisons import warmup
from comparisons.animation import frame_pair
from comparisons.plots import benchmark_figure
from comparisons.run_record import write_run_record
from comparisons.serving import format_seconds, max_output_pixels
from comparisons.step_budget import SlowRun
from comparisons.views import INPUT_VIEW, zoom_box, zoom_crops
from sr_models.base import ModelUnavailableError, SRInputError
from sr_models.cascade import parse_cascade
from sr_models.degradation import scaled_size
from sr_models.registry import HubModel, ticks_hub_models
from sr_models.resized import at_scale, route_kind
from ui.lab import STOPPED, Lab
from ui.parse import (
    CUSTOM,
    DEFAULT_SCALE,
    MAX_MODELS,
    MAX_STAGES,
    MAX_VIEWS,
    cascade_from_builder,
    compare_job,
    is_empty,
    parse_names,
    parse_preset,
    parse_scale,
    upscale_job,
    whole_in,
)
from ui.presets import model_presets, presets_text

USER_ERRORS = (SRInputError, ModelUnavailableError, KeyError)
STOPPED_MESSAGE = "Stopped: the run was cancelled before it finished"


@dataclass
class CompareOutputs:
    """The outputs of /compare in the API's order: the layout fills one with components, ``compare``
    one with values, and ``flat()`` lines both up (``views`` stands for the grid's MAX_VIEWS images)."""

    status: Any
    views: list
    left: Any
    right: Any
    slider: Any
    table: Any
    plot: Any
    trajectory_model: Any
    frame: Any
    frame_image: Any
    gifs: Any
    state: Any  # a gr.State: not part of the API

    def flat(self) -> list:
        out = []
        for f in fields(self):
            value = getattr(self, f.name)
            out += list(value) if f.name == "views" else [value]
        return out

    @staticmethod
    def api_names() -> tuple[str, ...]:
        """The API's output names, in order (the State is not one)."""
        names = []
        for f in fields(CompareOutputs):
            names += [f"view{i}" for i in range(MAX_VIEWS)] if f.name == "views" else [f.name]
        return tuple(n for n in names if n != "state")


def user_error(err: Exception) -> gr.Error:
    return gr.Error(str(err.args[0] if err.args else err), print_exception=False)


def session_of(request) -> str:
    return getattr(request, "session_hash", None) or ""


def trajectory_view(comparison, model: str | None, index: int | None):
    """(frame image or None, slider update, caption) for a model's kept frame ``index`` (None: the last)."""
    result = None
    if comparison:
        result = next((r for r in comparison.results if r.model == model and r.stages and r.frames), None)
    if result is None:
        return None, gr.Slider(minimum=0, maximum=1, value=0, interactive=False), "No trajectory kept for this model."
    n = sum(len(s.trajectory) for s in result.stages)
    index = n - 1 if index is None else max(0, min(int(index), n - 1))
    image, label = frame_pair(result, index)
    return (
        image,
        gr.Slider(minimum=0, maximum=max(1, n - 1), value=index, step=1, interactive=n > 1),
        f"{result.model} · frame {index + 1}/{n}: {label} · x_t left, x̂0 right",
    )


def metrics_table(comparison) -> gr.Dataframe:
    """The comparison's rows (``Comparison.table``: every key ``facts()`` gives) as one table."""
    table = comparison.table()
    headers = list(dict.fromkeys(h for row in table for h in row)) or ["model"]
    return gr.Dataframe(value=[[row.get(h, "") for h in headers] for row in table], headers=headers)


def has_quality_plot(comparison) -> bool:
    return comparison.hr is not None and bool(comparison.results)


def quality_plot(comparison):
    """Quality against time when there is a reference to score against, else None (its box is hidden)."""
    if not has_quality_plot(comparison):
        return None
    rows = [
        {**r.facts(), "dataset": "this image", "seconds_per_image": r.seconds, **s}
        for r, s in zip(comparison.results, comparison.scores)
    ]
    return benchmark_figure(rows, title="quality vs time on this image")


def status_text(comparison) -> str:
    lr, scale = comparison.lr, comparison.scale
    out_h, out_w = scaled_size(lr.shape[0], lr.shape[1], scale)
    lines = [
        f"**Input** {lr.shape[1]}x{lr.shape[0]} → **output** {out_w}x{out_h} "
        f"({scale:g}x). Click any image to zoom into that spot in all of them."
    ]
    routed = [name for name, kind in comparison.routes.items() if kind != "direct"]
    if routed:
        lines.append(f"- routes to {scale:g}x (the table's route column): " + "; ".join(routed))
    lines += [f"- note: {n}" for n in comparison.notes]
    lines += [f"- **{name} did not run**: {msg}" for name, msg in comparison.errors.items()]
    lines.append(time_line(comparison))
    return "\n".join(lines)


def time_line(comparison) -> str:
    """How long the run took against the estimate shown before it (an honest estimate is checked)."""
    line = f"- time: {comparison.seconds:.1f} s for the run"
    if comparison.estimated_seconds:
        line += f" (estimated before it: {comparison.estimated_seconds:.1f} s)"
    return line


def slow_run_text(run: SlowRun) -> str:
    """The warning before a run of minutes: its estimate, and the steps that fit a minute."""
    head = f"⚠ **{run.name}** at {run.steps} steps takes {format_seconds(run.seconds)} here"
    if run.steps_that_fit is None:
        return f"{head}, over a minute even at 1 step: crop the image or choose a smaller scale."
    return (
        f"{head}: set **Steps to {run.steps_that_fit}** (Diffusion sampling) for a run of about a minute, or untick it."
    )


def runs_itself(model, scale) -> bool:
    """Whether ``model`` reaches ``scale`` with no resize or self-cascade (bicubic and continuous models at any
    scale, a fixed model at its own)."""
    try:
        return route_kind(at_scale(model, scale)) in ("direct", "continuous")
    except SRInputError:
        return False


class Handlers:
    """The page's events. ``lab`` holds what they share (models, the run slot, scratch files)."""

    def __init__(self, lab: Lab):
        self.lab = lab
        self.models = lab.models

    def models_for(self, scale) -> list[str]:
        """Every available model that runs at this scale itself (its own scale, or any scale): the natural
        comparison to start from; the others can be ticked and run by a resize. Hub models (minutes on a CPU)
        only with ``--hub`` (SR_HUB=1), and only those in the local cache, kept within MAX_MODELS ahead of others."""
        fits = [n for n, m in self.models.items() if runs_itself(m, scale) and m.availability().ok]
        hub = [n for n in fits if isinstance(self.models[n], HubModel)]
        ticked_hub = [n for n in hub if self.models[n].cached()][:MAX_MODELS] if ticks_hub_models() else []
        local = [n for n in fits if n not in hub]
        return local[: MAX_MODELS - len(ticked_hub)] + ticked_hub

    def start_background_work(self, scale=DEFAULT_SCALE) -> list:
        """The start-up threads (``comparisons.warmup``): the weights of the models the page starts with
        ticked, within the loaded-model bound, and on a Space the perceptual metrics' weights."""
        return warmup.start([self.models[n] for n in self.models_for(scale)], self.lab.loaded)

    def tick_for_scale(self, scale):
        try:
            return gr.CheckboxGroup(value=self.models_for(parse_scale(scale)))
        except SRInputError:
            return gr.CheckboxGroup()

    def fill_preset(self, preset, names, steps, eta):
        """The preset radio: fidelity / detail fill steps and eta from the first ticked diffusion model that
        has the preset (each model still runs its own); custom leaves them. Returns (steps, eta, text)."""
        try:
            models = [self.models[n] for n in parse_names(names) if n in self.models]
            preset = parse_preset(preset)
        except SRInputError as err:
            return steps, eta, f"⚠ {err.args[0]}"
        text = presets_text(models, preset)
        own = [model_presets(m)[preset] for m in models if preset in model_presets(m)] if preset != CUSTOM else []
        if own:
            return own[0]["steps"], own[0]["eta"], text
        # nothing to fill: no update (an answer arriving after the user typed must not put back the old values)
        return gr.skip(), gr.skip(), text

    # checking and estimating ------------------------------------------------------------------------
    def describe_cascade(self, scale, *builder) -> str:
        """What the builder's stages make, and whether the chosen Scale runs it."""
        try:
            spec, _ = cascade_from_builder(builder[:MAX_STAGES], builder[MAX_STAGES:])
            if spec is None:
                return "Pick two or more stages; the cascade runs next to the ticked models."
            cascade = parse_cascade(spec, self.models)
        except USER_ERRORS as err:
            return f"⚠ {err.args[0] if err.args else err}"
        total = cascade.scales[0]
        if scale == total:
            return f"**{cascade.name}** = {total}x: runs at the chosen Scale, next to the ticked models."
        if isinstance(scale, (int, float)) and 1 <= scale < total:
            return f"**{cascade.name}** = {total}x: runs, then resizes to {scale:g}x (or set the Scale to {total})."
        return f"**{cascade.name}** = {total}x: set the Scale to {total} to run it."

    def estimate(self, image, mode, scale, names, steps, sampler, *rest) -> str:
        """The output size against the limit and the expected run time, before running. ``rest``: the
        cascade builder's boxes, then the output width (if the page sends it)."""
        builder, width = rest[: 2 * MAX_STAGES], (rest[2 * MAX_STAGES :] or [None])[0]
        if image is None:
            return f"Upload an image or pick an example. Outputs up to {max_output_pixels() / 1e6:.1f} MP."
        try:
            job = compare_job(image, mode, scale, names, steps, sampler, None, None, True, None, builder, width=width)
            size = self.lab.check(job)
            per_model = self.lab.estimate(job)
        except USER_ERRORS as err:
            return f"⚠ {err.args[0] if err.args else err}"
        if size is None:
            return "⚠ the file is not an image the server can read."
        total = sum(s for _, s in per_model)
        parts = ", ".join(f"{n} {format_seconds(s).removeprefix('about ')}" for n, s in per_model)
        waiting, ahead = self.lab.queue_ahead()
        queue = f" · **{waiting} run(s) ahead** of yours, {format_seconds(ahead)} more" if waiting else ""
        scale_note = f" = **{job.scale:.4g}x** for width {job.width} px" if job.width else ""
        slow = "".join(f"\n\n{slow_run_text(run)}" for run in self.lab.slow_runs(job))
        return (
            f"**Output** {size[0]}x{size[1]}{scale_note} ({size[0] * size[1] / 1e6:.2f} of "
            f"{max_output_pixels() / 1e6:.1f} MP "
            f"allowed) · **estimated time** {format_seconds(total)} ({parts}){queue}; weights load once, on first use."
            f"{slow}"
        )

    # running ----------------------------------------------------------------------------------------
    async def compare(
        self,
        image,
        mode,
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
        preset=CUSTOM,
        width=None,
        progress=gr.Progress(),
        request: gr.Request = None,
    ) -> list:
        # the builder's boxes are named (not *args): Gradio passes ``request`` only to named signatures
        builder = (stage1, stage2, stage3, stage1_steps, stage2_steps, stage3_steps)
        try:
            job = compare_job(
                image, mode, scale, names, steps, sampler, eta, seed, record, projection, builder, preset, width
            )
            self.lab.check(job)
            comparison = await self.lab.run(session_of(request), self.lab.compare_work, job, progress)
            if comparison is STOPPED:
                raise gr.Error(f"{STOPPED_MESSAGE}; nothing was kept.", print_exception=False)
            files = await asyncio.to_thread(self.lab.files, comparison)
        except USER_ERRORS as err:
            raise user_error(err) from None
        for note in comparison.notes:
            gr.Info(note)
        return self.compare_outputs(job, comparison, files).flat()

    def compare_outputs(self, job, comparison, files: dict) -> CompareOutputs:
        """What the page shows of a finished comparison (``files``: ``Lab.files``)."""
        named = files["views"]
        height = 190 if len(named) <= 8 else 130  # two rows of four, or three smaller ones: one 720p screen
        grid = [gr.Image(value=path, label=caption, visible=True, height=height) for caption, path in named]
        grid += [gr.Image(value=None, visible=False) for _ in range(MAX_VIEWS - len(named))]
        captions, paths = [c for c, _ in named], dict(named)
        right = comparison.results[0].model if comparison.results else captions[-1]
        with_frames = [r.model for r in comparison.results if r.frames]
        first = with_frames[0] if with_frames else None
        frame_image, frame_slider, frame_caption = trajectory_view(comparison, first, None)
        state = {
            "comparison": comparison,
            "names": job.names,
            "mode": job.mode,
            "settings": job.settings,
            "source_name": job.source_name,
            "views": named,
            "folder": str(files["folder"]),
        }
        return CompareOutputs(
            status=status_text(comparison),
            views=grid,
            left=gr.Dropdown(choices=captions, value=INPUT_VIEW),
            right=gr.Dropdown(choices=captions, value=right),
            slider=gr.ImageSlider(value=(paths[INPUT_VIEW], paths[right]), label=f"{INPUT_VIEW} ◀ ▶ {right}"),
            table=metrics_table(comparison),
            plot=quality_plot(comparison),
            trajectory_model=gr.Dropdown(choices=with_frames, value=first),
            frame=frame_slider,
            frame_image=gr.Image(value=frame_image, label=frame_caption),
            gifs=files["gifs"],
            state=state,
        )

    async def upscale(self, image, model, scale, steps, sampler, seed, stage_steps="", request: gr.Request = None):
        """Plain API: one model or cascade ("a>b"), the image is the LR input; returns the PNG path and
        the run's facts with one record per stage. ``stage_steps``: "10,5" for a cascade's stages."""
        try:
            job = upscale_job(image, model, scale, steps, sampler, seed, stage_steps)
            self.lab.check(job)
            out = await self.lab.run(session_of(request), self.lab.upscale_work, job)
        except USER_ERRORS as err:
            raise user_error(err) from None
        if out is STOPPED:
            raise gr.Error(f"{STOPPED_MESSAGE}.", print_exception=False)
        return out

    def stop(self, request: gr.Request = None) -> str:
        return "**Stopped.**" if self.lab.stop(session_of(request)) else "Nothing was running."

    def closed_tab(self, request: gr.Request = None):
        """A closed or reloaded tab: Gradio does not cancel its running job, so stop it here."""
        self.lab.stop(session_of(request))

    # looking at a result ------------------------------------------------------------------------------
    def show_pair(self, state, left, right):
        if not state:
            return gr.ImageSlider(value=None)
        paths = dict(state["views"])
        if not all(isinstance(n, str) and n in paths for n in (left, right)):
            return gr.ImageSlider()
        return gr.ImageSlider(value=(paths[left], paths[right]), label=f"{left} ◀ ▶ {right}")

    def zoom(self, state, x, y, size, magnify):
        if not state:
            return [], x, y
        comparison = state["comparison"]
        try:
            out_h, out_w = scaled_size(comparison.lr.shape[0], comparison.lr.shape[1], comparison.scale)
            x = out_w // 2 if is_empty(x) else whole_in(x, "x", 0, out_w - 1)
            y = out_h // 2 if is_empty(y) else whole_in(y, "y", 0, out_h - 1)
            size, magnify = whole_in(size, "region size", 1, 4096), whole_in(magnify, "magnification", 1, 16)
        except SRInputError as err:
            raise user_error(err) from None
        left, top, side = zoom_box(comparison, x, y, size)
        crops = [
            (image, f"{caption} [{left}:{left + side}, {top}:{top + side}]")
            for image, caption in zoom_crops(comparison, x, y, size, magnify)
        ]
        return crops, x, y

    def zoom_at(self, state, size, magnify, evt: gr.SelectData):
        x, y = evt.index if isinstance(evt.index, (list, tuple)) and len(evt.index) == 2 else (None, None)
        return self.zoom(state, x, y, size, magnify)

    def zoom_centre(self, state, size, magnify):
        return self.zoom(state, None, None, size, magnify)

    def show_frame(self, state, model, index):
        try:
            index = None if is_empty(index) else whole_in(index, "frame", 0)
        except SRInputError as err:
            raise user_error(err) from None
        image, slider, caption = trajectory_view(state and state["comparison"], model, index)
        return gr.Image(value=image, label=caption), slider

    def show_plot(self, state):
        """The "Quality vs time" box: shown only when the run drew something in it."""
        return gr.Column(visible=bool(state) and has_quality_plot(state["comparison"]))

    def show_last_frame(self, state, model):
        return self.show_frame(state, model, None)

    def run_record(self, state):
        if not state:
            return gr.DownloadButton(visible=False)
        comparison = state["comparison"]
        chosen = {m.name: m for m in self.lab.chosen(state["names"])}
        path = Path(state["folder"]) / f"sr_lab_run_x{comparison.scale}_{time.strftime('%Y%m%d-%H%M%S')}.zip"
        write_run_record(
            comparison, chosen, path, mode=state["mode"], settings=state["settings"], source_name=state["source_name"]
        )
        return gr.DownloadButton(value=str(path), visible=True, label=f"Download the run record ({path.name})")
