"""Video–caption data: the built-in `moving-shapes` clips and a loader that brings any clip source to N frames.

- `builtin:moving-shapes`: one coloured shape per clip moving left/right/up/down at a slow or fast speed over a
  static dark background, drawn at 4x and downsampled (anti-aliased) like `builtin:shapes`. Some clips bounce
  off a wall late in the clip (the caption keeps the direction of most of the clip) and some pass behind a
  mid-grey bar (occlusion). Captions: `"a red square moving right"` (+ `" slowly"` / `" quickly"` when more
  than one speed is drawn); structured columns `color`, `shape`, `direction`, `speed` (ClassLabels), `bounce`,
  `occluded` and `track` (the shape's centre per frame, in pixels), which the motion evaluation checks against.
- `prepare_video_splits`: any clip source (a `builtin:`, a Hub id or saved dataset with a video column, or a
  folder of mp4/webm/gif files or frame directories with a metadata.jsonl/csv of captions) -> `video` as
  exactly `num_frames` RGB frames of `size` x `size` px (consecutive frames with `frame_stride`, or evenly
  spaced over the clip), clips too short padded (last frame held) or skipped by `short_clips`, undecodable
  clips dropped; every one of those is counted in the data report. Missing captions stop the run.

Options arrive as strings from the source spec, e.g.
`builtin:moving-shapes?n=2000&size=16&frames=8&colors=red,green&shapes=square&bounce=0.2&occlusion=0.1`.
"""

from __future__ import annotations

import datasets
import numpy as np
from PIL import Image, ImageDraw

from hfrecipes.builtins.images import (
    SHAPE_COLORS,
    SHAPE_KINDS,
    SUPERSAMPLE,
    draw_shape,
    gradient_background,
)
from hfrecipes.builtins.options import optional_int_option, subset_option
from hfrecipes.core.errors import RecipeInputError

# Unit steps in image coordinates (y grows downwards).
MOTION_DIRECTIONS: dict[str, tuple[int, int]] = {
    "left": (-1, 0),
    "right": (1, 0),
    "up": (0, -1),
    "down": (0, 1),
}
# Speed buckets: the distance covered over the whole clip as a fraction of the frame side (16 px, 8 frames:
# 0.69 and 1.37 px per frame), so a clip of any length stays inside the frame but for a late bounce.
MOTION_SPEEDS: dict[str, float] = {"slow": 0.3, "fast": 0.6}
SPEED_WORDS = {"slow": "slowly", "fast": "quickly"}
MOTION_SHAPE_SIZE = 0.34  # bounding-box side / frame side
OCCLUDER_COLOR = (88, 88, 88)  # mid-grey: darker than every shape colour's brightest channel
OCCLUDER_WIDTH = 0.15  # / frame side
BACKGROUNDS = ("gradient", "plain", "black")


def motion_caption(color: str, shape: str, direction: str, speed: str | None = None) -> str:
    """ "a red square moving right" ("an orange ..."), with " slowly" / " quickly" when `speed` is given."""
    caption = f"{'an' if color[0] in 'aeiou' else 'a'} {color} {shape} moving {direction}"
    return f"{caption} {SPEED_WORDS[speed]}" if speed else caption


def _float_option(name: str, value: float | str, low: float, high: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not low <= number <= high:
        raise RecipeInputError(f"builtin:moving-shapes: {name} must be in [{low}, {high}], got {value!r}.")
    return number


def _backdrop(rng: np.random.Generator, side: int, kind: str) -> np.ndarray:
    if kind == "gradient":
        return gradient_background(rng, side)
    colour = rng.integers(0, 60, 3) if kind == "plain" else np.zeros(3)
    return np.broadcast_to(colour.astype(np.float64), (side, side, 3))


def _reflect(position: float, low: float, high: float) -> tuple[float, bool]:
    """`position` folded back into [low, high] as a ball bouncing between two walls; True if it bounced."""
    span = high - low
    offset = (position - low) % (2 * span)
    bounced = not low <= position <= high
    return (low + offset if offset <= span else high - (offset - span)), bounced


def _track(
    rng: np.random.Generator,
    frames: int,
    side: float,
    half: float,
    step: float,
    axis: int,
    sign: int,
    bounce: bool,
) -> tuple[list[tuple[float, float]], bool]:
    """Centres per frame: straight motion at `step` px/frame along `axis` with sign `sign`, reflected off the
    walls. With `bounce`, the start is placed so the wall is reached after 60-90% of the clip, so the caption's
    direction holds for most of it; otherwise so that no wall is reached (when the clip is long enough)."""
    low, high = half, side - half
    travel = step * (frames - 1)
    if bounce:
        hit = rng.uniform(0.6, 0.9) * travel
        start = high - hit if sign > 0 else low + hit
    elif travel < high - low:
        start = rng.uniform(low, high - travel) if sign > 0 else rng.uniform(low + travel, high)
    else:
        start = low if sign > 0 else high
    across = rng.uniform(low, high)
    centres, bounced = [], False
    for t in range(frames):
        along, hit_wall = _reflect(start + sign * step * t, low, high)
        bounced |= hit_wall
        centres.append((along, across) if axis == 0 else (across, along))
    return centres, bounced


def moving_shapes(
    n: int | str = 1000,
    size: int | str = 16,
    frames: int | str = 8,
    seed: int | str = 0,
    colors: str | None = None,
    shapes: str | None = None,
    directions: str | None = None,
    speeds: str | None = None,
    bounce: float | str = 0.2,
    occlusion: float | str = 0.15,
    background: str = "gradient",
) -> datasets.Dataset:
    """`n` clips of `frames` RGB frames (`size` px) of one shape moving in a straight line, colour, shape,
    direction and speed drawn (seeded) from the given comma-separated subsets (default: all of SHAPE_COLORS,
    SHAPE_KINDS, MOTION_DIRECTIONS, MOTION_SPEEDS). A fraction `bounce` of the clips bounce off a wall after
    60-90% of the clip; a fraction `occlusion` pass behind a static grey bar across the path in mid-clip.
    `background`: "gradient" (a dark two-colour gradient with faint noise, as `builtin:shapes`), "plain" (one
    dark colour) or "black"; static over the clip either way.

    Columns: `video` (list of frames), `text`, `color`, `shape`, `direction`, `speed` (ClassLabels), `bounce`,
    `occluded` (bools), `track` (the centre [x, y] per frame, pixels)."""
    n = optional_int_option("moving-shapes", "n", n, 1)
    side = optional_int_option("moving-shapes", "size", size, 8)
    count = optional_int_option("moving-shapes", "frames", frames, 2)
    palette = subset_option("moving-shapes", "colors", colors, SHAPE_COLORS)
    kinds = subset_option("moving-shapes", "shapes", shapes, SHAPE_KINDS)
    headings = subset_option("moving-shapes", "directions", directions, MOTION_DIRECTIONS)
    paces = subset_option("moving-shapes", "speeds", speeds, MOTION_SPEEDS)
    p_bounce = _float_option("bounce", bounce, 0.0, 1.0)
    p_occlusion = _float_option("occlusion", occlusion, 0.0, 1.0)
    if background not in BACKGROUNDS:
        raise RecipeInputError(
            f"builtin:moving-shapes: background must be one of {', '.join(BACKGROUNDS)}, got {background!r}."
        )
    rng = np.random.default_rng(int(seed))
    big = side * SUPERSAMPLE
    names = ("video", "text", "color", "shape", "direction", "speed", "bounce", "occluded", "track")
    columns: dict[str, list] = {k: [] for k in names}
    for _ in range(n):
        color, kind = palette[rng.integers(len(palette))], kinds[rng.integers(len(kinds))]
        heading, pace = headings[rng.integers(len(headings))], paces[rng.integers(len(paces))]
        backdrop = _backdrop(rng, side, background)
        half = MOTION_SHAPE_SIZE * side / 2 * rng.uniform(0.9, 1.1)
        step = MOTION_SPEEDS[pace] * side / (count - 1) * rng.uniform(0.9, 1.1)
        dx, dy = MOTION_DIRECTIONS[heading]
        axis, sign = (0, dx) if dx else (1, dy)
        centres, bounced = _track(rng, count, side, half, step, axis, sign, rng.random() < p_bounce)
        occluder = None
        if rng.random() < p_occlusion:  # a bar across the path where the shape is in mid-clip
            at = centres[int(rng.integers(count // 3, max(count // 3 + 1, 2 * count // 3 + 1)))][axis]
            occluder = Image.new("L", (big, big), 0)
            width = OCCLUDER_WIDTH * big / 2
            box = [(at * SUPERSAMPLE - width, 0), (at * SUPERSAMPLE + width, big)]
            ImageDraw.Draw(occluder).rectangle(
                box if axis == 0 else [(0, box[0][0]), (big, box[1][0])], fill=255
            )
            occluder = (
                np.asarray(occluder.resize((side, side), Image.Resampling.BOX), dtype=np.float64)[..., None]
                / 255
            )
        clip = []
        for cx, cy in centres:
            mask = Image.new("L", (big, big), 0)
            draw_shape(
                ImageDraw.Draw(mask), kind, cx * SUPERSAMPLE, cy * SUPERSAMPLE, half * SUPERSAMPLE, 255
            )
            alpha = (
                np.asarray(mask.resize((side, side), Image.Resampling.BOX), dtype=np.float64)[..., None] / 255
            )
            pixels = backdrop * (1 - alpha) + np.asarray(SHAPE_COLORS[color], dtype=np.float64) * alpha
            if occluder is not None:
                pixels = pixels * (1 - occluder) + np.asarray(OCCLUDER_COLOR, dtype=np.float64) * occluder
            clip.append(Image.fromarray(np.clip(pixels, 0, 255).round().astype(np.uint8), mode="RGB"))
        columns["video"].append(clip)
        columns["text"].append(motion_caption(color, kind, heading, pace if len(paces) > 1 else None))
        for column, value in (("color", color), ("shape", kind), ("direction", heading), ("speed", pace)):
            columns[column].append(value)
        columns["bounce"].append(bool(bounced))
        columns["occluded"].append(occluder is not None)
        columns["track"].append([[float(x), float(y)] for x, y in centres])
    class_columns = {"color": palette, "shape": kinds, "direction": headings, "speed": paces}
    for column, names in class_columns.items():
        columns[column] = [names.index(v) for v in columns[column]]
    features = datasets.Features(
        {
            "video": datasets.List(datasets.Image()),
            "text": datasets.Value("string"),
            **{name: datasets.ClassLabel(names=list(names)) for name, names in class_columns.items()},
            "bounce": datasets.Value("bool"),
            "occluded": datasets.Value("bool"),
            "track": datasets.List(datasets.List(datasets.Value("float32"), length=2)),
        }
    )
    return datasets.Dataset.from_dict(columns, features=features)


__all__ = [
    "MOTION_DIRECTIONS",
    "MOTION_SHAPE_SIZE",
    "MOTION_SPEEDS",
    "OCCLUDER_COLOR",
    "SPEED_WORDS",
    "motion_caption",
    "moving_shapes",
]
