"""Sample grids of clips: a looping GIF with one row of clips per prompt (`save_clip_grid`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image, ImageDraw

from hfrecipes.video.data import save_gif
from hfrecipes.video.evaluation import to_uint8_clips


def save_clip_grid(
    clips: torch.Tensor,
    path: Path,
    rows: int,
    row_labels: Sequence[str] | None = None,
    min_cell: int = 48,
    fps: int = 4,
) -> Path:
    """A looping GIF of a rows x (N / rows) grid of clips (N x C x F x H x W in [-1, 1]), small frames enlarged
    (nearest) to `min_cell` px, each row's label (its prompt) on the left."""
    array = to_uint8_clips(clips)  # N x F x H x W x 3
    n, frames, h, w, _ = array.shape
    cols = math.ceil(n / rows)
    scale = max(1, math.ceil(min_cell / max(h, w)))
    cell_h, cell_w = h * scale, w * scale
    margin = 8 + 6 * max((len(label) for label in row_labels), default=0) if row_labels else 0
    images = []
    for t in range(frames):
        grid = Image.new("RGB", (margin + cols * (cell_w + 2), rows * (cell_h + 2)), (255, 255, 255))
        draw = ImageDraw.Draw(grid)
        for i in range(n):
            r, c = divmod(i, cols)
            tile = Image.fromarray(array[i, t]).resize((cell_w, cell_h), Image.Resampling.NEAREST)
            grid.paste(tile, (margin + c * (cell_w + 2), r * (cell_h + 2)))
        for r, label in enumerate(row_labels or []):
            draw.text((4, r * (cell_h + 2) + cell_h // 2 - 5), label, fill=(0, 0, 0))
        images.append(grid)
    return save_gif(images, path, fps=fps)
