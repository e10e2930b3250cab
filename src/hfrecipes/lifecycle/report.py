"""report.md for a lifecycle run: one row per stage (wall time, parameters, tokens, the stage's main metrics), what
each stage is for judged from its measurements (expectation, value with its 95% interval, ✓ / ✗, reward-hacking
flags: `hfrecipes.lifecycle.verdicts`; also written to verdicts.json), each training stage's efficiency (throughput, MFU, energy, CO2e), the data-cleaning summary, loss curves per stage and
sample generations, built from each stage's own output files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from hfrecipes.core.efficiency_text import co2e_text, energy_text, throughput_text
from hfrecipes.core.io import COMPLETION_MARKER, atomic_write_json, atomic_write_text
from hfrecipes.lifecycle.verdicts import stage_verdicts, verdict_table

# Metric columns of the table: (header, metrics.json keys tried in order).
COLUMNS: list[tuple[str, tuple[str, ...]]] = [
    ("val nats/char", ("eval_nats_per_char", "heldout_nats_per_char")),
    ("task acc", ("task_accuracy",)),
    ("refusal", ("refusal_rate",)),
    ("over-refusal", ("over_refusal_rate",)),
    ("RM acc", ("accuracy",)),
    ("RM reward", ("rm_reward",)),
    ("win vs prev", ("win_rate_vs_start", "win_rate_vs_previous", "win_rate_vs_first")),
    (
        "sampled win vs prev",
        ("sampled_win_rate_vs_start", "sampled_win_rate_vs_previous", "sampled_win_rate_vs_first"),
    ),
    ("KL to ref", ("kl_to_reference",)),
    ("forgetting", ("forgetting_nats_per_char",)),
    ("hallucination", ("hallucination_rate",)),
    ("bias", ("bias_score",)),
]


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, int) and value >= 10_000:
        return f"{value / 1e6:.2f} M"
    return str(value)


def _first(metrics: dict[str, Any], keys: tuple[str, ...]) -> Any:
    return next((metrics[k] for k in keys if metrics.get(k) is not None), None)


def _with_before(metrics: dict[str, Any], keys: tuple[str, ...]) -> str:
    """ "before -> after" when the stage measured its starting point too, else the value."""
    after = _first(metrics, keys)
    before = _first(metrics, tuple(f"{k}_before" for k in keys))
    if after is None:
        return ""
    return f"{_cell(before)} → {_cell(after)}" if before is not None else _cell(after)


def stage_table(lifecycle, state: dict[str, Any]) -> str:
    """One row per stage of a `runner.Lifecycle`: recipe, wall time (from the run's `state`), parameters, tokens
    seen and the metric columns (`COLUMNS`)."""
    header = ["stage", "recipe", "wall time", "params", "tokens seen", *[c for c, _ in COLUMNS]]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for stage in lifecycle.stages:
        output = lifecycle.output_dir(stage.name)
        metrics = _read(output / "metrics.json") or {}
        lineage = _read(output / COMPLETION_MARKER) or {}
        seconds = (state.get(stage.name) or {}).get("seconds")
        row = [
            stage.name,
            lineage.get("recipe", stage.recipe.stem),
            f"{seconds:.0f} s" if seconds is not None else "",
            _cell(metrics.get("parameters")),
            _cell(metrics.get("tokens_seen")),
            *[_with_before(metrics, keys) for _, keys in COLUMNS],
        ]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def efficiency_table(lifecycle) -> str:
    """Per training stage: throughput, training FLOPs, MFU, energy and CO2e (`lineage["efficiency"]`), and totals."""
    header = ["stage", "throughput", "train FLOPs", "MFU", "energy", "CO₂e", "energy method"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    energy = co2e = 0.0
    for stage in lifecycle.stages:
        record = (_read(lifecycle.output_dir(stage.name) / COMPLETION_MARKER) or {}).get("efficiency")
        if not record:
            continue
        energy += record.get("energy_kwh") or 0.0
        co2e += record.get("co2e_kg") or 0.0
        flops, mfu = record.get("train_flops"), record.get("mfu")
        row = [
            stage.name,
            throughput_text(record),
            f"{flops:.3g}" if flops else "",
            f"{mfu:.1%}" if mfu is not None else "",
            energy_text(record.get("energy_kwh")),
            co2e_text(record.get("co2e_kg")),
            record.get("energy_method", ""),
        ]
        lines.append("| " + " | ".join(row) + " |")
    if len(lines) == 2:
        return "_No stage recorded its efficiency._"
    lines.append(f"| **total** | | | | {energy_text(energy)} | {co2e_text(co2e)} | |")
    return "\n".join(lines)


def data_summary(lifecycle) -> str:
    """The data-preparation stage's data_report.md, its headings demoted to fit in the run report."""
    for stage in lifecycle.stages:
        report = lifecycle.output_dir(stage.name) / "data_report.md"
        if stage.recipe.stem == "prepare_data" and report.is_file():
            text = report.read_text().strip()
            return "\n".join(
                line.replace("# ", "### ", 1) if line.startswith("# ") else line for line in text.splitlines()
            )
    return "_No data-preparation stage in this lifecycle._"


def samples_section(lifecycle) -> str:
    """The evaluation stage's replies of every stage's model to the same prompts, else each stage's own samples."""
    for stage in reversed(lifecycle.stages):
        samples = _read(lifecycle.output_dir(stage.name) / "samples.json")
        if isinstance(samples, dict) and samples.get("same_prompts"):
            lines = []
            for prompt, replies in samples["same_prompts"].items():
                lines.append(f"**{prompt}**\n")
                lines += [f"- *{model}*: {reply!r}" for model, reply in replies.items()]
                lines.append("")
            return "\n".join(lines)
    parts = []
    for stage in lifecycle.stages:
        samples = _read(lifecycle.output_dir(stage.name) / "samples.json")
        if not samples:
            continue
        entries = samples.get("after", samples) if isinstance(samples, dict) else samples
        shown = [e for e in (entries if isinstance(entries, list) else [])][:2]
        for entry in shown:
            if isinstance(entry, dict):
                prompt, reply = entry.get("prompt", ""), entry.get("reply", entry.get("text", ""))
                parts.append(f"- *{stage.name}*: {str(prompt)!r} → {str(reply)!r}")
    return "\n".join(parts) or "_No samples._"


def write_report(lifecycle, state: dict[str, Any]) -> Path:
    """Write run_dir/report.md (and copy each stage's plots into run_dir/plots); returns the report's path."""
    plots = lifecycle.run_dir / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    curves = []
    for stage in lifecycle.stages:
        for name in ("loss_curve.png", "ppo_curves.png", "data_report.png"):
            source = lifecycle.output_dir(stage.name) / name
            if source.is_file():
                target = plots / f"{stage.name}_{name}"
                shutil.copyfile(source, target)
                curves.append(f"![{stage.name} {name}](plots/{target.name})")
    total = sum((state.get(s.name) or {}).get("seconds", 0) for s in lifecycle.stages)
    verdicts = stage_verdicts(lifecycle)
    atomic_write_json(lifecycle.run_dir / "verdicts.json", verdicts)
    text = "\n\n".join(
        [
            f"# hfrecipes run report: {lifecycle.path.name}",
            f"Stages run from `{lifecycle.path}` into `{lifecycle.run_dir}`; wall time of the stages run: "
            f"{total:.0f} s. Each stage's directory holds its model card (README.md), lineage.json and metrics.json.",
            "## Stages\n\n`a → b` = the stage's starting point → its result on the same held-out data.\n\n"
            + stage_table(lifecycle, state),
            "## What each stage is for\n\nEach stage's expectations (`expect:` in the lifecycle file, else its recipe's "
            "defaults), judged on the measured value and its 95% interval (Wilson for rates, bootstrap for means; "
            "`up`/`down` need the paired difference, or the intervals, to clear zero; `not_down`/`not_up` fail only "
            "on a real change the wrong way). Held-out measurements come from the final evaluation's items.\n\n"
            + verdict_table(verdicts),
            "## Efficiency\n\nThroughput and MFU over the training steps (MFU against the measured matmul peak); "
            "energy over each training run, CO₂e at the grid intensity recorded (see each model card).\n\n"
            + efficiency_table(lifecycle),
            "## Data\n\n" + data_summary(lifecycle),
            "## Loss curves\n\n" + ("\n".join(curves) or "_No curves._"),
            "## Sample generations\n\n" + samples_section(lifecycle),
        ]
    )
    path = lifecycle.run_dir / "report.md"
    atomic_write_text(path, text + "\n")
    return path
