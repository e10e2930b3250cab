"""Text cleaning shared by every text recipe: column selection, normalisation, exact dedup, splitting."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass
from typing import ClassVar

import datasets

from hfrecipes.core.data_report import DataReport
from hfrecipes.core.errors import RecipeInputError
from hfrecipes.data.steps import FilterStep, Step, TransformStep, batch_rows, row_text, select_with_report

# C0/C1 control characters except tab and newline; \r is folded into \n first.
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_WHITESPACE = re.compile(r"\s+")


def select_text_column(
    dataset: datasets.Dataset, column: str, report: DataReport | None = None
) -> datasets.Dataset:
    """Keep `column` renamed to `text` (plus `domain` when present)."""
    if column not in dataset.column_names:
        raise RecipeInputError(
            f"Text column {column!r} not found; the dataset has columns {dataset.column_names}. "
            "Set `text_column` to one of them."
        )
    require_text_column(dataset, column)
    if "domain" in dataset.column_names:
        require_text_column(dataset, "domain", allow_missing=False)
    keep = [c for c in (column, "domain") if c in dataset.column_names]
    dataset = dataset.select_columns(keep)
    if column != "text":
        dataset = dataset.rename_column(column, "text")
    if report is not None:
        report.add("load", rows_in=len(dataset), rows_out=len(dataset), details={"text_column": column})
    return dataset


def require_text_column(
    dataset: datasets.Dataset, column: str, source: str | None = None, allow_missing: bool = True
) -> None:
    """Stop unless `column` holds text (strings; with `allow_missing`, null in some rows). A JSONL column with a
    number, list or object in some rows loads as a mixed-type `Json` column (or as numbers) and would otherwise
    be stringified silently or fail deep inside a cleaning step."""
    feature = dataset.features[column]
    where = f" of {source}" if source else ""
    if getattr(feature, "dtype", None) in ("string", "large_string"):
        values = [] if allow_missing else list(dataset[column])
        if None in values:
            row = values.index(None)
            raise RecipeInputError(
                f"Column {column!r}{where} is missing (null) in row {row}; give every row a value or drop that row."
            )
        return
    if getattr(feature, "dtype", None) == "null":
        raise RecipeInputError(
            f"Column {column!r}{where} is empty in every row (all null); point at the column that holds the "
            "values (e.g. `text_column`) or fill this one."
        )
    for index, value in enumerate(dataset[column]):
        if value is not None and not isinstance(value, str):
            raise RecipeInputError(
                f"Column {column!r}{where} must hold text, but row {index} holds {type(value).__name__} "
                f"{str(value)[:60]!r}. Make every value a string (quote numbers), fix or drop that row, or set "
                "`text_column` to the column that holds the text."
            )
    raise RecipeInputError(f"Column {column!r}{where} must hold text, but its type is {feature}.")


def normalize_text(text: str) -> str:
    """Unicode NFC, Windows/Mac newlines to \\n, control characters removed, outer whitespace stripped."""
    text = unicodedata.normalize("NFC", text or "").replace("\r\n", "\n").replace("\r", "\n")
    return _CONTROL_CHARS.sub("", text).strip()


@dataclass
class Normalize(TransformStep):
    """Unicode NFC, \\r\\n -> \\n, control characters removed, outer whitespace stripped."""

    name: ClassVar[str] = "normalize"

    def transform(self, text: str) -> str:
        return normalize_text(text)


@dataclass
class DropEmpty(FilterStep):
    """Drop rows whose text is empty after stripping whitespace."""

    name: ClassVar[str] = "drop_empty"

    def keep(self, text: str) -> bool:
        return bool(text.strip())


def dedup_key(text: str) -> str:
    """Hash of the case-folded, whitespace-collapsed text: copies differing only in spacing/case collide."""
    return hashlib.sha1(_WHITESPACE.sub(" ", text.casefold()).strip().encode("utf-8")).hexdigest()


@dataclass
class ExactDedup(Step):
    """Keep the first occurrence of every normalised text (hashing runs in parallel, selection is ordered).
    Matches datatrove's exact-dedup semantics on the normalised text (case and whitespace folded)."""

    name: ClassVar[str] = "exact_dedup"

    def apply(
        self, dataset: datasets.Dataset, report: DataReport, num_proc: int | None = None
    ) -> datasets.Dataset:
        columns = self.resolved_columns(dataset)

        def hash_rows(batch: dict[str, list]) -> dict[str, list[str]]:
            rows = batch_rows(batch)
            return {"_key": [dedup_key(row_text(row, columns)) for row in rows]}

        keys = dataset.select_columns(columns).map(
            hash_rows, batched=True, num_proc=num_proc, remove_columns=columns, desc="exact dedup"
        )["_key"]
        seen: set[str] = set()
        flags = []
        for key in keys:
            flags.append(key not in seen)
            seen.add(key)
        return select_with_report(dataset, flags, self, report, columns)


DEFAULT_TEXT_PIPELINE = ["normalize", "drop_empty", "exact_dedup"]


def train_validation_split(
    dataset: datasets.Dataset, validation_fraction: float, mode: str, seed: int, report: DataReport
) -> tuple[datasets.Dataset, datasets.Dataset]:
    """Deterministic split. `random`: shuffled with `seed`. `tail`: the last `validation_fraction` of the
    characters, in source order (nanoGPT's split of one long text)."""
    if not 0 < validation_fraction < 1:
        raise RecipeInputError(f"validation_fraction must be between 0 and 1, got {validation_fraction}.")
    if len(dataset) < 2:
        raise RecipeInputError(
            f"Need at least 2 rows to split into train and validation, got {len(dataset)}."
        )
    if mode == "random":
        parts = dataset.train_test_split(test_size=validation_fraction, seed=seed, shuffle=True)
        train, validation = parts["train"], parts["test"]
    elif mode == "tail":
        lengths = [len(t) for t in dataset["text"]]
        budget, cut = sum(lengths) * (1 - validation_fraction), 0
        running = 0
        for cut, length in enumerate(lengths):  # noqa: B007  (cut is the first validation row)
            if running + length > budget:
                break
            running += length
        cut = min(max(cut, 1), len(dataset) - 1)
        train, validation = dataset.select(range(cut)), dataset.select(range(cut, len(dataset)))
    else:
        raise RecipeInputError(f"split_mode must be 'random' or 'tail', not {mode!r}.")
    report.add(
        "split",
        rows_in=len(dataset),
        rows_out=len(train) + len(validation),
        details={"mode": mode, "train_rows": len(train), "validation_rows": len(validation)},
    )
    return train, validation


@dataclass
class Chunk(Step):
    """Cut each document into passages of at most `max_words` words: paragraphs (blank-line separated) are
    packed greedily; a paragraph longer than `max_words` is cut into windows overlapping by `overlap_words`.
    The row unit changes from documents to passages: columns text, passage_id, doc_id (the `id_column`
    value, else the row number) and chunk (position in the document)."""

    name: ClassVar[str] = "chunk"
    max_words: int = 128
    overlap_words: int = 0
    id_column: str = "doc_id"

    def apply(
        self, dataset: datasets.Dataset, report: DataReport, num_proc: int | None = None
    ) -> datasets.Dataset:
        if self.max_words < 1 or not 0 <= self.overlap_words < self.max_words:
            raise RecipeInputError(
                f"chunk: need max_words >= 1 and 0 <= overlap_words < max_words, got {self.max_words} "
                f"and {self.overlap_words}."
            )
        (column,) = self.columns or ["text"]
        if column not in dataset.column_names:
            raise RecipeInputError(f"chunk reads column {column!r}, absent from {dataset.column_names}.")
        rows = []
        ids = dataset[self.id_column] if self.id_column in dataset.column_names else range(len(dataset))
        for doc_id, text in zip(ids, dataset[column], strict=True):
            for position, passage in enumerate(chunk_text(text or "", self.max_words, self.overlap_words)):
                rows.append(
                    {"text": passage, "passage_id": len(rows), "doc_id": str(doc_id), "chunk": position}
                )
        report.add(
            self.name,
            rows_in=len(dataset),
            rows_out=len(rows),
            removed=0,
            details={"params": self.params(), "passages": len(rows)},
        )
        if not rows:
            raise RecipeInputError("chunk: the documents hold no text, so there are no passages to index.")
        return datasets.Dataset.from_list(rows)


def chunk_text(text: str, max_words: int, overlap_words: int = 0) -> list[str]:
    """Pack paragraphs into passages of at most `max_words` words (see `Chunk`)."""
    passages: list[str] = []
    current: list[str] = []
    size = 0
    for paragraph in (p.strip() for p in re.split(r"\n\s*\n", text)):
        words = paragraph.split()
        if not words:
            continue
        if size and size + len(words) > max_words:
            passages.append("\n\n".join(current))
            current, size = [], 0
        if len(words) > max_words:
            step = max_words - overlap_words
            starts = range(0, max(len(words) - overlap_words, 1), step)
            passages.extend(" ".join(words[s : s + max_words]) for s in starts)
            continue
        current.append(" ".join(words))
        size += len(words)
    if current:
        passages.append("\n\n".join(current))
    return passages
