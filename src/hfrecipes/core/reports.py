"""Plots for reports and model cards (PNG, written atomically)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import matplotlib

from hfrecipes.core.data_report import steps_markdown_table

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def save_figure(fig: plt.Figure, path: Path) -> Path:
    """Save a matplotlib figure as a PNG atomically: written next to its target and renamed in, so a reader
    never sees half a file."""
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, path)
    return path


def plot_loss_curves(log_history: list[dict[str, Any]], path: Path, title: str = "loss") -> Path | None:
    """Training and evaluation loss against optimizer step; None when nothing was logged."""
    train = [(e["step"], e["loss"]) for e in log_history if "loss" in e and "step" in e]
    evals = [(e["step"], e["eval_loss"]) for e in log_history if "eval_loss" in e and "step" in e]
    if not train and not evals:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    for points, label in ((train, "train loss"), (evals, "eval loss")):
        if points:
            ax.plot(*zip(*points, strict=True), marker="o" if label == "eval loss" else None, label=label)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats/token)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return save_figure(fig, path)


def plot_data_report(report: dict[str, Any], path: Path) -> Path:
    """Two panels: rows removed per step, and domain shares (rows) before and after mixing."""
    steps = [s for s in report.get("steps", []) if s.get("rows_in")]
    domains = report.get("summary", {}).get("domains", {})
    fig, axes = plt.subplots(
        1, 2 if domains else 1, figsize=(11 if domains else 6, 3.8), dpi=100, squeeze=False
    )
    ax = axes[0][0]
    ax.barh([s["step"] for s in steps][::-1], [s["removed"] for s in steps][::-1], color="#c0504d")
    ax.set_xlabel("rows removed")
    ax.set_title("removals per step")
    if domains:
        ax = axes[0][1]
        names = sorted(domains)
        positions = range(len(names))
        before = [domains[n].get("row_share_before", 0.0) for n in names]
        after = [domains[n].get("row_share_after", 0.0) for n in names]
        ax.bar([p - 0.2 for p in positions], before, width=0.4, label="before mixing")
        ax.bar([p + 0.2 for p in positions], after, width=0.4, label="after mixing")
        ax.set_xticks(list(positions), names, rotation=30, ha="right")
        ax.set_ylabel("share of rows")
        ax.set_title("domain shares")
        ax.legend()
    return save_figure(fig, path)


def data_report_markdown(report: dict[str, Any]) -> str:
    """data_report.md: the steps table, the chart, domain shares, demographic term counts and removed examples
    per step."""
    lines = [
        f"# Data report: {report['source']}",
        "",
        steps_markdown_table(report["steps"]),
        "",
        "![removals and domain shares](data_report.png)",
        "",
    ]
    if domains := report["summary"].get("domains"):
        lines += [
            "## Domains",
            "",
            "| domain | " + " | ".join(next(iter(domains.values()))) + " |",
            "|---|" + "---:|" * len(next(iter(domains.values()))),
        ]
        for name, values in domains.items():
            lines.append(
                f"| {name} | "
                + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in values.values())
                + " |"
            )
        lines.append("")
    if terms := report["summary"].get("demographic_terms"):
        lines += [
            "## Demographic terms",
            "",
            "Who the prepared data talks about: occurrences of each group's terms (`hfrecipes.data.demographics`; "
            "a skew here is what `counterfactual_augment` evens out).",
            "",
            "| category | terms per group |",
            "|---|---|",
        ]
        lines += [
            f"| {category} | " + ", ".join(f"{group} {count:,}" for group, count in groups.items()) + " |"
            for category, groups in terms.items()
        ]
        lines.append("")
    for step in report["steps"]:
        if step["examples"]:
            lines += [f"## Removed by `{step['step']}` (examples)", ""]
            lines += [f"- `{example[:160]!r}`" for example in step["examples"]] + [""]
    return "\n".join(lines)
