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
    (
        "perception/perception.csv",
        "### Perception against distortion\nEvery 4x family on both axes of quality: PSNR-Y (right is better) "
        "against SWD, the distance of the outputs' patch distribution from the references' (down is better; "
        "no pretrained weights), Set14 and BSD100 crops pooled; diffusion over steps x DDIM eta and the mean of "
        "4 seeds. Dotted: the Pareto front. Hover a point for its setting, NFE and detail.",
        "comparisons.studies.perception:figure",
        "the perception-distortion plane",
    ),
    (
        "perception-x16/perception.csv",
        "### At 16x: one large-scale model against a cascade, on both axes\nldm-x16 against ldm-x4>ldm-x4 (and "
        "the regression cascade, bicubic) on Set14 and BSD100 256 px crops: the cascade wins PSNR-Y, the single "
        "16x model the distribution (SWD).",
        "comparisons.studies.perception:figure",
        "the plane at 16x",
    ),
    (
        "presets-val/perception.csv",
        "### Where the presets come from\nThe same plane on the validation split of the training pool: each "
        "diffusion model's *fidelity* preset is its highest PSNR-Y, its *detail* preset the lowest SWD within 1 dB.",
        "comparisons.studies.perception:figure",
        "the plane on the validation split",
    ),
    (
        "uncertainty/uncertainty_summary.csv",
        "### Does the spread say where the error is?\nK = 8 posterior samples per image on the validation "
        "split: AUSE of the sparsification curve when pixels are removed by the samples' std, against removing "
        "them in a random order (lower is better; Spearman of std against |error| on each bar).",
        "comparisons.studies.uncertainty:figure",
        "uncertainty calibration",
    ),
    (
        "scales/scales.csv",
        "### Any scale: one continuous model against fixed models plus a resize\nPSNR-Y gain over bicubic "
        "against the scale (2x to 16x, log axis; shaded: the continuous models' training range): liif-x and "
        "idm-x at the scale itself, each fixed family by its shortest route (its own scale or a cascade of itself, "
        "then an exact bicubic resize down), the cascades, pooled over Set5, Set14 and BSD100 crops.",
        "comparisons.studies.scales:figure",
        "gain over bicubic against the scale",
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
            card = next((n for n in ("README.md", "run_card.md") if (path.parent / n).exists()), "")
            gr.Markdown(f"{text} How it was run: `assets/studies/{path.parent.name}/{card}`." if card else text)
            gr.Plot(_tidy(_figure(where)(read_csv(path))), label=label)
