"""Speed benchmark: where the time of a diffusion SR run goes, on this machine, in one run.

    python -m comparisons.speed --size 256 --steps 50 --out results/speed

Per image at one output size and step count (weights loaded and one warm-up call made first,
neither timed; each case the median of ``--repeats`` runs, cases interleaved so drift hits all):

* ``ours``: our LDM-4x pipeline (``SRModel.upscale``, no back-projection) in each dtype (float32, and
  bfloat16 where the CPU has native bf16 units; ``--dtypes`` to choose), and ``--also`` models likewise;
  the ``default`` column marks the precision ``--dtype auto`` (the default) picks for that model here;
* ``stock``: diffusers' ``LDMSuperResolutionPipeline`` on the same weights (float32);
* ``bare``: the UNet called ``steps`` times plus one decode, nothing else: the floor of any loop,
  so ``ours / bare - 1`` is the sampling loop's overhead;
* ``sr3``: SR3-4x at the same steps (pixel vs latent space);
* ``peak``: this machine's matmul GFLOP/s per dtype, the roof: every timed row has its FLOPs
  (``torch.utils.flop_counter``), the GFLOP/s it achieved and the fraction of the peak
  (``comparisons.roofline``);
* ``large`` (``--large 4096``): each 4x model at 1 step on a large output, for peak memory.

With ``--psnr-data FOLDER`` each dtype's PSNR-Y on that folder's crops shows what half precision
costs in quality. Writes ``speed.csv`` and ``speed.html``; the printed summary gives the ratios.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from comparisons.plots import write_page
from comparisons.records import write_csv
from comparisons.roofline import flops_of, matmul_peak, roofline_columns, significant
from sr_models.device import (
    PeakMemory,
    add_device_arguments,
    dtype_name,
    native_bf16,
    pick_device,
    pick_dtype,
    rss_bytes,
)
from sr_models.diffusion_sr import to_model_range
from sr_models.registry import discover
from sr_models.sampling import make_scheduler
from sr_models.types import SamplingSettings, SRInputError

COLUMNS = [
    "case",
    "model",
    "device",
    "dtype",
    "steps",
    "output",
    "seconds",
    "seconds_min",
    "seconds_max",
    "repeats",
    "peak_memory_mb",
    "process_rss_mb",
    "load_seconds",
    "psnr_y",
    "default",
    "gflop_per_step",
    "gflop",
    "gflops_achieved",
    "peak_gflops",
    "of_peak",
]


def test_image(side: int) -> np.ndarray:
    """A natural LR image of ``side`` px (scikit-image's astronaut, MATLAB-bicubic downscaled)."""
    from skimage import data

    from sr_models.degradation import center_crop, imresize

    hr = center_crop(data.astronaut(), 512)
    return imresize(hr, output_shape=(side, side)) if side != 512 else hr


def _row(case, model, device, dtype, steps, output, times, peak=0.0, load=0.0, rss=0.0) -> dict:
    """A timed row: the median of ``times`` with its range."""
    return {
        "case": case,
        "model": model,
        "device": str(device),
        "dtype": dtype,
        "steps": steps,
        "output": output,
        "seconds": statistics.median(times),
        "seconds_min": min(times),
        "seconds_max": max(times),
        "repeats": len(times),
        "peak_memory_mb": peak,
        "process_rss_mb": rss,
        "load_seconds": load,
    }


def speed_rows(
    models: dict,
    ldm: str,
    sr3: str | None,
    size: int,
    steps: int,
    dtypes,
    device,
    repeats: int = 3,
    stock: bool = True,
    also=(),
) -> list[dict]:
    """The timed cases at output ``size`` x ``size`` (see the module doc), each with its roofline columns."""
    lr = test_image(size // 4)
    settings = SamplingSettings(steps=steps, sampler="ddim", eta=0.0, seed=0, lr_projection=0, spacing="leading")
    dtypes = ["float32", *(d for d in dtypes if d != "float32")]  # the stock and bare cases run in float32
    t0 = time.perf_counter()
    models[ldm].to(device, torch.float32).load_weights()
    load = time.perf_counter() - t0
    cases = _cases(models, ldm, sr3, lr, settings, dtypes, device, stock, also)
    flops = {(case, name): flops_of(fn) for (case, name, dtype), fn in cases.items() if dtype == "float32"}
    times, peaks = _time_cases(cases, repeats)
    roofs = {dtype: matmul_peak(pick_dtype(dtype)) for dtype in dtypes}
    rows = [peak_row(dtype, device, gflops) for dtype, gflops in roofs.items()]
    for case, name, dtype in cases:
        row = _row(case, name, device, dtype, steps, f"{size}x{size}", times[(case, name, dtype)])
        row.update(peak_memory_mb=peaks[(case, name, dtype)], load_seconds=load if case != "sr3" else 0.0)
        row["default"] = case in ("ours", "sr3") and dtype == _default_dtype(models[name], device)
        row.update(roofline_columns(flops[(case, name)], flops[(case, name)] / steps, row["seconds"], roofs[dtype]))
        rows.append(row)
    models[ldm].to(device, torch.float32)
    return rows


def _default_dtype(model, device) -> str:
    """The precision ``--dtype auto`` picks for ``model`` on ``device`` (from its card)."""
    return dtype_name(pick_dtype("auto", device, model.card))


def peak_row(dtype: str, device, gflops: float) -> dict:
    row = _row("peak", "matmul", device, dtype, 0, "", [0.0])
    row.update(gflops_achieved=significant(gflops), peak_gflops=significant(gflops), of_peak=1.0)
    return row


def default_dtypes(device) -> list[str]:
    """float32, and the half precisions this device computes natively (emulated bfloat16 only costs time)."""
    if torch.device(device).type == "cuda":
        return ["float32", "float16", "bfloat16"]
    return ["float32", "bfloat16"] if native_bf16() else ["float32"]


def _timed(fn, device) -> tuple[float, float]:
    with PeakMemory(device) as mem:
        t0 = time.perf_counter()
        fn()
        seconds = time.perf_counter() - t0
    return seconds, mem.peak_mb


def _cases(models: dict, ldm: str, sr3: str | None, lr, settings: SamplingSettings, dtypes, device, stock, also=()):
    """(case, model, dtype) -> a run returning (seconds, peak MB), loading excluded."""
    model, steps = models[ldm], settings.steps
    inner = model.load()  # the float32 LatentSR behind the entry; a dtype change reloads, so it stays float32
    cases = {}

    def run(sr_model, dtype):
        result = sr_model.to(device, dtype).upscale(lr, settings=settings)
        return result.seconds, result.peak_memory_mb

    for name in [ldm, *also]:
        for dtype in dtypes:
            cases[("ours", name, dtype)] = lambda m=models[name], d=dtype: run(m, d)
    x = to_model_range(lr).to(device)

    def bare():  # the network evaluations alone: ``steps`` UNet calls and one decode
        with torch.inference_mode():
            z = torch.randn(1, inner.vae.config.latent_channels, *x.shape[-2:], device=device)
            t = torch.tensor(500, device=device)
            for _ in range(steps):
                inner.unet(torch.cat([z, x], dim=1), t)
            inner.vae.decode(z)

    cases[("bare", ldm, "float32")] = lambda: _timed(bare, device)
    if stock:
        pipe = _stock_pipeline(inner)

        def stock_run():
            pipe(x, num_inference_steps=steps, eta=0.0, generator=torch.Generator().manual_seed(0), output_type="np")

        cases[("stock", ldm, "float32")] = lambda: _timed(stock_run, device)
    if sr3:
        for dtype in dtypes:
            cases[("sr3", sr3, dtype)] = lambda d=dtype: run(models[sr3], d)
    return cases


def _stock_pipeline(inner):
    """diffusers' own LDM super-resolution pipeline on the same weights, laid out as diffusers loads them
    (contiguous, where ours are channels_last on a CPU), leading spacing as diffusers samples."""
    from diffusers.pipelines.latent_diffusion.pipeline_latent_diffusion_superresolution import (
        LDMSuperResolutionPipeline,
    )

    vqvae, unet = (copy.deepcopy(m).to(memory_format=torch.contiguous_format) for m in (inner.vae, inner.unet))
    pipe = LDMSuperResolutionPipeline(
        vqvae=vqvae, unet=unet, scheduler=make_scheduler("ddim", inner.scheduler_config, "leading")
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _time_cases(cases: dict, repeats: int) -> tuple[dict, dict]:
    """Every case's seconds per repeat and its highest peak memory, after one untimed warm-up each."""
    for fn in cases.values():  # warm-up: first-call costs (allocator, kernels) are not the method's
        fn()
    times: dict = {key: [] for key in cases}
    peaks: dict = {key: 0.0 for key in cases}
    for _ in range(repeats):  # interleaved: a slow moment of the machine hits every case alike
        for key, fn in cases.items():
            seconds, peak = fn()
            times[key].append(seconds)
            peaks[key] = max(peaks[key], peak)
    return times, peaks


def large_rows(models: dict, names, side: int, device) -> list[dict]:
    """Each 4x model at 1 step on a ``side`` x ``side`` output: peak memory of big images (tiled)."""
    lr = test_image(side // 4)
    rows = []
    for name in names:
        model = models[name].to(device, torch.float32)
        model.load_weights()
        base = rss_bytes() / 2**20
        result = model.upscale(lr, scale=4, settings=SamplingSettings(steps=1 if model.is_diffusion else None, seed=0))
        rows.append(
            _row(
                "large",
                name,
                device,
                "float32",
                result.settings.steps or 0,
                f"{side}x{side}",
                [result.seconds],
                result.peak_memory_mb,
                result.load_seconds,
                base + result.peak_memory_mb,
            )
        )
    return rows


def psnr_rows(models: dict, ldm: str, dtypes, device, data: str, crop: int, steps: int) -> dict:
    """Mean PSNR-Y of ``ldm`` per dtype on ``data`` (HR center crops, no back-projection)."""
    from comparisons.evaluate import evaluate
    from sr_models.data import eval_pairs

    pairs = list(eval_pairs(data, 4, crop=crop))
    settings = SamplingSettings(steps=steps, seed=0, lr_projection=0)
    out = {}
    for dtype in dtypes:
        model = models[ldm].to(device, dtype)
        out[dtype_name(pick_dtype(dtype))] = float(
            np.mean([evaluate(model, p.lr, 4, settings, p.hr).scores["psnr_y"] for p in pairs])
        )
    models[ldm].to(device, torch.float32)
    return out


def summarize(rows: list[dict]) -> list[str]:
    """The ratios the acceptance asks for, then a line per row."""
    timed = [r for r in rows if r["case"] not in ("large", "peak")]
    by = {(r["case"], r["model"], r["dtype"]): r for r in timed}
    lines = [f"{r['dtype']} matmul peak: {r['peak_gflops']:.1f} GFLOP/s" for r in rows if r["case"] == "peak"]
    stock = next((r for r in timed if r["case"] == "stock"), None)
    bare = next((r for r in timed if r["case"] == "bare"), None)
    ours = next(
        (r for r in timed if r["case"] == "ours" and stock and r["model"] == stock["model"] and r["default"]), None
    )
    if ours and stock:
        lines.append(
            f"ours in its default precision ({ours['dtype']}) vs stock diffusers in float32: "
            f"{stock['seconds'] / ours['seconds']:.3f}x the speed (time ratio ours/stock {ours['seconds'] / stock['seconds']:.3f})"
        )
    full = by.get(("ours", ours["model"], "float32")) if ours else None
    if full and bare:
        lines.append(f"loop overhead over bare UNet calls + decode: {full['seconds'] / bare['seconds'] - 1:+.1%}")
    for r in timed:
        if r["case"] == "ours" and r["dtype"] != "float32" and (full_r := by.get(("ours", r["model"], "float32"))):
            lines.append(f"{r['model']} {r['dtype']}: {full_r['seconds'] / r['seconds']:.2f}x the speed of float32")
    sr3 = next((r for r in timed if r["case"] == "sr3" and r["dtype"] == "float32"), None)
    if full and sr3:
        lines.append(f"LDM-4x {sr3['seconds'] / full['seconds']:.1f}x faster than SR3-4x at equal steps (float32)")
    for r in rows:
        psnr = f", PSNR-Y {r['psnr_y']:.3f}" if r.get("psnr_y") not in (None, "") else ""
        roof = (
            f", {r['gflop']:.1f} GFLOP, {r['gflops_achieved']:.1f} GFLOP/s = {r['of_peak']:.0%} of peak"
            if r.get("gflop")
            else ""
        )
        mark = " (default)" if r.get("default") else ""
        lines.append(
            f"{r['case']:6s} {r['model']:14s} {r['dtype']:9s} {r['output']:10s} {r['seconds']:8.3f} s  "
            f"peak {r['peak_memory_mb']:7.1f} MB{psnr}{roof}{mark}"
        )
    return lines


def figure(rows: list[dict]):
    import plotly.graph_objects as go

    timed = [r for r in rows if r["case"] not in ("large", "peak")]
    fig = go.Figure(
        go.Bar(
            x=[f"{r['case']} {r['model']} {r['dtype']}" for r in timed],
            y=[r["seconds"] for r in timed],
            error_y={
                "type": "data",
                "symmetric": False,
                "array": [r["seconds_max"] - r["seconds"] for r in timed],
                "arrayminus": [r["seconds"] - r["seconds_min"] for r in timed],
            },
            text=[f"{r['seconds']:.2f} s" for r in timed],
        )
    )
    title = (
        f"seconds per image, {timed[0]['output']} output, {timed[0]['steps']:g} steps, {timed[0]['device']}"
        if timed
        else ""
    )
    fig.update_layout(title=title, yaxis_title="seconds (median, min-max bars)", template="plotly_white")
    return fig


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m comparisons.speed", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="folder for speed.csv and speed.html")
    p.add_argument("--size", type=int, default=256, help="output side in px (the LR is a quarter)")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--ldm", default="ldm-x4-stock", help="the LDM-4x model (stock layout, for the stock pipeline)")
    p.add_argument("--sr3", default="sr3-x4", help="the SR3-4x model ('' to skip)")
    p.add_argument(
        "--dtypes",
        help="dtypes of our pipeline, e.g. float32,bfloat16,float16 (default: float32 and the half precisions "
        "this device computes natively)",
    )
    p.add_argument("--also", default="ldm-x4", help="more LDM models timed like --ldm, comma-separated ('' for none)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--no-stock", action="store_true", help="skip the stock diffusers pipeline")
    p.add_argument("--large", type=int, default=0, help="also run every 4x model once at this output side (e.g. 4096)")
    p.add_argument("--large-models", default="bicubic,regression-x4,ldm-x4-stock,ldm-x4,sr3-x4")
    p.add_argument("--psnr-data", help="test folder: PSNR-Y of the LDM per dtype on its center crops")
    p.add_argument("--psnr-crop", type=int, default=128)
    p.add_argument("--threads", type=int, help="torch CPU threads")
    add_device_arguments(p)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        device = pick_device(args.device)
        names = args.dtypes.split(",") if args.dtypes else default_dtypes(device)
        dtypes = [dtype_name(pick_dtype(d)) for d in names if d]
        also = [n for n in args.also.split(",") if n]
        models = discover(device=device)
        for name in [args.ldm, *also, *([args.sr3] if args.sr3 else [])]:
            if name not in models:
                raise SRInputError(f"unknown model {name!r}; known: {', '.join(models)}")
        rows = speed_rows(
            models,
            args.ldm,
            args.sr3 or None,
            args.size,
            args.steps,
            dtypes,
            device,
            args.repeats,
            stock=not args.no_stock,
            also=also,
        )
        if args.psnr_data:
            psnr = psnr_rows(models, args.ldm, dtypes, device, args.psnr_data, args.psnr_crop, args.steps)
            for r in rows:
                if r["case"] == "ours" and r["model"] == args.ldm:
                    r["psnr_y"] = psnr[r["dtype"]]
        if args.large:
            rows += large_rows(models, [n for n in args.large_models.split(",") if n in models], args.large, device)
    except (SRInputError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "speed.csv", rows, COLUMNS)
    write_page(out / "speed.html", "Speed study", [figure(rows)])
    from sr_models.device import hardware_description

    print(f"machine: {hardware_description()}; device {device}; torch {torch.__version__}")
    print("\n".join(summarize(rows)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
