"""Offline evaluation of generated clips: motion accuracy, temporal consistency and per-frame prompt adherence.

- *Tracking*: the object of a `builtin:moving-shapes`-style clip is found in every frame as the pixels whose
  brightest channel is well above the dark background (a weight ramping from 0 at 110 to 1 at 190 of 255; the
  shapes' colours all reach >= 215, backgrounds stay below ~90 and the occluder is mid-grey at 88). Per frame:
  weighted centroid, area and mean colour. A frame counts as *visible* when its area is at least 70% of the
  clip's largest (partly occluded frames are skipped).
- *Motion accuracy*: velocities between consecutive visible frames (divided by the frame gap); the axis is the
  one with more total motion, the direction the sign of the median velocity along it (robust to a late
  bounce), the speed the median absolute velocity times (frames - 1) as a fraction of the frame side (the
  distance a clip covers, as `MOTION_SPEEDS` defines the buckets), bucketed to the nearest bucket on a log
  scale. Clips with fewer than two visible frames, or slower than `MIN_SPEED`, have no direction and count
  as wrong. Accuracy = agreement with the
  direction / speed words of the prompt (chance: 1 / number of directions or speeds).
- *Temporal consistency* (lower is steadier; real clips are the reference): `color_drift`, the mean change of
  the object's mean colour between consecutive visible frames (RGB in [0, 1], divided by sqrt(3));
  `area_drift`, the mean relative change of its area; `flicker`, the mean absolute change of background pixels
  (object weight < 0.05 in both frames) between consecutive frames, in [0, 1]; `track_jitter`, the median
  second difference of the centroid track (frame sides): ~0 for constant-velocity motion, large when the
  object jumps around.
- *Per-frame prompt adherence*: the image recipe's `AttributeClassifier`, fitted on real frames, classifies
  every generated frame (colour, shape ...): accuracy per attribute over frames, the fraction of frames with
  all right, and `frame_agreement_<attr>`, the fraction of clips whose frames all get the same prediction (an
  identity-stability measure that does not need the prediction to be right); plus the Fréchet distance of
  real and generated frames in the classifier's feature space.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from hfrecipes.builtins.videos import MOTION_DIRECTIONS, MOTION_SPEEDS
from hfrecipes.diffusion.evaluation import (
    attribute_accuracy,
    classifier_features,
    frechet_distance,
    predict,
    train_attribute_classifier,
)
from hfrecipes.multimodal.vision_text import class_names, label_indices

FOREGROUND_LOW, FOREGROUND_HIGH = 110.0, 190.0
VISIBLE_FRACTION = 0.7
MIN_AREA = 1.0  # pixels
MIN_SPEED = 0.1  # frame sides per clip: slower counts as not moving


def to_uint8_clips(clips: torch.Tensor | np.ndarray) -> np.ndarray:
    """N x C x F x H x W in [-1, 1] (what the samplers return) or uint8 N x F x H x W x 3 -> uint8 N x F x H x W x 3."""
    if isinstance(clips, np.ndarray) and clips.dtype == np.uint8:
        return clips
    tensor = torch.as_tensor(clips).float()
    array = ((tensor.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 4, 1).cpu().numpy()
    return np.repeat(array, 3, axis=-1) if array.shape[-1] == 1 else array


def foreground_weights(clip: np.ndarray) -> np.ndarray:
    """F x H x W x 3 (0-255) -> F x H x W weights in [0, 1] from each pixel's brightest channel."""
    brightest = clip.astype(np.float64).max(-1)
    return np.clip((brightest - FOREGROUND_LOW) / (FOREGROUND_HIGH - FOREGROUND_LOW), 0.0, 1.0)


@dataclass
class Track:
    """The tracked object per frame of a clip: centroid, area, mean colour, whether it is visible, and the
    foreground weights (nan where it is not visible)."""

    centroids: np.ndarray  # F x 2 (x, y) in pixels; nan where not visible
    areas: np.ndarray  # F
    colors: np.ndarray  # F x 3 in [0, 1]; nan where not visible
    visible: np.ndarray  # F bools
    weights: np.ndarray  # F x H x W


def track_object(clip: np.ndarray) -> Track:
    """The `Track` of the one bright object on a dark background in a uint8 clip (F x H x W x 3)."""
    weights = foreground_weights(clip)
    frames, height, width = weights.shape
    areas = weights.sum((1, 2))
    ys, xs = np.mgrid[0:height, 0:width] + 0.5  # pixel centres, like the generator's coordinates
    safe = np.maximum(areas, 1e-9)
    centroids = np.stack([(weights * xs).sum((1, 2)) / safe, (weights * ys).sum((1, 2)) / safe], axis=1)
    colors = (weights[..., None] * clip.astype(np.float64)).sum((1, 2)) / safe[:, None] / 255.0
    visible = (areas >= MIN_AREA) & (areas >= VISIBLE_FRACTION * areas.max())
    centroids[~visible], colors[~visible] = np.nan, np.nan
    return Track(centroids, areas, colors, visible, weights)


def _steps(track: Track) -> list[tuple[int, int]]:
    seen = np.flatnonzero(track.visible)
    return list(zip(seen[:-1].tolist(), seen[1:].tolist(), strict=True))


def estimate_motion(track: Track, size: int) -> tuple[str | None, float | None]:
    """(direction, speed: frame sides covered over the clip) of a tracked clip; (None, None) when it cannot be
    told."""
    pairs = _steps(track)
    if not pairs:
        return None, None
    velocities = np.array([(track.centroids[j] - track.centroids[i]) / (j - i) for i, j in pairs])
    axis = int(np.abs(velocities[:, 1]).sum() > np.abs(velocities[:, 0]).sum())
    along = velocities[:, axis]
    speed = float(np.median(np.abs(along))) * (len(track.areas) - 1) / size
    heading = float(np.median(along))
    if abs(heading) * (len(track.areas) - 1) / size < MIN_SPEED:
        return None, speed
    step = (int(np.sign(heading)), 0) if axis == 0 else (0, int(np.sign(heading)))
    direction = next(name for name, unit in MOTION_DIRECTIONS.items() if unit == step)
    return direction, speed


def speed_bucket(speed: float | None, speeds: dict[str, float] = MOTION_SPEEDS) -> str | None:
    """The name of the speed in `speeds` (frame sides per clip) nearest to `speed` (log scale); None without a
    positive speed."""
    if speed is None or speed <= 0:
        return None
    return min(speeds, key=lambda name: abs(math.log(speed / speeds[name])))


def consistency(track: Track, clip: np.ndarray, size: int) -> dict[str, float]:
    """Temporal consistency of a tracked clip (lower is steadier): colour and area drift, flicker and track jitter."""
    pairs = [(i, j) for i, j in _steps(track) if j == i + 1]
    metrics: dict[str, float] = {}
    if pairs:
        metrics["color_drift"] = float(
            np.mean([np.linalg.norm(track.colors[j] - track.colors[i]) / math.sqrt(3) for i, j in pairs])
        )
        metrics["area_drift"] = float(
            np.mean(
                [abs(track.areas[j] - track.areas[i]) / max(track.areas[i], track.areas[j]) for i, j in pairs]
            )
        )
    triples = [(i, i + 1, i + 2) for i in range(len(clip) - 2) if track.visible[i : i + 3].all()]
    if triples:
        second = [
            np.linalg.norm(track.centroids[c] - 2 * track.centroids[b] + track.centroids[a])
            for a, b, c in triples
        ]
        metrics["track_jitter"] = float(np.median(second)) / size
    frames = clip.astype(np.float64) / 255.0
    background = (track.weights[:-1] < 0.05) & (track.weights[1:] < 0.05)
    if background.any():
        change = np.abs(frames[1:] - frames[:-1]).mean(-1)
        metrics["flicker"] = float(change[background].mean())
    return metrics


def motion_metrics(
    clips: torch.Tensor | np.ndarray,
    directions: Sequence[str],
    speeds: Sequence[str] | None = None,
    prefix: str = "",
) -> dict[str, float]:
    """Motion accuracy (direction, speed bucket, both) and temporal consistency of `clips` against the
    direction (and speed) named by each clip's prompt."""
    array = to_uint8_clips(clips)
    size = array.shape[-2]
    hits: dict[str, list[bool]] = {"direction": [], "speed": [], "all": []}
    tracked, drifts = [], {}
    for index, clip in enumerate(array):
        track = track_object(clip)
        direction, speed = estimate_motion(track, size)
        tracked.append(int(track.visible.sum()) >= 2)
        hits["direction"].append(direction == directions[index])
        if speeds is not None:
            hits["speed"].append(speed_bucket(speed) == speeds[index])
            hits["all"].append(hits["direction"][-1] and hits["speed"][-1])
        for key, value in consistency(track, clip, size).items():
            drifts.setdefault(key, []).append(value)
    metrics = {f"{prefix}motion_accuracy_{k}": float(np.mean(v)) for k, v in hits.items() if v}
    metrics[f"{prefix}tracked_fraction"] = float(np.mean(tracked))
    metrics.update({f"{prefix}{k}": float(np.mean(v)) for k, v in drifts.items()})
    return metrics


def frames_of(clips: torch.Tensor) -> torch.Tensor:
    """N x C x F x H x W -> (N F) x C x H x W."""
    n, c, f, h, w = clips.shape
    return clips.permute(0, 2, 1, 3, 4).reshape(n * f, c, h, w)


class VideoEvaluator:
    """Motion accuracy, temporal consistency and per-frame adherence of generated clips (N x C x F x H x W in
    [-1, 1]), with the per-frame attribute classifier fitted on frames of the real training clips. The
    reference metrics (`reference_metrics`) are the same measurements on real validation clips, the
    classifier's accuracy on their frames, and the chance levels."""

    def __init__(
        self,
        train_clips: torch.Tensor,
        train_labels: dict[str, torch.Tensor],
        validation_clips: torch.Tensor,
        validation_labels: dict[str, torch.Tensor],
        num_classes: dict[str, int],
        *,
        validation_motion: dict[str, list[str]] | None = None,
        seed: int = 0,
        frames_per_clip: int = 3,
    ):
        self.num_classes = dict(num_classes)
        self.frames = train_clips.shape[2]
        self.reference_metrics: dict[str, float] = {}
        self.classifier = None
        if num_classes:
            pick = torch.linspace(0, self.frames - 1, min(frames_per_clip, self.frames)).round().long()
            pixels = frames_of(train_clips[:, :, pick])
            labels = {k: v.repeat_interleave(len(pick)) for k, v in train_labels.items()}
            self.classifier = train_attribute_classifier(pixels, labels, num_classes, seed=seed)
            real = frames_of(validation_clips)
            real_labels = {k: v.repeat_interleave(self.frames) for k, v in validation_labels.items()}
            self.reference_metrics.update(
                attribute_accuracy(self.classifier, real, real_labels, "classifier_accuracy")
            )
            self.reference_metrics.update({f"chance_adherence_{k}": 1 / n for k, n in num_classes.items()})
            self.real_features = classifier_features(self.classifier, real)
        if validation_motion:
            self.reference_metrics.update(
                motion_metrics(
                    validation_clips,
                    validation_motion["direction"],
                    validation_motion.get("speed"),
                    prefix="real_",
                )
            )
            self.reference_metrics["chance_motion_accuracy_direction"] = 1 / len(MOTION_DIRECTIONS)
            if validation_motion.get("speed"):
                self.reference_metrics["chance_motion_accuracy_speed"] = 1 / len(MOTION_SPEEDS)

    def __call__(
        self,
        clips: torch.Tensor,
        targets: dict[str, torch.Tensor] | None = None,
        motion: dict[str, list[str]] | None = None,
    ) -> dict[str, float]:
        metrics: dict[str, float] = {}
        if motion:
            metrics.update(motion_metrics(clips, motion["direction"], motion.get("speed")))
        else:
            metrics.update(
                {
                    k: v
                    for k, v in motion_metrics(clips, [""] * len(clips)).items()
                    if not k.startswith("motion_accuracy")
                }
            )
        if self.classifier is not None:
            frames = frames_of(clips.float())
            metrics["frechet_distance"] = frechet_distance(
                self.real_features, classifier_features(self.classifier, frames)
            )
            if targets:
                per_frame = {k: v.repeat_interleave(clips.shape[2]) for k, v in targets.items()}
                metrics.update(attribute_accuracy(self.classifier, frames, per_frame, "adherence"))
            predicted = predict(self.classifier, frames)
            for name, labels in predicted.items():
                per_clip = labels.view(len(clips), clips.shape[2])
                metrics[f"frame_agreement_{name}"] = float(
                    (per_clip == per_clip[:, :1]).all(1).float().mean()
                )
        return metrics


# ------------------------------------------------------------------------------------------ what to generate

FRAME_ATTRIBUTES = ("color", "shape", "size", "position")
OPPOSITE_DIRECTIONS = {"left": "right", "right": "left", "up": "down", "down": "up"}
_DIRECTION_WORD = re.compile(rf"\b({'|'.join(OPPOSITE_DIRECTIONS)})\b")


def swap_directions(caption: str) -> str:
    """The caption with each direction word (left/right/up/down) replaced by its opposite."""
    return _DIRECTION_WORD.sub(lambda m: OPPOSITE_DIRECTIONS[m.group(1)], caption)


def direction_edits(captions: Sequence[str] | None) -> dict[str, Callable[[str], str]]:
    """The caption edits for `hfrecipes.diffusion.runs.validation_losses` when captions name directions of motion:
    `validation_loss_direction_swapped`, every direction word replaced by its opposite (left <-> right, up <->
    down). Its gap to validation_loss is how much the model uses the direction word (colour, shape and the rest
    unchanged)."""
    if any(_DIRECTION_WORD.search(c) for c in captions or []):
        return {"validation_loss_direction_swapped": swap_directions}
    return {}


def motion_words(train: Any, validation: Any, motion_columns: Sequence[str]) -> dict[str, list[str]]:
    """Per validation row, the motion words of `motion_columns` (the direction column, then the speed column) that
    the data has: {"direction": [...], "speed": [...]}, names as the training split's class names give them."""
    motion: dict[str, list[str]] = {}
    for role, column in zip(("direction", "speed"), motion_columns, strict=False):
        if column in validation.column_names:
            names = class_names(train, column, validation)
            motion[role] = [names[i] for i in label_indices(validation, column, names)]
    return motion


def round_robin_rows(captions: Sequence[str], keys: Sequence[str], count: int) -> list[int]:
    """Rows of up to `count` distinct captions, taken in turn from each key's rows (keys sorted: e.g. the
    direction each clip moves in), so that every key is asked for."""
    groups: dict[str, list[int]] = {}
    for row, key in enumerate(keys):
        groups.setdefault(key, []).append(row)
    queues = [groups[k] for k in sorted(groups)]
    chosen: dict[str, int] = {}
    while len(chosen) < count and any(queues):
        for queue in queues:
            while queue and captions[queue[0]] in chosen:
                queue.pop(0)
            if queue and len(chosen) < count:
                row = queue.pop(0)
                chosen[captions[row]] = row
    return list(chosen.values())


@dataclass
class VideoPromptPlan:
    """What the evaluation generates: one prompt per clip, the distinct prompts (rows of the GIF grid), and per
    clip the per-frame attribute targets and the motion words (direction / speed names) its prompt asks for."""

    prompts: list[str]  # one per generated clip
    row_labels: list[str]  # one per distinct prompt
    targets: dict[str, torch.Tensor]  # per-frame attributes, per clip
    motion: dict[str, list[str]]  # direction / speed names, per clip
