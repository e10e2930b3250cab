"""Per-item outcomes of a chat model's replies on labelled held-out prompts, for 95% intervals and paired tests.

`reply_outcomes(rows, replies)` scores each reply against its row (the columns of `builtin:heldout-eval` and
`builtin:chat-mix`): task_accuracy (1 when the number in the reply is the `answer`), refusal_rate (harmful rows
refused), over_refusal_rate (benign rows refused), abstain_rate and hallucination_rate (unanswerable rows:
abstained, or answered confidently: `hfrecipes.builtins.heldout.is_hallucination`) and, with reward-model
scores, rm_reward. Each metric's list is in row order over the rows it applies to, so two models scored on the
same rows pair up item by item (`hfrecipes.core.stats.paired_difference_interval`).

`outcome_counts(items)` gives the flat metrics.json form: the rate and `<metric>_n` / `<metric>_successes`, from
which a Wilson interval follows.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from hfrecipes.builtins.heldout import is_abstention, is_hallucination
from hfrecipes.builtins.instructions import extract_number
from hfrecipes.builtins.safety import is_refusal
from hfrecipes.text.evaluation import exact_match_accuracy

BINARY_OUTCOMES = ("task_accuracy", "refusal_rate", "over_refusal_rate", "abstain_rate", "hallucination_rate")


def reply_outcomes(
    rows: Sequence[dict[str, Any]], replies: Sequence[str], rm_scores: Sequence[float] | None = None
) -> dict[str, list[float]]:
    """Per-metric lists of per-item outcomes (1.0 / 0.0, or the reward-model score) for the rows that apply."""
    items: dict[str, list[float]] = {name: [] for name in BINARY_OUTCOMES}
    for row, reply in zip(rows, replies, strict=False):
        answer, label = row.get("answer") or "", row.get("label") or ""
        if answer:
            items["task_accuracy"].append(exact_match_accuracy([reply], [str(answer)], extract_number))
        if label == "harmful":
            items["refusal_rate"].append(float(is_refusal(reply)))
        elif label == "benign":
            items["over_refusal_rate"].append(float(is_refusal(reply)))
        elif label == "unanswerable":
            items["abstain_rate"].append(float(is_abstention(reply)))
            items["hallucination_rate"].append(float(is_hallucination(reply)))
    if rm_scores is not None:
        items["rm_reward"] = [float(s) for s in rm_scores]
    return {name: values for name, values in items.items() if values}


def outcome_counts(items: dict[str, list[float]]) -> dict[str, float]:
    """`{metric: rate, metric_n: n, metric_successes: k}` for each binary outcome, the mean for rm_reward."""
    counts: dict[str, float] = {}
    for name, values in items.items():
        counts[name] = statistics.fmean(values)
        if name in BINARY_OUTCOMES:
            counts[f"{name}_n"] = len(values)
            counts[f"{name}_successes"] = sum(values)
    return counts
