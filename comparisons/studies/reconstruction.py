"""The reconstruction study: each HR test image through a first stage (encode, decode), the ceiling
of every latent diffusion model built on it.

    python -m comparisons.studies reconstruction --first-stage assets/first-stage-f4-c8 \
        --data ../shared/data/test/Set14 --update-card
"""

from __future__ import annotations

from pathlib import Path

from comparisons.records import write_csv


def reconstruction_study(
    folder: Path,
    datasets,
    out: Path | None = None,
    crop=None,
    limit=None,
    update_card: bool = False,
    device=None,
    dtype=None,
) -> list[dict]:
    """First-stage encode -> decode of each HR test image: the ceiling of every LDM built on it."""
    import numpy as np
    import torch
    from diffusers import AutoencoderKL

    from sr_models.data import eval_pairs
    from sr_models.device import pick_device, pick_dtype, place
    from sr_models.diffusion_sr import to_image, to_model_range
    from sr_models.metrics import psnr, ssim

    device, dtype = pick_device(device), pick_dtype(dtype)
    vae = place(AutoencoderKL.from_pretrained(folder, use_safetensors=True).eval(), device, dtype)
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    rows = []
    for data in datasets:
        scores = []
        for pair in eval_pairs(data, factor, limit=limit, crop=crop):  # mod-crop to the factor
            with torch.inference_mode():
                x = to_model_range(pair.hr).to(device, dtype)
                recon = to_image(vae.decode(vae.encode(x).latent_dist.mode()).sample)
            # signed mean error per channel: a colour cast shows as a mean far from 0 in one channel
            cast = (recon.astype(np.float64) - pair.hr).reshape(-1, 3).mean(axis=0)
            scores.append((psnr(recon, pair.hr, factor), ssim(recon, pair.hr, factor), *cast))
        rows.append(
            {
                "dataset": Path(data).name,
                "n_images": len(scores),
                "crop": crop or "",
                "psnr_y": float(np.mean([s[0] for s in scores])),
                "ssim_y": float(np.mean([s[1] for s in scores])),
                **{f"mean_error_{c}": float(np.mean([s[2 + i] for s in scores])) for i, c in enumerate("rgb")},
                "max_abs_image_cast": float(np.max([np.abs(s[2:]).max() for s in scores])),
            }
        )
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        write_csv(out / "reconstruction.csv", rows, list(rows[0]))
    if update_card:
        _update_card(folder, rows, factor)
    return rows


def _update_card(folder: Path, rows: list[dict], factor: int) -> None:
    """The rows as the first stage's measured metrics (scale 1), with the protocol in words."""
    from sr_models.cards import read_card, write_card

    meta = read_card(folder)
    meta["metrics"] = [
        {k: round(v, 4) if isinstance(v, float) else v for k, v in {**r, "scale": 1}.items()} for r in rows
    ]
    meta["metrics_protocol"] = (
        f"Reconstruction (encode, posterior mode, decode) of each HR test image mod-cropped "
        f"to {factor}; PSNR/SSIM on BT.601 Y with {factor} px shaved: the ceiling of any "
        "LDM on this first stage. `python -m comparisons.studies reconstruction`."
    )
    write_card(folder, meta)
