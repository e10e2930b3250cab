"""Preference and post-training data generated on the machine: a chat mix for SFT (arithmetic + safety), preference
pairs built from the same generators, and "AI feedback" pairs sampled from a model and labelled by a scorer."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

import datasets

from hfrecipes.builtins.bias import people_stories
from hfrecipes.builtins.instructions import arithmetic, chat_messages
from hfrecipes.builtins.options import fraction_option, int_option
from hfrecipes.builtins.safety import BENIGN_PAIRS, REFUSAL_OPENERS, safety, unanswerable
from hfrecipes.core.errors import RecipeInputError

# Columns every generated row carries, so arithmetic and safety rows share one schema. An empty string means
# "not applicable": `answer` only for arithmetic, `label` (harmful/benign) only for safety.
_SHARED = ("answer", "label", "category", "domain")


def _shared_columns(row: dict[str, Any]) -> dict[str, str]:
    return {key: str(row.get(key) or "") for key in _SHARED}


def chat_mix(
    arithmetic_rows: int | str = 3000,
    safety_rows: int | str = 600,
    digits: int | str = 1,
    seed: int | str = 0,
    unhelpful_fraction: float | str = 0.0,
    ops: str = "add,sub,mul",
    unanswerable_rows: int | str = 0,
    benign_fraction: float | str = 0.5,
    people_rows: int | str = 0,
    people_skew: float | str = 0.9,
    phrasing: str = "fixed",
    style: str = "short",
) -> datasets.Dataset:
    """SFT conversations that teach two things at once: verifiable arithmetic (`answer`) and refusing harmful
    requests while still answering their benign look-alikes (`label`); with `unanswerable_rows`, also
    abstaining on questions about facts never given (label "unanswerable"); `benign_fraction` of the safety
    rows are look-alikes to answer. `people_rows` asks for short texts about people, answered from
    `builtin:people-stories` with its stereotype `people_skew` (real demonstrations carry one;
    `counterfactual_augment` is the mitigation). `phrasing` is `builtin:arithmetic`'s (fixed or varied
    wordings). Columns: messages, prompt, answer,
    label, category, domain; shuffled with `seed`.

    `unhelpful_fraction` replaces that share of the arithmetic replies with unhelpful or off-topic ones, the way
    real demonstration data is noisy: the model picks the habit up in SFT, and preference tuning (whose
    pairs reject exactly those replies) has something visible to remove."""
    seed = int_option("chat-mix", "seed", seed, 0)
    noise = fraction_option("chat-mix", "unhelpful_fraction", unhelpful_fraction)
    noise_rng = random.Random(seed + 17)
    parts = []
    if int_option("chat-mix", "arithmetic_rows", arithmetic_rows, 0):
        parts.append(
            arithmetic(n=arithmetic_rows, seed=seed, digits=digits, ops=ops, phrasing=phrasing, style=style)
        )
    if int_option("chat-mix", "safety_rows", safety_rows, 0):
        parts.append(safety(n=safety_rows, seed=seed + 1, benign_fraction=benign_fraction))
    if int_option("chat-mix", "unanswerable_rows", unanswerable_rows, 0):
        parts.append(unanswerable(n=unanswerable_rows, seed=seed + 2))
    if int_option("chat-mix", "people_rows", people_rows, 0):
        parts.append(_people_requests(int(people_rows), people_skew, seed + 3))
    if not parts:
        raise RecipeInputError("builtin:chat-mix: every row count is 0; ask for rows.")
    rows = [
        {"messages": row["messages"], "prompt": row["prompt"], **_shared_columns(row)}
        for part in parts
        for row in part
    ]
    for row in rows:
        if row["answer"] and noise and noise_rng.random() < noise:
            reply = noise_rng.choice(UNHELPFUL_REPLIES + OFF_TOPIC_REPLIES)
            row["messages"] = [*row["messages"][:-1], {"role": "assistant", "content": reply}]
    random.Random(seed).shuffle(rows)
    return datasets.Dataset.from_list(rows)


PEOPLE_REQUESTS = (
    "Write a few sentences about the people in my town.",
    "Tell me a short story about some neighbours.",
    "Describe a few people you might meet in a city.",
    "Write three sentences about people at work.",
)


def _people_requests(n: int, skew: float | str, seed: int) -> datasets.Dataset:
    rng = random.Random(seed)
    stories = people_stories(n=n, sentences=3, skew=skew, seed=seed)["text"]
    rows = []
    for story in stories:
        prompt = rng.choice(PEOPLE_REQUESTS)
        messages = chat_messages(prompt, story, system_prompt=None)
        rows.append({"messages": messages, "prompt": prompt, "category": "people", "domain": "people"})
    return datasets.Dataset.from_list(rows)


# --- builtin:preferences ------------------------------------------------------------------------------------

UNHELPFUL_REPLIES = ("I don't know.", "Maybe.", "That is hard to say.", "Numbers are not my thing.")
OFF_TOPIC_REPLIES = (
    "Numbers have fascinated people for thousands of years, from the abacus to modern computers, and many "
    "cultures wrote them in different ways.",
    "Mathematics is a big subject with many branches, such as algebra, geometry and statistics, and each has "
    "its own history.",
    "Some people like to do sums in their head while others prefer paper, and both are fine ways to work.",
)
# Compliance is written without any operational content: the rejected side only has to *look* compliant.
UNSAFE_COMPLIANCE = (
    "Sure! Here is exactly what you asked for. Step one: get everything ready. Step two: do it when nobody "
    "is watching.",
    "Of course, happy to help with that. Just follow these steps and make sure nobody finds out.",
    "Absolutely. Here's a plan: start tonight, keep it secret, and don't tell anyone what you are doing.",
)
COMPLIANCE_KINDS = ("scripted", "mixed")
REJECTION_KINDS = ("wrong_answer", "unhelpful", "off_topic", "over_refusal", "unsafe_compliance")


def _wrong_answer(answer: str, rng: random.Random) -> str:
    value = int(answer)
    return str(value + rng.choice([-3, -2, -1, 1, 2, 3, 10, -10]))


def _arithmetic_pair(row: dict[str, Any], rng: random.Random) -> tuple[str, str]:
    kind = rng.choices(("wrong_answer", "unhelpful", "off_topic", "over_refusal"), weights=(5, 2, 2, 1))[0]
    if kind == "wrong_answer":
        wrong = _wrong_answer(row["answer"], rng)
        equation, worked, _ = row["messages"][-1]["content"].rpartition(" = ")
        return (f"{equation} = {wrong}. " if worked else "") + f"The answer is {wrong}.", kind
    if kind == "unhelpful":
        return rng.choice(UNHELPFUL_REPLIES), kind
    if kind == "off_topic":
        return rng.choice(OFF_TOPIC_REPLIES), kind
    return rng.choice(REFUSAL_OPENERS), kind


def preferences(
    n: int | str = 2000,
    safety_fraction: float | str = 0.3,
    digits: int | str = 1,
    seed: int | str = 0,
    ops: str = "add,sub,mul",
    phrasing: str = "fixed",
    style: str = "short",
    benign_fraction: float | str = 0.5,
    compliance: str = "scripted",
) -> datasets.Dataset:
    """Conversational preference pairs (TRL's prompt/chosen/rejected message lists) from the synthetic sets:
    chosen = the correct, helpful or safe reply; rejected = a wrong answer, an unhelpful or off-topic reply,
    an over-refusal of a harmless request, or compliance with a harmful one. Also: answer, label, category,
    domain and `rejection` (which kind of bad reply it is), for evaluation and reward functions. `phrasing` and
    `style` are `builtin:arithmetic`'s: a wrong answer in the worked style is wrong in the equation too.
    `benign_fraction` of the safety pairs are look-alikes whose rejected reply is a refusal. `compliance`
    "scripted" rejects harmful requests' compliance as one of UNSAFE_COMPLIANCE; "mixed" uses, half the time, a
    helpful reply of the same category instead: what an over-helpful policy really says (a DPO that only ever
    saw the scripted ones answered held-out harmful requests with look-alike help)."""
    n = int_option("preferences", "n", n, 1)
    seed = int_option("preferences", "seed", seed, 0)
    share = fraction_option("preferences", "safety_fraction", safety_fraction)
    if compliance not in COMPLIANCE_KINDS:
        raise RecipeInputError(
            f"builtin:preferences: compliance must be scripted or mixed, got {compliance!r}."
        )
    safety_rows = round(n * share)
    rng = random.Random(seed)
    rows = []
    if n - safety_rows:
        arithmetic_rows = arithmetic(
            n=n - safety_rows, seed=seed + 2, digits=digits, ops=ops, phrasing=phrasing, style=style
        )
        for row in arithmetic_rows:
            rejected, kind = _arithmetic_pair(row, rng)
            rows.append(_pair(row, row["messages"][-1]["content"], rejected, kind))
    if safety_rows:
        for row in safety(n=safety_rows, seed=seed + 3, benign_fraction=benign_fraction):
            chosen = row["messages"][-1]["content"]
            if row["label"] == "harmful":
                rejected = rng.choice(UNSAFE_COMPLIANCE)
                if compliance == "mixed" and rng.random() < 0.5:
                    rejected = rng.choice(BENIGN_PAIRS[row["category"]])[1]
                rows.append(_pair(row, chosen, rejected, "unsafe_compliance"))
            else:
                rows.append(_pair(row, chosen, rng.choice(REFUSAL_OPENERS), "over_refusal"))
    rng.shuffle(rows)
    return datasets.Dataset.from_list(rows)


def _pair(row: dict[str, Any], chosen: str, rejected: str, kind: str) -> dict[str, Any]:
    return {
        "prompt": [{"role": "user", "content": row["prompt"]}],
        "chosen": [{"role": "assistant", "content": chosen}],
        "rejected": [{"role": "assistant", "content": rejected}],
        **_shared_columns(row),
        "rejection": kind,
    }


# --- AI feedback ---------------------------------------------------------------------------------------------

Scorer = Callable[..., list[float]]


def ai_feedback_pairs(
    rows: datasets.Dataset,
    sample_replies: Callable[[list[list[dict[str, str]]], int], list[str]],
    scorer: Scorer,
    min_margin: float = 1e-6,
) -> tuple[datasets.Dataset, dict[str, int]]:
    """Preference pairs labelled by a scorer instead of people (RLAIF): two sampled replies per prompt, the
    higher-scored one is `chosen`. Pairs the scorer cannot separate by `min_margin` or whose replies are
    identical are dropped (and counted), because a tie teaches the policy nothing.

    `sample_replies(prompts, seed)` returns one sampled reply per prompt; `scorer(prompts, completions,
    **columns)` returns a score per reply (hfrecipes.text.rewards.combined_scorer: reward functions / a reward model)."""
    if "prompt" not in rows.column_names:
        raise RecipeInputError(f"AI-feedback pairs need a `prompt` column; the data has {rows.column_names}.")
    prompts = [p if isinstance(p, list) else [{"role": "user", "content": p}] for p in rows["prompt"]]
    extras = rows.to_list()
    first, second = sample_replies(prompts, 0), sample_replies(prompts, 1)
    columns = {c: rows[c] for c in rows.column_names if c != "prompt"}
    first_scores = scorer(prompts=prompts, completions=first, **columns)
    second_scores = scorer(prompts=prompts, completions=second, **columns)
    pairs, dropped = [], {"identical": 0, "tied": 0}
    for prompt, extra, a, b, score_a, score_b in zip(
        prompts, extras, first, second, first_scores, second_scores, strict=True
    ):
        if a.strip() == b.strip():
            dropped["identical"] += 1
            continue
        if abs(score_a - score_b) < min_margin:
            dropped["tied"] += 1
            continue
        chosen, rejected = (a, b) if score_a > score_b else (b, a)
        pairs.append(
            {
                "prompt": prompt,
                "chosen": [{"role": "assistant", "content": chosen}],
                "rejected": [{"role": "assistant", "content": rejected}],
                **_shared_columns(extra),
                "rejection": "ai_feedback",
            }
        )
    if not pairs:
        raise RecipeInputError(
            f"AI feedback produced no usable pairs from {len(prompts)} prompts ({dropped}): the model's two "
            "samples were identical or tied. Raise the sampling temperature or use a scorer that separates them."
        )
    return datasets.Dataset.from_list(pairs), dropped


def as_preference_rows(dataset: datasets.Dataset, columns: Sequence[str] = ("prompt", "chosen", "rejected")):
    """Only the columns the preference trainers read (extra string columns confuse TRL's format detection)."""
    return dataset.select_columns(list(columns))
