"""Gradio app: every SR model family behind one interface, side by side.

    python app.py            # http://127.0.0.1:7860 (also works as a Hugging Face Space)

The app only lays out what ``comparisons.compare.run_comparison`` computes; the benchmark and the
tests call the same function.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import gradio as gr
from PIL import Image

from comparisons.animation import trajectory_gif
from comparisons.compare import (
    MODE_HR,
    MODE_LR,
    nearest_upscale,
    run_comparison,
    zoom_crops,
)
from comparisons.examples import example_images
from comparisons.plots import benchmark_figure
from sr_models.base import ModelUnavailableError, SRInputError
from sr_models.cascade import SEPARATOR, parse_cascade
from sr_models.diffusion import SAMPLERS
from sr_models.registry import discover, get_models
from sr_models.types import SamplingSettings

TRAJECTORY_FRAMES = 8
MAX_SLOTS = 6  # output panels laid out in advance; Gradio needs a fixed number of components
MAX_STAGES = 3  # stages of the cascade builder
HEAVY = "heavy"  # the concurrency group of every model run
STUDIES = Path(__file__).resolve().parent / "assets" / "studies"
SCALES = [2, 3, 4, 8, 16]
MODES = {
    "High-resolution image: degrade it, then compare against it": MODE_HR,
    "My low-resolution image: just upscale it": MODE_LR,
}


class UploadImage(gr.Image):
    """gr.Image whose upload is checked by our loader, not Gradio's: a broken or non-image file
    reaches ``load_image``, which explains the problem instead of failing inside Gradio."""

    is_template = True  # rendered by the frontend of gr.Image

    def preprocess(self, payload):
        if payload is None:
            return None
        try:
            return super().preprocess(payload)
        except Exception:  # Pillow could not open it: hand the raw file to our loader
            return payload.path


def model_choices(models) -> list[tuple[str, str]]:
    choices = []
    for name, model in models.items():
        available = model.availability()
        scales = "/".join(f"{s}x" for s in model.scales)
        label = f"{name} ({model.family}, {scales})" + ("" if available.ok else f" - unavailable: {available.reason}")
        choices.append((label, name))
    return choices


def _user_error(err: Exception) -> gr.Error:
    return gr.Error(str(err.args[0] if err.args else err), print_exception=False)


def stage_choices(models) -> list[str]:
    """What a cascade stage can be: single-scale models, and multi-scale ones at each scale."""
    out = []
    for name, model in models.items():
        out += [name] if len(model.scales) == 1 else [f"{name}@{s}" for s in model.scales]
    return out


def cascade_from_builder(stages, stage_steps) -> tuple[str | None, tuple[SamplingSettings, ...] | None]:
    """(spec, per-stage settings) from the builder's dropdowns and step boxes; (None, None) if unused."""
    picked = [(name, steps) for name, steps in zip(stages, stage_steps) if name]
    if not picked:
        return None, None
    if len(picked) == 1:
        raise SRInputError("a cascade needs at least two stages: pick a second one, or clear the first")
    settings = tuple(SamplingSettings(steps=_whole(steps, "stage steps", 0) or None) for _, steps in picked)
    return SEPARATOR.join(name for name, _ in picked), settings


def _whole(value, what: str, low: int) -> int:
    """A number from the browser (or a raw HTTP call) as a whole number, or a plain message."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise SRInputError(f"{what} must be a number, got {value!r}") from None
    if not number.is_integer() or number < low:
        raise SRInputError(f"{what} must be a whole number of at least {low}, got {value}")
    return int(number)


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


def build_app(models: dict | None = None, example_dir: str | Path | None = None) -> gr.Blocks:
    models = models if models is not None else discover()
    example_dir = Path(example_dir or Path(tempfile.gettempdir()) / "sr_lab_examples")
    examples = [str(p) for p in example_images(example_dir)]
    def models_for(scale) -> list[str]:
        """Every available model that runs at this scale: the natural comparison to start from."""
        return [n for n, m in models.items() if int(scale) in m.scales and m.availability().ok]

    def settings_from_ui(steps, sampler, eta, seed, projection, stages=None) -> SamplingSettings:
        return SamplingSettings(
            steps=_whole(steps or 0, "steps", 0) or None, sampler=sampler or None, eta=float(eta or 0),
            seed=_whole(seed or 0, "seed", 0), stages=stages,
            lr_projection=None if projection is None or projection < 0 else _whole(projection, "back-projection", 0),
        )  # fmt: skip

    def compare(image, mode_label, scale, names, steps, sampler, eta, seed, record, projection, *builder,
                progress=gr.Progress()):  # fmt: skip
        if image is None:
            raise gr.Error("Upload an image or pick an example first.", print_exception=False)
        try:
            spec, stage_settings = cascade_from_builder(builder[:MAX_STAGES], builder[MAX_STAGES:])
            chosen = get_models([*(names or []), *([spec] if spec else [])], models)
            settings = settings_from_ui(steps, sampler, eta, seed, projection, stage_settings)
            comparison = run_comparison(
                image, MODES[mode_label], _whole(scale, "scale", 1), chosen, settings=settings,
                keep_frames=TRAJECTORY_FRAMES if record else 0,
                on_model=lambda i, n, name: progress((i, n), desc=f"{name} ({i + 1}/{n})"),
                on_step=lambda info: progress((info.step + 1, info.total), desc=f"{info.stage}: step"),
            )  # fmt: skip
        except (SRInputError, ModelUnavailableError, KeyError) as err:
            raise _user_error(err) from None
        for note in comparison.notes:
            gr.Info(note)
        status = [f"**Input** {comparison.lr.shape[1]}x{comparison.lr.shape[0]} → **output** "
                  f"{comparison.lr.shape[1] * comparison.scale}x{comparison.lr.shape[0] * comparison.scale} "
                  f"({comparison.scale}x)"]  # fmt: skip
        status += [f"- note: {n}" for n in comparison.notes]
        status += [f"- **{name} did not run**: {msg}" for name, msg in comparison.errors.items()]
        lr_big = nearest_upscale(comparison.lr, comparison.scale)
        slots = []
        for i in range(MAX_SLOTS):
            if i < len(comparison.results):
                r = comparison.results[i]
                slots.append(gr.ImageSlider(value=(lr_big, r.image), label=f"input ◀ ▶ {r.model}", visible=True))
            else:
                slots.append(gr.ImageSlider(value=None, visible=False))
        table = comparison.table()
        headers = list(dict.fromkeys(h for row in table for h in row)) or ["model"]
        frame = gr.Dataframe(value=[[row.get(h, "") for h in headers] for row in table], headers=headers)
        plot = None
        if comparison.hr is not None and table:
            plot = benchmark_figure(
                [{**r.facts(), "dataset": "this image", "seconds_per_image": r.seconds, **s}
                 for r, s in zip(comparison.results, comparison.scores)],  # fmt: skip
                title="quality vs time on this image",
            )
        gifs = []
        folder = Path(tempfile.mkdtemp(prefix="trajectory_"))
        for r in comparison.results:
            if r.frames:
                gif = trajectory_gif(r.frames, r.frame_labels, folder / f"{r.model.replace(SEPARATOR, '_then_')}.gif",
                                     noisy=r.noisy_frames)  # fmt: skip
                gifs.append((str(gif), f"{r.model}: x_t (left) and x̂0 (right) per step ({r.facts()['settings']})"))
        return ["\n".join(status), *slots, frame, plot, gifs, comparison]

    def zoom(comparison, cx, cy, size, magnify):
        if comparison is None:
            return []
        return zoom_crops(comparison, cx / 100, cy / 100, int(size), int(magnify))

    def upscale_api(image, model, scale, steps, sampler, seed, stage_steps=""):
        """Plain API: one model or cascade ("a>b"), the image is the LR input; returns the PNG path and
        the run's facts with one record per stage. ``stage_steps``: "10,5" for a cascade's stages."""
        try:
            (chosen,) = get_models([str(model or "").strip()], models)
            stages = None
            if stage_steps:
                stages = tuple(SamplingSettings(steps=_whole(x, "stage steps", 0) or None)
                               for x in str(stage_steps).split(","))  # fmt: skip
            settings = settings_from_ui(steps, sampler, 0, seed, -1, stages)
            comparison = run_comparison(image, MODE_LR, _whole(scale, "scale", 1), [chosen], settings=settings)
        except (SRInputError, ModelUnavailableError, KeyError, ValueError) as err:
            raise _user_error(err) from None
        if comparison.errors:
            raise gr.Error(next(iter(comparison.errors.values())), print_exception=False)
        r = comparison.results[0]
        path = Path(tempfile.mkdtemp()) / f"{r.model.replace(SEPARATOR, '_then_')}_x{r.scale}_seed{r.settings.seed or 0}.png"
        Image.fromarray(r.image).save(path)
        info = {**r.facts(), "lr_psnr": comparison.scores[0]["lr_psnr"], "settings": r.settings.as_dict(),
                "stages": [st.facts() for st in r.stages], "notes": comparison.notes}  # fmt: skip
        return str(path), info

    # delete_cache: outputs and uploads older than an hour are removed every 10 minutes
    with gr.Blocks(title="Diffusion SR lab", delete_cache=(600, 3600)) as demo:
        gr.Markdown(
            "# Diffusion SR lab\nCompare super-resolution models on the same image: bicubic, regression CNNs "
            "and diffusion models. In *high-resolution* mode the image is degraded with the benchmark's "
            "MATLAB-bicubic downscale and every output is scored against it (PSNR/SSIM on Y, border = scale)."
        )
        state = gr.State(None)
        with gr.Tab("Compare"):
            with gr.Row():
                with gr.Column(scale=1):
                    image = UploadImage(label="Image", type="filepath", image_mode=None, sources=["upload", "clipboard"])
                    gr.Examples(examples=examples, inputs=image, label="Examples (scikit-image samples, a test chart)")
                    mode = gr.Radio(list(MODES), value=list(MODES)[0], label="What is this image?")
                    scale = gr.Dropdown(SCALES, value=4, label="Scale")
                    names = gr.CheckboxGroup(model_choices(models), value=models_for(4), label="Models (all that run at the chosen scale are ticked)")
                    with gr.Accordion("Diffusion sampling", open=False):
                        steps = gr.Slider(0, 200, value=0, step=1, label="Steps (0 = model default)")
                        sampler = gr.Dropdown(["", *SAMPLERS], value="", label="Sampler (empty = model default)")
                        eta = gr.Slider(0, 1, value=0, step=0.05, label="DDIM eta")
                        seed = gr.Number(0, precision=0, label="Seed")
                        record = gr.Checkbox(True, label=f"Record the denoising trajectory ({TRAJECTORY_FRAMES} frames)")
                    with gr.Accordion("Cascade: chain models (stage 2 upscales stage 1's output)", open=False):
                        stage_models, stage_steps = [], []
                        for i in range(MAX_STAGES):
                            with gr.Row():
                                stage_models.append(gr.Dropdown(["", *stage_choices(models)], value="",
                                                                label=f"stage {i + 1}" + (" (optional)" if i > 1 else "")))  # fmt: skip
                                stage_steps.append(gr.Number(0, precision=0, minimum=0, label="steps (0 = default)"))
                        cascade_info = gr.Markdown("Pick two or more stages; the cascade runs next to the ticked models.")
                    projection = gr.Slider(
                        -1, 10, value=-1, step=1,
                        label="LR back-projection iterations (-1 = each model's default, 0 = off)",
                    )  # fmt: skip
                    run = gr.Button("Upscale", variant="primary")
                with gr.Column(scale=2):
                    status = gr.Markdown()
                    slots = [gr.ImageSlider(visible=False, format="png", type="numpy") for _ in range(MAX_SLOTS)]
                    table = gr.Dataframe(value=[], headers=["model", "PSNR-Y (dB)", "SSIM-Y", "LR-PSNR (dB)", "NFE", "seconds"],
                                         label="Metrics", interactive=False, wrap=True)  # fmt: skip
                    plot = gr.Plot(label="Quality vs time")
                    trajectories = gr.Gallery(label="Denoising trajectories: noisy state x_t and predicted clean image x̂0 per step",
                                              columns=2)  # fmt: skip
                    with gr.Accordion("Zoom: the same region of every image", open=True):
                        with gr.Row():
                            cx = gr.Slider(0, 100, value=50, label="centre x (%)")
                            cy = gr.Slider(0, 100, value=50, label="centre y (%)")
                            size = gr.Slider(16, 256, value=64, step=16, label="region (output px)")
                            magnify = gr.Slider(1, 8, value=4, step=1, label="magnify")
                        crops = gr.Gallery(label="Zoomed crops", columns=4, format="png", object_fit="contain")
        with gr.Tab("Studies (shipped results)"):
            studies_tab()
        with gr.Row(visible=False):  # the plain API endpoint, for gradio_client and scripts
            api_in = [UploadImage(type="filepath", image_mode=None), gr.Textbox(), gr.Number(), gr.Number(), gr.Textbox(),
                      gr.Number(), gr.Textbox(value="")]  # fmt: skip
            api_out = [gr.Image(type="filepath", format="png"), gr.JSON()]
            api_button = gr.Button()
        # One heavy job at a time across every endpoint (the app and the API share one queue slot):
        # concurrent runs would only slow each other down and make the reported seconds wrong.
        api_button.click(upscale_api, api_in, api_out, api_name="upscale", concurrency_id=HEAVY, concurrency_limit=1)

        scale.change(lambda s: gr.CheckboxGroup(value=models_for(s)), scale, names, api_name=False)
        def describe_cascade(*builder):
            try:
                spec, _ = cascade_from_builder(builder[:MAX_STAGES], builder[MAX_STAGES:])
                if spec is None:
                    return "Pick two or more stages; the cascade runs next to the ticked models."
                cascade = parse_cascade(spec, models)
            except (SRInputError, KeyError) as err:
                return f"⚠ {err.args[0] if err.args else err}"
            return f"**{cascade.name}** = {cascade.scales[0]}x: set the Scale to {cascade.scales[0]} to run it."

        for control in (*stage_models, *stage_steps):
            control.change(describe_cascade, [*stage_models, *stage_steps], cascade_info, api_name=False)
        run.click(
            compare, [image, mode, scale, names, steps, sampler, eta, seed, record, projection, *stage_models, *stage_steps],
            [status, *slots, table, plot, trajectories, state],
            api_name="compare", concurrency_id=HEAVY, concurrency_limit=1,
        ).then(zoom, [state, cx, cy, size, magnify], crops, api_name=False)  # fmt: skip
        for control in (cx, cy, size, magnify):
            control.release(zoom, [state, cx, cy, size, magnify], crops, api_name=False)
    return demo


def main():
    parser = argparse.ArgumentParser(description="Diffusion SR lab: compare SR models in the browser.")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)))
    parser.add_argument("--share", action="store_true", help="create a public gradio.live link")
    args = parser.parse_args()
    demo = build_app()
    demo.queue(default_concurrency_limit=1, max_size=32)  # one CPU job at a time, a waiting line for a class
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, theme=gr.themes.Soft())


if __name__ == "__main__":
    main()
