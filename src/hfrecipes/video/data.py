"""Video datasets for the video recipes: clips from folders, saved datasets, the Hub or builtin:moving-shapes,
resampled to fixed-length clips and split (`prepare_video_splits`), GIFs (`save_gif`), and the training rows
(`VideoCaptionDataset`)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
from PIL import Image, ImageOps

from hfrecipes.core.data_report import DataReport
from hfrecipes.core.errors import RecipeInputError
from hfrecipes.core.media import (
    IMAGE_EXTENSIONS,
    VIDEO_EXTENSIONS,
    UnreadableMediaError,
    describe_media,
    load_image,
    open_video,
)
from hfrecipes.data import load_media_folder, load_source, parse_pipeline, run_pipeline
from hfrecipes.data.media import undecoded_feature
from hfrecipes.data.sources import is_saved_dataset

SHORT_CLIP_POLICIES = ("pad", "skip", "error")


def _is_video_folder(path: Path) -> bool:
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
    """How many source frames a clip of `num_frames` needs: every `frame_stride`-th frame from the start, or
    `num_frames` spread evenly over the clip (stride None)."""
    return num_frames if frame_stride is None else (num_frames - 1) * frame_stride + 1


def resample_clip(
    source: Any, num_frames: int, size: int, frame_stride: int | None = 1, short_clips: str = "pad"
) -> tuple[str, list[Image.Image] | None]:
    """One clip -> ("", N frames of size x size RGB), ("padded", frames with the last one held), ("too_short",
    None) when skipped, or ("undecodable: <why>", None). Frames are scaled to cover the square and
    centre-cropped (`load_video_frames`' rule). short_clips="error" raises on a short clip."""
    try:
        video = open_video(source)
        if video.frame_count == 0:
            return "undecodable: no frames", None
        indices = clip_frame_indices(video.frame_count, num_frames, frame_stride)
        status = ""
        if indices is None:
            needed = frames_needed(num_frames, frame_stride)
            if short_clips == "error":
                raise RecipeInputError(
                    f"Clip {describe_media(source)} has {video.frame_count} frames; {needed} are needed for num_frames="
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
    report.add(
        "split",
        rows_in=len(dataset),
        rows_out=len(train),
        removed=0,
        details={"train": len(train), "validation": len(validation)},
    )
    return train, validation, report


def _resample_all(
    dataset: datasets.Dataset,
    num_frames: int,
    size: int,
    frame_stride: int | None,
    short_clips: str,
    report: DataReport,
) -> datasets.Dataset:
    raw = dataset.cast_column("video", undecoded_feature(dataset.features["video"]))
    statuses: list[str] = []

    def convert(values: list[Any]) -> dict[str, list]:
        clips = []
        for value in values:
            status, frames = resample_clip(value, num_frames, size, frame_stride, short_clips)
            statuses.append(f"{status} ({describe_media(value)})" if frames is None else status)
            clips.append(frames)
        return {"video": clips}

    features = raw.features.copy()
    features["video"] = datasets.List(datasets.Image())
    converted = raw.map(
        convert,
        batched=True,
        batch_size=64,
        input_columns=["video"],
        features=features,
        desc="clip frames",
        load_from_cache_file=False,
    )
    keep = [i for i, s in enumerate(statuses) if not s.startswith(("undecodable", "too_short"))]
    counts = {
        "padded": sum(s == "padded" for s in statuses),
        "too_short_skipped": sum(s.startswith("too_short") for s in statuses),
        "undecodable": sum(s.startswith("undecodable") for s in statuses),
    }
    removed = [s for s in statuses if s.startswith(("undecodable", "too_short"))]
    report.add(
        "clip_frames",
        rows_in=len(dataset),
        rows_out=len(keep),
        examples=removed[:5],
        details={
            "num_frames": num_frames,
            "size": size,
            "frame_stride": frame_stride,
            "short_clips": short_clips,
            **counts,
        },
    )
    return converted if len(keep) == len(converted) else converted.select(keep)


def clip_array(frames: Sequence[Any]) -> np.ndarray:
    """A clip (PIL frames, arrays or {bytes, path}) as uint8 F x H x W x 3."""
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


class VideoCaptionDataset(torch.utils.data.Dataset):
    """Rows as {"pixels": C x F x H x W in [-1, 1], "caption": str} from a prepared dataset (`video`: lists of
    frames at the training size). Small datasets are decoded once into a uint8 cache."""

    def __init__(self, dataset: Any, captions: Sequence[str] | None, cache_limit: int = 400_000_000):
        self.dataset, self.captions = dataset, list(captions) if captions is not None else None
        self.cache = None
        first = clip_array(dataset[0]["video"])
        if len(dataset) * first.size <= cache_limit:
            self.cache = torch.from_numpy(np.stack([clip_array(v) for v in dataset["video"]]))

    def __len__(self) -> int:
        return len(self.dataset)

    def clip(self, index: int) -> torch.Tensor:
        array = (
            self.cache[index]
            if self.cache is not None
            else torch.from_numpy(clip_array(self.dataset[int(index)]["video"]))
        )
        return array.permute(3, 0, 1, 2).float() / 127.5 - 1.0

    def stack(self, limit: int | None = None) -> torch.Tensor:
        count = len(self) if limit is None else min(limit, len(self))
        return torch.stack([self.clip(i) for i in range(count)])

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"pixels": self.clip(index), "caption": self.captions[index] if self.captions else ""}
