"""The final-evaluation recipe: every model on the same held-out prompts, win rates against the previous model
(a chain) or the first (siblings from one start)."""

import pytest

from hfrecipes.core.errors import RecipeInputError

from .conftest import ROOT, read_json, run_recipe

FAST = [
    "--dataset_name",
    "builtin:chat-mix?arithmetic_rows=12&safety_rows=4&digits=1&seed=99&ops=add,sub",
    "--max_samples",
    "8",
    "--max_new_tokens",
    "4",
    "--sample_prompts",
    "What is 3 + 4?",
]


def test_win_rates_against_the_first_model_or_the_previous_one(tiny_chat_models, tmp_path):
    policy, reward_model = tiny_chat_models
    other = tmp_path / "other"  # a second, different policy: the same one trained for one step is enough
    run_recipe(
        "text/sft.py",
        "--config",
        ROOT / "recipes/text/configs/sft_tiny.yaml",
        "--model_name_or_path",
        policy,
        "--dataset_name",
        "builtin:arithmetic?n=64&digits=1&seed=0",
        "--max_steps",
        "1",
        "--learning_rate",
        "0.05",
        "--save_steps",
        "1",
        "--eval_steps",
        "1",
        "--forgetting_text",
        "",
        "--eval_max_samples",
        "2",
        "--eval_max_new_tokens",
        "2",
        "--bf16",
        "false",
        "--output_dir",
        other,
    )
    models = ["--models", policy, other, policy, "--reward_model_path", reward_model]
    run_recipe(
        "text/evaluate.py", *FAST, *models, "--win_rate_against", "first", "--output_dir", tmp_path / "first"
    )
    run_recipe("text/evaluate.py", *FAST, *models, "--output_dir", tmp_path / "previous")
    first = read_json(tmp_path / "first" / "metrics.json")["models"]
    previous = read_json(tmp_path / "previous" / "metrics.json")["models"]
    # The third model is the first one again: against the first it ties every prompt (same replies, same seed).
    assert first["policy"]["win_rate_vs_first"] == 0.5 and "win_rate_vs_previous" not in first["policy"]
    assert previous["policy"]["win_rate_vs_previous"] == pytest.approx(
        1 - previous["other"]["win_rate_vs_previous"]
    )
    with pytest.raises(RecipeInputError, match="win_rate_against must be previous or first"):
        run_recipe(
            "text/evaluate.py", *FAST, *models, "--win_rate_against", "best", "--output_dir", tmp_path / "x"
        )
