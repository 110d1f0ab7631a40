"""Denoising trajectories: the noisy state x_t next to the predicted clean image x̂0 after each kept
step, ending on the returned image, as an animated GIF or one frame at a time (the app's frame slider)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from sr_models.previews import nearest_resize

ALL_STEPS_UP_TO = 25  # runs of up to this many steps keep (and show) every step
MIN_FRAMES = 8
FRAME_BUDGET_BYTES = 300 * 2**20  # kept frames of one model's run (x_t and x̂0, uint8 RGB)


def frames_to_keep(out_pixels: int) -> int:
    """How many trajectory frames to keep per model: every step of a run of up to 25 steps (evenly
    spaced steps of a longer one), fewer for large outputs so a run's frames stay within budget."""
    per_frame = max(1, out_pixels) * 3 * 2
    return int(max(MIN_FRAMES, min(ALL_STEPS_UP_TO, FRAME_BUDGET_BYTES // per_frame)))


def frame_pair(result, index: int, gap: int = 4) -> tuple[np.ndarray, str]:
    """Kept frame ``index`` (negative: from the end) of a run as one image, x_t left and x̂0 right at the
    output size (nearest for earlier cascade stages), full resolution and unlabelled, and its label.
    The last frame's right half is the returned image."""
    frames = [(s, i) for s in result.stages for i in range(len(s.trajectory))]
    if not frames:
        raise ValueError(f"{result.model} kept no trajectory frames")
    stage, i = frames[index]
    h, w = result.image.shape[:2]
    x_t, x0 = nearest_resize(stage.trajectory.x_t[i], h, w), nearest_resize(stage.trajectory.x0[i], h, w)
    out = np.full((h, 2 * w + gap, 3), 255, dtype=np.uint8)
    out[:, :w], out[:, w + gap :] = x_t, x0
    label = stage.trajectory.labels[i]
    return out, (f"{stage.model}: {label}" if len(result.stages) > 1 else label)


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
    frames: list[np.ndarray],
    labels: list[str],
    path: str | Path,
    seconds_per_frame: float = 0.4,
    max_side: int = 384,
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
