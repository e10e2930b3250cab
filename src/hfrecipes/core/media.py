"""Decoding media: images, audio and video from paths, bytes, arrays or `datasets` values, with one clear error for a file that cannot be read."""

from __future__ import annotations

import io
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from hfrecipes.core.errors import RecipeInputError

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"})


AUDIO_EXTENSIONS = frozenset({".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif"})


VIDEO_EXTENSIONS = frozenset({".mp4", ".webm", ".mkv", ".mov", ".avi", ".gif"})


MEDIA_KINDS = ("image", "audio", "video")


# A sample at or beyond this magnitude sits on the rail: the recording was (almost certainly) clipped.
FULL_SCALE = 0.999


class UnreadableMediaError(RecipeInputError):
    """One image, audio clip or video that cannot be decoded. The filters count it as a removal reason;
    other RecipeInputErrors (a missing optional dependency, a bad parameter) still stop the pipeline."""


def describe_media(value: Any) -> str:
    """Where a media value came from, for messages and report examples (its path when it has one)."""
    if isinstance(value, (str, os.PathLike)):
        return str(value)
    if isinstance(value, dict) and value.get("path"):
        return str(value["path"])
    if isinstance(value, dict) and value.get("bytes"):
        return f"<{len(value['bytes'])} bytes>"
    if isinstance(value, (list, tuple)):
        return f"<{len(value)} frames>"
    return f"<{type(value).__name__}>"


def _error_text(err: Exception) -> str:
    return f"{type(err).__name__}: {err}"[:200]


def _array_to_image(value: Any) -> Image.Image:
    """HxW or HxWxC pixels; floats are taken as [0, 1], as image processors output them."""
    array = np.asarray(value)
    if np.issubdtype(array.dtype, np.floating):
        array = np.clip(array * 255.0, 0, 255).round()
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (3, 4)):
        raise UnreadableMediaError(f"An image array must be HxW or HxWx(1|3|4), got shape {array.shape}.")
    return Image.fromarray(array.astype(np.uint8))


def _open_image(source: str | os.PathLike | io.BytesIO) -> Image.Image:
    # load() decodes every pixel now, so a truncated file fails here rather than in a training step.
    with Image.open(source) as image:
        image.load()
        return image


def load_image(value: Any) -> Image.Image:
    """Decode one image value: a PIL image, a `datasets.Image` dict {bytes, path}, a path, or an array.

    Raises UnreadableMediaError (with the path) when the value cannot be decoded completely."""
    try:
        if isinstance(value, Image.Image):
            value.load()
            return value
        if isinstance(value, (str, os.PathLike)):
            return _open_image(value)
        if isinstance(value, dict):
            if value.get("bytes"):
                return _open_image(io.BytesIO(value["bytes"]))
            if value.get("path"):
                return _open_image(value["path"])
            raise UnreadableMediaError("An image value has neither bytes nor a path.")
        if isinstance(value, (np.ndarray, list)):
            return _array_to_image(value)
    except UnreadableMediaError:
        raise
    except Exception as err:  # Pillow raises many types (OSError, SyntaxError, ValueError...) on bad data
        raise UnreadableMediaError(
            f"Cannot decode image {describe_media(value)}: {_error_text(err)}"
        ) from err
    raise UnreadableMediaError(
        f"Cannot read an image from a {type(value).__name__}; use a PIL image, a path or {{bytes, path}}."
    )


def _import_soundfile():
    try:
        import soundfile
    except ImportError as err:
        raise RecipeInputError(
            "Reading audio files needs soundfile: pip install 'hfrecipes[audio]'."
        ) from err
    return soundfile


def read_audio(value: Any) -> tuple[np.ndarray, int]:
    """All channels as float32 (frames, channels) in [-1, 1], and the sampling rate."""
    if isinstance(value, dict) and value.get("array") is not None:
        if not value.get("sampling_rate"):
            raise UnreadableMediaError("An audio {array, sampling_rate} value has no sampling_rate.")
        array = np.asarray(value["array"])
        if np.issubdtype(array.dtype, np.integer):
            array = array / float(np.iinfo(array.dtype).max)
        array = array.astype(np.float32)
        # datasets returns multichannel arrays channels-first; soundfile and this module use channels-last.
        if array.ndim == 2 and array.shape[0] < array.shape[1]:
            array = array.T
        samples, sampling_rate = (array[:, None] if array.ndim == 1 else array), int(value["sampling_rate"])
    else:
        if isinstance(value, dict) and value.get("bytes"):
            source: Any = io.BytesIO(value["bytes"])
        elif isinstance(value, dict) and value.get("path"):
            source = value["path"]
        elif isinstance(value, (str, os.PathLike)):
            source = value
        else:
            raise UnreadableMediaError(
                f"Cannot read audio from a {type(value).__name__}; use {{array, sampling_rate}}, a path or "
                "{bytes, path}."
            )
        soundfile = _import_soundfile()
        try:
            samples, sampling_rate = soundfile.read(source, dtype="float32", always_2d=True)
        except Exception as err:  # libsndfile errors, missing files, unknown formats
            raise UnreadableMediaError(
                f"Cannot decode audio {describe_media(value)}: {_error_text(err)}"
            ) from err
    if samples.ndim != 2:
        raise UnreadableMediaError(
            f"Audio {describe_media(value)} has shape {samples.shape}; expected 1-D or 2-D."
        )
    if not np.isfinite(samples).all():
        raise UnreadableMediaError(f"Audio {describe_media(value)} contains NaN or infinite samples.")
    return samples, sampling_rate


def load_audio(value: Any, target_sr: int | None = None) -> tuple[np.ndarray, int]:
    """Decode one audio value to a mono float32 array (channels averaged) and its sampling rate,
    resampled with `librosa.resample` when `target_sr` differs. Accepts {array, sampling_rate},
    a `datasets.Audio` dict {bytes, path} or a path; raises UnreadableMediaError when it cannot."""
    return mono_resampled(*read_audio(value), target_sr)


def mono_resampled(samples: np.ndarray, sampling_rate: int, target_sr: int | None) -> tuple[np.ndarray, int]:
    """Average the channels to mono float32 and resample to `target_sr` (librosa) when it differs."""
    mono = samples.mean(axis=1)
    if target_sr and target_sr != sampling_rate:
        try:
            import librosa
        except ImportError as err:
            raise RecipeInputError("Resampling audio needs librosa: pip install 'hfrecipes[audio]'.") from err
        mono = librosa.resample(mono, orig_sr=sampling_rate, target_sr=target_sr)
        sampling_rate = target_sr
    return mono.astype(np.float32), sampling_rate


def rms_dbfs(samples: np.ndarray) -> float:
    """Loudness as RMS in dB relative to full scale (0 dBFS = a full-scale square wave; silence = -inf)."""
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))) if samples.size else 0.0
    return 20 * np.log10(rms) if rms > 0 else float("-inf")


def _import_av(what: str):
    try:
        import av
    except ImportError as err:
        raise RecipeInputError(
            f"Decoding {what} needs PyAV (FFmpeg): pip install 'hfrecipes[video]'. "
            "GIFs and directories of frame images need only Pillow."
        ) from err
    return av


@dataclass
class OpenedVideo:
    """A validated video: every one of its `frame_count` frames decoded once; `read` decodes the ones asked."""

    frame_count: int
    read: Callable[[list[int]], list[Image.Image]]


def _natural_key(path: Path) -> list:
    """frame_2 before frame_10, as frame numbers are usually not zero-padded."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def _frame_files(directory: Path) -> list[Path]:
    files = [p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
    return sorted(files, key=_natural_key)


def _open_frame_list(frames: Sequence[Any]) -> OpenedVideo:
    decoded = [load_image(frame) for frame in frames]
    return OpenedVideo(len(decoded), lambda indices: [decoded[i] for i in indices])


def _open_frame_directory(directory: Path) -> OpenedVideo:
    files = _frame_files(directory)
    for file in files:
        load_image(file)
    return OpenedVideo(len(files), lambda indices: [load_image(files[i]) for i in indices])


def _open_animated_image(make_source: Callable[[], Any]) -> OpenedVideo:
    with Image.open(make_source()) as image:
        frame_count = getattr(image, "n_frames", 1)
        for index in range(frame_count):
            image.seek(index)
            image.load()

    def read(indices: list[int]) -> list[Image.Image]:
        frames = {}
        with Image.open(make_source()) as image:
            for index in sorted(set(indices)):
                image.seek(index)
                frames[index] = image.convert("RGB")
        return [frames[i] for i in indices]

    return OpenedVideo(frame_count, read)


def _open_container_video(make_source: Callable[[], Any], what: str) -> OpenedVideo:
    av = _import_av(what)

    def decoded_frames(container):
        if not container.streams.video:
            raise UnreadableMediaError(f"{what} has no video stream.")
        return container.decode(container.streams.video[0])

    # Counted by decoding: container metadata can be missing (webm) or wrong, and this validates the file.
    with av.open(make_source()) as container:
        frame_count = sum(1 for _ in decoded_frames(container))

    def read(indices: list[int]) -> list[Image.Image]:
        wanted, frames = set(indices), {}
        with av.open(make_source()) as container:
            for index, frame in enumerate(decoded_frames(container)):
                if index in wanted:
                    frames[index] = frame.to_image()
                if len(frames) == len(wanted):
                    break
        return [frames[i] for i in indices]

    return OpenedVideo(frame_count, read)


def open_video(source: Any) -> OpenedVideo:
    """Open a video (file, bytes, frame list or frame folder) and check that every frame decodes."""
    what = describe_media(source)
    try:
        if isinstance(source, (list, tuple)):
            return _open_frame_list(source)
        if isinstance(source, dict) and source.get("bytes"):
            data = source["bytes"]
            if data[:4] == b"GIF8":
                return _open_animated_image(lambda: io.BytesIO(data))
            return _open_container_video(lambda: io.BytesIO(data), what)
        path = source.get("path") if isinstance(source, dict) else source
        if not isinstance(path, (str, os.PathLike)):
            raise UnreadableMediaError(
                f"Cannot read a video from a {type(source).__name__}; use a list of frames, a path to a video "
                "file or frame directory, or {bytes, path}."
            )
        path = Path(path)
        if path.is_dir():
            return _open_frame_directory(path)
        if path.suffix.lower() in IMAGE_EXTENSIONS:
            return _open_animated_image(lambda: path)
        return _open_container_video(lambda: path, what)
    except RecipeInputError:
        raise
    except Exception as err:  # Pillow and FFmpeg raise many types on bad data
        raise UnreadableMediaError(f"Cannot decode video {what}: {_error_text(err)}") from err


def size_pair(size: int | Sequence[int] | None) -> tuple[int, int] | None:
    """A frame size as (width, height) from one side or a pair; None keeps the video's own size."""
    if size is None:
        return None
    pair = (size, size) if isinstance(size, int) else tuple(size)
    if len(pair) != 2 or not all(isinstance(s, int) and s > 0 for s in pair):
        raise RecipeInputError(f"size must be a positive int or [width, height], got {size!r}.")
    return pair


def evenly_spaced_indices(frame_count: int, num_frames: int) -> list[int]:
    """`num_frames` indices spread from the first to the last frame (repeating frames of shorter videos)."""
    return [int(i) for i in np.linspace(0, frame_count - 1, num_frames).round()]


def sample_frames(
    video: OpenedVideo, what: str, num_frames: int | None, size: int | Sequence[int] | None
) -> list[Image.Image]:
    """`num_frames` evenly spaced frames of an opened video (all when None), resized to `size`, as PIL images."""
    if video.frame_count == 0:
        raise UnreadableMediaError(f"Video {what} has no frames.")
    target = size_pair(size)
    indices = (
        list(range(video.frame_count))
        if num_frames is None
        else evenly_spaced_indices(video.frame_count, num_frames)
    )
    try:
        frames = [frame.convert("RGB") for frame in video.read(indices)]
    except RecipeInputError:
        raise
    except Exception as err:
        raise UnreadableMediaError(f"Cannot decode video {what}: {_error_text(err)}") from err
    # Scaled to cover the target then centre-cropped: the aspect ratio is kept, as video models expect.
    return [ImageOps.fit(f, target, Image.Resampling.BICUBIC) for f in frames] if target else frames


def load_video_frames(
    source: Any, num_frames: int | None = None, size: int | Sequence[int] | None = None
) -> list[Image.Image]:
    """Decode a video to RGB PIL frames: all of them, or `num_frames` evenly spaced ones; with `size`
    (an int or [width, height]) each frame is resized to cover it and centre-cropped.

    `source`: a list of frames (PIL images, arrays, {bytes, path}), a path to an mp4/webm/... (PyAV), a
    GIF or other animated image (Pillow), a directory of frame images (in natural order), or a
    `datasets.Video` dict {bytes, path}. Raises UnreadableMediaError when it cannot be decoded."""
    if num_frames is not None and num_frames < 1:
        raise RecipeInputError(f"num_frames must be at least 1, got {num_frames}.")
    return sample_frames(open_video(source), describe_media(source), num_frames, size)
