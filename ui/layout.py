"""The page: its components and which handler each event calls. The handlers themselves are in
``ui.handlers``; nothing here computes anything."""

from __future__ import annotations

import tempfile
from pathlib import Path
from types import SimpleNamespace

import gradio as gr

from comparisons.examples import example_images
from sr_models.device import dtype_name
from sr_models.registry import discover
from ui.handlers import CompareOutputs, Handlers
from ui.inputs import (
    CheckboxGroupIn,
    CheckboxIn,
    DropdownIn,
    LabBlocks,
    NumberIn,
    RadioIn,
    SliderIn,
    TextboxIn,
    UploadImage,
    appended_input,
)
from ui.lab import Lab
from ui.parse import CUSTOM, MAX_PROJECTION, MAX_STAGES, MAX_STEPS, MAX_VIEWS, MODES, PRESETS
from ui.posterior import PosteriorHandlers
from ui.posterior_tab import posterior_tab
from ui.sampling_boxes import sampling_boxes
from ui.studies import studies_tab
from ui.wiring import output_components, wire_estimate, wire_zoom
from ui.zoom_panel import zoom_panel

# Headers break between words only (not "ste ps"); the page passes this to launch(css=...).
CSS = "#metrics th, #metrics th * { word-break: keep-all; overflow-wrap: normal; hyphens: none; }"
SHOW_GRID = """() => { const status = document.getElementById('status');
  if (status) window.scrollTo({top: status.getBoundingClientRect().top + window.scrollY - 8, behavior: 'instant'}); }"""
TABLE_HEADERS = ["model", "PSNR-Y (dB)", "SSIM-Y", "LR-PSNR (dB)", "steps", "sampler", "eta", "seed"]
TABLE_HEADERS += ["back-proj.", "NFE", "seconds"]
NO_CASCADE_TEXT = "Pick two or more stages; the cascade runs next to the ticked models."


def model_choices(models) -> list[tuple[str, str]]:
    choices = []
    for name, model in models.items():
        available = model.availability()
        scales = f"any scale to {model.max_scale:g}x" if model.continuous else "/".join(f"{s}x" for s in model.scales)
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


def device_note(models: dict) -> str:
    """Where this server runs the models: one device for every visitor (set with --device / --dtype
    or SR_DEVICE / SR_DTYPE), since switching per request would reload weights under a class."""
    model = next(iter(models.values()), None)
    return f"Models run on **{model.device}** in **{dtype_name(model.dtype)}**." if model else ""


def _sampling_inputs(page: SimpleNamespace) -> None:
    with gr.Accordion("Diffusion sampling", open=False):
        steps_label = f"Steps (0 = model default, at most {MAX_STEPS})"
        seed_label = "Seed (a whole number below 2^63)"
        sampling_boxes(page, steps_label, "Sampler (empty = model default)", 0, seed_label, elem_prefix="")
        page.record = CheckboxIn(True, label="Record the denoising trajectory (every step up to 25)")
    # appended to /compare's inputs: scripts that send the 16 older values get "custom" (the boxes)
    page.preset = appended_input(
        RadioIn(list(PRESETS), value=CUSTOM, label="Preset (per model: its card's steps and eta)", elem_id="preset")
    )
    page.preset_info = gr.Markdown(elem_id="preset_info")


def _cascade_builder(page: SimpleNamespace, models: dict) -> None:
    page.stage_models, page.stage_steps = [], []
    with gr.Accordion("Cascade: chain models (stage 2 upscales stage 1's output)", open=False):
        for i in range(MAX_STAGES):
            with gr.Row():
                label = f"stage {i + 1}" + (" (optional)" if i > 1 else "")
                page.stage_models.append(DropdownIn(["", *stage_choices(models)], value="", label=label))
                page.stage_steps.append(NumberIn(0, label="steps (0 = default)"))
        page.cascade_info = gr.Markdown(NO_CASCADE_TEXT)


def _input_column(page: SimpleNamespace, handlers: Handlers, examples: list[str]) -> None:
    # At 1280x720 the button, the scale and the ticked models are in the first screen; the image
    # and the examples follow (an example is ready on the first click).
    with gr.Column(scale=1, min_width=320):
        with gr.Row():
            # a real scale (2.5, 3, ...: every model reaches it by its route) or, instead, an output width
            page.scale = NumberIn(4, label="Scale (1-16)", min_width=70, scale=1, elem_id="scale")
            page.width = appended_input(
                NumberIn(None, label="or width (px, 0: off)", min_width=80, scale=1, precision=0, elem_id="width")
            )
        with gr.Row():
            page.run = gr.Button("Upscale", variant="primary", elem_id="run", scale=2, min_width=100)
            page.stop = gr.Button("Stop", variant="stop", elem_id="stop", scale=1, min_width=60)
        page.estimate = gr.Markdown(elem_id="estimate")
        page.names = CheckboxGroupIn(
            model_choices(handlers.models),
            value=handlers.models_for(4),
            label="Models (those that run at the chosen scale itself are ticked; any other runs by a resize)",
            elem_id="models",
        )
        page.image = UploadImage(
            label="Image", type="filepath", image_mode=None, sources=["upload", "clipboard"], height=180
        )
        gr.Examples(examples=examples, inputs=page.image, label="Examples (scikit-image samples, a test chart)")
        page.mode = RadioIn(list(MODES), value=list(MODES)[0], label="What is this image?")
        _sampling_inputs(page)
        _cascade_builder(page, handlers.models)
        page.projection = NumberIn(
            -1, label=f"LR back-projection iterations (-1 = each model's default, 0 = off, at most {MAX_PROJECTION})"
        )


def _grid() -> list:
    views = []
    for row in range(MAX_VIEWS // 4):
        with gr.Row(equal_height=True):
            for i in range(4):
                views.append(
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
                )
    return views


def _slider_and_zoom_tabs(page: SimpleNamespace) -> None:
    with gr.Tab("Slider"):
        with gr.Row():
            page.left = DropdownIn([], label="left side", allow_custom_value=True)
            page.right = DropdownIn([], label="right side", allow_custom_value=True)
        page.slider = gr.ImageSlider(
            type="filepath", format="png", label="compare two images", max_height=420, elem_id="pair"
        )
    with gr.Tab("Zoom"):
        zoom_panel(page, "The same region of every image", columns=4, elem_id="crops")


def _metrics_and_trajectory_tabs(page: SimpleNamespace) -> None:
    with gr.Tab("Metrics"):
        page.table = gr.Dataframe(
            value=[], headers=TABLE_HEADERS, label="Metrics", interactive=False, wrap=True, elem_id="metrics"
        )
        # shown only when a run has a reference to score against (no empty box); a Column, because
        # a Plot that starts hidden does not draw when it is shown
        with gr.Column(visible=False) as page.plot_box:
            page.plot = gr.Plot(label="Quality vs time", elem_id="quality")
    with gr.Tab("Trajectories"):
        with gr.Row():
            page.trajectory_model = DropdownIn([], label="model", allow_custom_value=True)
            page.frame = SliderIn(0, 1, value=0, step=1, label="frame (step)", interactive=False, elem_id="frame")
        with gr.Row():
            page.frame_image = gr.Image(
                type="numpy", format="png", interactive=False, height=320, label="x_t (left) and x̂0 (right)"
            )
            page.gifs = gr.Gallery(label="Animated: x_t and x̂0 per step", columns=1, height=320, object_fit="contain")


def _result_column(page: SimpleNamespace) -> None:
    with gr.Column(scale=3):
        page.status = gr.Markdown(elem_id="status")
        page.grid = _grid()
        _slider_and_zoom_tabs(page)
        _metrics_and_trajectory_tabs(page)
        with gr.Tab("Run record"):
            gr.Markdown(
                "A zip of the whole run: every output as PNG, the metrics CSV and a run card "
                "(git commit, weight hashes, device, seeds and settings)."
            )
            page.download = gr.DownloadButton("Download the run record", visible=False, elem_id="download")


def _api_endpoint(handlers: Handlers):
    """The plain /upscale endpoint, for gradio_client and scripts (hidden on the page)."""
    with gr.Row(visible=False):
        inputs = [UploadImage(type="filepath", image_mode=None), TextboxIn(), NumberIn(), NumberIn()]
        inputs += [TextboxIn(), NumberIn(), TextboxIn(value="")]
        outputs = [gr.Image(type="filepath", format="png"), gr.JSON()]
        button = gr.Button()
    # Not limited by Gradio's queue: the handler checks the request at once, then waits for the Lab's
    # single run slot (one heavy job at a time across every endpoint, so the seconds stay honest).
    return button.click(handlers.upscale, inputs, outputs, api_name="upscale", concurrency_limit=None)


def compare_outputs(page: SimpleNamespace) -> list:
    """The /compare output components, in the order ``CompareOutputs`` names them."""
    return output_components(CompareOutputs, page, views=page.grid)


def _wire_inputs(page: SimpleNamespace, handlers: Handlers, demo: gr.Blocks) -> None:
    """What changes while the user fills in the form: ticks per scale, the cascade text, the estimate."""
    page.scale.change(handlers.tick_for_scale, page.scale, page.names, api_name=False)
    builder = [*page.stage_models, *page.stage_steps]
    for control in [page.scale, *builder]:
        control.change(handlers.describe_cascade, [page.scale, *builder], page.cascade_info, api_name=False)
    estimate_inputs = [page.image, page.mode, page.scale, page.names, page.steps, page.sampler, *builder, page.width]
    wire_estimate(handlers.estimate, estimate_inputs, page.estimate)
    demo.load(handlers.estimate, estimate_inputs, page.estimate, api_name=False, show_progress="hidden")
    preset_io = [page.preset, page.names, page.steps, page.eta], [page.steps, page.eta, page.preset_info]
    for control in (page.preset, page.names):
        control.change(handlers.fill_preset, *preset_io, api_name=False)


def _wire_run(page: SimpleNamespace, handlers: Handlers, api_event, demo: gr.Blocks) -> None:
    inputs = [page.image, page.mode, page.scale, page.names, page.steps, page.sampler, page.eta, page.seed]
    inputs += [page.record, page.projection, *page.stage_models, *page.stage_steps, page.preset, page.width]
    run_event = page.run.click(
        handlers.compare, inputs, compare_outputs(page), api_name="compare", concurrency_limit=None
    )
    run_event.success(None, js=SHOW_GRID, api_name=False)  # the results, not the form, after a run
    run_event.success(handlers.show_plot, page.state, page.plot_box, api_name=False)
    zoomed = [page.crops, page.zx, page.zy]
    run_event.success(handlers.zoom_centre, [page.state, page.zsize, page.zmag], zoomed, api_name=False).success(
        handlers.run_record, page.state, page.download, api_name="run_record"
    )
    page.stop.click(
        handlers.stop, None, page.status, api_name="stop", cancels=[run_event, api_event], concurrency_limit=None
    )
    demo.unload(handlers.closed_tab)


def _wire_views(page: SimpleNamespace, handlers: Handlers) -> None:
    """Looking at a result: zoom, the slider's two sides, the trajectory frames."""
    wire_zoom(page, handlers, page.grid)
    for side in (page.left, page.right):
        side.change(handlers.show_pair, [page.state, page.left, page.right], page.slider, api_name=False)
    frame_outputs = [page.frame_image, page.frame]
    page.trajectory_model.input(
        handlers.show_last_frame, [page.state, page.trajectory_model], frame_outputs, api_name=False
    )
    page.frame.release(
        handlers.show_frame, [page.state, page.trajectory_model, page.frame], frame_outputs, api_name=False
    )


def build_app(models: dict | None = None, example_dir: str | Path | None = None) -> gr.Blocks:
    models = models if models is not None else discover()
    handlers = Handlers(Lab(models))
    example_dir = Path(example_dir or Path(tempfile.gettempdir()) / "sr_lab_examples")
    examples = [str(p) for p in example_images(example_dir)]
    page = SimpleNamespace()
    # delete_cache: outputs and uploads older than an hour are removed every 10 minutes
    with LabBlocks(title="Diffusion SR lab", delete_cache=(600, 3600)) as demo:
        gr.Markdown(
            "## Diffusion SR lab\nCompare super-resolution models on one image: bicubic, regression CNNs and "
            "diffusion models. *High-resolution* mode degrades the image (MATLAB bicubic) and scores every output "
            "against it (PSNR/SSIM on Y, border = scale). " + device_note(models)
        )
        page.state = gr.State(None, time_to_live=3600)
        with gr.Tab("Compare"):
            with gr.Row():
                _input_column(page, handlers, examples)
                _result_column(page)
        with gr.Tab("Posterior explorer", elem_id="posterior_tab"):
            page.posterior = posterior_tab(PosteriorHandlers(handlers.lab), examples, handlers.stop)
        with gr.Tab("Studies (shipped results)"):
            studies_tab()
        api_event = _api_endpoint(handlers)
        _wire_inputs(page, handlers, demo)
        _wire_run(page, handlers, api_event, demo)
        _wire_views(page, handlers)
    demo.lab = handlers.lab  # for tests and scripts: the run lock, Stop, loaded models, scratch folder
    demo.handlers = handlers
    return demo
