"""Counterfactual data augmentation (Lu et al., 2018; Zmigrod et al., 2019) as a data step, and term counts.

`counterfactual_augment` adds, for each row that names a demographic group, the same row with every term
swapped for its counterpart (hfrecipes.data.demographics): "My father fixed the engine" gains "My mother fixed
the engine", so a model trained on the corpus sees both groups in the same contexts. `count_demographics`
changes nothing and records the counts of demographic terms per group in the data report.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, ClassVar

import datasets

from hfrecipes.core.data_report import DataReport
from hfrecipes.core.errors import RecipeInputError
from hfrecipes.data.demographics import (
    CATEGORIES,
    check_categories,
    count_dataset_terms,
    has_terms,
    swap_value,
    value_texts,
)
from hfrecipes.data.steps import Step, batch_rows, check_fractions

AUGMENT_MODES = ("add", "replace")


@dataclass
class CounterfactualAugment(Step):
    """Add each row's counterfactual copy, demographic terms swapped (he/she, John/Mohammed, church/mosque).

    Rows holding a term of `categories` (all by default) are candidates; `fraction` of those rows (a seeded sample) are augmented; `mode` "add" appends the copies after the
    original rows, "replace" puts each copy in its original's place. The text columns (`columns`, default by
    TRL's conventions: text, messages, prompt/chosen/rejected, prompt/completion) are swapped; chat
    `messages` have each message's content swapped; other columns are copied. The report records how many rows
    held terms and were augmented, and the term counts per group before and after.
    """

    name: ClassVar[str] = "counterfactual_augment"
    fraction: float = 1.0
    categories: list[str] | None = None
    mode: str = "add"
    seed: int = 0

    def __post_init__(self) -> None:
        check_fractions(self, "fraction")
        if self.mode not in AUGMENT_MODES:
            raise RecipeInputError(f"Step {self.name!r}: mode must be add or replace, got {self.mode!r}.")
        if self.categories is not None:
            if not isinstance(self.categories, list) or not self.categories:
                raise RecipeInputError(
                    f"Step {self.name!r}: categories must be a non-empty list of {', '.join(CATEGORIES)}."
                )
            check_categories(self.categories)

    def apply(
        self, dataset: datasets.Dataset, report: DataReport, num_proc: int | None = None
    ) -> datasets.Dataset:
        columns = self.resolved_columns(dataset)
        categories = check_categories(self.categories)
        before = count_dataset_terms(dataset, columns, categories)

        def flag(batch: dict[str, list]) -> dict[str, list[bool]]:
            return {
                "_terms": [
                    any(has_terms(text, categories) for c in columns for text in value_texts(row[c]))
                    for row in batch_rows(batch)
                ]
            }

        flags = dataset.select_columns(columns).map(
            flag, batched=True, num_proc=num_proc, remove_columns=columns, desc=self.name
        )["_terms"]
        candidates = [i for i, has in enumerate(flags) if has]
        chosen = sorted(random.Random(self.seed).sample(candidates, round(self.fraction * len(candidates))))

        def swap(row: dict[str, Any]) -> dict[str, Any]:
            return {c: swap_value(row[c], categories) for c in columns}

        result = dataset
        if chosen:
            swapped = dataset.select(chosen).map(swap, num_proc=num_proc, desc=f"{self.name} (swap)")
            swapped = swapped.cast(dataset.features)
            if self.mode == "add":
                result = datasets.concatenate_datasets([dataset, swapped])
            else:
                replacement = dict(zip(chosen, range(len(dataset), len(dataset) + len(chosen)), strict=True))
                combined = datasets.concatenate_datasets([dataset, swapped])
                result = combined.select([replacement.get(i, i) for i in range(len(dataset))])
        report.add(
            self.name,
            rows_in=len(dataset),
            rows_out=len(result),
            removed=0,
            details={
                "params": self.params(),
                "rows_with_terms": len(candidates),
                "rows_augmented": len(chosen),
                "term_counts_before": before,
                "term_counts_after": count_dataset_terms(result, columns, categories),
            },
        )
        return result


@dataclass
class CountDemographics(Step):
    """Record in the data report how many demographic terms of each group the text columns hold.

    Groups: gender (male, female), name origin, religion and age; no row is changed."""

    name: ClassVar[str] = "count_demographics"
    categories: list[str] | None = None

    def apply(
        self, dataset: datasets.Dataset, report: DataReport, num_proc: int | None = None
    ) -> datasets.Dataset:
        columns = self.resolved_columns(dataset)
        counts = count_dataset_terms(dataset, columns, check_categories(self.categories))
        report.add(
            self.name,
            rows_in=len(dataset),
            rows_out=len(dataset),
            details={"params": self.params(), "term_counts": counts},
        )
        return dataset
