"""Denoising-trajectory animations: the noisy state x_t next to the predicted clean image x̂0
after each kept step, ending on the returned image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def _labelled(frame: np.ndarray, label: str, max_side: int) -> Image.Image:
    img = Image.fromarray(frame)
    if max(img.size) > max_side:  # keep the animation light for a browser
        img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    draw = ImageDraw.Draw(img)
    box = draw.textbbox((4, 4), label)
    draw.rectangle([box[0] - 2, box[1] - 2, box[2] + 2, box[3] + 2], fill=(0, 0, 0))
    draw.text((4, 4), label, fill=(255, 255, 255))
    return img


def _side_by_side(left: Image.Image, right: Image.Image, gap: int = 4) -> Image.Image:
    out = Image.new("RGB", (left.width + gap + right.width, max(left.height, right.height)), (255, 255, 255))
    out.paste(left, (0, 0))
    out.paste(right, (left.width + gap, 0))
    return out


def trajectory_gif(
    frames: list[np.ndarray], labels: list[str], path: str | Path, seconds_per_frame: float = 0.4, max_side: int = 384,
    noisy: list[np.ndarray] | None = None,
) -> Path:
    """Write an animated GIF of the x̂0 frames (with the matching x_t frames on their left when
    ``noisy`` is given; the last frame held longer) and return its path."""
    if not frames:
        raise ValueError("no frames to animate")
    images = [_labelled(f, lab, max_side) for f, lab in zip(frames, labels)]
    if noisy:
        images = [_side_by_side(_labelled(n, "x_t", max_side), im) for n, im in zip(noisy, images)]
    durations = [int(seconds_per_frame * 1000)] * (len(images) - 1) + [1500]
    path = Path(path)
    images[0].save(path, save_all=True, append_images=images[1:], duration=durations, loop=0, optimize=False)
    return path
