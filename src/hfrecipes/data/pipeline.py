"""The text preparation every language-model recipe starts with."""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import datasets

from hfrecipes.core.args import DataArguments
from hfrecipes.core.data_report import DataReport
from hfrecipes.core.errors import RecipeInputError
from hfrecipes.data.registry import parse_pipeline
from hfrecipes.data.sources import is_saved_dataset, load_source
from hfrecipes.data.steps import run_pipeline
from hfrecipes.data.text import (
    DEFAULT_TEXT_PIPELINE,
    require_text_column,
    select_text_column,
    train_validation_split,
)


def prepare_text_splits(
    args: DataArguments, seed: int
) -> tuple[datasets.Dataset, datasets.Dataset, DataReport]:
    """load → select column → cleaning pipeline (default: normalize, drop_empty, exact_dedup) → split."""
    steps = parse_pipeline(DEFAULT_TEXT_PIPELINE if args.pipeline is None else args.pipeline)
    report = DataReport(source=args.dataset_name)
    problems: list[tuple[str, str]] = []
    dataset = load_source(
        args.dataset_name,
        split=args.dataset_split,
        hub_config=args.dataset_config,
        text_file_unit=args.text_file_unit,
        problems=problems,
    )
    if problems:
        report.summary["unreadable_files"] = [{"path": p, "reason": r} for p, r in problems]
    prepared_report = Path(args.dataset_name) / "data_report.json"
    if is_saved_dataset(Path(args.dataset_name)) and prepared_report.is_file():
        report.upstream = json.loads(prepared_report.read_text())
    if args.max_documents:
        dataset = dataset.select(range(min(args.max_documents, len(dataset))))
    dataset = select_text_column(dataset, args.text_column, report)
    dataset = run_pipeline(dataset, steps, report, num_proc=args.preprocessing_num_proc)
    train, validation = train_validation_split(
        dataset, args.validation_fraction, args.split_mode, seed, report
    )
    if "domain" in train.column_names:
        report.summary["train_domains"] = dict(sorted(_counts(train["domain"]).items()))
    return train, validation, report


def _counts(values: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return counts


@dataclass
class SourceSpec:
    """One entry of a `sources:` list: where to read, which domain its rows belong to, which column is text."""

    name: str
    domain: str | None = None
    text_column: str = "text"
    split: str = "train"
    config: str | None = None
    max_rows: int | None = None

    @classmethod
    def parse(cls, item: str | dict[str, Any]) -> SourceSpec:
        if isinstance(item, str):
            return cls(name=item)
        if not isinstance(item, dict) or "name" not in item:
            raise RecipeInputError(
                f"A source must be a string or a mapping with `name`, got {_short(item)}. "
                "Example: sources: [builtin:noisy-web, {name: data/my.jsonl, domain: web}]"
            )
        unknown = sorted(map(str, set(item) - {f.name for f in fields(cls)}))
        if unknown:
            raise RecipeInputError(
                f"Source {_short(item['name'])} has unknown keys {unknown}; allowed: {[f.name for f in fields(cls)]}."
            )
        for key, value in item.items():
            expected = _SPEC_TYPES[key]
            if not isinstance(value, expected) or isinstance(value, bool):
                names = " or ".join("null" if t is type(None) else t.__name__ for t in expected)
                raise RecipeInputError(
                    f"Source {_short(item['name'])}: `{key}` must be {names}, got {_short(value)}."
                )
        if item.get("max_rows") is not None and item["max_rows"] < 0:
            raise RecipeInputError(
                f"Source {item['name']!r}: `max_rows` must be >= 0, got {item['max_rows']}."
            )
        return cls(**item)


_SPEC_TYPES: dict[str, tuple[type, ...]] = {
    "name": (str,),
    "domain": (str, type(None)),
    "text_column": (str,),
    "split": (str,),
    "config": (str, type(None)),
    "max_rows": (int, type(None)),
}


def _short(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def load_sources(
    items: list[str | dict[str, Any]],
    report: DataReport,
    *,
    text_only: bool = True,
    text_file_unit: str = "paragraph",
) -> datasets.Dataset:
    """Load and concatenate several sources, each row tagged with a `domain` (the source's own `domain`
    column, else the spec's `domain`, else the source name). With `text_only`, rows are reduced to
    `text` + `domain` (language-model data); otherwise all columns are kept and must agree across sources."""
    if isinstance(items, (str, dict)):
        items = [items]
    if not isinstance(items, (list, tuple)):
        raise RecipeInputError(
            f"`sources` must be a list of builtin:/path/Hub-id entries or mappings, got {_short(items)}."
        )
    if not items:
        raise RecipeInputError("No sources given: set `sources:` to a list of builtin:/path/Hub-id entries.")
    specs = [SourceSpec.parse(item) for item in items]  # all checked before anything loads
    parts = []
    for spec in specs:
        problems: list[tuple[str, str]] = []
        dataset = load_source(
            spec.name,
            split=spec.split,
            hub_config=spec.config,
            text_file_unit=text_file_unit,
            problems=problems,
        )
        if spec.max_rows:
            dataset = dataset.select(range(min(spec.max_rows, len(dataset))))
        if spec.domain is not None:
            dataset = dataset.remove_columns([c for c in ["domain"] if c in dataset.column_names])
            dataset = dataset.add_column("domain", [spec.domain] * len(dataset))
        elif (
            "domain" not in dataset.column_names or getattr(dataset.features["domain"], "dtype", "") == "null"
        ):
            dataset = dataset.remove_columns([c for c in ["domain"] if c in dataset.column_names])
            dataset = dataset.add_column("domain", [spec.name] * len(dataset))
        else:
            require_text_column(dataset, "domain", source=repr(spec.name), allow_missing=False)
        if text_only:
            if spec.text_column not in dataset.column_names:
                raise RecipeInputError(
                    f"Source {spec.name!r} has no column {spec.text_column!r} (columns: {dataset.column_names}); "
                    "set `text_column` for it."
                )
            require_text_column(dataset, spec.text_column, source=repr(spec.name))
            dataset = dataset.select_columns([spec.text_column, "domain"])
            if spec.text_column != "text":
                dataset = dataset.rename_column(spec.text_column, "text")
        details: dict[str, Any] = {"domains": sorted(set(dataset["domain"]))}
        if problems:
            details["unreadable_files"] = [{"path": p, "reason": r} for p, r in problems]
        report.add(f"load:{spec.name}", rows_in=len(dataset), rows_out=len(dataset), details=details)
        parts.append(dataset)
    try:
        return datasets.concatenate_datasets(parts)
    except ValueError as err:
        columns = {spec: part.column_names for spec, part in zip(items, parts, strict=True)}
        raise RecipeInputError(
            f"The sources do not share one set of columns ({columns}); convert them first: {err}"
        ) from err
