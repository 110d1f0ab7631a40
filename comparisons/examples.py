"""Example images for the app and the docs, made from scikit-image's bundled samples (public
domain / CC0 photographs shipped inside the package) plus one synthetic test chart, so the project
ships no third-party test set images.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from sr_models.degradation import center_crop


def zone_chart(size: int = 256) -> np.ndarray:
    """Concentric zone plate plus sharp edges and text: aliasing and ringing show up at once."""
    y, x = np.mgrid[:size, :size].astype(np.float64) - size / 2
    plate = 0.5 + 0.5 * np.cos(np.pi * (x**2 + y**2) / (1.6 * size))
    img = np.stack([plate * 255, plate * 200 + 30, 255 - plate * 180], axis=-1).astype(np.uint8)
    pil = Image.fromarray(img)
    draw = ImageDraw.Draw(pil)
    draw.rectangle([size * 0.06, size * 0.06, size * 0.44, size * 0.22], fill=(255, 255, 255))
    draw.text((size * 0.08, size * 0.1), "SR 2x4x8x", fill=(0, 0, 0))
    for i in range(8):  # line pairs of decreasing pitch
        x0 = int(size * 0.55 + i * (8 - i))
        draw.line([(x0, size * 0.75), (x0, size * 0.95)], fill=(0, 0, 0), width=1)
    return np.asarray(pil)


def _samples() -> dict[str, np.ndarray]:
    from skimage import data

    return {
        "astronaut": center_crop(data.astronaut(), 256),
        "chelsea_cat": center_crop(data.chelsea(), 256),
        "coffee": center_crop(data.coffee(), 256),
        "rocket": center_crop(data.rocket(), 256),
        "zone_chart": zone_chart(256),
    }


def example_images(folder: str | Path) -> list[Path]:
    """Write the example PNGs into ``folder`` (once) and return their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, image in _samples().items():
        path = folder / f"{name}.png"
        if not path.exists():
            Image.fromarray(image).save(path)
        paths.append(path)
    return paths
