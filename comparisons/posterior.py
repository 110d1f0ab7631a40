"""The posterior explorer (issue 14): K samples of one input, their mean, spread and how well it predicts error.

Sample ``i`` of a run with seed ``s`` is the model run with seed ``s + i`` (``SamplingSettings.seed``; None
means 0), so any sample is reproduced alone by running the model with its seed, and its PNG is named by it
like the app's outputs. A cascade derives its stage seeds from that run seed, as it always does.

Each sample goes through ``comparisons.evaluate`` (the benchmark's per-image step), so its row has the
benchmark's shape. The maps (grey levels, HxW float64) come from ``sr_models.uncertainty``: the per-pixel
std of the samples (ddof 1), |mean - reference|, per-sample |sample - reference| and the LR-consistency map
of the mean. The numbers: mean spread, diversity (mean pairwise RMS difference), Spearman(std, |error|),
AUSE of the std map and of a random order, sparsification curves, PSNR-Y of each sample and of the mean.

A deterministic model (bicubic, regression, GAN) is allowed: its samples are identical, so its spread and
diversity are 0, Spearman is undefined (NaN) and its AUSE equals the random order's; the summary says so.

Requests are checked before anything runs: K from 2 to 16, and K times the output pixels within the
server's output limit (``comparisons.serving.max_output_pixels``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
from PIL import Image

from comparisons import provenance
from comparisons.cli import add_settings_arguments, settings_from_args
from comparisons.colormaps import map_image, map_vmax
from comparisons.compare import RunStopped, prepare_input
from comparisons.evaluate import evaluate, image_scores
from comparisons.records import write_csv
from comparisons.run_record import output_name
from comparisons.serving import MAX_OUTPUT_PIXELS_ENV, MODE_HR, MODE_LR, max_output_pixels, stage_models
from sr_models import uncertainty
from sr_models.base import as_rgb_uint8
from sr_models.degradation import scaled_size
from sr_models.device import add_device_arguments
from sr_models.image_io import load_image
from sr_models.registry import discover, get_models
from sr_models.types import (
    DEFAULT_SEED,
    MAX_SEED,
    ModelUnavailableError,
    OnStep,
    SamplingSettings,
    SRInputError,
    UpscaleResult,
)

MIN_SAMPLES, MAX_SAMPLES = 2, 16
SAMPLE_COLUMNS = [
    "sample",
    "seed",
    "file",
    "model",
    "scale",
    "image",
    "height",
    "width",
    "psnr_y",
    "ssim_y",
    "lr_psnr",
    "hf_ratio",
    "seconds",
    "load_seconds",
    "nfe",
    "peak_memory_mb",
    "n_stages",
    "steps",
    "sampler",
    "eta",
    "lr_projection",
    "device",
    "dtype",
    "settings",
]
SUMMARY_COLUMNS = [
    "model",
    "scale",
    "k",
    "seeds",
    "steps",
    "sampler",
    "eta",
    "has_reference",
    "deterministic",
    "mean_spread",
    "max_spread",
    "diversity",
    "spearman",
    "ause",
    "ause_random",
    "mean_abs_error",
    "psnr_y_mean_image",
    "ssim_y_mean_image",
    "lr_psnr_mean_image",
    "psnr_y_samples",
    "psnr_y_samples_min",
    "psnr_y_samples_max",
    "lr_psnr_samples",
    "nfe",
    "seconds",
    "wall_seconds",
    "note",
]
PROTOCOL = (
    "sample i uses seed settings.seed + i; std map: per-pixel sample std (ddof 1) averaged over RGB, grey levels; "
    "|error|: |pixel mean (uint8) - reference| averaged over RGB; LR map: |imresize(mean, 1/s) - LR| (MATLAB "
    "bicubic), nearest-upsampled; sparsification after Ilg et al. 2018 (mean |error| of the pixels left over the "
    "mean of all, pixels removed most uncertain first, 0..99 %); AUSE: area between a curve and the oracle's; "
    "PSNR-Y / SSIM-Y with the scale shaved (sr_models.metrics)"
)
StopCheck = Callable[[], bool]


@dataclass(frozen=True, eq=False)
class Posterior:
    """What one exploration gives. Maps are HxW float64 in grey levels; images HxWx3 uint8.

    ``samples[i]`` ran with ``seeds[i]``; ``results[i]`` is its ``UpscaleResult`` and ``rows[i]`` its
    per-sample row (``comparisons.evaluate``'s row plus ``sample``, ``seed``, ``file``, ``eta``).
    ``error_map`` / ``sample_error_maps`` / ``curves`` are None without a reference. ``curves``: arrays
    ``fraction`` (of pixels removed), ``model`` (removed by the std map), ``oracle``, ``random``.
    ``summary``: the numbers (keys ``SUMMARY_COLUMNS``).
    """

    model: str
    scale: int | float
    lr: np.ndarray
    hr: np.ndarray | None
    settings: SamplingSettings  # as asked (seed = the first sample's)
    seeds: tuple[int, ...]
    samples: tuple[np.ndarray, ...]
    results: tuple[UpscaleResult, ...]
    mean: np.ndarray
    std_map: np.ndarray
    error_map: np.ndarray | None
    sample_error_maps: tuple[np.ndarray, ...] | None
    lr_map: np.ndarray
    rows: tuple[dict, ...]
    mean_scores: dict  # comparisons.evaluate.image_scores of the mean image
    curves: dict[str, np.ndarray] | None
    summary: dict
    weights_sha256: dict[str, str]

    @property
    def k(self) -> int:
        return len(self.samples)


def check_posterior_request(k, out_w: int, out_h: int, limit: int | None = None) -> None:
    """Refuse, with a plain ``SRInputError`` (a ValueError), a K outside 2..16 or K outputs over the limit."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise SRInputError(f"the number of samples K must be a whole number from {MIN_SAMPLES} to {MAX_SAMPLES}")
    if not MIN_SAMPLES <= k <= MAX_SAMPLES:
        raise SRInputError(f"the number of samples K must be from {MIN_SAMPLES} to {MAX_SAMPLES}, got {k}")
    limit = max_output_pixels() if limit is None else limit
    total = int(k) * out_w * out_h
    if total > limit:
        fit = limit // max(1, out_w * out_h)
        hint = f"at most {fit} samples of this size fit" if fit >= MIN_SAMPLES else "use a smaller input"
        raise SRInputError(
            f"{k} samples of {out_w}x{out_h} are {total / 1e6:.2f} MP in all, above this server's limit of "
            f"{limit / 1e6:.2f} MP ({hint}; set {MAX_OUTPUT_PIXELS_ENV} to change the limit)"
        )


def sample_settings(settings: SamplingSettings | None, k: int) -> list[SamplingSettings]:
    """The settings of each sample: the asked ones with seed ``seed + i`` (seed None: 0)."""
    settings = settings or SamplingSettings()
    first = DEFAULT_SEED if settings.seed is None else settings.seed
    if first + k > MAX_SEED:
        raise SRInputError(f"seeds {first}..{first + k - 1} go past the largest seed, 2^63 - 1")
    return [replace(settings, seed=first + i) for i in range(k)]


def _checked_request(model, lr, scale, settings, k, hr, limit):
    """(lr, scale, per-sample settings) after every check that needs no model run."""
    lr = as_rgb_uint8(lr)
    model.check_available()
    scale = model.check_scale(scale)
    out_h, out_w = scaled_size(lr.shape[0], lr.shape[1], scale)
    check_posterior_request(k, out_w, out_h, limit)
    if hr is not None and np.shape(hr)[:2] != (out_h, out_w):
        raise SRInputError(f"the reference is {np.shape(hr)[1]}x{np.shape(hr)[0]}, the outputs {out_w}x{out_h}")
    per_sample = sample_settings(settings, k)
    model.resolve(per_sample[0])  # unknown sampler and the like, before the first run
    return lr, scale, per_sample


def _stop_guard(should_stop: StopCheck | None, on_step: OnStep | None):
    """(check before a sample, per-step callback that checks between steps and reports)."""

    def check():
        if should_stop is not None and should_stop():
            raise RunStopped("stopped before the samples were all drawn")

    def step(info):
        check()
        if on_step is not None:
            on_step(info)

    return check, step


def _eta_text(result: UpscaleResult) -> str:
    """Each stage's eta joined by '+' ('' for models without one): ``facts()`` has no eta column."""
    return "+".join(f"{s.settings.eta:g}" for s in result.stages if s.settings.eta is not None)


def _sample_row(evaluation, index: int) -> dict:
    result = evaluation.result
    return {**evaluation.row, "sample": index, "file": output_name(result), "eta": _eta_text(result)}


def draw_samples(model, lr, scale, per_sample, hr, on_step=None, should_stop=None, on_sample=None) -> list:
    """One ``comparisons.evaluate`` per sample, in seed order: the ``Evaluation`` of each."""
    check, step = _stop_guard(should_stop, on_step)
    evaluations = []
    for i, settings in enumerate(per_sample):
        check()
        if on_sample is not None:
            on_sample(i, len(per_sample))
        name = f"sample {i} (seed {settings.seed})"
        evaluations.append(evaluate(model, lr, scale, settings, hr, name=name, on_step=step))
    return evaluations


def _curves(std_map: np.ndarray, error_map: np.ndarray) -> dict[str, np.ndarray]:
    return {
        "fraction": uncertainty.DEFAULT_FRACTIONS,
        "model": uncertainty.sparsification_curve(std_map, error_map),
        "oracle": uncertainty.oracle_curve(error_map),
        "random": uncertainty.random_curve(error_map),
    }


def _deterministic_note(model, deterministic: bool) -> str:
    if not deterministic:
        return ""
    if not getattr(model, "is_diffusion", True):
        return f"{model.name} is deterministic: every seed gives the same image, so spread and diversity are 0"
    return "the samples are identical (spread 0): these settings draw no randomness"


def _summary(model, evaluations, maps: dict, mean_scores: dict, wall_seconds: float) -> dict:
    """The numbers of one exploration (keys ``SUMMARY_COLUMNS``)."""
    results = [e.result for e in evaluations]
    psnrs = [e.scores["psnr_y"] for e in evaluations if e.scores["psnr_y"] is not None]
    std_map, error_map = maps["std"], maps["error"]
    deterministic = bool(np.all(std_map == 0))
    first = results[0].facts()
    return {
        "model": results[0].model,
        "scale": results[0].scale,
        "k": len(results),
        "seeds": f"{results[0].settings.seed}-{results[-1].settings.seed}",
        "steps": first["steps"],
        "sampler": first["sampler"],
        "eta": _eta_text(results[0]),
        "has_reference": error_map is not None,
        "deterministic": deterministic,
        "mean_spread": float(std_map.mean()),
        "max_spread": float(std_map.max()),
        "diversity": uncertainty.diversity([r.image for r in results]),
        "spearman": uncertainty.spearman(std_map, error_map) if error_map is not None else None,
        "ause": uncertainty.ause(std_map, error_map) if error_map is not None else None,
        "ause_random": uncertainty.ause_random(error_map) if error_map is not None else None,
        "mean_abs_error": float(error_map.mean()) if error_map is not None else None,
        "psnr_y_mean_image": mean_scores["psnr_y"],
        "ssim_y_mean_image": mean_scores["ssim_y"],
        "lr_psnr_mean_image": mean_scores["lr_psnr"],
        "psnr_y_samples": float(np.mean(psnrs)) if psnrs else None,
        "psnr_y_samples_min": min(psnrs) if psnrs else None,
        "psnr_y_samples_max": max(psnrs) if psnrs else None,
        "lr_psnr_samples": float(np.mean([e.scores["lr_psnr"] for e in evaluations])),
        "nfe": sum(r.nfe for r in results),
        "seconds": sum(r.seconds for r in results),
        "wall_seconds": wall_seconds,
        "note": _deterministic_note(model, deterministic),
    }


def explore_posterior(
    model,
    lr: np.ndarray,
    scale: int | float | None,
    settings: SamplingSettings | None,
    k: int,
    hr: np.ndarray | None = None,
    on_step: OnStep | None = None,
    should_stop: StopCheck | None = None,
    *,
    on_sample: Callable[[int, int], None] | None = None,
    limit: int | None = None,
) -> Posterior:
    """K samples of ``model`` (an ``SRModel`` or a cascade) on ``lr`` and what their spread says.

    ``settings``: the run's settings; sample i uses seed ``settings.seed + i``. ``hr``: the reference at
    the output size, or None (no error map, Spearman, AUSE or PSNR). ``on_step``: every denoising step of
    every sample. ``should_stop()``: checked before each sample and between steps; True ends the run with
    ``comparisons.compare.RunStopped``. ``on_sample(i, k)``: before sample i. ``limit``: output pixels
    allowed for all K samples together (None: the server's limit). Bad requests raise ``SRInputError``
    before any sample is drawn.
    """
    t0 = time.perf_counter()
    lr, scale, per_sample = _checked_request(model, lr, scale, settings, k, hr, limit)
    evaluations = draw_samples(model, lr, scale, per_sample, hr, on_step, should_stop, on_sample)
    samples = tuple(e.result.image for e in evaluations)
    mean = np.clip(np.round(uncertainty.pixel_mean(samples)), 0, 255).astype(np.uint8)
    std_map = uncertainty.pixel_std(samples)
    error_map = uncertainty.abs_error_map(mean, hr) if hr is not None else None
    mean_scores = image_scores(mean, lr, scale, hr)
    maps = {"std": std_map, "error": error_map}
    summary = _summary(model, evaluations, maps, mean_scores, time.perf_counter() - t0)
    return Posterior(
        model=evaluations[0].result.model,
        scale=scale,
        lr=lr,
        hr=hr,
        settings=per_sample[0],
        seeds=tuple(s.seed for s in per_sample),
        samples=samples,
        results=tuple(e.result for e in evaluations),
        mean=mean,
        std_map=std_map,
        error_map=error_map,
        sample_error_maps=tuple(uncertainty.abs_error_map(s, hr) for s in samples) if hr is not None else None,
        lr_map=uncertainty.lr_consistency_map(mean, lr, scale),
        rows=tuple(_sample_row(e, i) for i, e in enumerate(evaluations)),
        mean_scores=mean_scores,
        curves=_curves(std_map, error_map) if error_map is not None else None,
        summary=summary,
        weights_sha256=provenance.weight_hashes(stage_models(model)),
    )


def sparsification_figure(posterior: Posterior) -> go.Figure:
    """Sparsification curves of the std map, the oracle (by |error|) and a random order, AUSE in the legend."""
    fig = go.Figure()
    summary = posterior.summary
    if posterior.curves is None:
        fig.add_annotation(text="no reference: no error to sparsify", showarrow=False, x=0.5, y=0.5)
    else:
        percent = posterior.curves["fraction"] * 100
        lines = [
            ("model", f"removed by the std map (AUSE {summary['ause']:.3f})", "solid"),
            ("oracle", "oracle: removed by |error|", "dot"),
            ("random", f"random order (AUSE {summary['ause_random']:.3f})", "dash"),
        ]
        for key, name, dash in lines:
            fig.add_trace(go.Scatter(x=percent, y=posterior.curves[key], name=name, line={"dash": dash}))
    fig.update_layout(
        title={
            "text": f"{posterior.model}, {posterior.k} samples: does the spread find the error?",
            "font": {"size": 12},
        },
        xaxis={"title": "pixels removed, most uncertain first (%)"},
        yaxis={"title": "mean |error| left / mean |error|"},
        template="plotly_white",
    )
    return fig


def _write_png(path: Path, image: np.ndarray) -> None:
    Image.fromarray(image).save(path)


def map_files(posterior: Posterior) -> dict[str, np.ndarray]:
    """File name -> colour-mapped map with its bar, every map of the record (per-sample errors share one scale)."""
    out = {
        "std_map.png": map_image(posterior.std_map, label="std (grey levels)"),
        "lr_map.png": map_image(posterior.lr_map, label="|LR error| (grey levels)", cmap="magma"),
    }
    if posterior.error_map is not None:
        out["error_map.png"] = map_image(posterior.error_map, label="|error| (grey levels)", cmap="magma")
        vmax = map_vmax(np.stack(posterior.sample_error_maps))  # one scale: the samples compare at a glance
        for result, error in zip(posterior.results, posterior.sample_error_maps):
            out[f"error_{output_name(result)}"] = map_image(error, vmax, "|error| (grey levels)", "magma")
    return out


def run_card(posterior: Posterior) -> dict:
    """Everything needed to draw these samples again and check they are the same images."""
    return {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git": provenance.git_state(),
        "machine": provenance.machine(),
        "versions": provenance.versions(),
        "weights_sha256": posterior.weights_sha256,
        "input": {
            "lr_size": f"{posterior.lr.shape[1]}x{posterior.lr.shape[0]}",
            "lr_sha256": hashlib.sha256(np.ascontiguousarray(posterior.lr).tobytes()).hexdigest(),
            "has_reference": posterior.hr is not None,
        },
        "model": posterior.model,
        "scale": posterior.scale,
        "settings_asked": posterior.settings.as_dict(),
        "samples": [
            {"seed": seed, "file": output_name(r), "settings": r.settings.as_dict(), "facts": r.facts()}
            for seed, r in zip(posterior.seeds, posterior.results)
        ],
        "protocol": PROTOCOL,
        "summary": posterior.summary,
    }


def write_posterior_record(posterior: Posterior, folder: str | Path) -> Path:
    """Write the record into ``folder`` (made if missing) and return it: every sample as
    ``{model}_x{scale}_seed{seed}.png``, ``mean.png``, the maps with colour bars, ``maps.npz`` (raw values),
    ``input.png`` / ``reference.png``, ``samples.csv``, ``summary.csv``, ``sparsification.csv`` (with a
    reference) and ``run_card.json``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for result in posterior.results:
        _write_png(folder / output_name(result), result.image)
    _write_png(folder / "mean.png", posterior.mean)
    _write_png(folder / "input.png", posterior.lr)
    if posterior.hr is not None:
        _write_png(folder / "reference.png", np.asarray(posterior.hr, dtype=np.uint8))
    for name, image in map_files(posterior).items():
        _write_png(folder / name, image)
    raw = {"std_map": posterior.std_map, "lr_map": posterior.lr_map}
    if posterior.error_map is not None:
        raw.update(error_map=posterior.error_map, sample_error_maps=np.stack(posterior.sample_error_maps))
    np.savez_compressed(folder / "maps.npz", **raw)
    write_csv(folder / "samples.csv", list(posterior.rows), SAMPLE_COLUMNS)
    write_csv(folder / "summary.csv", [posterior.summary], SUMMARY_COLUMNS)
    if posterior.curves is not None:
        curve_rows = [dict(zip(posterior.curves, values)) for values in zip(*posterior.curves.values())]
        write_csv(folder / "sparsification.csv", curve_rows, list(posterior.curves))
    (folder / "run_card.json").write_text(json.dumps(run_card(posterior), indent=2, default=str))
    return folder


class _OneLineParser(argparse.ArgumentParser):
    def error(self, message):  # one plain line and exit 2, like every other bad input of this command
        self.exit(2, f"error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    p = _OneLineParser(
        prog="python -m comparisons.posterior",
        description="Draw K samples of one input (seeds seed..seed+K-1) and write their mean, std map, |error| map, "
        "LR-consistency map, sparsification curves and numbers (Spearman, AUSE, diversity) into a record folder.",
    )
    p.add_argument("--model", required=True, help="model name or cascade a>b (python -m comparisons.benchmark --list)")
    p.add_argument("--scale", type=int, help="magnification (default: the model's only scale)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--input", help="the low-resolution image to upscale")
    source.add_argument(
        "--hr", help="a reference image instead: degraded with the benchmark protocol, the LR upscaled and compared"
    )
    p.add_argument("--reference", help="with --input: the high-resolution image it came from (the outputs' size)")
    p.add_argument("--k", type=int, default=8, help=f"samples, {MIN_SAMPLES} to {MAX_SAMPLES} (default 8)")
    p.add_argument("--out", required=True, help="folder of the record (made if missing)")
    add_settings_arguments(p)
    add_device_arguments(p)
    p.add_argument("--model-dir", action="append", default=[], help="extra folder of model folders")
    return p


def _inputs(args, scale) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    """(lr, reference or None, notes) from the command line's files."""
    if args.hr:
        return prepare_input(args.hr, MODE_HR, scale)
    lr, hr, notes = prepare_input(args.input, MODE_LR, scale)
    if args.reference:
        hr, more = load_image(args.reference)
        notes += more
    return lr, hr, notes


def describe(posterior: Posterior) -> str:
    """The numbers of an exploration in a few lines of text."""
    s = posterior.summary
    lines = [
        f"{s['model']} x{s['scale']}, {s['k']} samples (seeds {s['seeds']}, {posterior.results[0].facts()['settings']})"
        f": {s['nfe']} NFE, {s['seconds']:.2f} s in the models, {s['wall_seconds']:.2f} s in all",
        f"mean spread {s['mean_spread']:.3f} grey levels (max {s['max_spread']:.2f}), diversity {s['diversity']:.3f}",
        f"LR-PSNR of the mean {s['lr_psnr_mean_image']:.2f} dB",
    ]
    if s["has_reference"]:
        lines += [
            f"Spearman(std, |error|) {s['spearman']:.3f}; AUSE {s['ause']:.4f} (random order {s['ause_random']:.4f})",
            f"PSNR-Y of the mean {s['psnr_y_mean_image']:.2f} dB; of the samples {s['psnr_y_samples']:.2f} dB "
            f"({s['psnr_y_samples_min']:.2f} to {s['psnr_y_samples_max']:.2f})",
        ]
    return "\n".join(lines + ([f"note: {s['note']}"] if s["note"] else []))


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.reference and not args.input:
        print("error: --reference goes with --input (--hr is its own reference)", file=sys.stderr)
        return 2
    try:
        settings = settings_from_args(args)
        [model] = get_models([args.model], discover(model_dirs=args.model_dir, device=args.device, dtype=args.dtype))
        scale = model.check_scale(args.scale)
        lr, hr, notes = _inputs(args, scale)
        for note in notes:
            print(f"warning: {note}", file=sys.stderr)
        posterior = explore_posterior(model, lr, scale, settings, args.k, hr)
        folder = write_posterior_record(posterior, args.out)
    except (KeyError, FileNotFoundError, ValueError, ModelUnavailableError) as err:  # SRInputError is a ValueError
        print(f"error: {err.args[0] if err.args else err}", file=sys.stderr)
        return 2
    print(describe(posterior))
    print(f"wrote {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
