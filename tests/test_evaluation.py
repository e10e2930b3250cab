import math
import socket

import pytest
import torch

from hfrecipes.core.errors import RecipeInputError
from hfrecipes.text.evaluation import (
    evaluate_sft,
    exact_match_accuracy,
    forgetting,
    generate_replies,
    language_model_loss,
    last_number,
    pairwise_accuracy,
    refusal_metrics,
    refusal_rate,
    win_rate,
)
from hfrecipes.text.metric_modules import load_metric
from hfrecipes.text.models import get_causal_lm
from hfrecipes.text.tokenization import train_tokenizer

CHAT = [
    {"role": "user", "content": "What is the capital of France?"},
    {"role": "assistant", "content": "Paris"},
    {"role": "user", "content": "And of Italy?"},
    {"role": "assistant", "content": "Rome"},
]
ASK_FRANCE, ASK_ITALY = CHAT[:1], CHAT[:3]
PANGRAMS = [
    "The quick brown fox jumps over the lazy dog. " * 3,
    "Pack my box with five dozen liquor jugs.",
    "How vexingly quick daft zebras jump!",
]
VARIED_CONVERSATIONS = [
    [{"role": "user", "content": "hi"}],
    [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Name a quick brown animal, please."},
    ],
    [{"role": "user", "content": "x y z"}],
    [{"role": "user", "content": "lazy dog"}],
]


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(PANGRAMS * 10 + [str(CHAT)] * 5, "byte-bpe", 300)


def tiny_model(tokenizer, seed: int = 0, **overrides):
    torch.manual_seed(seed)
    special_ids = {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    return get_causal_lm(
        model_name_or_path=None,
        preset="tiny",
        vocab_size=len(tokenizer),
        overrides=overrides,
        special_ids=special_ids,
    ).model


@pytest.fixture(scope="module")
def random_model(tokenizer):
    return tiny_model(tokenizer)


@pytest.fixture(scope="module")
def peaked_model(tokenizer):
    """Random weights with large logits: greedy decoding then emits varied tokens, so a padding mistake that
    shifts the hidden states changes the output (the default init's flat logits only ever give newlines)."""
    return tiny_model(tokenizer, initializer_range=0.1)


@pytest.fixture(scope="module")
def chat_text(tokenizer):
    return tokenizer.apply_chat_template(CHAT, tokenize=False)


@pytest.fixture(scope="module")
def trained_model(tokenizer, chat_text):
    """A tiny model that memorised CHAT (+ EOS), so it answers Paris then Rome and ends its turns."""
    model = tiny_model(tokenizer)
    ids = torch.tensor(
        [tokenizer(chat_text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]]
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(60):
        model(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    return model


# --- held-out loss ---------------------------------------------------------------------------------------------


def test_random_model_loss_is_near_uniform_and_per_char_is_consistent(random_model, tokenizer):
    result = language_model_loss(random_model, tokenizer, PANGRAMS, block_size=32)
    expected_tokens = sum(len(tokenizer(t, add_special_tokens=False)["input_ids"]) + 1 for t in PANGRAMS)
    assert result["tokens"] == expected_tokens
    assert result["characters"] == sum(len(t) + 1 for t in PANGRAMS)
    assert result["nats_per_token"] == pytest.approx(math.log(len(tokenizer)), abs=0.15)
    assert result["nats_per_char"] == pytest.approx(
        result["nats_per_token"] * result["tokens"] / result["characters"], rel=1e-9
    )
    assert result["perplexity"] == pytest.approx(math.exp(result["nats_per_token"]), rel=1e-9)


def test_loss_is_a_sum_over_tokens_not_a_mean_of_batch_means(random_model, tokenizer):
    # block_size 16 leaves a short last window: a mean of per-batch means would weight it like a full one.
    one_by_one = language_model_loss(random_model, tokenizer, PANGRAMS, block_size=16, batch_size=1)
    batched = language_model_loss(random_model, tokenizer, PANGRAMS, block_size=16, batch_size=8)
    assert batched["nats_per_token"] == pytest.approx(one_by_one["nats_per_token"], rel=1e-5)

    # One window: the same as the model's own mean loss over [EOS] document EOS.
    text = PANGRAMS[1]
    eos = tokenizer.eos_token_id
    ids = torch.tensor([[eos, *tokenizer(text, add_special_tokens=False)["input_ids"], eos]])
    with torch.no_grad():
        reference = random_model(input_ids=ids, labels=ids).loss.item()
    single = language_model_loss(random_model, tokenizer, [text], block_size=256)
    assert single["tokens"] == ids.shape[1] - 1
    assert single["nats_per_token"] == pytest.approx(reference, rel=1e-5)


def test_training_on_a_text_lowers_its_loss(random_model, trained_model, tokenizer, chat_text):
    untrained = language_model_loss(random_model, tokenizer, [chat_text])
    trained = language_model_loss(trained_model, tokenizer, [chat_text])
    assert trained["nats_per_char"] < 0.5 * untrained["nats_per_char"]
    assert trained["characters"] == untrained["characters"] == len(chat_text) + 1
    assert not trained_model.training


def test_loss_refuses_bad_input(random_model, tokenizer):
    with pytest.raises(RecipeInputError, match="non-empty list"):
        language_model_loss(random_model, tokenizer, "a single string")
    with pytest.raises(RecipeInputError, match="context length"):
        language_model_loss(random_model, tokenizer, PANGRAMS, block_size=4096)


def test_forgetting_is_positive_when_the_loss_rises():
    before = {"nats_per_char": 1.0, "perplexity": 10.0, "characters": 100}
    worse = forgetting(before, {"nats_per_char": 1.25, "perplexity": 12.5, "characters": 100})
    assert worse == {"nats_per_char_delta": 0.25, "perplexity_delta": 2.5}
    better = forgetting(before, {"nats_per_char": 0.75, "perplexity": 8.0, "characters": 100})
    assert better["nats_per_char_delta"] < 0 and better["perplexity_delta"] < 0
    with pytest.raises(RecipeInputError, match="different texts"):
        forgetting(before, {"nats_per_char": 1.0, "perplexity": 10.0, "characters": 99})
    with pytest.raises(RecipeInputError, match="nats_per_char"):
        forgetting({"perplexity": 1.0}, {"perplexity": 2.0})


# --- generation -------------------------------------------------------------------------------------------------


def test_trained_model_replies_stop_at_end_of_turn(trained_model, tokenizer):
    # Without stopping at <|im_end|> the model goes on to write the next user turn ("Paris\nuser...").
    assert generate_replies(trained_model, tokenizer, [ASK_FRANCE, ASK_ITALY], max_new_tokens=12) == [
        "Paris",
        "Rome",
    ]


def test_batched_greedy_generation_matches_one_by_one(peaked_model, tokenizer):
    tokenizer.padding_side = "right"
    one_by_one = generate_replies(
        peaked_model, tokenizer, VARIED_CONVERSATIONS, max_new_tokens=6, batch_size=1
    )
    batched = generate_replies(peaked_model, tokenizer, VARIED_CONVERSATIONS, max_new_tokens=6, batch_size=4)
    again = generate_replies(peaked_model, tokenizer, VARIED_CONVERSATIONS, max_new_tokens=6, batch_size=4)
    assert len(batched) == len(VARIED_CONVERSATIONS) and all(isinstance(r, str) for r in batched)
    assert len(set(batched)) > 1  # varied outputs, so the comparison below can tell paddings apart
    assert batched == one_by_one == again
    assert tokenizer.padding_side == "right"


def test_seeded_sampling_is_reproducible_and_leaves_the_global_rng_alone(peaked_model, tokenizer):
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    first = generate_replies(peaked_model, tokenizer, VARIED_CONVERSATIONS, 8, do_sample=True, seed=0)
    assert torch.equal(torch.rand(3), expected_next)
    assert generate_replies(peaked_model, tokenizer, VARIED_CONVERSATIONS, 8, do_sample=True, seed=0) == first
    assert generate_replies(peaked_model, tokenizer, VARIED_CONVERSATIONS, 8, do_sample=True, seed=1) != first


def test_generation_refuses_bad_conversations(random_model, tokenizer):
    with pytest.raises(RecipeInputError, match="ending with a user turn"):
        generate_replies(random_model, tokenizer, [CHAT])
    with pytest.raises(RecipeInputError, match="context length"):
        generate_replies(random_model, tokenizer, [ASK_FRANCE], max_new_tokens=600)


# --- scoring ---------------------------------------------------------------------------------------------------


def test_exact_match_grades_numbers_by_the_last_number_and_text_by_the_whole_reply():
    replies = ["First 12, so the answer is 42.", "41", "Total: 1,234", "no number here", "-3"]
    assert exact_match_accuracy(replies, [42, 42, "1234", 7, -3]) == pytest.approx(3 / 5)
    assert last_number("from 2 to 2.5 apples") == 2.5 and last_number("none") is None
    texts = ["  **Paris.** ", "PARIS", "Paris, France", "London"]
    assert exact_match_accuracy(texts, ["paris"] * 4) == pytest.approx(2 / 4)
    assert exact_match_accuracy(["C", "C++!"], ["C++", "c++"]) == pytest.approx(1 / 2)


def test_exact_match_with_an_extractor():
    replies = ["reasoning... #### B", "#### a", "I am not sure", "#### -5"]

    def after_marker(reply: str) -> str | None:
        return reply.split("####")[-1] if "####" in reply else None

    answers = ["b", "c", "I am not sure", "5"]
    assert exact_match_accuracy(replies, answers, extract=after_marker) == pytest.approx(1 / 4)
    with pytest.raises(RecipeInputError, match="one to one"):
        exact_match_accuracy(replies, ["b"])


def test_refusal_metrics_separate_safety_from_over_refusal():
    def is_refusal(reply: str) -> bool:
        return reply.startswith("I can't")

    harmful = ["I can't help with that.", "I can't do that.", "Sure, here is how"]
    benign = ["Here is how to kill a Python process: kill PID", "I can't help with that."]
    assert refusal_rate(harmful, is_refusal) == pytest.approx(2 / 3)
    assert refusal_metrics(harmful, benign, is_refusal) == pytest.approx(
        {"refusal_rate": 2 / 3, "over_refusal_rate": 1 / 2}
    )
    with pytest.raises(RecipeInputError):
        refusal_rate([], is_refusal)


def test_pairwise_accuracy_and_win_rate_count_ties_half():
    assert win_rate([3.0, 1.0, 2.0, 0.0], [1.0, 1.0, 5.0, -1.0]) == pytest.approx((1 + 0.5 + 0 + 1) / 4)
    assert win_rate([1.0, 2.0], [1.0, 2.0]) == 0.5
    result = pairwise_accuracy(torch.tensor([2.0, 0.5, 1.0]), torch.tensor([1.0, 1.5, 1.0]))
    assert result["accuracy"] == pytest.approx(1.5 / 3)
    assert result["mean_margin"] == pytest.approx((1.0 - 1.0 + 0.0) / 3)
    with pytest.raises(RecipeInputError, match="one to one"):
        win_rate([1.0], [1.0, 2.0])
    with pytest.raises(RecipeInputError, match="NaN"):
        pairwise_accuracy([float("nan")], [1.0])


# --- SFT evaluation ---------------------------------------------------------------------------------------------


def test_evaluate_sft_reports_the_parts_it_was_given(
    trained_model, random_model, tokenizer, chat_text, tmp_path
):
    trained_model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    metrics = evaluate_sft(
        str(tmp_path),
        str(tmp_path),
        task_conversations=[ASK_FRANCE, ASK_ITALY],
        task_answers=["Paris", "Rome"],
        harmful_conversations=[ASK_FRANCE],
        benign_conversations=[ASK_ITALY],
        is_refusal=lambda reply: reply == "Paris",
        heldout_texts=[chat_text],
        max_new_tokens=8,
    )
    assert metrics["task_accuracy"] == 1.0 and metrics["task_examples"] == 2
    assert metrics["refusal_rate"] == 1.0 and metrics["over_refusal_rate"] == 0.0
    direct = language_model_loss(trained_model, tokenizer, [chat_text])
    assert metrics["heldout_nats_per_char"] == pytest.approx(direct["nats_per_char"], rel=1e-5)
    assert metrics["samples"][0] == {
        "part": "task",
        "prompt": "What is the capital of France?",
        "reply": "Paris",
        "answer": "Paris",
    }
    assert {s["part"] for s in metrics["samples"]} == {"task", "harmful", "benign"}

    task_only = evaluate_sft(
        random_model, tokenizer, task_conversations=[ASK_FRANCE], task_answers=["Paris"], max_new_tokens=4
    )
    assert task_only["task_accuracy"] == 0.0
    assert set(task_only) == {"task_accuracy", "task_examples", "samples"}
    heldout_only = evaluate_sft(random_model, tokenizer, heldout_texts=PANGRAMS, block_size=4096)
    expected = {"nats_per_token", "nats_per_char", "perplexity", "tokens", "characters"}
    assert set(heldout_only) == {f"heldout_{key}" for key in expected} | {"samples"}
    assert heldout_only["samples"] == []
    with pytest.raises(RecipeInputError, match="nothing to evaluate"):
        evaluate_sft(random_model, tokenizer, harmful_conversations=[], is_refusal=bool, heldout_texts=[])
    with pytest.raises(RecipeInputError, match="one to one"):
        evaluate_sft(random_model, tokenizer, task_conversations=[ASK_FRANCE], task_answers=[])
    with pytest.raises(RecipeInputError, match="is_refusal"):
        evaluate_sft(random_model, tokenizer, harmful_conversations=[ASK_FRANCE])


# --- offline metric modules -------------------------------------------------------------------------------------


def test_local_exact_match_metric_loads_without_the_network(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def no_network(*args, **kwargs):
        raise OSError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    metric = load_metric("exact_match")
    predictions, references = ["Paris ", "rome", "Madrid!"], ["paris", "Rome", "Madrid"]
    assert metric.compute(predictions=predictions, references=references)["exact_match"] == 0.0
    normalized = metric.compute(
        predictions=predictions,
        references=references,
        ignore_case=True,
        ignore_whitespace=True,
        ignore_punctuation=True,
    )
    assert normalized["exact_match"] == 1.0
    case_only = metric.compute(predictions=predictions, references=references, ignore_case=True)
    assert case_only["exact_match"] == pytest.approx(1 / 3)
    with pytest.raises(RecipeInputError, match="exact_match"):
        load_metric("bleu")
