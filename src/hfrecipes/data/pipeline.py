"""The text preparation every language-model recipe starts with."""

from __future__ import annotations

import datasets

from hfrecipes.args import DataArguments
from hfrecipes.data.report import DataReport
from hfrecipes.data.sources import load_source
from hfrecipes.data.steps import parse_pipeline, run_pipeline
from hfrecipes.data.text import DEFAULT_TEXT_PIPELINE, select_text_column, train_validation_split


def prepare_text_splits(
    args: DataArguments, seed: int
) -> tuple[datasets.Dataset, datasets.Dataset, DataReport]:
    """load → select column → cleaning pipeline (default: normalize, drop_empty, exact_dedup) → split."""
    steps = parse_pipeline(DEFAULT_TEXT_PIPELINE if args.pipeline is None else args.pipeline)
    report = DataReport(source=args.dataset_name)
    dataset = load_source(
        args.dataset_name,
        split=args.dataset_split,
        hub_config=args.dataset_config,
        text_file_unit=args.text_file_unit,
    )
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
