"""Half precision against float32 on a model's validation images: the number ``--dtype auto`` trusts.

    python -m comparisons.precision --models ldm-x4,sr3-x4 --split val --crop 128 \
        --data ../shared/data/train/BSDS200 --data ../shared/data/train/T91 \
        --data ../shared/data/train/Kodak24_500crop --data ../shared/data/train/McMaster18 \
        --out assets/studies/precision --update-cards

Each model runs over the folders' HR center crops (``sr_models.data.eval_pairs``) once in float32 and
once in each half dtype, raw (no back-projection), at its default steps, seed 0, every image through
``comparisons.evaluate.evaluate``. Writes ``precision.csv`` (one row per model and dtype: mean PSNR-Y
in both, their difference, the largest pixel difference between the two outputs over the set, the
dtype's model seconds over the set) and a run card. ``--update-cards`` (only with ``--split val``)
records the difference as ``precision.<dtype>`` in each model's card, which ``sr_models.device.auto_dtype``
reads: within ``HALF_PSNR_TOLERANCE_DB`` a CPU with native bf16 units runs the model in bfloat16.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from comparisons import distributed
from comparisons.evaluate import Evaluation, evaluate
from comparisons.provenance import run_commit, run_header, start_run
from comparisons.records import write_csv
from sr_models.base import ModelUnavailableError, SRInputError
from sr_models.cards import read_card, write_card
from sr_models.data import SPLITS, eval_pairs
from sr_models.device import HALF_PSNR_TOLERANCE_DB, hardware_description, native_bf16, pick_device
from sr_models.registry import discover, get_models
from sr_models.types import SamplingSettings

HALF_DTYPES = ("bfloat16", "float16")
COLUMNS = [
    "model",
    "dtype",
    "steps",
    "images",
    "psnr_y_float32",
    "psnr_y",
    "delta_db",
    "max_abs_pixel_diff",
    "seconds",
]
SETTINGS = SamplingSettings(seed=0, lr_projection=0)  # raw output at the model's default steps: what auto serves
INPUT_ERRORS = (KeyError, FileNotFoundError, SRInputError, ModelUnavailableError)


def computes_natively(device, dtype: str) -> bool:
    """Whether ``device`` has units for ``dtype``; a CPU without them emulates it (same arithmetic, slower)."""
    if pick_device(device).type != "cpu":
        return True
    return dtype == "bfloat16" and native_bf16()


def run_pass(model, pairs, scale: int, device, dtype: str) -> list[Evaluation]:
    """Every pair through ``model`` in ``dtype`` (a dtype change reloads the weights: no down-and-up cast)."""
    model.to(device, dtype)
    return distributed.map_images(
        lambda pair: evaluate(model, pair.lr, scale, SETTINGS, pair.hr, name=pair.name), pairs
    )


def mean_psnr_y(evaluations: list[Evaluation]) -> float:
    return float(np.mean([e.scores["psnr_y"] for e in evaluations]))


def max_pixel_difference(reference: list[Evaluation], other: list[Evaluation]) -> int:
    """The largest |difference| in grey levels between the two runs' outputs, over every image."""
    return max(int(np.abs(a.image.astype(np.int16) - b.image.astype(np.int16)).max()) for a, b in zip(reference, other))


def compare_row(model_name: str, dtype: str, reference: list[Evaluation], half: list[Evaluation]) -> dict:
    psnr_float32, psnr = mean_psnr_y(reference), mean_psnr_y(half)
    return {
        "model": model_name,
        "dtype": dtype,
        "steps": half[0].result.settings.steps,
        "images": len(half),
        "psnr_y_float32": psnr_float32,
        "psnr_y": psnr,
        "delta_db": psnr - psnr_float32,
        "max_abs_pixel_diff": max_pixel_difference(reference, half),
        "seconds": sum(e.result.seconds for e in half),
    }


def measure_model(model, data, dtypes, *, device=None, crop=None, limit=None, split="all") -> list[dict]:
    """One row per half dtype: ``model`` over the pairs of ``data`` in float32 and in that dtype."""
    scale = model.scales[0]
    pairs = [p for folder in data for p in eval_pairs(folder, scale, limit=limit, crop=crop, split=split)]
    reference = run_pass(model, pairs, scale, device, "float32")
    rows = [compare_row(model.name, dtype, reference, run_pass(model, pairs, scale, device, dtype)) for dtype in dtypes]
    model.to(device, "float32")
    return rows


def precision_study(models, data, out: Path, dtypes=("bfloat16",), *, command: str = "", **protocol) -> list[dict]:
    """Every model measured (``protocol``: device, crop, limit, split); the CSV and run card written."""
    start_run(out)
    started = time.perf_counter()
    rows = [row for model in models for row in measure_model(model, data, dtypes, **protocol)]
    if distributed.is_main():
        write_csv(out / "precision.csv", rows, COLUMNS)
        write_run_card(out, command, data, protocol, time.perf_counter() - started)
    return rows


def write_run_card(out: Path, command: str, data, protocol: dict, seconds: float) -> None:
    card = {
        **run_header(command, seconds),
        "data": data_description(data, protocol.get("split", "all")),
        "crop": protocol.get("crop"),
        "sampling": "each model's default steps and sampler, seed 0, raw (no back-projection)",
    }
    (out / "run_card.json").write_text(json.dumps(card, indent=2, default=str) + "\n")


def data_description(data, split: str) -> str:
    names = ", ".join(Path(folder).name for folder in data)
    return names if split == "all" else f"{names} (split {split})"


def card_entry(row: dict, *, data, crop, native: bool) -> dict:
    """What ``sr_models.device.validated_half`` reads (``val_psnr_y_delta_db``), with how it was measured."""
    return {
        "val_psnr_y_delta_db": round(row["delta_db"], 4),
        "psnr_y_float32": round(row["psnr_y_float32"], 4),
        "images": row["images"],
        "crop": crop,
        "steps": row["steps"],
        "data": data_description(data, "val"),
        "measured_on": hardware_description(),
        "commit": run_commit(),
        "native": native,
    }


def update_cards(models, rows: list[dict], *, data, crop, device=None) -> list[tuple[str, Path]]:
    """Record each row as ``precision.<dtype>`` in its folder model's card (other dtypes' entries kept);
    returns the (name, folder) of each card written."""
    folders = {m.name: getattr(m, "folder", None) for m in models}
    written = []
    for row in (r for r in rows if folders.get(r["model"]) is not None):
        folder = Path(folders[row["model"]])
        card = read_card(folder)
        native = computes_natively(device, row["dtype"])
        card.setdefault("precision", {})[row["dtype"]] = card_entry(row, data=data, crop=crop, native=native)
        write_card(folder, card)
        written.append((row["model"], folder))
    return written


def summary_lines(rows: list[dict]) -> list[str]:
    lines = []
    for r in rows:
        verdict = "within" if abs(r["delta_db"]) <= HALF_PSNR_TOLERANCE_DB else "outside"
        lines.append(
            f"{r['model']:16s} {r['dtype']:9s} {r['images']:3d} images: PSNR-Y {r['psnr_y_float32']:.3f} -> "
            f"{r['psnr_y']:.3f} dB ({r['delta_db']:+.4f}, {verdict} {HALF_PSNR_TOLERANCE_DB} dB), "
            f"max pixel difference {r['max_abs_pixel_diff']}, {r['seconds']:.2f} s"
        )
    return lines


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m comparisons.precision", description=__doc__.split("\n\n")[0])
    p.add_argument("--models", required=True, help="comma-separated model names, e.g. ldm-x4,sr3-x4")
    p.add_argument("--data", action="append", required=True, help="an image folder (repeatable)")
    p.add_argument(
        "--dtypes", default="bfloat16", help=f"comma-separated half dtypes to measure ({', '.join(HALF_DTYPES)})"
    )
    p.add_argument("--crop", type=int, default=128, help="HR center crop size (0: whole images)")
    p.add_argument("--limit", type=int, help="at most this many images per folder")
    p.add_argument("--split", default="all", choices=SPLITS, help="'val': the training pool's held-out split")
    p.add_argument("--out", default="assets/studies/precision")
    p.add_argument("--device", help="where models run (default: $SR_DEVICE, else the best present)")
    p.add_argument("--model-dir", action="append", default=[], help="extra folder of model folders")
    p.add_argument(
        "--update-cards",
        action="store_true",
        help="record precision.<dtype> in each folder model's card, which --dtype auto reads (only with --split val)",
    )
    distributed.add_threads_argument(p)
    return p


def parse_dtypes(text: str, parser: argparse.ArgumentParser) -> list[str]:
    dtypes = [d.strip() for d in text.split(",") if d.strip()]
    unknown = [d for d in dtypes if d not in HALF_DTYPES]
    if unknown or not dtypes:
        parser.error(f"--dtypes: choose from {', '.join(HALF_DTYPES)} (got {text!r})")
    return dtypes


def say_emulated(device, dtypes) -> None:
    for dtype in (d for d in dtypes if not computes_natively(device, d)):
        print(f"note: {dtype} is emulated on this CPU (no native units): slow, but the numbers are the same arithmetic")


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    dtypes = parse_dtypes(args.dtypes, parser)
    if args.update_cards and args.split != "val":  # the studies' rule: card numbers never come from test images
        parser.error("--update-cards records a validation number: run it on the validation split (--split val)")
    protocol = {"device": args.device, "crop": args.crop or None, "limit": args.limit, "split": args.split}
    try:
        distributed.start(args.device, args.threads)
        models = get_models(args.models.split(","), discover(model_dirs=args.model_dir, device=args.device))
        if distributed.is_main():
            say_emulated(args.device, dtypes)
        command = "python -m comparisons.precision " + " ".join(sys.argv[1:] if argv is None else argv)
        rows = precision_study(models, args.data, Path(args.out), dtypes, command=command, **protocol)
    except INPUT_ERRORS as err:
        print(f"error: {err.args[0] if err.args else err}", file=sys.stderr)
        return 2
    if not distributed.is_main():
        return 0
    print("\n".join([*summary_lines(rows), f"wrote {Path(args.out) / 'precision.csv'}"]))
    if args.update_cards:
        for name, folder in update_cards(models, rows, data=args.data, crop=protocol["crop"], device=args.device):
            print(f"{name}: precision recorded in {folder / 'sr_model.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
