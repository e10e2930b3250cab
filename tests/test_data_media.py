"""Image, audio and video prep: decoders, filters with per-reason counts, dedup, media folders.

Every file is generated in tmp_path; the counts asserted are those the crafted inputs must produce."""

from __future__ import annotations

import io
import json
import random
import sys
from pathlib import Path

import av
import datasets
import numpy as np
import pytest
import soundfile
from PIL import Image, ImageDraw, ImageEnhance

from hfrecipes.core.data_report import DataReport
from hfrecipes.core.errors import RecipeInputError
from hfrecipes.core.media import UnreadableMediaError, load_audio, load_image, load_video_frames
from hfrecipes.data import parse_pipeline, run_pipeline
from hfrecipes.data.media import (
    AudioFilter,
    ImageDedup,
    ImageFilter,
    VideoFilter,
    find_near_duplicates,
    load_media_folder,
    phash,
)

SAMPLING_RATE = 22050


def scene(seed: int, size: tuple[int, int] = (64, 48)) -> Image.Image:
    """A picture with structure (rectangles on a background), different for every seed."""
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", size, tuple(int(c) for c in rng.integers(0, 256, 3)))
    draw = ImageDraw.Draw(image)
    for _ in range(6):
        x, y = int(rng.integers(0, size[0])), int(rng.integers(0, size[1]))
        w, h = int(rng.integers(1, size[0] // 2 + 2)), int(rng.integers(1, size[1] // 2 + 2))
        draw.rectangle([x, y, x + w, y + h], fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
    return image


def save(image: Image.Image, path: Path, **options) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **options)
    return str(path)


def write_bytes(path: Path, data: bytes) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return str(path)


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def sine(seconds: float, amplitude: float = 0.5, rate: int = SAMPLING_RATE, hz: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def write_wav(path: Path, samples: np.ndarray, rate: int = SAMPLING_RATE) -> str:
    soundfile.write(path, samples, rate)
    return str(path)


def grey_frames(count: int, size: int = 24) -> list[Image.Image]:
    """Frame i is a flat grey of level 20 + 25 i, so a decoded frame tells which frame it is."""
    return [Image.new("RGB", (size, size), (20 + 25 * i,) * 3) for i in range(count)]


def frame_number(frame: Image.Image) -> int:
    return round((np.asarray(frame.convert("L"), dtype=float).mean() - 20) / 25)


def write_gif(path: Path, count: int) -> str:
    frames = grey_frames(count)
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=40, loop=0)
    return str(path)


def write_mp4(path: Path, count: int = 6, size: int = 16) -> str:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=6)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for frame in grey_frames(count, size):
            container.mux(stream.encode(av.VideoFrame.from_image(frame)))
        container.mux(stream.encode())
    return str(path)


def last_record(report: DataReport):
    record = report.steps[-1]
    assert record.rows_in == record.rows_out + record.removed
    assert sum(record.details["removed_by_reason"].values()) == record.removed
    return record


# ----------------------------------------------------------------------------------------------- images


def test_image_filter_removes_each_bad_image_for_its_reason(tmp_path):
    good = save(scene(0), tmp_path / "good.png")
    whole = png_bytes(scene(1, (64, 64)))
    paths = [
        good,
        write_bytes(tmp_path / "truncated.png", whole[: len(whole) // 2]),
        write_bytes(tmp_path / "garbage.png", b"this is not an image" * 8),
        save(scene(2, (4, 4)), tmp_path / "tiny.png"),
        save(scene(3, (400, 20)), tmp_path / "wide.png"),
    ]
    dataset = datasets.Dataset.from_dict({"image": paths})
    report = DataReport()
    steps = parse_pipeline([{"image_filter": {"min_width": 16, "min_height": 16, "max_aspect_ratio": 4}}])

    kept = run_pipeline(dataset, steps, report)

    assert kept["image"] == [good]
    record = last_record(report)
    assert record.details["removed_by_reason"] == {"undecodable": 2, "too_small": 1, "aspect_ratio": 1}
    assert record.examples[0].startswith("row 1: undecodable") and "truncated.png" in record.examples[0]

    # The same files pass once the thresholds they broke are relaxed: only the unreadable two go.
    loose = ImageFilter(min_width=1, min_height=1, max_aspect_ratio=None).apply(dataset, DataReport())
    assert loose["image"] == [paths[0], paths[3], paths[4]]


def test_image_filter_reads_image_features_raw_and_converts_mode():
    grey = Image.fromarray(np.tile(np.arange(32, dtype=np.uint8) * 8, (32, 1)), mode="L")
    colour = scene(4, (32, 32))
    features = datasets.Features({"image": datasets.Image(), "text": datasets.Value("string")})
    rows = {
        "image": [{"bytes": png_bytes(grey), "path": None}, {"bytes": b"garbage", "path": None}, colour],
        "text": ["grey", "broken", "colour"],
    }
    dataset = datasets.Dataset.from_dict(rows, features=features)
    report = DataReport()

    kept = ImageFilter(convert_mode="RGB").apply(dataset, report)

    assert kept["text"] == ["grey", "colour"]
    assert [image.mode for image in kept["image"]] == ["RGB", "RGB"]
    assert np.array_equal(np.asarray(kept[0]["image"])[..., 0], np.asarray(grey))
    assert np.array_equal(np.asarray(kept[1]["image"]), np.asarray(colour))
    assert last_record(report).details["removed_by_reason"]["undecodable"] == 1


def test_image_dedup_keeps_first_of_exact_and_perceptual_duplicates(tmp_path):
    base = scene(0)
    brighter = io.BytesIO()
    ImageEnhance.Brightness(base).enhance(1.15).save(brighter, "JPEG", quality=80)
    paths = [
        save(base, tmp_path / "base.png"),
        save(base, tmp_path / "same_pixels.bmp"),  # other bytes, identical pixels
        save(scene(1), tmp_path / "other.png"),
        write_bytes(tmp_path / "brighter.jpg", brighter.getvalue()),
    ]
    dataset = datasets.Dataset.from_dict({"image": paths})
    assert (phash(base) ^ phash(load_image(paths[3]))).bit_count() <= 5
    assert (phash(base) ^ phash(scene(1))).bit_count() > 10

    for method in ("phash", "dhash"):
        report = DataReport()
        kept = ImageDedup(method=method).apply(dataset, report)
        assert kept["image"] == [paths[0], paths[2]], method
        record = last_record(report)
        assert record.details["removed_by_reason"] == {
            "undecodable": 0,
            "exact_duplicate": 1,
            "near_duplicate": 1,
        }
        assert record.examples[0].startswith("row 1: exact_duplicate: of row 0")
        assert record.examples[1].startswith("row 3: near_duplicate: of row 0")

    exact_only = ImageDedup(max_hamming_distance=None).apply(dataset, DataReport())
    assert exact_only["image"] == [paths[0], paths[2], paths[3]]


def test_find_near_duplicates_compares_with_kept_hashes_only():
    hashes = [0, 0b111, 0b111111, (1 << 63) | 1, 0b111110]
    assert find_near_duplicates(hashes, 3) == [None, (0, 3), None, (0, 2), (2, 1)]

    # The banded index must find exactly what a pairwise scan over the kept hashes finds.
    rng = random.Random(0)
    bases = [rng.getrandbits(64) for _ in range(25)]
    hashes = []
    for _ in range(300):
        value = rng.choice(bases)
        for bit in rng.sample(range(64), rng.randint(0, 7)):
            value ^= 1 << bit
        hashes.append(value)
    expected, kept = [], []
    for index, value in enumerate(hashes):
        close = [((value ^ hashes[k]).bit_count(), k) for k in kept if (value ^ hashes[k]).bit_count() <= 4]
        match = min(close) if close else None
        expected.append(None if match is None else (match[1], match[0]))
        if match is None:
            kept.append(index)
    assert find_near_duplicates(hashes, 4) == expected
    assert 25 <= len(kept) < 300


# ------------------------------------------------------------------------------------------------ audio


def test_audio_filter_counts_every_reason_on_audio_features(tmp_path):
    rng = np.random.default_rng(0)
    paths = {
        "sine": write_wav(tmp_path / "sine.wav", sine(1.0)),
        "loud": write_wav(tmp_path / "loud.wav", sine(1.0, amplitude=0.9)),
        "short": write_wav(tmp_path / "short.wav", sine(0.1)),
        "long": write_wav(tmp_path / "long.wav", sine(11.0, rate=8000), rate=8000),
        "silent": write_wav(
            tmp_path / "silent.wav", (1e-4 * rng.standard_normal(SAMPLING_RATE)).astype("f4")
        ),
        "clipped": write_wav(tmp_path / "clipped.wav", np.clip(sine(1.0, amplitude=3.0), -1, 1)),
        "garbage": write_bytes(tmp_path / "garbage.wav", b"RIFF not really a wave file" * 4),
    }
    # A datasets.Audio column (as from the Hub): read raw, so its decoding (torchcodec) is never needed.
    dataset = datasets.Dataset.from_dict({"audio": list(paths.values())}).cast_column(
        "audio", datasets.Audio()
    )
    report = DataReport()
    steps = parse_pipeline(
        [
            {
                "audio_filter": {
                    "min_seconds": 0.5,
                    "max_seconds": 10,
                    "silence_db": -50,
                    "max_clipped_fraction": 0.01,
                }
            }
        ]
    )

    kept = run_pipeline(dataset, steps, report)

    assert [a["path"] for a in kept.cast_column("audio", datasets.Audio(decode=False))["audio"]] == [
        paths["sine"],
        paths["loud"],
    ]
    record = last_record(report)
    assert record.details["removed_by_reason"] == {
        "unreadable": 1,
        "too_short": 1,
        "too_long": 1,
        "silent": 1,
        "clipped": 1,
    }
    assert record.examples[0].startswith("row 2: too_short: 0.10 s") and "short.wav" in record.examples[0]


def test_audio_filter_resamples_kept_clips_to_target_rate():
    rows = {
        "audio": [
            {"array": sine(1.0), "sampling_rate": SAMPLING_RATE},
            {"array": sine(0.5), "sampling_rate": SAMPLING_RATE},
            {"array": np.zeros(SAMPLING_RATE, dtype=np.float32), "sampling_rate": SAMPLING_RATE},
        ],
        "text": ["one second", "half", "silence"],
    }
    dataset = datasets.Dataset.from_dict(rows)
    report = DataReport()

    kept = AudioFilter(min_seconds=0.2, target_sampling_rate=16000).apply(dataset, report)

    assert kept["text"] == ["one second", "half"]
    assert [len(a["array"]) for a in kept["audio"]] == [16000, 8000]
    assert {a["sampling_rate"] for a in kept["audio"]} == {16000}
    resampled = np.asarray(kept[0]["audio"]["array"])
    assert np.argmax(np.abs(np.fft.rfft(resampled))) == pytest.approx(440, abs=2)  # 1 s: bin = Hz
    assert np.abs(resampled).max() == pytest.approx(0.5, abs=0.02)
    assert last_record(report).details["removed_by_reason"]["silent"] == 1


def test_load_audio_downmixes_resamples_and_rejects_what_it_cannot(tmp_path):
    stereo = np.stack([sine(1.0), np.zeros(SAMPLING_RATE, dtype=np.float32)])  # channels first, as datasets
    mono, rate = load_audio({"array": stereo, "sampling_rate": SAMPLING_RATE})
    assert mono.shape == (SAMPLING_RATE,) and rate == SAMPLING_RATE
    assert np.abs(mono).max() == pytest.approx(0.25, abs=0.01)  # the sine averaged with a silent channel

    path = write_wav(tmp_path / "stereo.wav", stereo.T)
    samples, rate = load_audio(path)
    assert samples.shape == (SAMPLING_RATE,) and rate == SAMPLING_RATE
    resampled, rate = load_audio({"path": path, "bytes": None}, target_sr=16000)
    assert resampled.shape == (16000,) and rate == 16000
    with pytest.raises(UnreadableMediaError, match="sampling_rate"):
        load_audio({"array": sine(1.0), "sampling_rate": None})
    with pytest.raises(UnreadableMediaError, match="missing.wav"):
        load_audio(str(tmp_path / "missing.wav"))


# ------------------------------------------------------------------------------------------------ video


def test_video_filter_drops_short_and_unreadable_videos_and_resamples_frames(tmp_path):
    paths = [
        write_gif(tmp_path / "eight.gif", 8),
        write_gif(tmp_path / "two.gif", 2),
        write_bytes(tmp_path / "garbage.mp4", b"\x00\x00\x00\x18ftypmp42 but nothing else" * 3),
        write_mp4(tmp_path / "six.mp4", 6),
    ]
    dataset = datasets.Dataset.from_dict({"video": paths, "text": ["a", "b", "c", "d"]})
    report = DataReport()

    kept = VideoFilter(min_frames=4).apply(dataset, report)

    assert kept["video"] == [paths[0], paths[3]]
    record = last_record(report)
    assert record.details["removed_by_reason"] == {"unreadable": 1, "too_few_frames": 1, "too_small": 0}
    assert "garbage.mp4" in record.examples[1]

    resampled = VideoFilter(min_frames=4, num_frames=3, size=8).apply(dataset, DataReport())
    assert resampled["text"] == ["a", "d"]
    gif_frames, mp4_frames = resampled["video"]
    assert [f.size for f in gif_frames + mp4_frames] == [(8, 8)] * 6
    assert [frame_number(f) for f in gif_frames] == [0, 4, 7]  # evenly spaced over 8 frames
    assert [frame_number(f) for f in mp4_frames] == [0, 2, 5]  # and over 6 (lossy codec, same greys)

    too_small = VideoFilter(min_width=20).apply(dataset, DataReport())
    assert too_small["video"] == [paths[0], paths[1]]  # the 16x16 mp4 goes, the 24x24 GIFs stay


def test_load_video_frames_from_every_source_kind(tmp_path):
    mp4 = write_mp4(tmp_path / "clip.mp4", 6)
    frames = load_video_frames(mp4, num_frames=4, size=(12, 8))
    assert [f.size for f in frames] == [(12, 8)] * 4 and {f.mode for f in frames} == {"RGB"}

    frame_dir = tmp_path / "frames"
    for number, frame in zip((1, 2, 10), grey_frames(3), strict=True):
        save(frame, frame_dir / f"frame_{number}.png")
    assert [frame_number(f) for f in load_video_frames(frame_dir)] == [0, 1, 2]  # frame_10 last

    with_bytes = {"bytes": (tmp_path / "clip.mp4").read_bytes(), "path": None}
    assert len(load_video_frames(with_bytes)) == 6
    assert [frame_number(f) for f in load_video_frames(grey_frames(5), num_frames=2)] == [0, 4]
    with pytest.raises(UnreadableMediaError, match="nothing.webm"):
        load_video_frames(write_bytes(tmp_path / "nothing.webm", b"not a video"))


def test_video_filter_on_a_column_of_frame_lists():
    dataset = datasets.Dataset.from_dict({"video": [grey_frames(5), grey_frames(1), grey_frames(3)]})
    report = DataReport()
    kept = VideoFilter(min_frames=2, num_frames=2).apply(dataset, report)
    assert [[frame_number(f) for f in video] for video in kept["video"]] == [[0, 4], [0, 2]]
    assert last_record(report).details["removed_by_reason"]["too_few_frames"] == 1


def test_missing_pyav_is_an_install_hint_not_an_unreadable_video(tmp_path, monkeypatch):
    mp4 = write_mp4(tmp_path / "clip.mp4")
    gif = write_gif(tmp_path / "clip.gif", 3)
    monkeypatch.setitem(sys.modules, "av", None)  # makes `import av` fail
    with pytest.raises(RecipeInputError, match=r"hfrecipes\[video\]") as raised:
        load_video_frames(mp4)
    assert not isinstance(raised.value, UnreadableMediaError)
    with pytest.raises(RecipeInputError, match=r"hfrecipes\[video\]"):
        VideoFilter().apply(datasets.Dataset.from_dict({"video": [gif, mp4]}), DataReport())
    assert len(load_video_frames(gif)) == 3  # GIFs need only Pillow


# ---------------------------------------------------------------------------------------------- folders


def test_load_media_folder_reports_unreadable_and_missing_files(tmp_path):
    images = tmp_path / "images"
    save(scene(0), images / "a.png")
    save(scene(1), images / "sub" / "b.jpg")
    write_bytes(images / "broken.png", b"garbage")
    write_bytes(images / "notes.txt", b"not media, ignored")
    metadata = [("a.png", "a cat"), ("sub/b.jpg", "a dog"), ("gone.png", "missing")]
    (images / "metadata.jsonl").write_text(
        "".join(json.dumps({"file_name": name, "text": text}) + "\n" for name, text in metadata)
    )

    dataset, unreadable = load_media_folder(images, "image")

    assert dataset["file_name"] == ["a.png", "sub/b.jpg"]
    assert dataset["text"] == ["a cat", "a dog"]
    assert load_image(dataset[1]["image"]).size == (64, 48)
    assert [name for name, _ in unreadable] == ["broken.png", "gone.png"]
    assert "Cannot decode image" in unreadable[0][1] and "not found" in unreadable[1][1]


def test_load_media_folder_audio_and_video(tmp_path):
    audio = tmp_path / "audio"
    audio.mkdir()
    write_wav(audio / "hello.wav", sine(1.0))
    write_bytes(audio / "broken.flac", b"fLaC and then nothing")
    (audio / "metadata.csv").write_text("file_name,text,speaker\nhello.wav,hello there,3\n")
    dataset, unreadable = load_media_folder(audio, "audio")
    assert dataset["text"] == ["hello there"] and dataset["speaker"] == [3]
    assert load_audio(dataset[0]["audio"])[1] == SAMPLING_RATE
    assert [name for name, _ in unreadable] == ["broken.flac"]

    videos = tmp_path / "videos"
    videos.mkdir()
    write_gif(videos / "clip.gif", 4)
    for index, frame in enumerate(grey_frames(3)):
        save(frame, videos / "frames" / f"{index}.png")
    write_bytes(videos / "broken.mp4", b"not a video")
    dataset, unreadable = load_media_folder(videos, "video")
    assert dataset["file_name"] == ["clip.gif", "frames"]
    assert [len(load_video_frames(v)) for v in dataset["video"]] == [4, 3]
    assert [name for name, _ in unreadable] == ["broken.mp4"]

    write_bytes(tmp_path / "nothing_good" / "x.png", b"garbage")
    with pytest.raises(RecipeInputError, match="None of the 1 image"):
        load_media_folder(tmp_path / "nothing_good", "image")


# ------------------------------------------------------------------------------------------- parameters


@pytest.mark.parametrize(
    "item",
    [
        {"image_filter": {"max_aspect_ratio": 0.5}},
        {"image_filter": {"convert_mode": "RGBZ"}},
        {"image_dedup": {"method": "ahash"}},
        {"image_dedup": {"max_hamming_distance": 64}},
        {"audio_filter": {"silence_db": 10}},
        {"audio_filter": {"min_seconds": 5, "max_seconds": 1}},
        {"video_filter": {"size": [8]}},
        {"video_filter": {"min_frames": 0}},
    ],
)
def test_bad_parameters_are_refused_before_any_work(item):
    with pytest.raises(RecipeInputError):
        parse_pipeline([item])


def test_media_step_without_its_column_says_which_to_set():
    dataset = datasets.Dataset.from_dict({"picture": ["x.png"]})
    with pytest.raises(RecipeInputError, match="columns"):
        ImageFilter().apply(dataset, DataReport())
    kept = ImageFilter(columns=["picture"]).apply(dataset, report := DataReport())
    assert len(kept) == 0 and last_record(report).details["removed_by_reason"]["undecodable"] == 1
