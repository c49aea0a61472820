"""Inpainting masks for images and picture grids of results.

Images are flattened rows `[B, D]`, D = C·H·W in C,H,W order; masks are `torch.bool`,
True = observed. A PNG mask reads white (any nonzero value) as observed and black as
hidden, i.e. it looks like the mask tensor itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from anyorder.data.base import DataError
from anyorder.errors import UserError
from anyorder.lattice import query_masks

MASK_KINDS = ("centre", "left-half", "random-pixels", "random")


def _check_shape(shape) -> tuple[int, int, int]:
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 1:
        raise UserError(f"shape must be (C, H, W) with positive sizes, got {shape}")
    return shape


def image_masks(batch: int, shape, kind: str, aligned: bool = True, generator=None,
                p: float = 0.5) -> torch.Tensor:
    """Observed masks `[B, D]` for inpainting images of `shape = (C, H, W)`.

    "centre" hides the centred box of half the height and width; "left-half" hides the
    columns w < W/2; "random-pixels" hides each pixel with probability `p`; "random"
    observes a uniformly random set whose size is uniform on 0..N-1 (the `inpaint` query
    distribution's evidence), N = H·W pixels. With `aligned` all channels of a pixel share its mask;
    otherwise the random kinds draw every channel separately (N = D).
    """
    C, H, W = _check_shape(shape)
    if kind not in MASK_KINDS:
        raise UserError(f"unknown mask kind {kind!r}; expected one of {', '.join(MASK_KINDS)}")
    if kind in ("centre", "left-half"):
        hidden = torch.zeros(H, W, dtype=torch.bool)
        if kind == "centre":
            hidden[H // 4:H // 4 + H // 2, W // 4:W // 4 + W // 2] = True
        else:
            hidden[:, :W // 2] = True
        return (~hidden).expand(batch, C, H, W).reshape(batch, -1)
    if not 0 <= p <= 1:
        raise UserError(f"p (the probability that a pixel is hidden) must lie in [0, 1], got {p}")
    variables = H * W if aligned else C * H * W
    query = f"bernoulli({1 - p})" if kind == "random-pixels" else "inpaint"
    observed = query_masks(batch, variables, query, generator=generator)
    if aligned:
        observed = observed.view(batch, 1, H, W).expand(batch, C, H, W)
    return observed.reshape(batch, -1)


def mask_from_png(path: str | Path, shape) -> torch.Tensor:
    """A mask `[D]` from a PNG of the image size: nonzero (white) = observed.

    A grey-scale PNG masks whole pixels. A colour PNG masks each channel separately for
    3-channel images; for other images a pixel is observed where any colour is nonzero.
    """
    C, H, W = _check_shape(shape)
    try:
        picture = Image.open(path)
        picture.load()
    except (OSError, ValueError) as err:
        raise DataError(f"cannot read mask picture {path}: {err}") from None
    if picture.size != (W, H):
        raise DataError(f"mask {path} is {picture.height}x{picture.width} (HxW) but the images "
                        f"are {H}x{W}")
    if picture.mode in ("1", "L", "I", "I;16", "F"):
        observed = torch.from_numpy(np.asarray(picture) != 0)           # [H, W]
    else:
        observed = torch.from_numpy(np.asarray(picture.convert("RGB")) != 0).permute(2, 0, 1)
        if C == 3:
            return observed.reshape(-1)
        observed = observed.any(0)
    return observed.expand(C, H, W).reshape(-1)


def to_images(x: torch.Tensor, shape, levels: int) -> np.ndarray:
    """Levels `[B, D]` in 0..levels-1 -> uint8 pictures `[B, H, W, C]` (0 black, levels-1 white)."""
    C, H, W = _check_shape(shape)
    x = torch.as_tensor(x).detach().cpu().reshape(-1, C, H, W)
    scaled = (x.double() * (255 / (levels - 1))).round().clamp(0, 255)
    return scaled.to(torch.uint8).permute(0, 2, 3, 1).numpy()


def save_grid(path: str | Path, rows: Sequence[torch.Tensor], shape, levels: int,
              masks: Sequence[torch.Tensor | None] | None = None, scale: int | None = None,
              pad: int = 2) -> None:
    """Write a PNG with one row of pictures per entry of `rows` (each `[B, D]` levels).

    `masks[i]` (observed `[B, D]` bool, or None) shows row i's unobserved variables as
    mid-grey, as in the paper's original / masked / filled figures. Pictures are upscaled
    `scale` times (default: to about 64 pixels) and separated by `pad` white pixels.
    """
    C, H, W = _check_shape(shape)
    if C not in (1, 3):
        raise UserError(f"save_grid draws 1- or 3-channel images, got C={C}")
    if not rows:
        raise UserError("save_grid needs at least one row")
    if masks is not None and len(masks) != len(rows):
        raise UserError(f"masks must have one entry (or None) per row: {len(rows)} rows, "
                         f"{len(masks)} masks")
    scale = scale or max(1, 64 // max(H, W))
    cell_h, cell_w = H * scale + pad, W * scale + pad
    columns = max(len(row) for row in rows)
    grid = np.full((pad + len(rows) * cell_h, pad + columns * cell_w, C), 255, np.uint8)
    for i, row in enumerate(rows):
        pictures = to_images(row, shape, levels)
        if masks is not None and masks[i] is not None:
            hidden = ~torch.as_tensor(masks[i]).cpu().reshape(-1, C, H, W).permute(0, 2, 3, 1).numpy()
            pictures = np.where(hidden, np.uint8(128), pictures)
        pictures = pictures.repeat(scale, 1).repeat(scale, 2)
        for j, picture in enumerate(pictures):
            top, left = pad + i * cell_h, pad + j * cell_w
            grid[top:top + H * scale, left:left + W * scale] = picture
    Image.fromarray(grid[..., 0] if C == 1 else grid).save(path)
