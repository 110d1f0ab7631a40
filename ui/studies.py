"""The Studies tab: the shipped study results as interactive plots, so a class sees them without
running anything."""

from __future__ import annotations

import importlib
from pathlib import Path

import gradio as gr

from comparisons.plots import rename_traces, tidy_log_axes

STUDIES = Path(__file__).resolve().parent.parent / "assets" / "studies"
# (csv under the studies folder, the text above its plot, module:function of its figure, the plot's label)
SHIPPED = (
    (
        "steps/steps.csv",
        "### Quality against sampling steps\nPSNR-Y (raw, no back-projection) and seconds per image "
        "of each diffusion model against its number of DDIM steps, on the held-out validation split of the training "
        "pool (where the defaults were picked), leading and trailing timestep spacing.",
        "comparisons.studies.steps:steps_figure",
        "quality vs steps",
    ),
    (
        "spread/spread.csv",
        "### Why more steps can cost PSNR\nOne sample (solid) against the pixel mean of several "
        "seeds (dashed) and the sampler's estimated expectation (dotted) at each step count: where the mean of "
        "many-step samples scores like the 1-step output, the steps' cost is the spread of the samples (detail "
        "drawn from the posterior), not a drifting denoiser.",
        "comparisons.studies.spread:spread_figure",
        "one sample vs the mean of seeds",
    ),
    (
        "speed/speed.csv",
        "### Latent vs pixel, and where the time goes\nSeconds per image at one output size and "
        "step count: our LDM-4x pipeline in float32 and bfloat16, stock diffusers on the same weights, the bare UNet "
        "calls, and SR3-4x (pixel space) at the same steps.",
        "comparisons.speed:figure",
        "seconds per image",
    ),
)


def _figure(where: str):
    """``module:function`` of a shipped study's figure, imported on use (plotting pulls in the study)."""
    module, name = where.split(":")
    return getattr(importlib.import_module(module), name)


def _tidy(fig):
    """Log axes in whole-number labels; the cascade study's "reference" group named what it is."""
    return rename_traces(tidy_log_axes(fig), {"reference": "baselines"})


def studies_tab(folder: Path = STUDIES):
    """The shipped study results as interactive plots: a class sees them without running anything."""
    from comparisons.studies.cascade import figure, heatmaps, load_rows

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
    gr.Plot(figure(rows), label="quality vs cost")  # labels its own axes: NFE 0 is a tick at the axis start
    gr.Plot(heatmaps(rows), label="the split of steps between the stages")
    from comparisons.records import read_csv

    for csv_path, text, where, label in SHIPPED:
        path = folder / csv_path
        if path.exists():
            gr.Markdown(f"{text} How it was run: `assets/studies/{path.parent.name}/README.md`.")
            gr.Plot(_tidy(_figure(where)(read_csv(path))), label=label)
