"""Training rows for text-to-speech: speech + transcripts turned into token ids, log-mel labels and speaker
vectors (with per-reason removal counts in the data report), the log-mel statistics the from-scratch
initialisation starts from, and the collator (labels = log-mel padded with -100, frames a multiple of the
reduction factor, stop labels)."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
import torch

from hfrecipes.audio.features import MelConfig, log_mel
from hfrecipes.audio.frontend import out_of_vocabulary, text_symbols
from hfrecipes.audio.models import XVectorEmbedder
from hfrecipes.core.data_report import DataReport
from hfrecipes.core.errors import RecipeInputError
from hfrecipes.core.media import UnreadableMediaError, load_audio

logger = logging.getLogger(__name__)


def _audio_values(column: pa.ChunkedArray) -> list[Any]:
    """Audio cells as load_audio accepts them, reading {array, sampling_rate} structs as numpy views (a
    Python list of every sample would cost seconds per thousand clips)."""
    array = column.combine_chunks()
    if pa.types.is_struct(array.type) and array.type.get_field_index("array") >= 0:
        samples, rates = array.field("array"), array.field("sampling_rate").to_pylist()
        offsets, values = samples.offsets.to_numpy(), samples.values.to_numpy(zero_copy_only=False)
        return [
            {"array": values[offsets[i] : offsets[i + 1]], "sampling_rate": rates[i]}
            if array[i].is_valid
            else None
            for i in range(len(array))
        ]
    return array.to_pylist()


def prepare_tts_features(
    dataset: datasets.Dataset,
    *,
    tokenizer: Any,
    mel: MelConfig,
    report: DataReport,
    reduction_factor: int,
    max_frames: int,
    max_text_tokens: int,
    frontend: str = "characters",
    phoneme_voice: str = "en-us",
    lowercase: bool = True,
    speaker_codes: dict[str, list[float]] | None = None,
    xvectors: XVectorEmbedder | None = None,
    step_name: str = "tts_features",
) -> datasets.Dataset:
    """Decode (resampling to `mel.sampling_rate`), extract log-mels, tokenise and attach speaker vectors.

    Rows that cannot be used are removed and counted per reason in `report`: unreadable audio, zero-length
    or shorter than two decoder steps, longer than `max_frames`, or text longer than `max_text_tokens`.
    Resampled clips (by original rate) and characters outside the vocabulary go to the report's details.
    Output columns: input_ids, labels (flattened frames x mels, trimmed to a multiple of the reduction
    factor), num_frames, speaker_embeddings, text, speaker_id."""
    reasons: list[str] = []
    rows: dict[str, list] = {
        k: [] for k in ("input_ids", "labels", "num_frames", "speaker_embeddings", "text", "speaker_id")
    }
    resampled: Counter = Counter()
    oov: Counter = Counter()
    audio = _audio_values(dataset.with_format("arrow")[:].column("audio"))  # respects select()/splits
    texts = list(dataset["text"])
    speakers = (
        list(dataset["speaker_id"]) if "speaker_id" in dataset.column_names else ["speaker"] * len(texts)
    )
    for value, text, speaker in zip(audio, texts, speakers, strict=True):
        try:
            if value is None:
                raise UnreadableMediaError("no audio")
            samples, rate = load_audio(value)
            if samples.size == 0:
                reasons.append("too_short: zero-length audio")
                continue
            if rate != mel.sampling_rate:
                resampled[str(rate)] += 1
                samples, rate = load_audio({"array": samples, "sampling_rate": rate}, mel.sampling_rate)
            frames = log_mel(samples, mel)
        except UnreadableMediaError as err:
            reasons.append(f"unreadable: {err}")
            continue
        frames = frames[: len(frames) - len(frames) % reduction_factor]
        if len(frames) < 2 * reduction_factor:
            reasons.append(f"too_short: {len(frames)} frames")
            continue
        if len(frames) > max_frames:
            reasons.append(f"too_long: {len(frames)} frames > max_frames={max_frames}")
            continue
        symbols = text_symbols(text, frontend, phoneme_voice, lowercase)
        oov.update(out_of_vocabulary([symbols], tokenizer))
        input_ids = tokenizer(symbols)["input_ids"]
        if len(input_ids) > max_text_tokens:
            reasons.append(f"text_too_long: {len(input_ids)} tokens > max_text_tokens={max_text_tokens}")
            continue
        if xvectors is not None:
            vector = xvectors(samples, rate).tolist()
        elif speaker_codes is not None:
            vector = speaker_codes.get(str(speaker))
            if vector is None:  # a speaker only in the eval split: no learned code, use the mean of all codes
                vector = np.mean(list(speaker_codes.values()), axis=0).tolist()
        else:
            raise RecipeInputError("prepare_tts_features needs speaker_codes or xvectors.")
        reasons.append("")
        rows["input_ids"].append(input_ids)
        rows["labels"].append(frames.reshape(-1))
        rows["num_frames"].append(len(frames))
        rows["speaker_embeddings"].append(vector)
        rows["text"].append(text)
        rows["speaker_id"].append(str(speaker))
    counts = Counter(reason.split(":", 1)[0] for reason in reasons if reason)
    examples = [f"row {i}: {r}" for i, r in enumerate(reasons) if r][:5]
    kept = len(rows["text"])
    seconds = sum(rows["num_frames"]) / mel.frames_per_second
    report.add(
        step_name,
        rows_in=len(reasons),
        rows_out=kept,
        examples=examples,
        details={
            "removed_by_reason": dict(counts),
            "resampled_from_hz": dict(resampled),
            "to_sampling_rate": mel.sampling_rate,
            "out_of_vocabulary": dict(oov.most_common(20)),
            "hours_out": round(seconds / 3600, 4),
        },
    )
    if oov:
        logger.warning("Characters outside the vocabulary (read as <unk>): %s", dict(oov.most_common(20)))
    if resampled:
        logger.warning(
            "Resampled %d clips to %d Hz (from %s Hz)",
            sum(resampled.values()),
            mel.sampling_rate,
            ", ".join(resampled),
        )
    if not kept:
        raise RecipeInputError(
            f"No usable utterances ({dict(counts)}); first problems: {examples[:3]}. Raise max_frames / "
            "max_text_tokens or check the audio."
        )
    table = pa.table(
        {
            "input_ids": pa.array(rows["input_ids"], type=pa.list_(pa.int32())),
            "labels": pa.array(rows["labels"], type=pa.list_(pa.float32())),
            "num_frames": pa.array(rows["num_frames"], type=pa.int32()),
            "speaker_embeddings": pa.array(rows["speaker_embeddings"], type=pa.list_(pa.float32())),
            "text": pa.array(rows["text"], type=pa.string()),
            "speaker_id": pa.array(rows["speaker_id"], type=pa.string()),
        }
    )
    return datasets.Dataset(table)


def row_log_mel(row: dict[str, Any], num_mel_bins: int) -> np.ndarray:
    """The (frames, num_mel_bins) log-mel of a prepared row (its flattened `labels`)."""
    return np.array(row["labels"], dtype=np.float32).reshape(-1, num_mel_bins)  # a writable copy


def mel_statistics(rows: datasets.Dataset, mel: MelConfig) -> tuple[np.ndarray, np.ndarray, float]:
    """Per-band mean and standard deviation of the rows' log-mels and the mean utterance length in frames,
    what `init_from_scratch` starts the output layers from."""
    total = np.zeros(mel.num_mel_bins)
    squares = np.zeros(mel.num_mel_bins)
    frames = 0
    for values in rows.with_format("numpy")["labels"]:
        block = np.asarray(values, dtype=np.float64).reshape(-1, mel.num_mel_bins)
        total += block.sum(0)
        squares += (block**2).sum(0)
        frames += len(block)
    mean = total / max(frames, 1)
    std = np.sqrt(np.maximum(squares / max(frames, 1) - mean**2, 1e-6))
    return mean.astype(np.float32), std.astype(np.float32), frames / max(len(rows), 1)


@dataclass
class TTSCollator:
    """Batches for SpeechT5ForTextToSpeech: input_ids padded with pad_token_id; labels = log-mel frames
    padded with -100 (lengths are already multiples of `reduction_factor`); stop_labels = 1 at each
    utterance's last frame; speaker_embeddings stacked."""

    pad_token_id: int
    num_mel_bins: int
    reduction_factor: int

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = len(features)
        text_length = max(len(f["input_ids"]) for f in features)
        mels = [row_log_mel(f, self.num_mel_bins) for f in features]
        frames = max(len(m) for m in mels)
        frames += -frames % self.reduction_factor
        input_ids = torch.full((batch, text_length), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((batch, text_length), dtype=torch.long)
        labels = torch.full((batch, frames, self.num_mel_bins), -100.0)
        stop_labels = torch.zeros((batch, frames))
        for i, (feature, spectrogram) in enumerate(zip(features, mels, strict=True)):
            ids = torch.as_tensor(np.asarray(feature["input_ids"]), dtype=torch.long)
            input_ids[i, : len(ids)], attention_mask[i, : len(ids)] = ids, 1
            labels[i, : len(spectrogram)] = torch.from_numpy(spectrogram)
            stop_labels[i, len(spectrogram) - 1] = 1.0
        speakers = torch.as_tensor(
            np.stack([np.asarray(f["speaker_embeddings"], dtype=np.float32) for f in features])
        )
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "labels": labels,
            "stop_labels": stop_labels,
            "speaker_embeddings": speakers,
        }
