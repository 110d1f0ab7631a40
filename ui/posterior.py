"""The posterior explorer tab's events (issue 14): K samples of one diffusion model or cascade, their mean,
the std map (uncertainty), the |error| map against the reference, the LR-consistency map, the numbers and
the sparsification plot, a linked zoom over every image and map, and the run record.

Each request is checked here (K, the model, the scale, K x output pixels against the limit) before it waits
for the Lab's run slot, like the comparison; the work itself is ``Lab.posterior_work``.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, fields
from typing import Any

import gradio as gr

from comparisons.posterior import sparsification_figure
from comparisons.serving import format_seconds, max_output_pixels
from comparisons.views import pixel_grid, zoom_views
from sr_models.types import SRInputError
from ui.handlers import STOPPED_MESSAGE, USER_ERRORS, session_of, user_error
from ui.lab import STOPPED, Lab
from ui.parse import CUSTOM, is_empty, posterior_job, whole_in
from ui.presets import describe, model_presets

SAMPLES_PER_ROW = 8


@dataclass
class PosteriorOutputs:
    """The outputs of /posterior in the API's order (``state`` is a gr.State, not part of the API)."""

    status: Any  # the numbers, as Markdown
    samples: Any  # a gallery: (PNG, caption) per sample
    mean: Any
    std_map: Any
    error_map: Any  # hidden without a reference
    lr_map: Any
    plot: Any  # the sparsification curves
    summary: Any  # JSON: the numbers (comparisons.posterior.SUMMARY_COLUMNS) and each sample's seed as text
    record: Any  # the zip of the run record
    state: Any

    def flat(self) -> list:
        return [getattr(self, f.name) for f in fields(self)]

    @staticmethod
    def api_names() -> tuple[str, ...]:
        return tuple(f.name for f in fields(PosteriorOutputs) if f.name != "state")


def _number(value, digits: int = 3) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def numbers_text(posterior, notes: list[str]) -> str:
    """The exploration's numbers in a few lines (what the run record's summary.csv holds)."""
    s = posterior.summary
    h, w = posterior.mean.shape[:2]
    lines = [
        f"**{s['model']}** {s['scale']}x → {w}x{h}, **{s['k']} samples** (seeds {s['seeds']}, "
        f"{posterior.results[0].facts()['settings']}) · {s['nfe']} NFE in {s['wall_seconds']:.1f} s. "
        "Click any map or image to zoom into that spot in all of them.",
        f"- **mean spread** {_number(s['mean_spread'])} grey levels (max {_number(s['max_spread'], 1)}) · "
        f"**diversity** {_number(s['diversity'])} · LR-PSNR of the mean {_number(s['lr_psnr_mean_image'], 2)} dB",
    ]
    if s["has_reference"]:
        lines += [
            f"- **Spearman(std, |error|)** {_number(s['spearman'])} · **AUSE** {_number(s['ause'], 4)} "
            f"(random order {_number(s['ause_random'], 4)}, lower is better)",
            f"- **PSNR-Y of the mean** {_number(s['psnr_y_mean_image'], 2)} dB · of the samples "
            f"{_number(s['psnr_y_samples'], 2)} dB ({_number(s['psnr_y_samples_min'], 2)} to "
            f"{_number(s['psnr_y_samples_max'], 2)})",
        ]
    else:
        lines.append("- no reference (low-resolution mode): no |error| map, Spearman, AUSE or PSNR")
    lines += [f"- note: {n}" for n in [s["note"], *notes] if n]
    return "\n".join(lines)


def summary_json(posterior) -> dict:
    """The numbers, plus each sample's seed and file (seeds also as text: exact in a browser)."""
    samples = [
        {"seed": seed, "seed_text": str(seed), "file": row["file"], "psnr_y": row.get("psnr_y")}
        for seed, row in zip(posterior.seeds, posterior.rows)
    ]
    return {**posterior.summary, "samples": samples}


class PosteriorHandlers:
    """The tab's events; ``lab`` is shared with the comparison (one run slot, Stop, scratch files)."""

    def __init__(self, lab: Lab):
        self.lab = lab
        self.models = lab.models

    def diffusion_models(self) -> list[str]:
        return [n for n, m in self.models.items() if m.is_diffusion]

    def estimate(self, image, mode, model, scale, k, steps, sampler) -> str:
        """K x the output size against the limit and the expected time, before running."""
        if image is None:
            return f"Upload an image or pick an example. K outputs together up to {max_output_pixels() / 1e6:.1f} MP."
        try:
            job = posterior_job(image, mode, model, scale, k, steps, sampler, None, None, None)
            size = self.lab.check_posterior(job)
            seconds = sum(s for _, s in self.lab.estimate(job)) * job.k
        except USER_ERRORS as err:
            return f"⚠ {err.args[0] if err.args else err}"
        if size is None:
            return "⚠ the file is not an image the server can read."
        total = job.k * size[0] * size[1]
        return (
            f"**{job.k} samples** of {size[0]}x{size[1]} ({total / 1e6:.2f} of {max_output_pixels() / 1e6:.1f} MP "
            f"allowed) · **estimated time** {format_seconds(seconds)}; sample i uses seed + i."
        )

    def fill_preset(self, model, preset, steps, eta):
        """The preset radio: fidelity / detail fill steps and eta from the model's card; custom leaves them."""
        # where nothing is filled, no update: a late answer must not put back values typed over since
        chosen = self.models.get(model) if isinstance(model, str) else None
        if preset == CUSTOM or chosen is None:
            return gr.skip(), gr.skip(), "Preset **custom**: the steps and eta as typed."
        presets = model_presets(chosen)
        if not presets:
            return gr.skip(), gr.skip(), f"{model} has no presets."
        if preset not in presets:
            fidelity = describe(presets["fidelity"])
            return gr.skip(), gr.skip(), f"⚠ {model} has no {preset} preset in its card (fidelity = {fidelity})."
        values = presets[preset]
        return values["steps"], values["eta"], f"Preset **{preset}** of {model}: {describe(values)}."

    async def run(
        self,
        image,
        mode,
        model,
        scale,
        k,
        steps,
        sampler,
        eta,
        seed,
        projection,
        preset=CUSTOM,
        progress=gr.Progress(),
        request: gr.Request = None,
    ) -> list:
        try:
            job = posterior_job(image, mode, model, scale, k, steps, sampler, eta, seed, projection, preset)
            self.lab.check_posterior(job)
            out = await self.lab.run(session_of(request), self.lab.posterior_work, job, progress)
            if out is STOPPED:
                raise gr.Error(f"{STOPPED_MESSAGE}; nothing was kept.", print_exception=False)
            posterior, notes = out
            files = await asyncio.to_thread(self.lab.posterior_files, posterior)
        except USER_ERRORS as err:
            raise user_error(err) from None
        return self.outputs(posterior, notes, files).flat()

    def outputs(self, posterior, notes: list[str], files: dict) -> PosteriorOutputs:
        maps = files["maps"]
        error = maps.get("error_map.png")
        return PosteriorOutputs(
            status=numbers_text(posterior, notes),
            samples=gr.Gallery(value=files["samples"], columns=min(SAMPLES_PER_ROW, posterior.k)),
            mean=files["mean"],
            std_map=maps["std_map.png"],
            error_map=gr.Image(value=error, visible=error is not None),
            lr_map=maps["lr_map.png"],
            plot=sparsification_figure(posterior),
            summary=summary_json(posterior),
            record=gr.DownloadButton(value=files["record"], visible=True, label="Download the run record (zip)"),
            state={"views": files["views"], "grid": pixel_grid(posterior.scale)},
        )

    # the linked zoom -----------------------------------------------------------------------------------
    def zoom(self, state, x, y, size, magnify):
        if not state:
            return [], x, y
        named = state["views"]
        out_h, out_w = named[0][1].shape[:2]
        try:
            x = out_w // 2 if is_empty(x) else whole_in(x, "x", 0, out_w - 1)
            y = out_h // 2 if is_empty(y) else whole_in(y, "y", 0, out_h - 1)
            size, magnify = whole_in(size, "region size", 1, 4096), whole_in(magnify, "magnification", 1, 16)
        except SRInputError as err:
            raise user_error(err) from None
        (left, top, side), crops = zoom_views(named, x, y, size, magnify, state["grid"])
        return [(crop, f"{caption} [{left}:{left + side}, {top}:{top + side}]") for crop, caption in crops], x, y

    def zoom_at(self, state, size, magnify, evt: gr.SelectData):
        """A click on a map or an image: its point (a click on a map's colour bar counts as its right edge)."""
        if not state or not (isinstance(evt.index, (list, tuple)) and len(evt.index) == 2):
            return self.zoom(state, None, None, size, magnify)
        out_h, out_w = state["views"][0][1].shape[:2]
        x, y = (min(max(0, int(v)), top - 1) for v, top in zip(evt.index, (out_w, out_h)))
        return self.zoom(state, x, y, size, magnify)

    def zoom_centre(self, state, size, magnify):
        return self.zoom(state, None, None, size, magnify)
