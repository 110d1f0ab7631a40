"""LIIF-style regression at any scale (family ``liif``, model ``liif-x``; Chen et al., CVPR 2021).

An EDSR-lite encoder (``sr_models.regression``'s blocks) turns the LR into a grid of latent codes at
LR resolution; an implicit decoder, an MLP, gives the colour at any continuous position from the
codes around it, the position relative to them and the size of the output pixel (the "cell"). So one
weight file serves every scale and every output size round(s * w) x round(s * h).

As in LIIF, the MLP sees the 3x3 neighbourhood of a code ("feature unfolding"), the relative
coordinate and the cell (both in LR half-pixels, LIIF's units), and the four codes around a query are
blended by the areas of the opposite rectangles ("local ensemble"). Two changes, neither of which
alters what the model can express:

* the MLP's first layer on the unfolded 3x3 feature is a 3x3 convolution of the feature map, computed
  once per LR pixel instead of four times per output pixel (the same linear map, so the same model);
* the output is a residual over the bicubic upsample, and the last layer starts at zero, so an
  untrained model *is* bicubic (the regression baseline's trick, which makes CPU budgets enough).

Memory stays bounded at any size: the encoder runs in overlapping LR tiles (``sr_models.tiling``)
and the decoder in bands of output rows.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from sr_models.base import NetworkSR
from sr_models.degradation import scaled_size
from sr_models.regression import ResBlock, to_tensor, to_uint8
from sr_models.tiling import tiled
from sr_models.types import NetworkCalls

QUERY_CHUNK = 1 << 15  # output pixels decoded at once: 4 x this x hidden floats of codes in flight
NOMINAL_SCALES = (2, 3, 4)  # the whole scales inside the training range, for menus; any real scale runs


def lr_coordinates(out_len: int, in_len: int, device=None) -> torch.Tensor:
    """LR position (in LR pixels, 0 = centre of the first) of each output pixel centre along one axis.

    Pixel centres aligned, as torch's ``interpolate(..., align_corners=False)`` and MATLAB map them."""
    return (torch.arange(out_len, device=device, dtype=torch.float32) + 0.5) * (in_len / out_len) - 0.5


class LIIFNet(ModelMixin, ConfigMixin):
    """Encoder + implicit decoder on images in [0, 1]; ``forward(lr, size) -> sr`` of that (H, W)."""

    @register_to_config
    def __init__(
        self, channels: int = 32, num_blocks: int = 8, res_scale: float = 0.2, hidden: int = 64, mlp_layers: int = 3
    ):
        super().__init__()
        self.head = nn.Conv2d(3, channels, 3, padding=1)
        self.body = nn.Sequential(*[ResBlock(channels, res_scale) for _ in range(num_blocks)])
        self.body_tail = nn.Conv2d(channels, channels, 3, padding=1)
        # The MLP's first layer: on the unfolded 3x3 feature (a 3x3 conv, zero padding as LIIF's unfold)
        # and on the geometry (relative y, x and cell y, x).
        self.feature_in = nn.Conv2d(channels, hidden, 3, padding=1)
        self.geometry_in = nn.Linear(4, hidden, bias=False)
        layers: list[nn.Module] = []
        for _ in range(mlp_layers - 1):
            layers += [nn.ReLU(), nn.Linear(hidden, hidden)]
        layers += [nn.ReLU(), nn.Linear(hidden, 3)]
        self.mlp = nn.Sequential(*layers)
        nn.init.zeros_(self.mlp[-1].weight)  # start as exact bicubic: the residual begins at 0
        nn.init.zeros_(self.mlp[-1].bias)

    def encode(self, lr: torch.Tensor) -> torch.Tensor:
        """LR (B x 3 x h x w) -> the codes' first-layer activations, B x hidden x h x w."""
        feat = self.head(lr - 0.5)
        feat = feat + self.body_tail(self.body(feat))
        return self.feature_in(feat)

    def query(self, codes: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor, cell: torch.Tensor) -> torch.Tensor:
        """Residual colours (B x Q x 3) at LR positions ``ys``, ``xs`` (B x Q) of output pixels of size
        ``cell`` (LR pixels along y and x): the local ensemble of the four codes around each position."""
        h, w = codes.shape[-2:]
        flat = codes.flatten(2)
        cell_in = (2 * cell).expand(*ys.shape, 2)
        preds, areas = [], []
        for dy in (0, 1):
            iy = (ys.floor() + dy).clamp(0, h - 1)
            for dx in (0, 1):
                ix = (xs.floor() + dx).clamp(0, w - 1)
                index = (iy * w + ix).long()[:, None].expand(-1, flat.shape[1], -1)
                code = torch.gather(flat, 2, index).transpose(1, 2)
                rel_y, rel_x = ys - iy, xs - ix
                geometry = torch.cat([torch.stack([2 * rel_y, 2 * rel_x], -1), cell_in], -1).to(codes.dtype)
                preds.append(self.mlp(code + self.geometry_in(geometry)))
                areas.append((rel_y * rel_x).abs() + 1e-9)
        total = sum(areas)
        # each code weighs by the area of the rectangle between the query and the opposite code
        return sum(pred * (area / total)[..., None] for pred, area in zip(preds, reversed(areas)))

    def decode(self, codes: torch.Tensor, lr: torch.Tensor, size: tuple[int, int], chunk: int = QUERY_CHUNK):
        """The image of ``size`` (H, W): torch-bicubic upsample of ``lr`` plus the decoded residual, in
        bands of output rows so at most ``chunk`` pixels are decoded at once."""
        (out_h, out_w), (h, w) = size, lr.shape[-2:]
        out = F.interpolate(lr, size=(out_h, out_w), mode="bicubic", align_corners=False)
        ys_all, xs = lr_coordinates(out_h, h, lr.device), lr_coordinates(out_w, w, lr.device)
        cell = torch.tensor([h / out_h, w / out_w], device=lr.device)
        rows = max(1, chunk // out_w)
        for top in range(0, out_h, rows):
            ys = ys_all[top : top + rows]
            grid_y, grid_x = (g.reshape(1, -1).expand(lr.shape[0], -1) for g in torch.meshgrid(ys, xs, indexing="ij"))
            residual = self.query(codes, grid_y, grid_x, cell)
            out[:, :, top : top + len(ys)] += residual.transpose(1, 2).reshape(lr.shape[0], 3, len(ys), out_w)
        return out

    def forward(self, lr: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return self.decode(self.encode(lr), lr, size)


def upsample(network: LIIFNet, lr: torch.Tensor, size: tuple[int, int], tile: int = 256, overlap: int = 16):
    """``network(lr, size)`` with bounded memory: codes from overlapping LR tiles, decoding in row bands.

    Returns (image B x 3 x H x W in [0, 1], unclamped; number of encoder evaluations)."""
    calls = []

    def encode(part):
        calls.append(1)
        return network.encode(part)

    codes = tiled(encode, lr, tile, overlap)
    return network.decode(codes, lr, size), len(calls)


class LIIFSR(NetworkSR):
    family = "liif"
    description = "EDSR-lite encoder + LIIF implicit decoder (local ensemble), L1, any scale, one forward pass"
    continuous = True
    network_class = LIIFNet

    def __init__(self, name: str, network: LIIFNet, card: dict | None = None):
        self.name, self.network, self.card = name, network.eval(), card or {}
        self.scales = tuple(self.card.get("scales", NOMINAL_SCALES))
        self.max_scale = float(self.card.get("max_scale", self.max_scale))

    def _upscale(self, lr, *, scale, settings, on_step, keep_frames):
        size = scaled_size(lr.shape[0], lr.shape[1], scale)
        with torch.inference_mode():
            x = to_tensor(lr).to(self.device, self.dtype)
            sr, calls = upsample(self.network, x, size, tile=settings.tile or 256)
        return to_uint8(sr), NetworkCalls(nfe=1, tiles=calls), None  # one forward pass, however tiled


def liif_condition(network: LIIFNet, lr: torch.Tensor, size: tuple[int, int], tile: int = 256) -> torch.Tensor:
    """The implicit upsample in [-1, 1] for a model conditioned on it (IDM): LR in [-1, 1], clamped output."""
    sr, _ = upsample(network, (lr + 1) / 2, size, tile=tile)
    return sr.clamp_(0, 1).mul_(2).sub_(1)


def random_queries(hr_size: tuple[int, int], count: int, batch: int, generator: torch.Generator) -> torch.Tensor:
    """Flat indices (B x count) of output pixels a training step decodes (all of them if fewer)."""
    pixels = hr_size[0] * hr_size[1]
    if count >= pixels:
        return torch.arange(pixels).expand(batch, -1)
    return torch.stack([torch.randperm(pixels, generator=generator)[:count] for _ in range(batch)])


def liif_loss(network: LIIFNet, lr: torch.Tensor, hr: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
    """L1 at the output pixels ``pixels`` (B x Q flat indices of the HR patch), LIIF's training loss."""
    (h, w), (out_h, out_w) = lr.shape[-2:], hr.shape[-2:]
    pixels = pixels.to(lr.device)
    ys = lr_coordinates(out_h, h, lr.device)[pixels // out_w]
    xs = lr_coordinates(out_w, w, lr.device)[pixels % out_w]
    cell = torch.tensor([h / out_h, w / out_w], device=lr.device)
    base = F.interpolate(lr, size=(out_h, out_w), mode="bicubic", align_corners=False).flatten(2)
    index = pixels[:, None].expand(-1, 3, -1)
    pred = torch.gather(base, 2, index) + network.query(network.encode(lr), ys, xs, cell).transpose(1, 2)
    return F.l1_loss(pred, torch.gather(hr.flatten(2), 2, index))


def save_liif_folder(folder, network: LIIFNet, meta: dict) -> None:
    """Weights (diffusers layout, safetensors) and ``sr_model.json`` / card of a ``liif`` folder."""
    from sr_models.cards import write_card

    network.save_pretrained(str(folder), safe_serialization=True)
    write_card(folder, {"family": "liif", "continuous": True, "scales": list(NOMINAL_SCALES), **meta})
