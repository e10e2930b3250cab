"""The data report: rows (and tokens) in and out of every preparation step, written as data_report.json."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hfrecipes.core.io import atomic_write_text


@dataclass
class StepRecord:
    """One preparation step's line in the data report: rows (and tokens) in and out, what it removed and why."""

    step: str
    rows_in: int
    rows_out: int
    tokens_in: int | None = None
    tokens_out: int | None = None
    removed: int = 0
    details: dict[str, Any] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)


@dataclass
class DataReport:
    """Accumulates one record per step; the JSON is what model cards and lineage files quote."""

    source: str = ""
    steps: list[StepRecord] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    # The report of the stage that prepared this data (prepare_data.py), so cards trace back to raw data.
    upstream: dict[str, Any] | None = None

    def add(
        self, step: str, rows_in: int, rows_out: int, removed: int | None = None, **kwargs: Any
    ) -> StepRecord:
        """`removed` defaults to rows_in - rows_out (filters); transforms that change the row unit (documents
        to packed blocks) pass 0 and say what they dropped in `details`."""
        removed = rows_in - rows_out if removed is None else removed
        record = StepRecord(step=step, rows_in=rows_in, rows_out=rows_out, removed=removed, **kwargs)
        self.steps.append(record)
        return record

    def to_dict(self) -> dict[str, Any]:
        steps = [asdict(s) for s in self.steps]
        return {"source": self.source, "steps": steps, "summary": self.summary, "upstream": self.upstream}

    def save(self, path: str | Path) -> None:
        atomic_write_text(Path(path), json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n")

    def markdown_table(self) -> str:
        return steps_markdown_table(self.to_dict()["steps"])

    @classmethod
    def load(cls, path: str | Path) -> dict[str, Any]:
        return json.loads(Path(path).read_text())


def steps_markdown_table(steps: list[dict[str, Any]]) -> str:
    """One row per step: rows in/out/removed and tokens out, from a report's `steps` list."""
    lines = ["| step | rows in | rows out | removed | tokens out |", "|---|---:|---:|---:|---:|"]
    for step in steps:
        tokens = step.get("tokens_out")
        lines.append(
            f"| {step['step']} | {step['rows_in']:,} | {step['rows_out']:,} | {step['removed']:,} | "
            f"{'' if tokens is None else f'{tokens:,}'} |"
        )
    return "\n".join(lines)
