"""Sample grids: [-1, 1] images as uint8 (`to_uint8`) and a labelled PNG grid of them (`save_image_grid`)."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """[-1, 1] N x C x H x W -> uint8 N x H x W x C."""
    array = ((images.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    return array


def save_image_grid(
    images: torch.Tensor, path: Path, rows: int, row_labels: Sequence[str] | None = None, min_cell: int = 64
) -> Path:
    """A rows x (N / rows) PNG grid of [-1, 1] images, small images enlarged (nearest) to `min_cell` px, with
    each row's label (its prompt) on the left. Written to a temporary file and renamed in."""
    array = to_uint8(images)
    n, h, w, c = array.shape
    cols = math.ceil(n / rows)
    scale = max(1, math.ceil(min_cell / max(h, w)))
    cell_h, cell_w = h * scale, w * scale
    margin = 8 + 6 * max((len(label) for label in row_labels), default=0) if row_labels else 0
    grid = Image.new("RGB", (margin + cols * (cell_w + 2), rows * (cell_h + 2)), (255, 255, 255))
    draw = ImageDraw.Draw(grid)
    for i in range(n):
        r, col = divmod(i, cols)
        tile = Image.fromarray(array[i, :, :, 0] if c == 1 else array[i], mode="L" if c == 1 else "RGB")
        grid.paste(
            tile.convert("RGB").resize((cell_w, cell_h), Image.Resampling.NEAREST),
            (margin + col * (cell_w + 2), r * (cell_h + 2)),
        )
    for r, label in enumerate(row_labels or []):
        draw.text((4, r * (cell_h + 2) + cell_h // 2 - 5), label, fill=(0, 0, 0))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    grid.save(tmp)
    os.replace(tmp, path)
    return path
