"""Label consistency for supervised data: the same input with conflicting labels or answers.

Training on both "2+2 -> 4" and "2+2 -> 5", or on a preference pair and its reverse, teaches noise at best.
`contradictory_labels` groups rows by their normalised input and finds groups that disagree; it either drops
every row of such a group or keeps the majority label.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import datasets

from hfrecipes.core.data_report import DataReport
from hfrecipes.core.errors import RecipeInputError
from hfrecipes.data.steps import MAX_EXAMPLES, Step, row_text, select_with_report
from hfrecipes.data.text import normalize_text

STRATEGIES = ("drop", "majority")
_WHITESPACE = re.compile(r"\s+")


def canonical(value: Any) -> Any:
    """A JSON-able form in which inputs that differ only in Unicode form, case or spacing are equal (the
    normalisation of `normalize_text` + `dedup_key`); chat messages compare role by role."""
    if isinstance(value, str):
        return _WHITESPACE.sub(" ", normalize_text(value).casefold()).strip()
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, bytes):
        return hashlib.sha1(value).hexdigest()
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    if isinstance(value, dict):
        # Arrow gives every message struct all keys of the column; absent ones come back as None.
        return {str(k): canonical(v) for k, v in value.items() if v is not None}
    raise RecipeInputError(
        f"contradictory_labels compares text, numbers and lists of them, not {type(value).__name__}; "
        "set input_columns and label_column to text columns."
    )


def fingerprint(value: Any) -> str:
    """A stable hash of a JSON-able value (keys sorted), to group rows whose inputs are equal."""
    return hashlib.sha1(json.dumps(value, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


class Reading(NamedTuple):
    """What one row says: its group (canonical input) and its label; `self_contradictory` when the row
    contradicts itself (a preference pair whose chosen and rejected responses are the same)."""

    group: Any
    label: Any
    self_contradictory: bool = False


@dataclass(frozen=True)
class ColumnsLayout:
    """Input columns and one label/answer column: classification, prompt/completion, QA, or explicit."""

    kind: str
    input_columns: tuple[str, ...]
    label_column: str

    @property
    def columns(self) -> list[str]:
        return [*self.input_columns, self.label_column]

    def read(self, row: dict[str, Any]) -> Reading | None:
        label = row[self.label_column]
        if label is None:
            return None
        return Reading({c: canonical(row[c]) for c in self.input_columns}, canonical(label))

    def describe(self, row: dict[str, Any]) -> tuple[str, str]:
        return row_text(row, self.input_columns), str(row[self.label_column])


@dataclass(frozen=True)
class MessagesLayout:
    """Conversational SFT: the input is every turn before the last assistant turn, the answer is that turn."""

    kind: ClassVar[str] = "sft"
    columns: ClassVar[list[str]] = ["messages"]

    @staticmethod
    def split(messages: Any) -> tuple[list[Any], Any] | None:
        if not isinstance(messages, list):
            return None
        for index in range(len(messages) - 1, -1, -1):
            turn = messages[index]
            if isinstance(turn, dict) and turn.get("role") == "assistant":
                return messages[:index], turn.get("content")
        return None

    def read(self, row: dict[str, Any]) -> Reading | None:
        parts = self.split(row["messages"])
        if parts is None:
            return None
        return Reading(canonical(parts[0]), canonical(parts[1]))

    def describe(self, row: dict[str, Any]) -> tuple[str, str]:
        turns, answer = self.split(row["messages"])
        return row_text({"messages": turns}, ["messages"]), row_text({"answer": answer}, ["answer"])


@dataclass(frozen=True)
class PreferenceLayout:
    """Preferences: rows about the same prompt and the same two responses conflict when they disagree on
    which one is chosen. Grouping by the unordered pair, not by response, so that a consistent ranking
    spread over several rows (A>B, B>C) is not mistaken for a contradiction."""

    kind: ClassVar[str] = "preference"
    columns: ClassVar[list[str]] = ["prompt", "chosen", "rejected"]

    def read(self, row: dict[str, Any]) -> Reading | None:
        if row["chosen"] is None or row["rejected"] is None:
            return None
        chosen, rejected = canonical(row["chosen"]), canonical(row["rejected"])
        pair = sorted([chosen, rejected], key=fingerprint)
        return Reading([canonical(row["prompt"]), pair], chosen, self_contradictory=chosen == rejected)

    def describe(self, row: dict[str, Any]) -> tuple[str, str]:
        chosen = row_text({"r": row["chosen"]}, ["r"])
        rejected = row_text({"r": row["rejected"]}, ["r"])
        return row_text(row, ["prompt"]), f"chosen: {chosen[:100]} | rejected: {rejected[:100]}"


Layout = ColumnsLayout | MessagesLayout | PreferenceLayout


def majority_label(rows_by_label: dict[str, list[int]]) -> str | None:
    """The label carried by strictly more rows than any other, or None on a tie."""
    (top_label, top), (_, runner_up) = Counter({k: len(v) for k, v in rows_by_label.items()}).most_common(2)
    return top_label if top > runner_up else None


def detect_layout(column_names: list[str]) -> Layout:
    """Inputs and labels by TRL's column conventions, most specific first."""
    names = set(column_names)
    if {"prompt", "chosen", "rejected"} <= names:
        return PreferenceLayout()
    if "messages" in names:
        return MessagesLayout()
    if {"prompt", "completion"} <= names:
        return ColumnsLayout("prompt_completion", ("prompt",), "completion")
    for question in ("prompt", "question"):
        if {question, "answer"} <= names:
            return ColumnsLayout("qa", (question,), "answer")
    if {"text", "label"} <= names:
        return ColumnsLayout("classification", ("text",), "label")
    raise RecipeInputError(
        f"contradictory_labels cannot tell inputs from labels among columns {column_names}. Expected TRL "
        "columns (text + label, messages, prompt + completion, prompt + chosen + rejected, prompt/question + "
        "answer), or set input_columns and label_column."
    )


@dataclass
class ContradictoryLabels(Step):
    """Find inputs that occur with conflicting labels/answers and remove the conflict.

    Inputs are compared after `normalize_text`, case folding and whitespace collapsing; labels that are text
    are normalised the same way, so "Paris" and "paris " agree. Inputs and labels come from `input_columns` +
    `label_column`, or by TRL's conventions: `text` + `label`; `messages` (input: the turns before the last
    assistant turn; answer: that turn); `prompt` + `completion`; `prompt`/`question` + `answer`;
    `prompt` + `chosen`/`rejected` (a conflict is the same prompt and two responses preferred both ways; a row
    whose chosen and rejected responses are identical is always removed). Rows without a label are kept.

    `strategy`: `drop` removes every row of a conflicting group; `majority` keeps the rows carrying the
    group's most frequent label and drops the whole group on a tie.
    """

    name: ClassVar[str] = "contradictory_labels"
    input_columns: list[str] | None = None
    label_column: str | None = None
    strategy: str = "drop"

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise RecipeInputError(
                f"contradictory_labels: strategy must be one of {list(STRATEGIES)}, got {self.strategy!r}."
            )
        if self.columns is not None:
            raise RecipeInputError(
                "contradictory_labels reads input_columns and label_column, not columns; set those instead."
            )
        if (self.input_columns is None) != (self.label_column is None):
            raise RecipeInputError(
                "contradictory_labels: set both input_columns and label_column, or neither (detected by "
                f"TRL's column conventions); got input_columns={self.input_columns!r}, "
                f"label_column={self.label_column!r}."
            )
        if self.input_columns is not None:
            if (
                not isinstance(self.input_columns, list)
                or not self.input_columns
                or not all(isinstance(c, str) for c in self.input_columns)
            ):
                raise RecipeInputError(
                    f"contradictory_labels: input_columns must be a non-empty list of column names, got "
                    f"{self.input_columns!r}."
                )
            if self.label_column in self.input_columns:
                raise RecipeInputError(
                    f"contradictory_labels: label_column {self.label_column!r} is also an input column."
                )

    def layout(self, column_names: list[str]) -> Layout:
        if self.input_columns is None:
            return detect_layout(column_names)
        layout = ColumnsLayout("explicit", tuple(self.input_columns), self.label_column)
        missing = [c for c in layout.columns if c not in column_names]
        if missing:
            raise RecipeInputError(
                f"contradictory_labels reads columns {missing} that the dataset lacks ({column_names})."
            )
        return layout

    def apply(
        self, dataset: datasets.Dataset, report: DataReport, num_proc: int | None = None
    ) -> datasets.Dataset:
        layout = self.layout(dataset.column_names)
        columns = layout.columns

        def read_rows(batch: dict[str, list]) -> dict[str, list]:
            groups, labels, self_contradictory = [], [], []
            for values in zip(*batch.values(), strict=True):
                reading = layout.read(dict(zip(batch, values, strict=True)))
                groups.append(fingerprint(reading.group) if reading else "")
                labels.append(fingerprint(reading.label) if reading else "")
                self_contradictory.append(bool(reading and reading.self_contradictory))
            return {"_group": groups, "_label": labels, "_self": self_contradictory}

        keys = dataset.select_columns(columns).map(
            read_rows, batched=True, num_proc=num_proc, remove_columns=columns, desc=self.name
        )
        rows_by_group: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
        flags = [True] * len(dataset)
        for index, (group, label, self_contradictory) in enumerate(
            zip(keys["_group"], keys["_label"], keys["_self"], strict=True)
        ):
            if self_contradictory:
                flags[index] = False
            elif group:
                rows_by_group[group][label].append(index)

        conflicts = [by_label for by_label in rows_by_group.values() if len(by_label) > 1]
        tied_groups = 0
        for by_label in conflicts:
            keep_label = majority_label(by_label) if self.strategy == "majority" else None
            if self.strategy == "majority" and keep_label is None:
                tied_groups += 1
            for label, rows in by_label.items():
                if label != keep_label:
                    for index in rows:
                        flags[index] = False

        details = {
            "layout": layout.kind,
            "columns": columns,
            "conflicting_groups": len(conflicts),
            "rows_in_conflicting_groups": sum(len(r) for by_label in conflicts for r in by_label.values()),
            "self_contradictory_rows": sum(keys["_self"]),
            "conflict_examples": [
                self._example(dataset, layout, by_label) for by_label in conflicts[:MAX_EXAMPLES]
            ],
        }
        if self.strategy == "majority":
            details["tied_groups"] = tied_groups
        return select_with_report(dataset, flags, self, report, columns, details=details)

    @staticmethod
    def _example(dataset: datasets.Dataset, layout: Layout, by_label: dict[str, list[int]]) -> dict[str, Any]:
        """The group's input and each conflicting label with how many rows carry it."""
        label_feature = (
            dataset.features.get(layout.label_column) if isinstance(layout, ColumnsLayout) else None
        )
        labels = {}
        for rows in by_label.values():
            row = dataset[rows[0]]
            shown = layout.describe(row)[1]
            if isinstance(label_feature, datasets.ClassLabel):
                shown = label_feature.int2str(row[layout.label_column])
            labels[shown[:200]] = len(rows)
        first_row = dataset[next(iter(by_label.values()))[0]]
        return {"input": layout.describe(first_row)[0][:300], "labels": labels}
