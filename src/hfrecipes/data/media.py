"""Image, audio and video data preparation: decoders, quality filters, dedup and a media-folder loader.

Column conventions are TRL's / `datasets`': an `image` column holds a PIL image, a `datasets.Image` value
({bytes, path}) or a path; an `audio` column holds {array, sampling_rate}, a `datasets.Audio` value
({bytes, path}) or a path; a `video` column holds a list of frames (PIL images or arrays), a
`datasets.Video` value, or a path to a video file (mp4/webm/...), a GIF or a directory of frame images.

Everything is decoded here, never by `datasets`: the steps read the raw Arrow storage, so an undecodable
file is counted and reported instead of crashing the pipeline, and nothing depends on torchcodec (which
`datasets.Audio`/`datasets.Video` decoding and `datasets.Audio` encoding need). Images are decoded with
Pillow, audio with soundfile (resampled with `librosa.resample`), GIFs and frame folders with Pillow and
other video files with PyAV, imported only when needed. The public loaders (`load_image`, `load_audio`,
`load_video_frames`) are what the image, audio and video recipes call on each row.

Steps (YAML names): `image_filter`, `image_dedup`, `audio_filter`, `video_filter`. Each reads one column
(default: the modality's name; set `columns: [name]` otherwise) and records in the data report how many
rows it removed per reason (`removed_by_reason`), with a few "row <i>: <reason> (<path>)" examples.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import datasets
import numpy as np
import pandas
from PIL import Image

from hfrecipes.core.data_report import DataReport
from hfrecipes.core.errors import RecipeInputError
from hfrecipes.core.media import (
    AUDIO_EXTENSIONS,
    FULL_SCALE,
    IMAGE_EXTENSIONS,
    MEDIA_KINDS,
    VIDEO_EXTENSIONS,
    UnreadableMediaError,
    describe_media,
    load_image,
    mono_resampled,
    open_video,
    read_audio,
    rms_dbfs,
    sample_frames,
    size_pair,
)
from hfrecipes.data.steps import Step, select_with_report

# ---------------------------------------------------------------------------------------------- images


def _bits_to_int(bits: np.ndarray) -> int:
    return int.from_bytes(np.packbits(bits.astype(bool).ravel()).tobytes(), "big")


def _dct_matrix(size: int) -> np.ndarray:
    """Orthonormal DCT-II basis: `D @ x @ D.T` is the 2-D DCT of a size x size block."""
    k = np.arange(size)[:, None]
    n = np.arange(size)[None, :]
    basis = np.cos(np.pi * (2 * n + 1) * k / (2 * size)) * np.sqrt(2 / size)
    basis[0] /= np.sqrt(2)
    return basis


_DCT_32 = _dct_matrix(32)


def phash(image: Image.Image) -> int:
    """64-bit perceptual hash (the imagehash/pHash recipe): the 8x8 lowest frequencies of the DCT of the
    32x32 greyscale image, thresholded at their median. Survives re-encoding, resizing and brightness
    changes; it sees structure only, so the same picture recoloured (or two flat images) collide."""
    pixels = np.asarray(image.convert("L").resize((32, 32), Image.Resampling.LANCZOS), dtype=np.float64)
    low = (_DCT_32 @ pixels @ _DCT_32.T)[:8, :8]
    return _bits_to_int(low > np.median(low))


def dhash(image: Image.Image) -> int:
    """64-bit difference hash: is each pixel of the 9x8 greyscale image brighter than its left neighbour.
    Cheaper than pHash, a little less robust to re-encoding."""
    pixels = np.asarray(image.convert("L").resize((9, 8), Image.Resampling.LANCZOS), dtype=np.int16)
    return _bits_to_int(pixels[:, 1:] > pixels[:, :-1])


PERCEPTUAL_HASHES: dict[str, Callable[[Image.Image], int]] = {"phash": phash, "dhash": dhash}


def find_near_duplicates(hashes: Sequence[int], max_distance: int) -> list[tuple[int, int] | None]:
    """For each 64-bit hash, in order: (index of the earlier kept hash within `max_distance` bits, distance),
    or None when it starts a new group and is kept. Only kept hashes are compared, so each group keeps its
    first member. Pigeonhole index: split the bits into max_distance + 1 bands; two hashes that differ in at
    most max_distance bits agree exactly on at least one band, so only band-mates are compared (exact, and
    far below the n^2 comparisons of a pairwise scan)."""
    bands = [(int(b[0]), len(b)) for b in np.array_split(np.arange(64), max_distance + 1)]
    buckets: dict[tuple[int, int], list[int]] = {}
    matches: list[tuple[int, int] | None] = []
    for index, value in enumerate(hashes):
        keys = [(band, (value >> start) & ((1 << width) - 1)) for band, (start, width) in enumerate(bands)]
        candidates = sorted({kept for key in keys for kept in buckets.get(key, ())})
        match = None
        for kept in candidates:
            distance = (value ^ hashes[kept]).bit_count()
            if distance <= max_distance and (match is None or distance < match[1]):
                match = (kept, distance)
        matches.append(match)
        if match is None:
            for key in keys:
                buckets.setdefault(key, []).append(index)
    return matches


# ----------------------------------------------------------------------------------------------- steps


def undecoded_feature(feature: Any) -> Any:
    """The same feature with media decoding off, so values arrive as raw {bytes, path} dicts."""
    if isinstance(feature, (datasets.Image, datasets.Audio, datasets.Video)):
        return type(feature)(decode=False)
    if isinstance(feature, datasets.List):
        return datasets.List(undecoded_feature(feature.feature), length=feature.length)
    if isinstance(feature, dict):
        return {key: undecoded_feature(value) for key, value in feature.items()}
    return feature


# The old private name, still imported by hfrecipes.video.data (not this helper's file): drop it once that
# module imports `undecoded_feature`.


@dataclass
class _MediaStep(Step):
    """A step that reads one media column and judges each value: `judge(value) -> (reason, rewritten)`,
    reason "" to keep the row, rewritten the new value when the step rewrites the column."""

    media_kind: ClassVar[str] = ""
    reasons: ClassVar[tuple[str, ...]] = ()

    def resolved_columns(self, dataset: datasets.Dataset) -> list[str]:
        columns = self.columns or [self.media_kind]
        if len(columns) != 1:
            raise RecipeInputError(
                f"Step {self.name!r} reads one {self.media_kind} column; got columns={columns}."
            )
        if columns[0] not in dataset.column_names:
            raise RecipeInputError(
                f"Step {self.name!r} reads column {columns[0]!r} that the dataset lacks "
                f"({dataset.column_names}); set `columns: [<your {self.media_kind} column>]`."
            )
        return columns

    def judge(self, value: Any) -> tuple[str, Any]:
        raise NotImplementedError

    def rewritten_feature(self) -> Any:
        """The column's feature after the step when it rewrites kept values, else None (column untouched)."""
        return None

    def apply(
        self, dataset: datasets.Dataset, report: DataReport, num_proc: int | None = None
    ) -> datasets.Dataset:
        (column,) = self.resolved_columns(dataset)
        new_feature = self.rewritten_feature()

        def judge_batch(values: list[Any]) -> dict[str, list]:
            judged = [self.judge(value) for value in values]
            batch = {
                "_reason": [reason for reason, _ in judged],
                "_source": [describe_media(v) for v in values],
            }
            if new_feature is not None:
                batch[column] = [None if reason else rewritten for reason, rewritten in judged]
            return batch

        if new_feature is None:
            # Arrow format hands over the raw storage: no decoding by datasets, nothing rewritten.
            judged = (
                dataset.select_columns([column])
                .with_format("arrow")
                .map(
                    lambda table: judge_batch(table.column(column).to_pylist()),
                    batched=True,
                    num_proc=num_proc,
                    remove_columns=[column],
                    desc=self.name,
                )
                .with_format(None)
            )
        else:
            raw = dataset.cast_column(column, undecoded_feature(dataset.features[column]))
            features = raw.features.copy()
            features.update(
                {
                    column: new_feature,
                    "_reason": datasets.Value("string"),
                    "_source": datasets.Value("string"),
                }
            )
            judged = raw.map(
                judge_batch,
                batched=True,
                input_columns=[column],
                features=features,
                num_proc=num_proc,
                desc=self.name,
            )
            dataset = judged.remove_columns(["_reason", "_source"])
        return keep_and_report(
            dataset, list(judged["_reason"]), list(judged["_source"]), self, report, self.reasons
        )


def keep_and_report(
    dataset: datasets.Dataset,
    reasons: list[str],
    sources: list[str],
    step: Step,
    report: DataReport,
    known_reasons: Sequence[str],
) -> datasets.Dataset:
    """Keep rows whose reason is "" and record the step; removals are counted per reason (the text before
    the first ':') and illustrated by "row <i>: <reason> (<path>)" examples rather than the media itself."""
    counts = Counter({reason: 0 for reason in known_reasons})
    counts.update(reason.split(":", 1)[0] for reason in reasons if reason)
    labels = datasets.Dataset.from_dict(
        {
            "removed": [
                f"row {i}: {r}" + ("" if source in r else f" ({source})") if r else ""
                for i, (r, source) in enumerate(zip(reasons, sources, strict=True))
            ]
        }
    )
    flags = [not reason for reason in reasons]
    select_with_report(
        labels,
        flags,
        step,
        report,
        ["removed"],
        details={"removed_by_reason": dict(counts)},
    )
    return dataset if all(flags) else dataset.select([i for i, keep in enumerate(flags) if keep])


@dataclass
class ImageFilter(_MediaStep):
    """Drop images that cannot be decoded, are smaller than `min_width` x `min_height`, or are more elongated
    than `max_aspect_ratio` (longer side / shorter side; None: no limit). With `convert_mode` (e.g. "RGB")
    kept images not already in that mode are converted, and the column becomes a `datasets.Image`."""

    name: ClassVar[str] = "image_filter"
    media_kind: ClassVar[str] = "image"
    reasons: ClassVar[tuple[str, ...]] = ("undecodable", "too_small", "aspect_ratio")
    min_width: int = 16
    min_height: int = 16
    max_aspect_ratio: float | None = 4.0
    convert_mode: str | None = None

    def __post_init__(self) -> None:
        if self.min_width < 0 or self.min_height < 0:
            raise RecipeInputError(
                f"image_filter: min_width/min_height must be >= 0, got {self.min_width}x{self.min_height}."
            )
        if self.max_aspect_ratio is not None and self.max_aspect_ratio < 1:
            raise RecipeInputError(
                f"image_filter: max_aspect_ratio is longer/shorter side, so >= 1; got {self.max_aspect_ratio}."
            )
        if self.convert_mode is not None and self.convert_mode not in Image.MODES:
            raise RecipeInputError(
                f"image_filter: unknown convert_mode {self.convert_mode!r}; use one of {', '.join(Image.MODES)}."
            )

    def rewritten_feature(self) -> Any:
        return datasets.Image() if self.convert_mode else None

    def judge(self, value: Any) -> tuple[str, Any]:
        try:
            image = load_image(value)
        except UnreadableMediaError as err:
            return f"undecodable: {err}", None
        width, height = image.size
        if width < self.min_width or height < self.min_height:
            return f"too_small: {width}x{height} < {self.min_width}x{self.min_height}", None
        aspect_ratio = max(width, height) / max(min(width, height), 1)
        if self.max_aspect_ratio is not None and aspect_ratio > self.max_aspect_ratio:
            return f"aspect_ratio: {width}x{height} is {aspect_ratio:.1f}:1 > {self.max_aspect_ratio}:1", None
        if not self.convert_mode:
            return "", None
        if image.mode != self.convert_mode:
            return "", image.convert(self.convert_mode)
        # Images already in the mode keep their original encoding (no PNG re-encode of every JPEG).
        return "", value if isinstance(value, (dict, str)) else image


@dataclass
class ImageDedup(_MediaStep):
    """Keep the first of each group of duplicate images: exact duplicates (same decoded pixels) and
    perceptual duplicates (64-bit `method` hash, "phash" or "dhash", within `max_hamming_distance` bits of
    a kept image; None: exact only). Perceptual hashes see structure, not colour: recoloured copies and
    flat single-colour images count as duplicates. Rows that cannot be decoded are removed as
    `undecodable` (run image_filter first to see them reported with the other quality reasons)."""

    name: ClassVar[str] = "image_dedup"
    media_kind: ClassVar[str] = "image"
    reasons: ClassVar[tuple[str, ...]] = ("undecodable", "exact_duplicate", "near_duplicate")
    method: str = "phash"
    max_hamming_distance: int | None = 5

    def __post_init__(self) -> None:
        if self.method not in PERCEPTUAL_HASHES:
            raise RecipeInputError(
                f"image_dedup: method must be one of {', '.join(PERCEPTUAL_HASHES)}, got {self.method!r}."
            )
        if self.max_hamming_distance is not None and not 0 <= self.max_hamming_distance < 64:
            raise RecipeInputError(
                f"image_dedup: max_hamming_distance counts differing bits of a 64-bit hash (0-63, or null "
                f"for exact duplicates only), got {self.max_hamming_distance}."
            )

    def fingerprint(self, value: Any) -> tuple[str, str, str]:
        """(undecodable reason or "", exact key of the pixels, perceptual hash as hex)."""
        try:
            image = load_image(value)
        except UnreadableMediaError as err:
            return f"undecodable: {err}", "", ""
        exact = hashlib.sha1(f"{image.mode}{image.size}".encode() + image.tobytes()).hexdigest()
        return "", exact, f"{PERCEPTUAL_HASHES[self.method](image):016x}"

    def apply(
        self, dataset: datasets.Dataset, report: DataReport, num_proc: int | None = None
    ) -> datasets.Dataset:
        (column,) = self.resolved_columns(dataset)

        def hash_batch(table) -> dict[str, list]:
            values = table.column(column).to_pylist()
            fingerprints = [self.fingerprint(v) for v in values]
            return {
                "_reason": [reason for reason, _, _ in fingerprints],
                "_exact": [exact for _, exact, _ in fingerprints],
                "_perceptual": [perceptual for _, _, perceptual in fingerprints],
                "_source": [describe_media(v) for v in values],
            }

        hashed = (
            dataset.select_columns([column])
            .with_format("arrow")
            .map(hash_batch, batched=True, num_proc=num_proc, remove_columns=[column], desc=self.name)
            .with_format(None)
        )
        reasons = list(hashed["_reason"])
        first_with_pixels: dict[str, int] = {}
        kept_rows: list[int] = []
        for row, (reason, exact) in enumerate(zip(reasons, hashed["_exact"], strict=True)):
            if reason:
                continue
            if exact in first_with_pixels:
                reasons[row] = f"exact_duplicate: of row {first_with_pixels[exact]}"
            else:
                first_with_pixels[exact] = row
                kept_rows.append(row)
        if self.max_hamming_distance is not None:
            perceptual = hashed["_perceptual"]
            hashes = [int(perceptual[row], 16) for row in kept_rows]
            for row, match in zip(
                kept_rows, find_near_duplicates(hashes, self.max_hamming_distance), strict=True
            ):
                if match is not None:
                    reasons[row] = f"near_duplicate: of row {kept_rows[match[0]]} ({match[1]} bits apart)"
        return keep_and_report(dataset, reasons, list(hashed["_source"]), self, report, self.reasons)


AUDIO_ARRAY_FEATURE = {
    "array": datasets.List(datasets.Value("float32")),
    "sampling_rate": datasets.Value("int64"),
}


@dataclass
class AudioFilter(_MediaStep):
    """Drop audio that cannot be decoded, is shorter than `min_seconds` or longer than `max_seconds`, is
    silent (RMS below `silence_db` dBFS) or clipped (more than `max_clipped_fraction` of the samples at full
    scale); None disables a check. With `target_sampling_rate`, kept clips are downmixed to mono, resampled
    (librosa) and written back as {array, sampling_rate} (a plain struct, not `datasets.Audio`, whose
    encoding needs torchcodec): resampling lives here so each clip is decoded once."""

    name: ClassVar[str] = "audio_filter"
    media_kind: ClassVar[str] = "audio"
    reasons: ClassVar[tuple[str, ...]] = ("unreadable", "too_short", "too_long", "silent", "clipped")
    min_seconds: float = 0.5
    max_seconds: float | None = 30.0
    silence_db: float | None = -50.0
    max_clipped_fraction: float | None = 0.01
    target_sampling_rate: int | None = None

    def __post_init__(self) -> None:
        if self.min_seconds < 0 or (self.max_seconds is not None and self.max_seconds <= self.min_seconds):
            raise RecipeInputError(
                f"audio_filter: need 0 <= min_seconds < max_seconds, got {self.min_seconds} and {self.max_seconds}."
            )
        if self.silence_db is not None and self.silence_db > 0:
            raise RecipeInputError(
                f"audio_filter: silence_db is in dBFS, so <= 0 (e.g. -50), got {self.silence_db}."
            )
        if self.max_clipped_fraction is not None and not 0 <= self.max_clipped_fraction <= 1:
            raise RecipeInputError(
                f"audio_filter: max_clipped_fraction must be between 0 and 1, got {self.max_clipped_fraction}."
            )
        if self.target_sampling_rate is not None and self.target_sampling_rate <= 0:
            raise RecipeInputError(
                f"audio_filter: target_sampling_rate must be a positive rate in Hz, got {self.target_sampling_rate}."
            )

    def rewritten_feature(self) -> Any:
        return AUDIO_ARRAY_FEATURE if self.target_sampling_rate else None

    def judge(self, value: Any) -> tuple[str, Any]:
        try:
            samples, sampling_rate = read_audio(value)
        except UnreadableMediaError as err:
            return f"unreadable: {err}", None
        seconds = len(samples) / sampling_rate
        if len(samples) == 0 or seconds < self.min_seconds:
            return f"too_short: {seconds:.2f} s < {self.min_seconds} s", None
        if self.max_seconds is not None and seconds > self.max_seconds:
            return f"too_long: {seconds:.2f} s > {self.max_seconds} s", None
        loudness = rms_dbfs(samples)
        if self.silence_db is not None and loudness < self.silence_db:
            return f"silent: {loudness:.1f} dBFS < {self.silence_db} dBFS", None
        clipped = float(np.mean(np.abs(samples) >= FULL_SCALE))
        if self.max_clipped_fraction is not None and clipped > self.max_clipped_fraction:
            return f"clipped: {clipped:.1%} of samples at full scale > {self.max_clipped_fraction:.1%}", None
        if not self.target_sampling_rate:
            return "", None
        array, rate = mono_resampled(samples, sampling_rate, self.target_sampling_rate)
        return "", {"array": array, "sampling_rate": rate}


@dataclass
class VideoFilter(_MediaStep):
    """Drop videos that cannot be decoded, have fewer than `min_frames` frames, or frames smaller than
    `min_width` x `min_height`. With `num_frames` and/or `size`, kept videos are rewritten as a list of
    RGB frames (`load_video_frames`: evenly spaced, resized to cover `size` and centre-cropped)."""

    name: ClassVar[str] = "video_filter"
    media_kind: ClassVar[str] = "video"
    reasons: ClassVar[tuple[str, ...]] = ("unreadable", "too_few_frames", "too_small")
    min_frames: int = 1
    min_width: int = 0
    min_height: int = 0
    num_frames: int | None = None
    size: int | list[int] | None = None

    def __post_init__(self) -> None:
        if self.min_frames < 1 or self.min_width < 0 or self.min_height < 0:
            raise RecipeInputError(
                f"video_filter: need min_frames >= 1 and min_width/min_height >= 0, got {self.min_frames}, "
                f"{self.min_width}x{self.min_height}."
            )
        if self.num_frames is not None and self.num_frames < 1:
            raise RecipeInputError(f"video_filter: num_frames must be at least 1, got {self.num_frames}.")
        size_pair(self.size)

    def rewritten_feature(self) -> Any:
        return datasets.List(datasets.Image()) if self.num_frames or self.size else None

    def judge(self, value: Any) -> tuple[str, Any]:
        what = describe_media(value)
        try:
            video = open_video(value)
            if video.frame_count < self.min_frames:
                return f"too_few_frames: {video.frame_count} < {self.min_frames}", None
            if self.min_width or self.min_height:
                width, height = video.read([0])[0].size
                if width < self.min_width or height < self.min_height:
                    return f"too_small: {width}x{height} < {self.min_width}x{self.min_height}", None
            if self.rewritten_feature() is None:
                return "", None
            return "", sample_frames(video, what, self.num_frames, self.size)
        except UnreadableMediaError as err:
            return f"unreadable: {err}", None


# ----------------------------------------------------------------------------------------- folders


def _read_folder_metadata(root: Path) -> dict[str, dict[str, Any]]:
    """metadata.jsonl or metadata.csv beside the files (HF imagefolder/audiofolder convention): one row per
    file, keyed by `file_name` relative to the folder; its other columns (text, label...) join the rows."""
    candidates = [root / "metadata.jsonl", root / "metadata.csv"]
    present = [p for p in candidates if p.is_file()]
    if not present:
        return {}
    if len(present) > 1:
        raise RecipeInputError(f"{root} has both metadata.jsonl and metadata.csv; keep one.")
    path = present[0]
    if path.suffix == ".jsonl":
        records = []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise RecipeInputError(f"{path} line {number} is not valid JSON: {err}") from err
    else:
        frame = pandas.read_csv(path)
        records = frame.astype(object).where(frame.notna(), None).to_dict("records")
    if any(not isinstance(r, dict) or "file_name" not in r for r in records):
        raise RecipeInputError(
            f"Every row of {path} needs a `file_name` column (the path relative to {root})."
        )
    return {
        Path(str(r["file_name"])).as_posix(): {k: v for k, v in r.items() if k != "file_name"}
        for r in records
    }


def _media_entries(root: Path, kind: str) -> list[Path]:
    """The files (and, for video, frame directories) of one kind under `root`, in a stable order."""
    files = sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )
    extensions = {"image": IMAGE_EXTENSIONS, "audio": AUDIO_EXTENSIONS, "video": VIDEO_EXTENSIONS}[kind]
    entries = [p for p in files if p.suffix.lower() in extensions]
    if kind == "video":
        still_images = IMAGE_EXTENSIONS - VIDEO_EXTENSIONS
        frame_dirs = {p.parent for p in files if p.suffix.lower() in still_images}
        if root in frame_dirs:
            raise RecipeInputError(
                f"{root} holds frame images directly; put each video's frames in its own subdirectory."
            )
        entries = sorted([*entries, *frame_dirs])
    return entries


def _check_readable(entry: Path, kind: str) -> None:
    if kind == "image":
        load_image(entry)
    elif kind == "audio":
        read_audio(entry)
    elif open_video(entry).frame_count == 0:
        raise UnreadableMediaError(f"Video {entry} has no frames.")


def load_media_folder(path: str | os.PathLike, kind: str) -> tuple[datasets.Dataset, list[tuple[str, str]]]:
    """A dataset from a folder of images, audio files or videos (video files, GIFs, or one subdirectory of
    frame images per video), like HF imagefolder/audiofolder: columns `file_name` (relative path), `kind`
    (the absolute path, which every loader and step here accepts) and the columns of a metadata.jsonl /
    metadata.csv in the folder (e.g. `text`), None for files it does not list.

    Every file is decoded once to check it; unreadable files, and metadata rows naming missing files, are
    left out of the dataset and returned as (relative path, reason) for the caller's data report."""
    if kind not in MEDIA_KINDS:
        raise RecipeInputError(f"Media folder kind must be one of {', '.join(MEDIA_KINDS)}, got {kind!r}.")
    root = Path(path)
    if not root.is_dir():
        raise RecipeInputError(f"Media folder {root} does not exist or is not a directory.")
    metadata = _read_folder_metadata(root)
    entries = _media_entries(root, kind)
    if not entries:
        raise RecipeInputError(f"{root} has no {kind} files.")
    metadata_columns = sorted({column for row in metadata.values() for column in row})
    rows: list[dict[str, Any]] = []
    unreadable: list[tuple[str, str]] = []
    for entry in entries:
        relative = entry.relative_to(root).as_posix()
        try:
            _check_readable(entry, kind)
        except UnreadableMediaError as err:
            unreadable.append((relative, str(err)))
            continue
        listed = metadata.get(relative, {})
        rows.append(
            {
                "file_name": relative,
                kind: str(entry.resolve()),
                **{c: listed.get(c) for c in metadata_columns},
            }
        )
    found = {entry.relative_to(root).as_posix() for entry in entries}
    unreadable.extend(
        (name, "listed in the metadata but not found") for name in sorted(set(metadata) - found)
    )
    if not rows:
        reasons = "; ".join(f"{name}: {reason}" for name, reason in unreadable[:3])
        raise RecipeInputError(
            f"None of the {len(entries)} {kind} entries in {root} can be read ({reasons})."
        )
    return datasets.Dataset.from_list(rows), unreadable


__all__ = [
    "AudioFilter",
    "ImageDedup",
    "ImageFilter",
    "VideoFilter",
    "dhash",
    "find_near_duplicates",
    "keep_and_report",
    "load_media_folder",
    "phash",
    "undecoded_feature",
]
