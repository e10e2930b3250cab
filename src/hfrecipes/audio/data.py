"""Speech datasets for the audio recipes: LJSpeech folders, any source with audio + text columns, their column
checks, and the cleaned, split dataset a TTS run starts from."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import datasets

from hfrecipes.core.data_report import DataReport
from hfrecipes.core.errors import RecipeInputError
from hfrecipes.core.media import UnreadableMediaError, load_audio
from hfrecipes.data import parse_pipeline, run_pipeline
from hfrecipes.data.media import load_media_folder
from hfrecipes.data.sources import load_source


def is_ljspeech_folder(path: str | os.PathLike) -> bool:
    """An LJSpeech-style corpus: `metadata.csv` with `id|text[|normalized]` rows (no header) and `wavs/`."""
    root = Path(path)
    metadata = root / "metadata.csv"
    if not (root.is_dir() and metadata.is_file() and (root / "wavs").is_dir()):
        return False
    with open(metadata, encoding="utf-8") as handle:
        first = handle.readline()
    return "|" in first and "file_name" not in first


def load_ljspeech(path: str | os.PathLike) -> tuple[datasets.Dataset, list[tuple[str, str]]]:
    """Rows `audio` (absolute path of wavs/<id>.wav), `text` (the normalised column when present, where
    numbers and abbreviations are spelled out), `raw_text`, `file_name` and `speaker_id` (a 4th column when
    present, else the folder name). Missing or undecodable files are left out and returned as
    (file, reason), as `load_media_folder` does."""
    root = Path(path)
    rows, problems = [], []
    with open(root / "metadata.csv", encoding="utf-8", newline="") as handle:
        # LJSpeech has bare quotes inside transcripts: no quote processing.
        for number, fields in enumerate(csv.reader(handle, delimiter="|", quoting=csv.QUOTE_NONE), start=1):
            if not fields or not fields[0].strip():
                continue
            if len(fields) < 2:
                raise RecipeInputError(
                    f"{root / 'metadata.csv'} line {number} has no `|`: expected `id|text|normalized_text`."
                )
            utterance = fields[0].strip()
            normalized = fields[2].strip() if len(fields) > 2 and fields[2].strip() else fields[1].strip()
            wav = root / "wavs" / (utterance if utterance.endswith(".wav") else f"{utterance}.wav")
            if not wav.is_file():
                problems.append((wav.name, "listed in metadata.csv but not found"))
                continue
            try:
                samples, _ = load_audio(wav)
            except UnreadableMediaError as err:
                problems.append((wav.name, str(err)))
                continue
            if samples.size == 0:
                problems.append((wav.name, "zero-length audio"))
                continue
            rows.append(
                {
                    "file_name": f"wavs/{wav.name}",
                    "audio": str(wav.resolve()),
                    "text": normalized,
                    "raw_text": fields[1].strip(),
                    "speaker_id": fields[3].strip() if len(fields) > 3 else root.name,
                }
            )
    if not rows:
        raise RecipeInputError(
            f"No readable utterances in {root} ({'; '.join(f'{f}: {r}' for f, r in problems[:3])})."
        )
    return datasets.Dataset.from_list(rows), problems


def load_speech_source(
    spec: str,
    *,
    split: str = "train",
    hub_config: str | None = None,
    problems: list[tuple[str, str]] | None = None,
) -> datasets.Dataset:
    """A speech dataset from a builtin:, a Hub id, a saved dataset or file, an LJSpeech-style folder or an
    audio folder with metadata (audiofolder convention). Files that cannot be read are appended to
    `problems` as (file, reason)."""
    problems = problems if problems is not None else []
    path = Path(str(spec))
    if not str(spec).startswith("builtin:") and path.is_dir():
        if is_ljspeech_folder(path):
            dataset, skipped = load_ljspeech(path)
            problems.extend(skipped)
            return dataset
        has_audio = any(
            p.suffix.lower() in {".wav", ".flac", ".ogg", ".mp3"} for p in path.rglob("*") if p.is_file()
        )
        if has_audio:
            dataset, skipped = load_media_folder(path, "audio")
            problems.extend(skipped)
            return dataset
    return load_source(str(spec), split=split, hub_config=hub_config, problems=problems)


def check_speech_columns(
    dataset: datasets.Dataset,
    audio_column: str = "audio",
    text_column: str = "text",
    speaker_column: str | None = None,
) -> datasets.Dataset:
    """Rename the configured columns to `audio`/`text`(/`speaker_id`) and refuse data TTS cannot use: a
    missing column, or empty transcripts (listed by row)."""
    columns = dataset.column_names
    for role, column in (("audio", audio_column), ("text", text_column)):
        if column not in columns:
            raise RecipeInputError(
                f"The dataset has no {column!r} column for the {role} (columns: {columns}); set `{role}_column` "
                f"to the column holding the {'audio (array + sampling_rate, or a path)' if role == 'audio' else 'transcript'}."
            )
    if speaker_column and speaker_column not in columns:
        raise RecipeInputError(
            f"speaker_column {speaker_column!r} is not a column of the dataset ({columns})."
        )
    renames = {audio_column: "audio", text_column: "text"}
    if speaker_column:
        renames[speaker_column] = "speaker_id"
    renames = {old: new for old, new in renames.items() if old != new}
    dataset = dataset.remove_columns(
        [new for new in renames.values() if new in columns and new not in renames]
    )
    if renames:
        dataset = dataset.rename_columns(renames)
    texts = list(dataset["text"])
    empty = [i for i, text in enumerate(texts) if not isinstance(text, str) or not text.strip()]
    if empty:
        raise RecipeInputError(
            f"{len(empty)} of {len(texts)} rows have an empty transcript (rows {empty[:5]}): every utterance "
            "needs its text; fix the metadata or drop those rows."
        )
    return dataset


def load_speech_splits(
    dataset_name: str,
    *,
    split: str = "train",
    hub_config: str | None = None,
    audio_column: str = "audio",
    text_column: str = "text",
    speaker_column: str | None = None,
    pipeline: list | None = None,
    max_samples: int | None = None,
    eval_fraction: float = 0.1,
    seed: int = 0,
) -> tuple[datasets.Dataset, datasets.Dataset, DataReport]:
    """(train, held out, report): the source loaded (unreadable files in the report), its first `max_samples`
    rows, columns checked and renamed (`speaker_column` only if the data has it), the data `pipeline` run, and
    a seeded split holding out `eval_fraction` of the rows (at least 2). Fewer than 4 utterances stop the run."""
    report, problems = DataReport(source=dataset_name), []
    dataset = load_speech_source(dataset_name, split=split, hub_config=hub_config, problems=problems)
    if problems:
        report.add(
            "load",
            rows_in=len(dataset) + len(problems),
            rows_out=len(dataset),
            examples=[f"{f}: {r}" for f, r in problems[:5]],
        )
    if max_samples:
        dataset = dataset.select(range(min(max_samples, len(dataset))))
    speaker_column = speaker_column if speaker_column in dataset.column_names else None
    dataset = check_speech_columns(dataset, audio_column, text_column, speaker_column)
    dataset = run_pipeline(dataset, parse_pipeline(pipeline), report)
    if len(dataset) < 4:
        raise RecipeInputError(
            f"Only {len(dataset)} utterances left: TTS needs at least 4 (train + held out)."
        )
    parts = dataset.train_test_split(test_size=max(eval_fraction, 2 / len(dataset)), seed=seed)
    return parts["train"], parts["test"], report
