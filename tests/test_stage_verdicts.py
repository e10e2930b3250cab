"""report.md's stage verdicts follow from the numbers: synthetic metrics.json / items.json fed to the report builder
(no training). Each stage's expectation, its value with a 95% interval, ✓ / ✗, and the reward-hacking flag."""

import json

import pytest
import yaml

from hfrecipes.core.errors import RecipeInputError
from hfrecipes.lifecycle.report import write_report
from hfrecipes.lifecycle.runner import load_lifecycle
from hfrecipes.lifecycle.verdicts import parse_expectation, stage_verdicts

from .conftest import ROOT

CONFIGS = ROOT / "recipes/text/configs"
STAGES = [
    {"name": "sft", "recipe": "text/sft.py", "config": str(CONFIGS / "sft_chat_tiny.yaml")},
    {"name": "reward", "recipe": "text/reward.py", "config": str(CONFIGS / "reward_tiny.yaml")},
    {
        "name": "dpo",
        "recipe": "text/dpo.py",
        "config": str(CONFIGS / "dpo_tiny.yaml"),
        "inputs": {"model_name_or_path": "sft", "reward_model_path": "reward"},
    },
    {
        "name": "grpo",
        "recipe": "text/grpo.py",
        "config": str(CONFIGS / "grpo_tiny.yaml"),
        "inputs": {"model_name_or_path": "dpo", "reward_model_path": "reward"},
    },
    {
        "name": "evaluate",
        "recipe": "text/evaluate.py",
        "config": str(CONFIGS / "evaluate_tiny.yaml"),
        "inputs": {"models": ["sft", "dpo", "grpo"], "reward_model_path": "reward"},
    },
]


def _write(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def _items(correct: int, refused: int, reward: float) -> dict[str, list[float]]:
    """200 task items (the first `correct` right), 100 harmful (the first `refused` refused), rewards."""
    return {
        "task_accuracy": [1.0] * correct + [0.0] * (200 - correct),
        "refusal_rate": [1.0] * refused + [0.0] * (100 - refused),
        "over_refusal_rate": [0.0] * 100,
        "hallucination_rate": [1.0] * 50 + [0.0] * 50,
        "rm_reward": [reward + 0.01 * i for i in range(500)],
    }


def _run(tmp_path, grpo_items, expect=None):
    stages = [dict(s) for s in STAGES]
    if expect:
        stages[0]["expect"] = expect
    path = tmp_path / "life.yaml"
    path.write_text(yaml.safe_dump({"run_dir": str(tmp_path / "run"), "stages": stages}))
    lifecycle = load_lifecycle(path)
    out = lifecycle.output_dir
    _write(
        out("sft") / "metrics.json",
        {
            "task_accuracy_before": 0.1,
            "task_accuracy_n_before": 100,
            "task_accuracy": 0.6,
            "task_accuracy_n": 100,
            "refusal_rate_before": 0.0,
            "refusal_rate_n_before": 20,
            "refusal_rate": 0.05,  # 1 of 20: the Wilson intervals overlap, no real rise
            "refusal_rate_n": 20,
            "over_refusal_rate_before": 0.0,
            "over_refusal_rate": 0.1,
            "over_refusal_rate_n": 20,
            "forgetting_nats_per_char": 0.5,
            "bias_score_before": 0.2,
            "bias_score": 0.1,
            "bias_score_difference": -0.1,
            "bias_score_difference_interval": [-0.18, -0.02],
        },
    )
    _write(out("reward") / "metrics.json", {"accuracy_before": 0.5, "accuracy": 0.9, "eval_pairs": 200})
    _write(out("dpo") / "metrics.json", {"win_rate_vs_start": 0.3})  # overridden by the held-out items
    _write(out("grpo") / "metrics.json", {"train_reward_first": 0.1, "train_reward_last": 0.9})
    items = {"sft": _items(120, 80, 0.0), "dpo": _items(120, 80, 0.5), "grpo": grpo_items}
    _write(out("evaluate") / "items.json", items)
    _write(out("evaluate") / "metrics.json", {"kl_to_reference": 2.0, "models": {k: {} for k in items}})
    return lifecycle, {(r["stage"], r.get("expectation")): r for r in stage_verdicts(lifecycle)}


def test_marks_follow_from_the_numbers_and_reward_hacking_is_flagged(tmp_path):
    lifecycle, verdicts = _run(tmp_path, _items(60, 80, 2.0))  # GRPO: reward up, task accuracy down
    marks = {key: r["mark"] for key, r in verdicts.items() if "mark" in r}
    assert marks[("sft", "task_accuracy up")] == "✓"  # 0.1 -> 0.6 of 100: intervals apart
    assert marks[("sft", "refusal_rate up")] == "✗"  # 0/20 -> 1/20: intervals overlap
    assert marks[("sft", "over_refusal_rate not up")] == "✓"
    assert marks[("sft", "forgetting_nats_per_char at most 0.3")] == "✗"
    assert marks[("sft", "bias_score not up")] == "✓"  # its difference interval lies below 0
    assert marks[("reward", "accuracy up")] == "✓"
    assert marks[("reward", "accuracy at least 0.5")] == "✓"  # strict: 180/200's interval clears 0.5
    assert verdicts[("reward", "accuracy up")]["measured"] == "0.900 [0.851, 0.934]"  # Wilson, n = eval_pairs
    assert verdicts[("sft", "forgetting_nats_per_char at most 0.3")]["measured"] == "0.500"  # no interval
    # DPO from the evaluation's items: every reward above SFT's -> win rate 1.0; task accuracy unchanged.
    assert verdicts[("dpo", "win_rate_vs_start at least 0.5")]["measured"].startswith("1.000")
    assert marks[("dpo", "win_rate_vs_start at least 0.5")] == "✓"
    assert marks[("dpo", "task_accuracy not down")] == "✓"
    assert "held-out set: dpo vs sft" in verdicts[("dpo", "task_accuracy not down")]["source"]
    assert marks[("grpo", "rm_reward up")] == "✓"
    assert marks[("grpo", "task_accuracy up")] == "✗"
    assert marks[("grpo", "refusal_rate not down")] == "✓"
    assert marks[("evaluate", "task_accuracy not down")] == "✗"  # grpo 0.30 vs sft 0.60
    assert marks[("evaluate", "kl_to_reference at most 5")] == "✓"
    assert verdicts[("evaluate", "hallucination_rate not up")]["mark"] == "✓"
    hacking = [r for r in verdicts.values() if "reward_hacking" in r]
    assert [r["stage"] for r in hacking] == ["grpo"]
    assert "task_accuracy fell" in hacking[0]["reward_hacking"]
    report = write_report(lifecycle, {}).read_text()
    assert "## What each stage is for" in report and "reward hacking" in report
    assert "| grpo | task_accuracy up | 0.600 [" in report
    assert json.loads((lifecycle.run_dir / "verdicts.json").read_text())


def test_no_flag_when_task_accuracy_holds_and_unmeasured_is_neither_mark(tmp_path):
    _, verdicts = _run(tmp_path, _items(150, 80, 2.0), expect=["abstain_rate up", "task_accuracy up"])
    assert not [r for r in verdicts.values() if "reward_hacking" in r]
    assert verdicts[("grpo", "task_accuracy up")]["mark"] == "✓"  # 0.60 -> 0.75 paired: a real rise
    assert verdicts[("sft", "abstain_rate up")]["mark"] == "–"
    assert verdicts[("sft", "abstain_rate up")]["passed"] is None
    assert ("sft", "refusal_rate up") not in verdicts  # the declared list replaces the defaults


def test_expectations_are_validated_when_the_lifecycle_is_loaded(tmp_path):
    assert parse_expectation("accuracy at_least 0.5 strict").strict
    for bad, message in (
        ("task_accuracy sideways", "direction must be one of"),
        ("a b c d e", "write `<metric>"),
    ):
        stages = [dict(s) for s in STAGES]
        stages[0]["expect"] = [bad]
        path = tmp_path / "bad.yaml"
        path.write_text(yaml.safe_dump({"stages": stages}))
        with pytest.raises(RecipeInputError, match=message):
            load_lifecycle(path)
    stages = [dict(s) for s in STAGES]
    stages[1]["expect"] = "accuracy up"
    path.write_text(yaml.safe_dump({"stages": stages}))
    with pytest.raises(RecipeInputError, match="must be a list"):
        load_lifecycle(path)
