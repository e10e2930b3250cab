"""Video data: the built-in moving shapes, clip loading (folders of mp4 / GIF / frame directories with captions)
brought to N frames with short and undecodable clips counted, and the motion tracker / consistency measures on
real clips."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from hfrecipes.builtins.videos import MOTION_DIRECTIONS, motion_caption
from hfrecipes.core.errors import RecipeInputError
from hfrecipes.data import load_source
from hfrecipes.video.data import clip_array, clip_frame_indices, prepare_video_splits, resample_clip, save_gif
from hfrecipes.video.evaluation import (
    VideoEvaluator,
    estimate_motion,
    motion_metrics,
    speed_bucket,
    track_object,
)

SPEC = "builtin:moving-shapes?n=120&size=16&frames=8&seed=3"


@pytest.fixture(scope="module")
def clips():
    return load_source(SPEC)


def names(dataset, column: str, rows=None) -> list[str]:
    values = dataset[column] if rows is None else [dataset[column][i] for i in rows]
    return [dataset.features[column].names[i] for i in values]


# ------------------------------------------------------------------------------------------ built-in


def test_moving_shapes_move_the_way_their_captions_say(clips):
    assert clips.column_names == [
        "video",
        "text",
        "color",
        "shape",
        "direction",
        "speed",
        "bounce",
        "occluded",
        "track",
    ]
    assert clips.features["direction"].names == list(MOTION_DIRECTIONS)
    row = clips[0]
    assert len(row["video"]) == 8 and {f.size for f in row["video"]} == {(16, 16)}
    for i, row in enumerate(clips):
        color, shape = names(clips, "color", [i])[0], names(clips, "shape", [i])[0]
        direction, speed = names(clips, "direction", [i])[0], names(clips, "speed", [i])[0]
        assert row["text"] == motion_caption(color, shape, direction, speed)
        track = np.array(row["track"])
        steps = np.diff(track, axis=0) @ np.array(MOTION_DIRECTIONS[direction], dtype=float)
        assert (steps > 0).mean() > 0.5, (row["text"], track)  # most of the clip goes the captioned way
        assert row["bounce"] or (steps > 0).all()
    assert 0 < sum(clips["bounce"]) < len(clips) and 0 < sum(clips["occluded"]) < len(clips)
    assert load_source(SPEC)["text"] == clips["text"]  # seeded
    assert motion_caption("orange", "cross", "up") == "an orange cross moving up"


def test_moving_shapes_options_are_checked():
    subset = load_source(
        "builtin:moving-shapes?n=8&size=12&frames=5&colors=red&shapes=square&speeds=fast&background=black"
    )
    assert set(subset["text"]) <= {
        f"a red square moving {d}" for d in MOTION_DIRECTIONS
    }  # one speed: no adverb
    assert len(subset[0]["video"]) == 5 and clip_array(subset[0]["video"]).shape == (5, 12, 12, 3)
    for bad, message in [
        ("directions=north", "unknown directions"),
        ("bounce=2", "bounce must be in"),
        ("background=blue", "background must be one of"),
        ("frames=1", "frames must be"),
    ]:
        with pytest.raises(RecipeInputError, match=message):
            load_source(f"builtin:moving-shapes?n=2&{bad}")


# ------------------------------------------------------------------------------------------ tracker


def test_tracker_reads_direction_and_speed_of_real_clips(clips):
    """The sanity bound of motion accuracy: real clips, bounces and occlusions included, score ~100%."""
    array = np.stack([clip_array(v) for v in clips["video"]])
    metrics = motion_metrics(array, names(clips, "direction"), names(clips, "speed"))
    # Measured on these 120 clips: direction 1.00, speed 0.99; on 400 clips with 30% bounces and 30% occlusions
    # 0.985 / 0.99 (a bar hiding the leading edge biases the centroid).
    assert metrics["motion_accuracy_direction"] >= 0.95 and metrics["motion_accuracy_speed"] >= 0.95
    assert metrics["tracked_fraction"] == 1.0 and metrics["flicker"] < 0.01 and metrics["color_drift"] < 0.03
    # A clip played backwards moves the other way; a frozen clip does not move at all.
    clip = array[0]
    forward, _ = estimate_motion(track_object(clip), 16)
    backward, _ = estimate_motion(track_object(clip[::-1]), 16)
    assert MOTION_DIRECTIONS[forward] == tuple(-v for v in MOTION_DIRECTIONS[backward])
    assert estimate_motion(track_object(np.repeat(clip[:1], 8, axis=0)), 16)[0] is None
    assert speed_bucket(0.62) == "fast" and speed_bucket(0.28) == "slow" and speed_bucket(None) is None


def test_consistency_measures_see_flicker_and_jumps(clips):
    clip = clip_array(clips[1]["video"]).astype(np.int16)
    rng = np.random.default_rng(0)
    flickering = np.clip(clip + rng.integers(-40, 40, clip.shape), 0, 255).astype(np.uint8)
    shuffled = clip[rng.permutation(8)].astype(np.uint8)
    calm = motion_metrics(clip[None].astype(np.uint8), ["up"])
    noisy = motion_metrics(flickering[None], ["up"])
    jumpy = motion_metrics(shuffled[None], ["up"])
    assert noisy["flicker"] > 5 * calm["flicker"] and jumpy["track_jitter"] > 3 * calm["track_jitter"]


def test_per_frame_adherence_on_real_clips_is_high(clips):
    tensor = (
        torch.from_numpy(np.stack([clip_array(v) for v in clips["video"]])).permute(0, 4, 1, 2, 3).float()
        / 127.5
        - 1
    )
    colors = torch.tensor(clips["color"])
    evaluator = VideoEvaluator(
        tensor[:100],
        {"color": colors[:100]},
        tensor[100:],
        {"color": colors[100:]},
        {"color": 8},
        validation_motion={"direction": names(clips, "direction", range(100, 120))},
    )
    assert evaluator.reference_metrics["classifier_accuracy_color"] > 0.9
    assert evaluator.reference_metrics["real_motion_accuracy_direction"] >= 0.95
    metrics = evaluator(
        tensor[100:], {"color": colors[100:]}, {"direction": names(clips, "direction", range(100, 120))}
    )
    assert metrics["adherence_color"] > 0.9 and metrics["frame_agreement_color"] > 0.8
    wrong = evaluator(tensor[100:], {"color": (colors[100:] + 1) % 8})
    assert wrong["adherence_color"] < 0.2 and "motion_accuracy_direction" not in wrong


# ------------------------------------------------------------------------------------------ loading


def grey_frames(count: int, size: int = 24) -> list[Image.Image]:
    """Frame i is a flat grey of level 20 + 20 i, so a decoded frame tells which frame it is."""
    return [Image.new("RGB", (size, size), (20 + 20 * i,) * 3) for i in range(count)]


def frame_number(frame: Image.Image) -> int:
    return round((np.asarray(frame.convert("L"), dtype=float).mean() - 20) / 20)


def write_mp4(path: Path, count: int, size: int = 16) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=6)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for frame in grey_frames(count, size):
            container.mux(stream.encode(av.VideoFrame.from_image(frame)))
        container.mux(stream.encode())


@pytest.fixture
def clip_folder(tmp_path) -> Path:
    """An mp4 of 10 frames, a GIF of 8, a frame directory of 3 (too short for 6) and a broken mp4, captioned."""
    root = tmp_path / "clips"
    root.mkdir()
    write_mp4(root / "ten.mp4", 10)
    frames = grey_frames(8)
    frames[0].save(root / "eight.gif", save_all=True, append_images=frames[1:], duration=40, loop=0)
    (root / "three").mkdir()
    for i, frame in enumerate(grey_frames(3)):
        frame.save(root / "three" / f"frame_{i}.png")
    (root / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 nothing else" * 3)
    rows = [{"file_name": n, "text": f"clip {n}"} for n in ("ten.mp4", "eight.gif", "three", "broken.mp4")]
    (root / "metadata.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    return root


def test_clip_folder_becomes_n_frames_with_short_and_broken_clips_counted(clip_folder):
    train, validation, report = prepare_video_splits(
        dataset_name=str(clip_folder), num_frames=6, size=8, validation_fraction=0.25, seed=0
    )
    rows = {r["text"]: r["video"] for r in [*train, *validation]}
    assert set(rows) == {"clip ten.mp4", "clip eight.gif", "clip three"}  # broken.mp4 left out when listing
    assert all(len(v) == 6 and v[0].size == (8, 8) for v in rows.values())
    assert [frame_number(f) for f in rows["clip eight.gif"]] == [0, 1, 2, 3, 4, 5]  # consecutive frames
    assert [frame_number(f) for f in rows["clip three"]] == [0, 1, 2, 2, 2, 2]  # padded: last frame held
    assert any("broken.mp4" in u["path"] for u in report.summary["unreadable_files"])
    step = next(s for s in report.steps if s.step == "clip_frames")
    assert step.details["padded"] == 1 and step.details["too_short_skipped"] == 0

    train, validation, report = prepare_video_splits(
        dataset_name=str(clip_folder),
        num_frames=6,
        size=8,
        short_clips="skip",
        frame_stride=None,
        validation_fraction=0.34,
    )
    step = next(s for s in report.steps if s.step == "clip_frames")
    assert step.details["too_short_skipped"] == 1 and step.rows_out == 2 == len(train) + len(validation)
    assert "three" in step.examples[0]
    with pytest.raises(RecipeInputError, match="has 3 frames; 6 are needed.*short_clips"):
        prepare_video_splits(dataset_name=str(clip_folder), num_frames=6, size=8, short_clips="error")


def test_undecodable_clips_in_a_dataset_are_counted_and_dropped(tmp_path, clips):
    """A dataset whose video column holds paths (here a jsonl): a broken file is counted, not fatal."""
    rows = []
    for i in range(5):
        path = tmp_path / f"clip{i}.gif"
        save_gif(clip_array(clips[i]["video"]), path)
        rows.append({"video": str(path), "text": clips[i]["text"]})
    (tmp_path / "broken.mp4").write_bytes(b"not a video at all")
    rows.append({"video": str(tmp_path / "broken.mp4"), "text": "a broken clip"})
    (tmp_path / "clips.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    train, validation, report = prepare_video_splits(
        dataset_name=str(tmp_path / "clips.jsonl"), num_frames=4, size=16, validation_fraction=0.2
    )
    step = next(s for s in report.steps if s.step == "clip_frames")
    assert step.details["undecodable"] == 1 and step.rows_out == 5 == len(train) + len(validation)
    assert "broken.mp4" in step.examples[0]
    assert resample_clip(str(tmp_path / "broken.mp4"), 4, 16)[0].startswith("undecodable")


def test_missing_captions_stop_with_a_clear_error(clip_folder):
    lines = (clip_folder / "metadata.jsonl").read_text().splitlines()
    lines[1] = json.dumps({"file_name": "eight.gif", "text": ""})
    (clip_folder / "metadata.jsonl").write_text("\n".join(lines))
    with pytest.raises(RecipeInputError, match="1 of 3 clips .* have no caption.*eight.gif"):
        prepare_video_splits(dataset_name=str(clip_folder), num_frames=4, size=8)
    with pytest.raises(RecipeInputError, match="no column.*'caption'"):
        prepare_video_splits(dataset_name=str(clip_folder), num_frames=4, size=8, caption_column="caption")


def test_frame_indices_and_gif_writing(tmp_path):
    assert clip_frame_indices(10, 4, 1) == [0, 1, 2, 3] and clip_frame_indices(10, 4, 3) == [0, 3, 6, 9]
    assert clip_frame_indices(10, 4, None) == [0, 3, 6, 9] and clip_frame_indices(3, 4, 1) is None
    frames = np.stack([np.full((4, 4, 3), 40 * i, np.uint8) for i in range(5)])
    path = save_gif(frames, tmp_path / "clip.gif", scale=4)
    with Image.open(path) as gif:
        assert gif.n_frames == 5 and gif.size == (16, 16)
