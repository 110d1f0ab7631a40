"""Pack a training pool into one zip of PNGs, to carry to a machine without the data (or internet).

    python -m sr_models.pack --data ../shared/data/train --out packed/train_crops.zip

Only the training split goes in (the validation split stays held out, so defaults can still be
picked on it), each image center-cropped to at most ``--max-side`` pixels a side (the patches
the zoo trains on are 64-128 px); the packed pool must stay under ``--max-mb``. Unpack with
``python -m zipfile -e FILE DIR``: folder and file names are kept, so ``--split train`` still
holds the same validation images out (none of them are in the pack).
"""

from __future__ import annotations

import argparse
import io
import sys
import zipfile
from pathlib import Path

from PIL import Image

from sr_models.data import SPLITS, find_images, split_images
from sr_models.degradation import center_crop
from sr_models.image_io import load_image


def pack(data: str | Path, out: str | Path, split: str = "train", max_side: int = 400, max_mb: float = 56) -> dict:
    """Write the zip; returns what went in. Fails, leaving nothing, if it would exceed ``max_mb``."""
    data, out = Path(data), Path(out)
    images = split_images(find_images(data), split)
    if not images:
        raise FileNotFoundError(f"no images in {data} (split {split!r})")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as archive:  # PNG is compressed already
        for path in images:
            image = center_crop(load_image(path)[0], max_side)
            buffer = io.BytesIO()
            Image.fromarray(image).save(buffer, format="PNG", optimize=True)
            # same folder/name as in the pool: the validation split (a hash of them) stays the same
            archive.writestr(str(path.relative_to(data)), buffer.getvalue())
    size_mb = tmp.stat().st_size / 2**20
    if size_mb > max_mb:
        tmp.unlink()
        raise ValueError(f"the pack would be {size_mb:.1f} MB, over --max-mb {max_mb}: lower --max-side")
    tmp.replace(out)
    return {"images": len(images), "megabytes": round(size_mb, 2), "split": split, "max_side": max_side}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m sr_models.pack", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="training pool folder (searched recursively)")
    p.add_argument("--out", required=True, help="zip file to write (e.g. packed/train_crops.zip, ignored by git)")
    p.add_argument("--split", default="train", choices=SPLITS, help="'train' leaves the validation split out")
    p.add_argument("--max-side", type=int, default=400, help="center-crop every image to at most this many px")
    p.add_argument("--max-mb", type=float, default=56, help="refuse a pack larger than this")
    args = p.parse_args(argv)
    try:
        info = pack(args.data, args.out, args.split, args.max_side, args.max_mb)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"packed {info['images']} images ({info['megabytes']} MB, split {info['split']}) into {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
