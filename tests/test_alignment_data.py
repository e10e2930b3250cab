"""Preference data, reward functions and the reward-model scorer: the pieces reward/DPO/GRPO/PPO share."""

import datasets
import pytest
import torch
from transformers import AutoModelForSequenceClassification

from hfrecipes.builtins.preferences import ai_feedback_pairs
from hfrecipes.core.data_report import DataReport
from hfrecipes.core.errors import RecipeInputError
from hfrecipes.data import load_source, parse_pipeline, run_pipeline, validate_format
from hfrecipes.text.alignment import (
    as_conversational_prompts,
    chat_ids,
    check_generation_fits,
    evaluate_policy,
    reply_logprobs,
)
from hfrecipes.text.models import get_causal_lm, special_token_ids
from hfrecipes.text.rewards import (
    REWARD_FUNCTIONS,
    RewardModelScorer,
    check_tokenizer_reads,
    check_weights,
    combined_scorer,
    resolve_reward_functions,
)
from hfrecipes.text.tokenization import CHATML_TEMPLATE, IM_END, train_tokenizer


@pytest.fixture(scope="module")
def chat_tokenizer():
    rows = load_source("builtin:preferences?n=300&seed=0")
    texts = [m["content"] for r in rows for m in r["prompt"] + r["chosen"] + r["rejected"]]
    tokenizer = train_tokenizer(texts, tokenizer_type="byte-bpe", vocab_size=400, min_frequency=2)
    tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


def test_builtin_preferences_pair_good_and_bad_replies():
    rows = load_source("builtin:preferences?n=400&safety_fraction=0.25&seed=3")
    validate_format(rows, "preference")  # conversational pairs, chosen != rejected everywhere
    kinds = set(rows["rejection"])
    assert {"wrong_answer", "unhelpful", "off_topic", "unsafe_compliance", "over_refusal"} <= kinds
    assert (
        sum(label == "harmful" for label in rows["label"]) + sum(label == "benign" for label in rows["label"])
        == 100
    )
    for row in rows.select(range(50)):
        if row["rejection"] == "wrong_answer":
            assert REWARD_FUNCTIONS["correctness"](
                None, [row["chosen"], row["rejected"]], answer=[row["answer"]] * 2
            ) == [1.0, 0.0]
    assert rows["prompt"] == load_source("builtin:preferences?n=400&safety_fraction=0.25&seed=3")["prompt"]


def test_chosen_equal_to_rejected_and_missing_columns_are_refused():
    same = datasets.Dataset.from_list([{"prompt": "Hi", "chosen": "Hello", "rejected": "Hello"}])
    with pytest.raises(RecipeInputError, match="chosen equals rejected"):
        validate_format(same, "preference")
    with pytest.raises(RecipeInputError, match=r"column\(s\) \['rejected'\]"):
        validate_format(datasets.Dataset.from_list([{"prompt": "Hi", "chosen": "Hello"}]), "preference")
    mixed = datasets.Dataset.from_list(
        [
            {
                "prompt": "Hi",
                "chosen": [{"role": "assistant", "content": "a"}],
                "rejected": [{"role": "assistant", "content": "b"}],
            }
        ]
    )
    with pytest.raises(RecipeInputError, match="all strings or all message lists"):
        validate_format(mixed, "preference")


def test_reward_functions_score_what_their_names_say():
    completions = [
        [{"role": "assistant", "content": "The answer is 12."}],
        "It is 13",
        "I can't help with that.",
    ]
    assert REWARD_FUNCTIONS["correctness"](None, completions, answer=["12", "12", ""]) == [1.0, 0.0, None]
    assert REWARD_FUNCTIONS["format"](None, completions, answer=["12", "12", ""]) == [1.0, 0.0, None]
    assert REWARD_FUNCTIONS["refusal"](None, completions, label=["", "benign", "harmful"]) == [None, 1.0, 1.0]
    assert REWARD_FUNCTIONS["refusal"](None, ["Sure, here you go."], label=["harmful"]) == [-1.0]
    worked = ["3 + 4 = 7. The answer is 7.", "3 + 4 = 7.", "The answer is 7. 3 + 4 = 7."]
    assert REWARD_FUNCTIONS["format"](None, worked, answer=["7"] * 3) == [1.0, 0.0, 0.0]
    unknown = ["I don't know: you haven't told me that.", "It is 7.", "I can't help with that.", "Hi"]
    assert REWARD_FUNCTIONS["abstention"](None, unknown, label=["unanswerable"] * 3 + ["benign"]) == [
        1.0,
        -1.0,
        0.0,
        None,
    ]
    long, short = REWARD_FUNCTIONS["length_penalty"](None, ["x" * 360, "ok"])
    assert long == pytest.approx(-2.0) and short == 0.0
    with pytest.raises(
        RecipeInputError, match="Registered: abstention, correctness, format, length_penalty, refusal"
    ):
        resolve_reward_functions(["correctness", "helpfulness"])
    with pytest.raises(RecipeInputError, match="one weight per reward"):
        check_weights(2, [1.0])
    with pytest.raises(RecipeInputError, match="No reward"):
        check_weights(0, None)
    score = combined_scorer(resolve_reward_functions(["correctness", "refusal"]), None, [1.0, 0.5])
    assert score([[]] * 2, ["The answer is 3.", "I won't."], answer=["3", ""], label=["", "benign"]) == [
        1.0,
        -0.5,
    ]


def test_reward_model_scorer_and_tokenizer_compatibility(chat_tokenizer, tmp_path):
    built = get_causal_lm(
        model_name_or_path=None,
        preset="tiny",
        vocab_size=len(chat_tokenizer),
        special_ids=special_token_ids(chat_tokenizer),
        head="reward",
    )
    built.model.save_pretrained(tmp_path / "rm")
    chat_tokenizer.save_pretrained(tmp_path / "rm")
    assert isinstance(AutoModelForSequenceClassification.from_pretrained(tmp_path / "rm"), type(built.model))
    scorer = RewardModelScorer.from_pretrained(tmp_path / "rm", chat_tokenizer)
    scores = scorer.score(
        [[{"role": "user", "content": "What is 1 + 1?"}]] * 2, ["The answer is 2.", "Maybe."]
    )
    assert len(scores) == 2 and scores[0] != scores[1]
    other = train_tokenizer(["completely different words"] * 20, tokenizer_type="char", vocab_size=40)
    with pytest.raises(RecipeInputError, match="cannot read the policy's text"):
        check_tokenizer_reads(other, chat_tokenizer, where="other")
    with pytest.raises(RecipeInputError, match="not a saved model"):
        RewardModelScorer.from_pretrained(tmp_path / "nothing")


def test_policy_evaluation_and_ai_feedback_pairs(chat_tokenizer):
    policy = get_causal_lm(
        model_name_or_path=None,
        preset="tiny",
        vocab_size=len(chat_tokenizer),
        special_ids=special_token_ids(chat_tokenizer),
    ).model
    rows = as_conversational_prompts(load_source("builtin:chat-mix?arithmetic_rows=12&safety_rows=8&seed=1"))
    result = evaluate_policy(policy, chat_tokenizer, rows, reference=policy, max_new_tokens=4)
    assert {"task_accuracy", "refusal_rate", "over_refusal_rate", "reply_chars"} <= set(result.metrics)
    assert result.metrics["kl_to_reference"] == pytest.approx(0.0, abs=1e-5)  # a policy against itself
    with pytest.raises(RecipeInputError, match="does not fit the model's context"):
        check_generation_fits(chat_tokenizer, [r for r in rows["prompt"]], 10_000, 256)

    replies = {0: ["The answer is 1.", "same"], 1: ["The answer is 2.", "same"]}
    pairs, dropped = ai_feedback_pairs(
        rows.select(range(2)).map(lambda r: {"answer": "1"}),
        lambda prompts, seed: replies[seed][: len(prompts)],
        combined_scorer(resolve_reward_functions(["correctness"]), None, [1.0]),
    )
    assert dropped == {"identical": 1, "tied": 0}
    assert pairs[0]["chosen"][0]["content"] == "The answer is 1."
    validate_format(pairs, "preference")


def test_rename_and_extract_answer_steps_bring_gsm8k_shaped_rows_to_the_conventions():
    rows = datasets.Dataset.from_dict({"question": ["Q1", "Q2"], "answer": ["... #### 1,234", "no marker"]})
    report = DataReport(source="gsm8k-like")
    out = run_pipeline(
        rows,
        parse_pipeline([{"rename_columns": {"mapping": {"question": "prompt"}}}, "extract_answer"]),
        report,
    )
    assert out.to_list() == [{"prompt": "Q1", "answer": "1234"}]
    with pytest.raises(RecipeInputError, match="not in the dataset"):
        run_pipeline(rows, parse_pipeline([{"rename_columns": {"mapping": {"nope": "prompt"}}}]), report)


def test_reply_log_probabilities_stop_at_the_end_of_turn_token(chat_tokenizer):
    # ChatML writes a newline after <|im_end|> that is never generated: scoring it would let a policy that drifted
    # there (RL never trains past the end of its reply) show a negative KL to its reference.
    policy = get_causal_lm(
        model_name_or_path=None,
        preset="tiny",
        vocab_size=len(chat_tokenizer),
        special_ids=special_token_ids(chat_tokenizer),
    ).model
    prompt = [{"role": "user", "content": "What is 2 + 3?"}]
    reply = "The answer is 5."
    prefix = chat_ids(chat_tokenizer, prompt, add_generation_prompt=True)
    full = chat_ids(chat_tokenizer, [*prompt, {"role": "assistant", "content": reply}])
    end = full.index(chat_tokenizer.convert_tokens_to_ids(IM_END), len(prefix)) + 1
    assert end < len(full)  # the template does write something after the end-of-turn token
    with torch.no_grad():
        logprobs = torch.log_softmax(policy(input_ids=torch.tensor([full])).logits[0, :-1], dim=-1)
    picked = logprobs.gather(-1, torch.tensor(full[1:])[:, None])[:, 0]
    expected = float(picked[len(prefix) - 1 : end - 1].sum())
    assert reply_logprobs(policy, chat_tokenizer, [prompt], [reply]) == [pytest.approx(expected, abs=1e-4)]
