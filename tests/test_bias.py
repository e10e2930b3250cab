"""Bias, measured and reduced: the demographic word lists and swap, the counterfactual pairs, the
`counterfactual_augment` step and term counts in the data report, and the probe, including a real mitigation."""

from __future__ import annotations

from collections import Counter

import datasets
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

from hfrecipes.builtins.bias import BIAS_CATEGORIES, STORY_ACTIONS, SUBJECTS, bias_pair_rows, bias_questions
from hfrecipes.builtins.heldout import is_abstention
from hfrecipes.builtins.safety import is_refusal
from hfrecipes.core.data_report import DataReport
from hfrecipes.core.errors import RecipeInputError
from hfrecipes.core.stats import Expectation, Interval
from hfrecipes.data import load_source, parse_pipeline, run_pipeline
from hfrecipes.data.demographics import count_terms, find_terms, swap_terms
from hfrecipes.text.bias import bias_probe, compare_bias
from hfrecipes.text.families import build_family
from hfrecipes.text.models import preset_config, special_token_ids
from hfrecipes.text.tokenization import train_tokenizer

# --- swapping and counting terms ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "swapped"),
    [
        ("He asked his sister about her book.", "She asked her brother about his book."),
        (
            "I saw her. She gave him the keys; the book is his.",
            "I saw him. He gave her the keys; the book is hers.",
        ),
        ("THE MAN and the Woman", "THE WOMAN and the Man"),
        ("John prayed at the church.", "Mohammed prayed at the mosque."),
        ("An old driver and a young one", "A young driver and an old one"),
        ("Lakisha's Quran", "Katie's Bible"),
    ],
)
def test_swap_terms_keeps_case_and_goes_both_ways(text, swapped):
    assert swap_terms(text) == swapped
    assert swap_terms(swapped) == text  # swapping twice gives the text back


def test_swap_terms_respects_word_boundaries_and_context():
    untouched = "The theme of the other shepherd: gold, hence mention, a 5-year-old is 7 years old."
    assert swap_terms(untouched) == untouched
    assert swap_terms("he said john and the mosque", categories=["gender"]) == "she said john and the mosque"
    assert swap_terms("Gave her the keys to her car.") == "Gave him the keys to his car."
    with pytest.raises(RecipeInputError, match="categories"):
        swap_terms("he", categories=["height"])


def test_count_terms_by_group():
    counts = count_terms(
        ["He asked his sister.", "Mohammed and Maria visit the temple; 5 years old", "an old man"]
    )
    assert counts["gender"] == {"male": 3, "female": 1}
    assert counts["name_origin"]["arabic"] == 1 and counts["name_origin"]["hispanic"] == 1
    assert counts["religion"]["hindu"] == 1
    assert counts["age"] == {"young": 0, "old": 1}
    assert find_terms("She met John") == [("She", "gender", "female"), ("John", "name_origin", "anglo")]


# --- the counterfactual pairs -------------------------------------------------------------------------------


def test_bias_pairs_differ_only_in_the_demographic_term():
    pairs = load_source("builtin:bias-pairs")
    categories = set(pairs["category"])
    assert len(pairs) >= 200 and categories == set(BIAS_CATEGORIES)
    assert all(pairs["category"].count(c) >= 40 for c in categories)
    for row in pairs:
        assert row["stereotyped"] == row["prefix_stereotyped"] + row["continuation"]
        assert row["anti_stereotyped"] == row["prefix_anti_stereotyped"] + row["continuation"]
        assert row["stereotyped"] != row["anti_stereotyped"]
        # the swap of the category's terms turns one sentence into the other, and nothing else differs
        assert swap_terms(row["stereotyped"], [row["category"]]) == row["anti_stereotyped"]
        assert not find_terms(row["continuation"])
    assert len(load_source("builtin:bias-pairs?categories=gender,age&n=10&seed=1")) == 10
    with pytest.raises(RecipeInputError, match="categories"):
        load_source("builtin:bias-pairs?categories=height")


def test_bias_questions_differ_only_in_the_demographic_term():
    questions = bias_questions()
    assert set(questions["kind"]) == {"arithmetic", "benign", "harmful"}
    assert set(questions["category"]) == set(BIAS_CATEGORIES)
    for row in questions:
        assert swap_terms(row["question_a"], [row["category"]]) == row["question_b"]
        assert (row["answer"] != "") == (row["kind"] == "arithmetic")
    first = questions[0]  # "My father has 37 books and buys 8 more. ..."
    numbers = [int(word) for word in first["question_a"].split() if word.isdigit()]
    assert first["answer"] == str(sum(numbers))
    assert len(load_source("builtin:bias-questions?categories=religion&arithmetic=2&requests=1")) == 4


# --- the data step and the data report ------------------------------------------------------------------------


def test_counterfactual_augment_adds_swapped_rows_and_reports_counts():
    rows = {"text": ["He fixed the car.", "The sky is blue.", "My mother cooked.", "John went to church."]}
    report = DataReport()
    out = run_pipeline(datasets.Dataset.from_dict(rows), parse_pipeline(["counterfactual_augment"]), report)
    assert out["text"] == [
        *rows["text"],
        "She fixed the car.",
        "My father cooked.",
        "Mohammed went to mosque.",
    ]
    record = report.steps[0]
    assert (record.step, record.rows_in, record.rows_out, record.removed) == (
        "counterfactual_augment",
        4,
        7,
        0,
    )
    assert record.details["rows_with_terms"] == record.details["rows_augmented"] == 3
    assert record.details["term_counts_before"]["gender"] == {"male": 1, "female": 1}
    assert record.details["term_counts_after"]["gender"] == {"male": 2, "female": 2}
    assert report.summary["demographic_terms"]["religion"]["muslim"] == 1  # every pipeline records the counts


def test_counterfactual_augment_options_and_chat_rows():
    messages = [
        [{"role": "user", "content": "What does he do?"}, {"role": "assistant", "content": "He is a nurse."}],
        [{"role": "user", "content": "What is 2 + 2?"}, {"role": "assistant", "content": "4"}],
    ]
    dataset = datasets.Dataset.from_dict({"messages": messages, "domain": ["a", "b"]})
    out = run_pipeline(
        dataset, parse_pipeline([{"counterfactual_augment": {"mode": "replace"}}]), DataReport()
    )
    assert out["messages"][0][1]["content"] == "She is a nurse." and out["messages"][1] == messages[1]
    assert out["domain"] == ["a", "b"]

    texts = datasets.Dataset.from_dict({"text": [f"He wrote note {i}." for i in range(10)]})
    report = DataReport()
    half = parse_pipeline([{"counterfactual_augment": {"fraction": 0.5, "seed": 3}}])
    out = run_pipeline(texts, half, report)
    assert len(out) == 15 and report.steps[0].details["rows_augmented"] == 5
    assert out["text"] == run_pipeline(texts, half, DataReport())["text"]  # seeded
    only_age = parse_pipeline([{"counterfactual_augment": {"categories": ["age"]}}])
    assert len(run_pipeline(texts, only_age, DataReport())) == 10
    for bad in [{"mode": "swap"}, {"fraction": 2.0}, {"categories": ["height"]}]:
        with pytest.raises(RecipeInputError):
            parse_pipeline([{"counterfactual_augment": bad}])

    report = DataReport()
    run_pipeline(texts, parse_pipeline(["count_demographics"]), report)
    assert report.steps[0].details["term_counts"]["gender"] == {"male": 10, "female": 0}


# --- the probe ------------------------------------------------------------------------------------------------


def test_bias_probe_on_a_family_chat_model(tmp_path):
    directory = build_family("qwen2.5", tmp_path / "qwen")
    model = AutoModelForCausalLM.from_pretrained(directory)
    tokenizer = AutoTokenizer.from_pretrained(directory)
    questions = bias_questions(arithmetic=2, requests=1)
    result = bias_probe(model, tokenizer, questions=questions, max_new_tokens=4, resamples=200)
    assert result["pairs"] == len(bias_pair_rows()) and result["question_pairs"] == len(questions)
    low, high = result["bias_score_interval"]
    assert 0.0 <= low <= result["bias_score"] <= high <= 1.0
    assert result["bias_score"] == pytest.approx(abs(2 * result["stereotype_preference"] - 1))
    assert -1.0 <= result["refusal_gap"] <= 1.0 and -1.0 <= result["answer_gap"] <= 1.0
    assert set(result["by_category"]) == set(BIAS_CATEGORIES)
    assert {"bias_score", "refusal_gap", "answer_gap"} <= set(result["by_category"]["gender"])
    assert len(result["items"]["preferences"]) == result["pairs"]

    tokenizer.chat_template = None
    skipped = bias_probe(model, tokenizer, pairs=bias_pair_rows(["age"]), questions=questions, resamples=50)
    assert skipped["questions_skipped"] and "refusal_gap" not in skipped


def _train(texts, tokenizer, steps=100):
    """A tiny Llama trained on `texts` for `steps` steps of 32 sentences (the same seed for every corpus)."""
    torch.manual_seed(0)
    shape = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2}
    config = preset_config("tiny", len(tokenizer), shape, **special_token_ids(tokenizer))
    model = LlamaForCausalLM(config)
    encoded = [
        [tokenizer.bos_token_id, *tokenizer(t, add_special_tokens=False)["input_ids"], tokenizer.eos_token_id]
        for t in texts
    ]
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(steps):
        batch = [encoded[i] for i in torch.randint(len(encoded), (32,), generator=generator).tolist()]
        width = max(map(len, batch))
        ids = torch.full((len(batch), width), tokenizer.pad_token_id)
        labels, mask = torch.full_like(ids, -100), torch.zeros_like(ids)
        for row, tokens in enumerate(batch):
            ids[row, : len(tokens)] = labels[row, : len(tokens)] = torch.tensor(tokens)
            mask[row, : len(tokens)] = 1
        model(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return model.eval()


def test_counterfactual_augmentation_reduces_a_learned_bias():
    pairs = bias_pair_rows()
    stereotyped = datasets.Dataset.from_dict({"text": [row["stereotyped"] for row in pairs]})
    report = DataReport()
    augmented = run_pipeline(stereotyped, parse_pipeline(["counterfactual_augment"]), report)
    assert len(augmented) == 2 * len(stereotyped)
    after_counts = report.steps[0].details["term_counts_after"]["gender"]
    assert after_counts["male"] == after_counts["female"]
    tokenizer = train_tokenizer(augmented["text"], vocab_size=400)

    biased = bias_probe(_train(stereotyped["text"], tokenizer), tokenizer, pairs=pairs, questions=False)
    mitigated = bias_probe(_train(augmented["text"], tokenizer), tokenizer, pairs=pairs, questions=False)
    change = compare_bias(biased, mitigated)
    print(
        f"\nbias_score {change['bias_score_before']:.3f} -> {change['bias_score']:.3f}, difference "
        f"{change['bias_score_difference']:.3f} {change['bias_score_difference_interval']}"
    )
    assert biased["bias_score"] > 0.5 and biased["stereotype_preference"] > 0.75
    assert mitigated["bias_score"] < 0.25 and mitigated["bias_score"] < biased["bias_score"] - 0.3
    assert change["bias_difference_is_real"] and change["bias_score_difference_interval"][1] < 0
    verdict = Expectation("bias_score", "down").judge(
        Interval(mitigated["bias_score"], *mitigated["bias_score_interval"]),
        before=Interval(biased["bias_score"], *biased["bias_score_interval"]),
        difference=Interval(change["bias_score_difference"], *change["bias_score_difference_interval"]),
    )
    assert verdict.passed, verdict.explanation


# Every sentence builtin:people-stories can write -> whether its subject is the group the action stereotypes.
STEREOTYPED = {
    term + action: own == group or (group == "other" and own != "anglo")
    for category, actions in STORY_ACTIONS.items()
    for action, group in actions
    for group_a, term_a, group_b, term_b in SUBJECTS[category]
    for term, own in ((term_a, group_a), (term_b, group_b))
}


def _stereotype_share(texts: list[str]) -> float:
    """Share of the texts' sentences whose subject is the group STORY_ACTIONS says the action is stereotyped of."""
    sentences = [s.rstrip(".") + "." for text in texts for s in text.split(". ")]
    known = [STEREOTYPED[s] for s in sentences if s in STEREOTYPED]
    assert known
    return sum(known) / len(known)


def test_people_stories_carry_the_asked_skew_and_augmentation_balances_it():
    skewed = load_source("builtin:people-stories?n=200&skew=0.9&seed=1")
    assert set(skewed["domain"]) == {"people"} and len(skewed) == 200
    assert 0.85 <= _stereotype_share(skewed["text"]) <= 0.95
    assert 0.42 <= _stereotype_share(load_source("builtin:people-stories?n=200&skew=0.5")["text"]) <= 0.58
    counts = count_terms(skewed["text"])
    assert counts["gender"]["male"] > 0 and counts["religion"]["muslim"] > 0
    chat = load_source("builtin:chat-mix?arithmetic_rows=0&safety_rows=0&people_rows=100&people_skew=1.0")
    assert set(chat["domain"]) == {"people"}
    replies = [m[-1]["content"] for m in chat["messages"]]
    assert _stereotype_share(replies) == 1.0
    augmented = run_pipeline(chat, parse_pipeline(["counterfactual_augment"]), DataReport())
    both = [m[-1]["content"] for m in augmented["messages"]]
    assert len(augmented) == 2 * len(chat) and 0.45 <= _stereotype_share(both) <= 0.55
    with pytest.raises(RecipeInputError, match="skew"):
        load_source("builtin:people-stories?skew=2")


def test_chat_mix_counts_and_labels():
    mix = load_source(
        "builtin:chat-mix?arithmetic_rows=50&safety_rows=100&benign_fraction=0.7&unanswerable_rows=30&people_rows=20"
    )
    labels = Counter(row["label"] or row["domain"] for row in mix)
    assert labels == {"arithmetic": 50, "benign": 70, "harmful": 30, "unanswerable": 30, "people": 20}
    reply = {label: [] for label in labels}
    for messages, label, domain in zip(mix["messages"], mix["label"], mix["domain"], strict=True):
        reply[label or domain].append(messages[-1]["content"])
    assert all(is_abstention(r) and not is_refusal(r) for r in reply["unanswerable"])
    assert all(map(is_refusal, reply["harmful"])) and not any(map(is_refusal, reply["benign"]))
    with pytest.raises(RecipeInputError, match="every row count is 0"):
        load_source("builtin:chat-mix?arithmetic_rows=0&safety_rows=0")
