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

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import datasets
import numpy as np
from PIL import Image, ImageDraw, ImageOps

from hfrecipes.data.images import (
    SHAPE_COLORS,
    SHAPE_KINDS,
    SUPERSAMPLE,
    _background,
    _choices,
    _draw_shape,
    _int_option,
)
from hfrecipes.data.report import DataReport
from hfrecipes.data.sources import register_builtin
from hfrecipes.errors import RecipeInputError

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
SHORT_CLIP_POLICIES = ("pad", "skip", "error")
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
        return _background(rng, side)
    colour = rng.integers(0, 60, 3) if kind == "plain" else np.zeros(3)
    return np.broadcast_to(colour.astype(np.float64), (side, side, 3))


def _reflect(position: float, low: float, high: float) -> tuple[float, bool]:
    """`position` folded back into [low, high] as a ball bouncing between two walls; True if it bounced."""
    span = high - low
    offset = (position - low) % (2 * span)
    bounced = not low <= position <= high
    return (low + offset if offset <= span else high - (offset - span)), bounced


def _track(
    rng: np.random.Generator, frames: int, side: float, half: float, step: float, axis: int, sign: int,
    bounce: bool,
) -> tuple[list[tuple[float, float]], bool]:  # fmt: skip
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


@register_builtin("moving-shapes")
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
    n = _int_option("n", n, 1, "moving-shapes")
    side = _int_option("size", size, 8, "moving-shapes")
    count = _int_option("frames", frames, 2, "moving-shapes")
    palette = _choices("colors", colors, SHAPE_COLORS, "moving-shapes")
    kinds = _choices("shapes", shapes, SHAPE_KINDS, "moving-shapes")
    headings = _choices("directions", directions, MOTION_DIRECTIONS, "moving-shapes")
    paces = _choices("speeds", speeds, MOTION_SPEEDS, "moving-shapes")
    p_bounce = _float_option("bounce", bounce, 0.0, 1.0)
    p_occlusion = _float_option("occlusion", occlusion, 0.0, 1.0)
    if background not in BACKGROUNDS:
        raise RecipeInputError(
            f"builtin:moving-shapes: background must be one of {', '.join(BACKGROUNDS)}, got {background!r}."
        )
    rng = np.random.default_rng(int(seed))
    big = side * SUPERSAMPLE
    columns: dict[str, list] = {k: [] for k in ("video", "text", "color", "shape", "direction", "speed",
                                                "bounce", "occluded", "track")}  # fmt: skip
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
            _draw_shape(
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


# ------------------------------------------------------------------------------------------ loading


def _is_video_folder(path: Path) -> bool:
    from hfrecipes.data.media import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS
    from hfrecipes.data.sources import is_saved_dataset

    if not path.is_dir() or is_saved_dataset(path):
        return False
    media = IMAGE_EXTENSIONS | VIDEO_EXTENSIONS
    return any(p.suffix.lower() in media for p in path.rglob("*") if p.is_file())


def clip_frame_indices(frame_count: int, num_frames: int, frame_stride: int | None) -> list[int] | None:
    """Which frames make the N-frame clip: `num_frames` consecutive frames `frame_stride` apart from the start,
    or (stride None) evenly spaced from the first to the last frame. None when the clip has too few frames."""
    if frame_stride is None:
        return (
            None
            if frame_count < num_frames
            else [int(i) for i in np.linspace(0, frame_count - 1, num_frames).round()]
        )
    needed = (num_frames - 1) * frame_stride + 1
    return None if frame_count < needed else list(range(0, needed, frame_stride))


def frames_needed(num_frames: int, frame_stride: int | None) -> int:
    return num_frames if frame_stride is None else (num_frames - 1) * frame_stride + 1


def resample_clip(
    source: Any, num_frames: int, size: int, frame_stride: int | None = 1, short_clips: str = "pad"
) -> tuple[str, list[Image.Image] | None]:
    """One clip -> ("", N frames of size x size RGB), ("padded", frames with the last one held), ("too_short",
    None) when skipped, or ("undecodable: <why>", None). Frames are scaled to cover the square and
    centre-cropped (`load_video_frames`' rule). short_clips="error" raises on a short clip."""
    from hfrecipes.data.media import UnreadableMediaError, _describe, _open_video

    try:
        video = _open_video(source)
        if video.frame_count == 0:
            return "undecodable: no frames", None
        indices = clip_frame_indices(video.frame_count, num_frames, frame_stride)
        status = ""
        if indices is None:
            needed = frames_needed(num_frames, frame_stride)
            if short_clips == "error":
                raise RecipeInputError(
                    f"Clip {_describe(source)} has {video.frame_count} frames; {needed} are needed for num_frames="
                    f"{num_frames} with frame_stride={frame_stride}. Set short_clips: pad (hold the last frame) or "
                    "skip, lower num_frames / frame_stride, or drop such clips with video_filter: {min_frames: ...}."
                )
            if short_clips == "skip":
                return "too_short", None
            step = frame_stride or 1
            indices = [min(i * step, video.frame_count - 1) for i in range(num_frames)]
            status = "padded"
        frames = [frame.convert("RGB") for frame in video.read(indices)]
    except UnreadableMediaError as err:
        return f"undecodable: {err}", None
    except RecipeInputError:
        raise
    except Exception as err:  # decoders raise many types on bad data
        return f"undecodable: {type(err).__name__}: {err}", None
    return status, [ImageOps.fit(f, (size, size), Image.Resampling.BICUBIC) for f in frames]


def _check_captions(dataset: datasets.Dataset, caption_column: str, where: str) -> None:
    captions = list(dataset[caption_column])
    missing = [i for i, c in enumerate(captions) if c is None or not str(c).strip()]
    if missing:
        names = dataset["file_name"] if "file_name" in dataset.column_names else None
        shown = ", ".join(str(names[i]) if names is not None else f"row {i}" for i in missing[:5])
        raise RecipeInputError(
            f"{len(missing)} of {len(captions)} clips in {where} have no caption in column {caption_column!r} "
            f"({shown}{', ...' if len(missing) > 5 else ''}). Add a caption for every clip (e.g. the `text` column "
            "of metadata.jsonl beside the files), or point caption_column at the right column."
        )


def prepare_video_splits(
    *,
    dataset_name: str,
    num_frames: int,
    size: int,
    dataset_split: str = "train",
    dataset_config: str | None = None,
    video_column: str = "video",
    caption_column: str | None = "text",
    required_columns: Sequence[str] = (),
    frame_stride: int | None = 1,
    short_clips: str = "pad",
    pipeline: list | None = None,
    validation_fraction: float = 0.1,
    max_samples: int | None = None,
    seed: int = 0,
) -> tuple[datasets.Dataset, datasets.Dataset, DataReport]:
    """load -> check columns and captions -> cleaning steps (e.g. `video_filter`) -> every clip decoded and
    brought to `num_frames` frames of `size` px (`resample_clip`; undecodable / padded / skipped clips counted
    in the report's `clip_frames` step) -> seeded train/validation split. The video column becomes `video`
    (a list of PIL frames). A folder is read like an HF videofolder: mp4/webm/gif files or one directory of
    frame images per clip, captions in metadata.jsonl / metadata.csv (`file_name`, `text`)."""
    from hfrecipes.data import load_media_folder, load_source, parse_pipeline, run_pipeline

    if short_clips not in SHORT_CLIP_POLICIES:
        raise RecipeInputError(
            f"short_clips must be one of {', '.join(SHORT_CLIP_POLICIES)}, got {short_clips!r}."
        )
    if num_frames < 1 or size < 1 or (frame_stride is not None and frame_stride < 1):
        raise RecipeInputError(
            f"num_frames, size and frame_stride must be >= 1, got {num_frames}, {size}, {frame_stride}."
        )
    if not 0 < validation_fraction < 1:
        raise RecipeInputError(f"validation_fraction must be between 0 and 1, got {validation_fraction}.")
    steps = parse_pipeline(pipeline or [])
    report = DataReport(source=dataset_name)
    problems: list[tuple[str, str]] = []
    if _is_video_folder(Path(dataset_name)):
        dataset, problems = load_media_folder(dataset_name, "video")
    else:
        dataset = load_source(dataset_name, split=dataset_split, hub_config=dataset_config, problems=problems)
    if problems:
        report.summary["unreadable_files"] = [{"path": p, "reason": r} for p, r in problems]
    wanted = [video_column, *([caption_column] if caption_column else []), *required_columns]
    missing = [c for c in dict.fromkeys(wanted) if c not in dataset.column_names]
    if missing:
        raise RecipeInputError(
            f"{dataset_name} has no column(s) {missing} (columns: {dataset.column_names}); set video_column / "
            "caption_column to the right names (a clip folder needs a metadata.jsonl or metadata.csv with "
            "`file_name` and `text` beside the clips)."
        )
    if caption_column:
        _check_captions(dataset, caption_column, dataset_name)
    if video_column != "video":
        dataset = dataset.remove_columns([c for c in ["video"] if c in dataset.column_names])
        dataset = dataset.rename_column(video_column, "video")
    if max_samples:
        dataset = dataset.shuffle(seed=seed).select(range(min(max_samples, len(dataset))))
    report.add("load", rows_in=len(dataset), rows_out=len(dataset), details={"columns": dataset.column_names})
    dataset = run_pipeline(dataset, steps, report)
    dataset = _resample_all(dataset, num_frames, size, frame_stride, short_clips, report)
    if len(dataset) < 2:
        raise RecipeInputError(
            f"Only {len(dataset)} usable clips after decoding (see data_report.json: undecodable / too_short); "
            "need at least 2 (one to train on, one to validate with)."
        )
    split = dataset.train_test_split(test_size=validation_fraction, seed=seed)
    train, validation = split["train"], split["test"]
    report.add("split", rows_in=len(dataset), rows_out=len(train), removed=0,
               details={"train": len(train), "validation": len(validation)})  # fmt: skip
    return train, validation, report


def _resample_all(
    dataset: datasets.Dataset, num_frames: int, size: int, frame_stride: int | None, short_clips: str,
    report: DataReport,
) -> datasets.Dataset:  # fmt: skip
    from hfrecipes.data.media import _describe, _undecoded

    raw = dataset.cast_column("video", _undecoded(dataset.features["video"]))
    statuses: list[str] = []

    def convert(values: list[Any]) -> dict[str, list]:
        clips = []
        for value in values:
            status, frames = resample_clip(value, num_frames, size, frame_stride, short_clips)
            statuses.append(f"{status} ({_describe(value)})" if frames is None else status)
            clips.append(frames)
        return {"video": clips}

    features = raw.features.copy()
    features["video"] = datasets.List(datasets.Image())
    converted = raw.map(convert, batched=True, batch_size=64, input_columns=["video"], features=features,
                        desc="clip frames", load_from_cache_file=False)  # fmt: skip
    keep = [i for i, s in enumerate(statuses) if not s.startswith(("undecodable", "too_short"))]
    counts = {
        "padded": sum(s == "padded" for s in statuses),
        "too_short_skipped": sum(s.startswith("too_short") for s in statuses),
        "undecodable": sum(s.startswith("undecodable") for s in statuses),
    }
    removed = [s for s in statuses if s.startswith(("undecodable", "too_short"))]
    report.add("clip_frames", rows_in=len(dataset), rows_out=len(keep), examples=removed[:5],
               details={"num_frames": num_frames, "size": size, "frame_stride": frame_stride,
                        "short_clips": short_clips, **counts})  # fmt: skip
    return converted if len(keep) == len(converted) else converted.select(keep)


def clip_array(frames: Sequence[Any]) -> np.ndarray:
    """A clip (PIL frames, arrays or {bytes, path}) as uint8 F x H x W x 3."""
    from hfrecipes.data.media import load_image

    return np.stack([np.asarray(load_image(f).convert("RGB"), dtype=np.uint8) for f in frames])


def save_gif(
    frames: np.ndarray | Sequence[Image.Image], path: str | os.PathLike, fps: int = 4, scale: int = 1
) -> Path:
    """Frames (uint8 F x H x W x 3 or PIL) as a looping GIF, enlarged `scale` times (nearest); written to a
    temporary file and renamed in."""
    images = [
        f if isinstance(f, Image.Image) else Image.fromarray(np.asarray(f, dtype=np.uint8)) for f in frames
    ]
    if scale > 1:
        images = [f.resize((f.width * scale, f.height * scale), Image.Resampling.NEAREST) for f in images]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.gif")
    images[0].save(tmp, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0, disposal=1)
    os.replace(tmp, path)
    return path


__all__ = [
    "MOTION_DIRECTIONS",
    "MOTION_SHAPE_SIZE",
    "MOTION_SPEEDS",
    "OCCLUDER_COLOR",
    "SHORT_CLIP_POLICIES",
    "SPEED_WORDS",
    "clip_array",
    "clip_frame_indices",
    "motion_caption",
    "moving_shapes",
    "prepare_video_splits",
    "resample_clip",
    "save_gif",
]
