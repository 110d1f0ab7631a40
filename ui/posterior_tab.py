"""The posterior explorer tab: its components and which ``PosteriorHandlers`` event each one calls.

At 1280x720, after a run the page scrolls to the numbers; below them the samples and one row of the mean,
the std map, the |error| map and the LR-consistency map fit the same screen.
"""

from __future__ import annotations

from types import SimpleNamespace

import gradio as gr

from comparisons.views import MAP_VIEWS, MEAN_VIEW
from ui.inputs import DropdownIn, NumberIn, RadioIn, UploadImage, appended_input
from ui.parse import CUSTOM, MAX_PROJECTION, MAX_STEPS, MODES, PRESETS
from ui.posterior import PosteriorHandlers, PosteriorOutputs
from ui.sampling_boxes import sampling_boxes
from ui.wiring import output_components, wire_estimate, wire_zoom
from ui.zoom_panel import zoom_panel

SHOW_RESULTS = """() => { const top = document.getElementById('post_status');
  if (top) window.scrollTo({top: top.getBoundingClientRect().top + window.scrollY - 8, behavior: 'instant'}); }"""
MAP_HEIGHT = 200


def _form(tab: SimpleNamespace, handlers: PosteriorHandlers, examples: list[str]) -> None:
    with gr.Column(scale=1, min_width=300):
        with gr.Row():
            tab.run = gr.Button("Draw samples", variant="primary", elem_id="post_run", scale=2, min_width=100)
            tab.stop = gr.Button("Stop", variant="stop", elem_id="post_stop", scale=1, min_width=60)
        diffusion = handlers.diffusion_models()
        tab.model = DropdownIn(
            diffusion,
            value=diffusion[0] if diffusion else None,
            allow_custom_value=True,  # a cascade spec a>b typed in
            label="Model (a diffusion model, or a cascade a>b)",
            elem_id="post_model",
        )
        with gr.Row():
            tab.scale = NumberIn(4, label="Scale", min_width=70, elem_id="post_scale")
            tab.k = NumberIn(8, label="Samples K (2 to 16)", min_width=90, elem_id="post_k")
        tab.estimate = gr.Markdown(elem_id="post_estimate")
        tab.image = UploadImage(
            label="Image", type="filepath", image_mode=None, sources=["upload", "clipboard"], height=150
        )
        gr.Examples(examples=examples, inputs=tab.image, label="Examples")
        tab.mode = RadioIn(list(MODES), value=list(MODES)[0], label="What is this image?")
        tab.preset = appended_input(RadioIn(list(PRESETS), value=CUSTOM, label="Preset", elem_id="post_preset"))
        tab.preset_info = gr.Markdown()
        with gr.Accordion("Sampling (sample i uses seed + i)", open=False):
            steps_label = f"Steps (0 = default, at most {MAX_STEPS})"
            sampling_boxes(tab, steps_label, "Sampler", 1, "First seed", elem_prefix="post_")
            tab.projection = NumberIn(-1, label=f"Back-projection (-1 = default, at most {MAX_PROJECTION})")


def _map(label: str, elem_id: str, visible: bool = True) -> gr.Image:
    return gr.Image(
        type="filepath",
        format="png",
        interactive=False,
        height=MAP_HEIGHT,
        label=label,
        elem_id=elem_id,
        visible=visible,
        buttons=["fullscreen"],
    )


def _results(tab: SimpleNamespace) -> None:
    with gr.Column(scale=3):
        tab.status = gr.Markdown(elem_id="post_status")
        tab.samples = gr.Gallery(
            label="Samples", columns=8, height=MAP_HEIGHT, object_fit="contain", format="png", elem_id="post_samples"
        )
        with gr.Row(equal_height=True):
            tab.mean = _map(MEAN_VIEW, "post_mean")
            tab.std_map = _map(MAP_VIEWS["std_map.png"], "post_std")
            tab.error_map = _map(MAP_VIEWS["error_map.png"], "post_error")
            tab.lr_map = _map(MAP_VIEWS["lr_map.png"], "post_lr")
        with gr.Tab("Zoom"):
            zoom_panel(tab, "The same region of every image and map", columns=6, elem_id="post_crops")
        with gr.Tab("Sparsification"):
            tab.plot = gr.Plot(label="Does the spread find the error?", elem_id="post_plot")
        with gr.Tab("Numbers (JSON)"):
            tab.summary = gr.JSON(label="summary", elem_id="post_summary")
        with gr.Tab("Run record"):
            gr.Markdown(
                "A zip of the exploration: every sample as PNG, the mean, the maps with colour bars (and their raw "
                "values in maps.npz), samples.csv, summary.csv, sparsification.csv and a run card."
            )
            tab.record = gr.DownloadButton("Download the run record", visible=False, elem_id="post_download")


def _outputs(tab: SimpleNamespace) -> list:
    return output_components(PosteriorOutputs, tab)


def _wire(tab: SimpleNamespace, handlers: PosteriorHandlers, stop) -> None:
    estimate_inputs = [tab.image, tab.mode, tab.model, tab.scale, tab.k, tab.steps, tab.sampler]
    wire_estimate(handlers.estimate, estimate_inputs, tab.estimate)
    preset_io = ([tab.model, tab.preset, tab.steps, tab.eta], [tab.steps, tab.eta, tab.preset_info])
    for control in (tab.model, tab.preset):
        control.change(handlers.fill_preset, *preset_io, api_name=False)
    inputs = [tab.image, tab.mode, tab.model, tab.scale, tab.k, tab.steps, tab.sampler, tab.eta, tab.seed]
    inputs += [tab.projection, tab.preset]
    # Not limited by Gradio's queue: the handler checks the request at once, then waits for the run slot.
    run = tab.run.click(handlers.run, inputs, _outputs(tab), api_name="posterior", concurrency_limit=None)
    run.success(None, js=SHOW_RESULTS, api_name=False)
    zoomed = [tab.crops, tab.zx, tab.zy]
    run.success(handlers.zoom_centre, [tab.state, tab.zsize, tab.zmag], zoomed, api_name=False)
    tab.stop.click(stop, None, tab.status, api_name=False, cancels=[run], concurrency_limit=None)
    wire_zoom(tab, handlers, (tab.mean, tab.std_map, tab.error_map, tab.lr_map))


def posterior_tab(handlers: PosteriorHandlers, examples: list[str], stop) -> SimpleNamespace:
    """Build the tab inside the current ``gr.Tab``; ``stop``: the page's Stop handler (one per session)."""
    tab = SimpleNamespace(state=gr.State(None, time_to_live=3600))
    with gr.Row():
        _form(tab, handlers, examples)
        _results(tab)
    _wire(tab, handlers, stop)
    return tab
