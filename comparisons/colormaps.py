"""Maps (HxW values in grey levels) as colour images with a colour bar, for the app, the CLI and run records.

matplotlib is not a dependency: the colour tables are plotly's sequential scales (``plotly.colors``)
interpolated to 256 entries in numpy, and the bar's tick labels are drawn with PIL's default font.

Every image :func:`map_image` returns is the colour-mapped map in its left ``W`` columns (W the map's width,
the same height), then the bar: linked zoom can crop ``image[:, :W]`` and line it up with the samples.
The scale runs from 0 (every map here is non-negative) to ``vmax`` (default: the 99.5th percentile); larger
values show in the top colour and the bar's top value then reads '>vmax'.
"""

from __future__ import annotations

import math
from functools import cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from plotly import colors

COLORMAPS = ("viridis", "magma", "cividis", "inferno")
GAP = 6  # px between the map and the bar
BAR_WIDTH = 12
TICK_LENGTH = 3
MIN_TICK_SPACING = 28  # px between tick labels, so the default font (about 11 px) never overlaps
BACKGROUND = (255, 255, 255)
INK = (0, 0, 0)
DEFAULT_PERCENTILE = 99.5  # top of the scale when none is given


@cache
def colormap_table(name: str = "viridis") -> np.ndarray:
    """256x3 uint8: plotly's sequential scale ``name`` linearly interpolated between its colour stops."""
    if name not in COLORMAPS:
        raise ValueError(f"unknown colormap {name!r}; choose from {', '.join(COLORMAPS)}")
    stops = np.array([colors.hex_to_rgb(c) for c in getattr(colors.sequential, name.capitalize())], dtype=np.float64)
    positions = np.linspace(0.0, 1.0, len(stops))
    x = np.linspace(0.0, 1.0, 256)
    table = np.stack([np.interp(x, positions, stops[:, c]) for c in range(3)], axis=1)
    return np.round(table).astype(np.uint8)


def map_vmax(values: np.ndarray, vmax: float | None = None) -> float:
    """The top of the scale: ``vmax`` if given, else the map's 99.5th percentile (a few outlier pixels would
    leave the rest of the map in the bottom colours), else its maximum, else 1 for an all-zero map."""
    if vmax is not None:
        if not (math.isfinite(vmax) and vmax > 0):
            raise ValueError(f"vmax must be a positive number, got {vmax!r}")
        return float(vmax)
    finite = np.asarray(values, dtype=np.float64)[np.isfinite(values)]
    if finite.size == 0:
        return 1.0
    top = float(np.percentile(finite, DEFAULT_PERCENTILE))
    top = top if top > 0 else float(finite.max())
    return top if top > 0 else 1.0


def is_clipped(values: np.ndarray, vmax: float) -> bool:
    """Whether some value is above the top of the scale (the bar then reads '>vmax')."""
    finite = np.asarray(values, dtype=np.float64)[np.isfinite(values)]
    return bool(finite.size and finite.max() > vmax)


def colorize(values: np.ndarray, vmax: float | None = None, cmap: str = "viridis") -> np.ndarray:
    """HxW values -> HxWx3 uint8 through the colour table, 0 to ``vmax`` (NaN shows as 0)."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"a map is HxW, got shape {values.shape}")
    top = map_vmax(values, vmax)
    index = np.round(np.clip(np.nan_to_num(values, nan=0.0) / top, 0.0, 1.0) * 255).astype(np.intp)
    return colormap_table(cmap)[index]


def nice_ticks(vmax: float, height: int) -> list[float]:
    """Round tick values from 0 to ``vmax`` (steps of 1, 2, 2.5 or 5 x 10^n), as many as fit ``height``."""
    count = max(2, min(6, height // MIN_TICK_SPACING))
    raw = vmax / (count - 1)
    power = 10.0 ** math.floor(math.log10(raw))
    steps = [m * power * tens for tens in (0.1, 1, 10) for m in (1, 2, 2.5, 5)]
    fitting = [s for s in steps if s <= vmax * (1 + 1e-9)]  # 0 and at least one more tick
    step = min((s for s in fitting if s >= raw * (1 - 1e-9)), default=max(fitting))
    return [i * step for i in range(int(vmax / step + 1e-9) + 1)]


def _tick_text(value: float) -> str:
    return f"{value:.4g}"


def bar_ticks(vmax: float, height: int, clipped: bool = False, text_height: int = 12) -> list[tuple[float, str]]:
    """(value, text) of each tick: round values, and ``vmax`` itself at the top ('>vmax' when clipped: the
    default font has no '≥'); round values too close below the top are left out so no two texts overlap."""
    top = [(vmax, (">" if clipped else "") + _tick_text(vmax))]
    room = (vmax * text_height / max(1, height - 1)) * 1.2
    return [(t, _tick_text(t)) for t in nice_ticks(vmax, height) if t <= vmax - room] + top


def _font() -> ImageFont.ImageFont:
    return ImageFont.load_default()


def _text_size(text: str, font) -> tuple[int, int]:
    left, top, right, bottom = font.getbbox(text)
    return int(right - left), int(bottom - top)


def _rotated_label(label: str, font) -> Image.Image:
    """The axis label written bottom to top, as a small RGB image."""
    width, height = _text_size(label, font)
    text = Image.new("RGB", (width + 2, height + 4), BACKGROUND)
    ImageDraw.Draw(text).text((1 - font.getbbox(label)[0], 1 - font.getbbox(label)[1]), label, fill=INK, font=font)
    return text.rotate(90, expand=True)


def colorbar(
    height: int, vmax: float, label: str = "grey levels", cmap: str = "viridis", clipped: bool = False
) -> np.ndarray:
    """The bar alone, ``height`` px high: the colour gradient (vmax at the top), ticks, values, the label."""
    font = _font()
    ticks = bar_ticks(vmax, height, clipped, _text_size("0123456789", font)[1])
    text_width = max(_text_size(text, font)[0] for _, text in ticks)
    rotated = _rotated_label(label, font) if label else None
    show_label = rotated is not None and rotated.height <= height
    label_width = rotated.width + 4 if show_label else 0
    width = GAP + BAR_WIDTH + TICK_LENGTH + 2 + text_width + 4 + label_width
    panel = Image.new("RGB", (width, height), BACKGROUND)
    gradient = colormap_table(cmap)[np.round(np.linspace(255, 0, height)).astype(np.intp)]
    panel.paste(Image.fromarray(np.repeat(gradient[:, None], BAR_WIDTH, axis=1)), (GAP, 0))
    draw = ImageDraw.Draw(panel)
    x = GAP + BAR_WIDTH
    for value, text in ticks:
        y = round((1 - value / vmax) * (height - 1))
        draw.line([(x, y), (x + TICK_LENGTH - 1, y)], fill=INK)
        left, upper, _, lower = font.getbbox(text)
        top = min(max(0, y - (lower - upper) // 2), height - (lower - upper) - 1)
        draw.text((x + TICK_LENGTH + 2 - left, top - upper), text, fill=INK, font=font)
    if show_label:
        panel.paste(rotated, (width - rotated.width - 2, (height - rotated.height) // 2))
    return np.asarray(panel)


def with_colorbar(
    image: np.ndarray, vmax: float, label: str = "grey levels", cmap: str = "viridis", clipped: bool = False
) -> np.ndarray:
    """An already colour-mapped HxWx3 map with its bar to the right; the map stays in the left W columns."""
    bar = colorbar(image.shape[0], vmax, label, cmap, clipped)
    return np.concatenate([np.asarray(image, dtype=np.uint8), bar], axis=1)


def map_image(
    values: np.ndarray, vmax: float | None = None, label: str = "grey levels", cmap: str = "viridis"
) -> np.ndarray:
    """HxW values in grey levels -> an RGB uint8 image of the map with a colour bar beside it, same height.

    ``vmax`` None: the 99.5th percentile (``map_vmax``); values above it show in the top colour and the
    bar's top value reads '>vmax'. Give one ``vmax`` to several maps to compare them on one scale."""
    top = map_vmax(values, vmax)
    return with_colorbar(colorize(values, top, cmap), top, label, cmap, is_clipped(values, top))
