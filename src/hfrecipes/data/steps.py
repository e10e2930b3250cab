"""Named, configurable data-preparation steps, run in order as a YAML pipeline.

A pipeline in YAML is a list; each item is a step name, or a one-key mapping from the name to its parameters:

    pipeline:
      - normalize
      - corrupted: {max_replacement_fraction: 0.01}
      - exact_dedup

Every step is a dataclass registered under its name: its fields are the parameters, so an unknown name or
parameter is refused before any work with the list of what exists. Filters subclass `FilterStep` and only
say whether one text is kept; the base class runs them over the dataset with `datasets.map(num_proc=...)`,
records rows in/out and a few removed examples in the `DataReport`, and stops the pipeline with a clear
error when a step removes every remaining row.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import datasets

from hfrecipes.core.config import describe_type, value_fits
from hfrecipes.core.data_report import DataReport
from hfrecipes.core.errors import RecipeInputError
from hfrecipes.data.demographics import count_dataset_terms

MAX_EXAMPLES = 3


def batch_rows(batch: dict[str, list]) -> list[dict[str, Any]]:
    """The rows of a batched `datasets.map` call (a dict of columns) as one dict per row."""
    return [dict(zip(batch, values, strict=True)) for values in zip(*batch.values(), strict=True)]


def row_text(row: dict[str, Any], columns: Iterable[str]) -> str:
    """The text a filter judges: named columns joined; chat `messages` contribute their contents."""
    parts = []
    for column in columns:
        value = row.get(column)
        if isinstance(value, list):
            parts.extend(m.get("content", "") if isinstance(m, dict) else str(m) for m in value)
        elif value is not None:
            parts.append(str(value))
    return "\n".join(parts)


def default_columns(column_names: list[str]) -> list[str]:
    """Which columns a filter reads when none are configured, by TRL's column conventions."""
    for candidates in (
        ["text"],
        ["messages"],
        ["prompt", "chosen", "rejected"],
        ["prompt", "completion"],
        ["prompt"],
    ):
        present = [c for c in candidates if c in column_names]
        if present:
            return present
    raise RecipeInputError(f"No text column to filter among {column_names}; set `columns` on the step.")


@dataclass
class Step:
    """Base of every step. `columns`: which columns the step reads (default: by TRL's conventions).
    `domains`: apply the step only to rows of these domains (e.g. prose rules must not judge source code);
    other rows pass through untouched, in their original order."""

    name: ClassVar[str] = ""
    columns: list[str] | None = None
    domains: list[str] | None = None

    def resolved_columns(self, dataset: datasets.Dataset) -> list[str]:
        columns = self.columns or default_columns(dataset.column_names)
        missing = [c for c in columns if c not in dataset.column_names]
        if missing:
            raise RecipeInputError(
                f"Step {self.name!r} reads columns {missing} that the dataset lacks ({dataset.column_names})."
            )
        return columns

    def params(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def apply(
        self, dataset: datasets.Dataset, report: DataReport, num_proc: int | None = None
    ) -> datasets.Dataset:
        raise NotImplementedError


@dataclass
class FilterStep(Step):
    """A step that keeps or drops whole rows. Subclasses implement `keep(text) -> bool`; `setup()` runs once
    per process before the first `keep` (compile regexes, load a word list or a model)."""

    def setup(self) -> None:
        return None

    def keep(self, text: str) -> bool:
        raise NotImplementedError

    def keep_flags(self, dataset: datasets.Dataset, columns: list[str], num_proc: int | None) -> list[bool]:
        def flag(batch: dict[str, list]) -> dict[str, list[bool]]:
            self.setup()
            rows = batch_rows(batch)
            return {"_keep": [bool(self.keep(row_text(row, columns))) for row in rows]}

        flagged = dataset.select_columns(columns).map(
            flag, batched=True, num_proc=num_proc, remove_columns=columns, desc=self.name
        )
        return list(flagged["_keep"])

    def apply(
        self, dataset: datasets.Dataset, report: DataReport, num_proc: int | None = None
    ) -> datasets.Dataset:
        columns = self.resolved_columns(dataset)
        flags = self.keep_flags(dataset, columns, num_proc)
        return select_with_report(dataset, flags, self, report, columns)


def select_with_report(
    dataset: datasets.Dataset,
    flags: list[bool],
    step: Step,
    report: DataReport,
    columns: list[str],
    details: dict[str, Any] | None = None,
) -> datasets.Dataset:
    """Keep rows whose flag is True; record the step with a few removed examples."""
    kept = [i for i, keep in enumerate(flags) if keep]
    removed = [i for i, keep in enumerate(flags) if not keep]
    examples = [row_text(dataset[i], columns)[:300] for i in removed[:MAX_EXAMPLES]]
    report.add(
        step.name,
        rows_in=len(dataset),
        rows_out=len(kept),
        examples=examples,
        details={"params": step.params(), **(details or {})},
    )
    return dataset.select(kept) if removed else dataset


@dataclass
class TransformStep(Step):
    """A step that rewrites text in place (normalisation, PII masking); `transform(text) -> text`."""

    def setup(self) -> None:
        return None

    def transform(self, text: str) -> str:
        raise NotImplementedError

    def apply(
        self, dataset: datasets.Dataset, report: DataReport, num_proc: int | None = None
    ) -> datasets.Dataset:
        columns = [
            c
            for c in self.resolved_columns(dataset)
            if getattr(dataset.features[c], "dtype", None) in ("string", "large_string")
        ]

        def rewrite(batch: dict[str, list]) -> dict[str, list]:
            self.setup()
            return {c: [self.transform(t) if t is not None else t for t in batch[c]] for c in columns}

        before = dataset.select_columns(columns)
        after = dataset.map(rewrite, batched=True, num_proc=num_proc, desc=self.name)
        changed = sum(
            any(a[c] != b[c] for c in columns)
            for a, b in zip(after.select_columns(columns), before, strict=True)
        )
        report.add(
            self.name,
            rows_in=len(dataset),
            rows_out=len(after),
            details={"params": self.params(), "rows_changed": changed},
        )
        return after


def short_repr(value: Any, limit: int = 120) -> str:
    """A value's repr cut to `limit` characters, for error messages that quote what a user wrote."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def check_param_types(cls: type, params: dict[str, Any], what: str) -> None:
    """Refuse a YAML value whose type does not fit the dataclass field's annotation (a list where a number is
    expected, a string where a list is, ...), naming the parameter and the expected type."""
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # noqa: BLE001 - an annotation that cannot be resolved is simply not checked
        return
    for key, value in params.items():
        hint = hints.get(key)
        if hint is not None and not value_fits(value, hint):
            raise RecipeInputError(f"{what}: {key} must be {describe_type(hint)}, got {short_repr(value)}.")


# --------------------------------------------------------------------------------------------------------------
# Parameter checks shared by the steps: one message that names the step, the parameter and the fix.


def _nullable(step: Step, name: str) -> bool:
    """Whether the parameter accepts null (its annotation says `| None`), which disables its rule."""
    return "None" in str(next(f.type for f in dataclasses.fields(step) if f.name == name))


def check_numbers(step: Step, names: tuple[str, ...], low: float, high: float | None, whole: bool) -> None:
    """Refuse a step parameter that is not a number (a whole one if `whole`) in [low, high]; null passes
    where the field's annotation allows it."""
    for name in names:
        value = getattr(step, name)
        if value is None and _nullable(step, name):
            continue
        kind = (int,) if whole else (int, float)
        if (
            isinstance(value, bool)
            or not isinstance(value, kind)
            or value < low
            or (high is not None and value > high)
        ):
            bound = f"between {low} and {high}" if high is not None else f">= {low}"
            null = " (or null to disable)" if _nullable(step, name) else ""
            raise RecipeInputError(
                f"Step {step.name!r}: {name} must be a {'whole number' if whole else 'number'} {bound}{null}, "
                f"got {value!r}."
            )


def check_fractions(step: Step, *names: str) -> None:
    """Refuse step parameters that are not numbers between 0 and 1."""
    check_numbers(step, names, 0, 1, whole=False)


def check_non_negative(step: Step, *names: str) -> None:
    """Refuse step parameters that are not numbers >= 0."""
    check_numbers(step, names, 0, None, whole=False)


def check_counts(step: Step, *names: str) -> None:
    """Refuse step parameters that are not whole numbers >= 0."""
    check_numbers(step, names, 0, None, whole=True)


def run_pipeline(
    dataset: datasets.Dataset,
    steps: list[Step],
    report: DataReport,
    num_proc: int | None = None,
    on_step: Callable[[Step, datasets.Dataset], None] | None = None,
) -> datasets.Dataset:
    """Apply the steps in order; stop with the step's name if one removes every remaining row. The report's
    summary then records the demographic terms per group that the result's text columns hold."""
    if num_proc is not None and (isinstance(num_proc, bool) or not isinstance(num_proc, int) or num_proc < 0):
        raise RecipeInputError(f"num_proc must be a whole number >= 0 (or unset), got {num_proc!r}.")
    for step in steps:
        rows_in = len(dataset)
        dataset = _apply_in_scope(step, dataset, report, num_proc)
        if len(dataset) == 0:
            raise RecipeInputError(
                f"Step {step.name!r} removed every remaining row ({rows_in} -> 0); its examples are in the data report. "
                f"Loosen its parameters ({step.params()}) or remove it from the pipeline."
            )
        if on_step:
            on_step(step, dataset)
    report.summary["demographic_terms"] = count_dataset_terms(dataset)
    return dataset


def _apply_in_scope(
    step: Step, dataset: datasets.Dataset, report: DataReport, num_proc: int | None
) -> datasets.Dataset:
    if not step.domains:
        return step.apply(dataset, report, num_proc=num_proc)
    if "domain" not in dataset.column_names:
        raise RecipeInputError(
            f"Step {step.name!r} is limited to domains {step.domains} but the rows have no `domain` column."
        )
    wanted = set(step.domains)
    in_scope = [i for i, d in enumerate(dataset["domain"]) if d in wanted]
    if not in_scope:
        report.add(
            step.name,
            rows_in=0,
            rows_out=0,
            details={"params": step.params(), "note": "no rows in these domains"},
        )
        return dataset
    in_scope_set = set(in_scope)
    others = [i for i in range(len(dataset)) if i not in in_scope_set]
    ordered = dataset.add_column("_order", list(range(len(dataset))))
    processed = step.apply(ordered.select(in_scope), report, num_proc=num_proc)
    merged = datasets.concatenate_datasets([ordered.select(others), processed]).sort("_order")
    return merged.remove_columns("_order")


__all__ = [
    "FilterStep",
    "Step",
    "TransformStep",
    "field",
    "row_text",
    "run_pipeline",
    "select_with_report",
]
