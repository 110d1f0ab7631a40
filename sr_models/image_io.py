"""Reading user images into the HxWx3 uint8 RGB every model takes, with plain-words errors.

Everything a user may upload goes through ``load_image``: it never lets a decoder stack trace
through, converts odd modes (RGBA, palette, 16-bit, grayscale, CMYK, float) and says what it did.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from sr_models.base import SRInputError

MAX_PIXELS_ENV = "SR_MAX_INPUT_PIXELS"
DEFAULT_MAX_PIXELS = 1_000_000  # about 1000x1000: a 4x output is then 16 MP, minutes on a CPU


def max_input_pixels() -> int:
    return int(os.environ.get(MAX_PIXELS_ENV, DEFAULT_MAX_PIXELS))


def _to_rgb(img: Image.Image, notes: list[str]) -> Image.Image:
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        if rgba.getchannel("A").getextrema()[0] < 255:
            notes.append("the image has transparency: composited over white")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode == "P":
        notes.append("palette image converted to RGB")
        return img.convert("RGB")
    if mode in ("L", "1"):
        notes.append("grayscale image: its channel was copied to R, G and B")
        return img.convert("RGB")
    if mode == "CMYK":
        notes.append("CMYK image converted to RGB (no colour profile applied)")
        return img.convert("RGB")
    if mode.startswith("I") or mode == "F":
        # 16-bit or float grayscale: rescale its real range to 8 bits rather than clipping.
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = (0.0, 65535.0) if mode.startswith("I;16") or arr.max() > 255 else (0.0, 255.0)
        if mode == "F":
            lo, hi = float(arr.min()), float(arr.max()) or 1.0
        notes.append(f"{mode} ({'16-bit' if hi == 65535.0 else 'high bit-depth'}) grayscale reduced to 8-bit RGB")
        arr8 = np.clip(np.round((arr - lo) / max(hi - lo, 1e-12) * 255), 0, 255).astype(np.uint8)
        return Image.fromarray(arr8).convert("RGB")
    notes.append(f"{mode} image converted to RGB")
    return img.convert("RGB")


def load_image(source, max_pixels: int | None = None) -> tuple[np.ndarray, list[str]]:
    """Open a path, bytes or PIL image; return (HxWx3 uint8 RGB, notes about conversions).

    Raises ``SRInputError`` with a message for the user on anything it cannot use.
    """
    max_pixels = max_input_pixels() if max_pixels is None else max_pixels
    notes: list[str] = []
    name = "the image"
    try:
        if isinstance(source, Image.Image):
            img = source
        else:
            if isinstance(source, (bytes, bytearray)):
                fp = io.BytesIO(source)
            else:
                path = Path(source)
                name = path.name
                if not path.is_file():
                    raise SRInputError(f"{name}: file not found")
                fp = path
            with Image.open(fp) as opened:
                # Check the size from the header before decoding a possibly huge image.
                w, h = opened.size
                if w * h > max_pixels:
                    raise SRInputError(
                        f"{name} is {w}x{h} = {w * h / 1e6:.1f} MP, above the limit of {max_pixels / 1e6:.1f} MP "
                        f"for an input (set {MAX_PIXELS_ENV} to change it, or crop the image)"
                    )
                opened.load()
                img = ImageOps.exif_transpose(opened)
                if img is opened:
                    img = opened.copy()
        if img.width * img.height > max_pixels:
            raise SRInputError(f"{name} is {img.width}x{img.height}, above the limit of {max_pixels} pixels")
        if getattr(img, "n_frames", 1) > 1:
            notes.append("animated/multi-frame image: only its first frame is used")
        arr = np.asarray(_to_rgb(img, notes))
    except SRInputError:
        raise
    except UnidentifiedImageError:
        raise SRInputError(f"{name} is not an image file Pillow can read (PNG, JPEG, WebP, BMP, TIFF, ...)") from None
    except Image.DecompressionBombError:
        raise SRInputError(f"{name} declares an enormous size; refused as a possible decompression bomb") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise SRInputError(f"{name} could not be decoded (truncated or corrupt file: {err})") from None
    if arr.dtype != np.uint8:
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(arr), notes
