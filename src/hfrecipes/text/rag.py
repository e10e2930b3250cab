"""Retrieval-augmented generation on top of `hfrecipes.text.retrieval`: the prompt (numbered passages, then the
question), the generator's training rows (retrieved context, counterfactual copies, abstentions, closed-book
rows) and the held-out scoring of closed-book vs with-retrieval answers (exact match, abstention and
hallucination rate)."""

from __future__ import annotations

import re
from collections.abc import Sequence, Sized
from pathlib import Path
from typing import Any

import datasets
import numpy as np

from hfrecipes.core.data_report import DataReport
from hfrecipes.core.errors import RecipeInputError
from hfrecipes.text.evaluation import generate_replies, normalize_answer
from hfrecipes.text.retrieval import RetrievalIndex, check_k

UNKNOWN = "unknown"  # what a RAG model is taught to say when its context does not hold the answer


def rag_prompt(question: str, passages: Sequence[str] | None) -> str:
    """The user turn: numbered passages (or "(none)" closed-book), then the question."""
    context = "\n".join(f"[{i}] {p}" for i, p in enumerate(passages, start=1)) if passages else "(none)"
    return f"Context:\n{context}\n\nQuestion: {question}"


def check_top_k(top_k: int, passages: Sized) -> None:
    """Refuse a `top_k` larger than the corpus's passage count, before anything is indexed."""
    if top_k > len(passages):
        raise RecipeInputError(
            f"top_k={top_k} but the corpus has only {len(passages)} passages: lower top_k or index more text."
        )


def contexts_for(
    index: RetrievalIndex,
    questions: Sequence[str],
    k: int,
    exclude: set[int] | None = None,
    drop: Sequence[set[int]] | None = None,
) -> list[list[int]]:
    """Top-k passage ids per question, skipping `exclude` (e.g. passages about held-out facts, kept out of
    training prompts) and, per question, `drop[i]` (its relevant passages: an abstention example)."""
    check_k(k, len(index))
    banned = [set(exclude or ()) | (set(drop[i]) if drop else set()) for i in range(len(questions))]
    depth = min(len(index), k + max((len(b) for b in banned), default=0))
    ids, _ = index.search(questions, depth)
    return [[p for p in ranked if p not in ban][:k] for ranked, ban in zip(ids, banned, strict=True)]


def substitute_answer(text: str, answer: str, replacement: str) -> str:
    """`text` with every whole-word occurrence of `answer` replaced (a counterfactual passage)."""
    return re.sub(rf"(?<!\w){re.escape(answer)}(?!\w)", lambda _: replacement, text)


def rag_training_rows(
    questions: Sequence[str],
    answers: Sequence[str],
    index: RetrievalIndex,
    relevant: Sequence[set[int]],
    *,
    k: int,
    exclude: set[int],
    unknown_fraction: float,
    closed_book_fraction: float,
    counterfactuals: int = 0,
    kinds: Sequence[str] | None = None,
    seed: int,
    report: DataReport | None = None,
) -> datasets.Dataset:
    """Conversational prompt/completion rows for the generator (`row_kind` says which sort):

    - rag: each question with its retrieved context -> the answer when a relevant passage is in it, else UNKNOWN;
    - counterfactual: `counterfactuals` copies per question whose context holds the answer, with the answer
      replaced in its relevant passages (and the question) by another answer of the same kind (`kinds`, else
      any): memorising facts cannot solve these, only reading the context can (counterfactual augmentation, as
      in Longpre et al. 2021), which is what makes a small model learn to copy from its passages;
    - abstain: a seeded `unknown_fraction` of questions with their relevant passages removed -> UNKNOWN;
    - closed_book: a seeded `closed_book_fraction` with no context -> the answer (the closed-book habit the
      evaluation compares against).
    Passages in `exclude` (those of held-out facts) never appear. The counts per sort go into `report`."""
    for name, value in (
        ("unknown_fraction", unknown_fraction),
        ("closed_book_fraction", closed_book_fraction),
    ):
        if not 0 <= value <= 1:
            raise RecipeInputError(f"{name} must be between 0 and 1, got {value}.")
    if counterfactuals < 0:
        raise RecipeInputError(f"counterfactuals must be >= 0, got {counterfactuals}.")
    rng = np.random.default_rng(seed)
    texts = index.texts
    contexts = contexts_for(index, questions, k, exclude)
    rows = []
    for question, answer, context, rel in zip(questions, answers, contexts, relevant, strict=True):
        target = answer if set(context) & rel else UNKNOWN
        rows.append((rag_prompt(question, [texts[p] for p in context]), target, "rag"))
    kinds = list(kinds) if kinds is not None else [""] * len(answers)
    pools: dict[str, list[str]] = {}
    for kind, answer in zip(kinds, answers, strict=True):
        pools.setdefault(kind, [])
        if answer not in pools[kind]:
            pools[kind].append(answer)
    for _ in range(counterfactuals):
        for question, answer, context, rel, kind in zip(
            questions, answers, contexts, relevant, kinds, strict=True
        ):
            others = [a for a in pools[kind] if a != answer]
            if not set(context) & rel or not others:
                continue
            new = others[int(rng.integers(len(others)))]
            passages = [substitute_answer(texts[p], answer, new) if p in rel else texts[p] for p in context]
            rows.append(
                (rag_prompt(substitute_answer(question, answer, new), passages), new, "counterfactual")
            )
    with_abstain = np.flatnonzero(rng.random(len(questions)) < unknown_fraction).tolist()
    if with_abstain:
        dropped = [relevant[i] for i in with_abstain]
        abstain_contexts = contexts_for(index, [questions[i] for i in with_abstain], k, exclude, dropped)
        for i, context in zip(with_abstain, abstain_contexts, strict=True):
            rows.append((rag_prompt(questions[i], [texts[p] for p in context]), UNKNOWN, "abstain"))
    closed = np.flatnonzero(rng.random(len(questions)) < closed_book_fraction).tolist()
    rows.extend((rag_prompt(questions[i], None), answers[i], "closed_book") for i in closed)
    order = rng.permutation(len(rows))
    if report is not None:
        counts = {
            kind: sum(row[2] == kind for row in rows)
            for kind in ("rag", "counterfactual", "abstain", "closed_book")
        }
        report.add("rag_rows", rows_in=len(questions), rows_out=len(rows), removed=0, details=counts)
    return datasets.Dataset.from_list(
        [
            {
                "prompt": [{"role": "user", "content": rows[i][0]}],
                "completion": [{"role": "assistant", "content": rows[i][1]}],
                "row_kind": rows[i][2],
            }
            for i in order
        ]
    )


def rows_text(rows: datasets.Dataset) -> list[str]:
    """The text of prompt/completion rows, chat roles included, for training a tokenizer on."""
    return [
        f"user\n{prompt[0]['content']}\nassistant\n{completion[0]['content']}"
        for prompt, completion in zip(rows["prompt"], rows["completion"], strict=True)
    ]


def answer_metrics(replies: Sequence[str], answers: Sequence[str], prefix: str = "") -> dict[str, float]:
    """Exact match (after `normalize_answer`), abstention (the reply is UNKNOWN) and hallucination rate (a
    wrong answer given without abstaining: confidently wrong)."""
    if len(replies) != len(answers) or not answers:
        raise RecipeInputError(f"Need one reply per answer, got {len(replies)} and {len(answers)}.")
    right = [normalize_answer(r) == normalize_answer(a) for r, a in zip(replies, answers, strict=True)]
    abstained = [normalize_answer(r) == UNKNOWN for r in replies]
    n = len(answers)
    return {
        f"{prefix}exact_match": sum(right) / n,
        f"{prefix}abstain_rate": sum(abstained) / n,
        f"{prefix}hallucination_rate": sum(not r and not a for r, a in zip(right, abstained, strict=True))
        / n,
    }


def column(dataset: datasets.Dataset, name: str) -> list[str]:
    """A dataset column as strings (answers and evidence may be stored as numbers)."""
    return [str(value) for value in dataset[name]]


def check_prompt_length(tokenizer: Any, prompts: Sequence[str], max_new_tokens: int, limit: int) -> None:
    """Refuse RAG prompts (as user turns under the chat template) that leave no room to answer."""
    rendered = tokenizer.apply_chat_template(
        [[{"role": "user", "content": p}] for p in prompts], add_generation_prompt=True, tokenize=False
    )
    longest = max(len(ids) for ids in tokenizer(rendered, add_special_tokens=False)["input_ids"])
    if longest + max_new_tokens > limit:
        raise RecipeInputError(
            f"A retrieval prompt has {longest} tokens; with {max_new_tokens} new tokens it exceeds the generator's "
            f"context of {limit}. Lower top_k or chunk_max_words."
        )


def answer_all(model: Any, tokenizer: Any, prompts: Sequence[str], max_new_tokens: int) -> list[str]:
    """Greedy replies to each prompt as one user turn."""
    conversations = [[{"role": "user", "content": p}] for p in prompts]
    return generate_replies(model, tokenizer, conversations, max_new_tokens=max_new_tokens, batch_size=32)


def evaluation_prompts(index: RetrievalIndex, questions: Sequence[str], k: int) -> dict[str, list[str]]:
    """The two conditions compared on held-out questions: with the top-k passages ("rag"), without any."""
    contexts = contexts_for(index, questions, k)
    texts = index.texts
    return {
        "rag": [rag_prompt(q, [texts[p] for p in c]) for q, c in zip(questions, contexts, strict=True)],
        "closed_book": [rag_prompt(q, None) for q in questions],
    }


def evaluate_rag(
    model: Any,
    tokenizer: Any,
    prompts: dict[str, list[str]],
    questions: Sequence[str],
    answers: Sequence[str],
    max_new_tokens: int,
    num_samples: int = 20,
) -> tuple[dict[str, float], list[dict[str, str]]]:
    """answer_metrics per condition of `prompts` (keys become metric prefixes), the exact-match gain of "rag"
    over "closed_book", and the first `num_samples` questions with every condition's reply."""
    replies = {name: answer_all(model, tokenizer, p, max_new_tokens) for name, p in prompts.items()}
    metrics: dict[str, float] = {}
    for name, texts in replies.items():
        metrics.update(answer_metrics(texts, answers, prefix=f"{name}_"))
    if {"rag", "closed_book"} <= set(replies):
        metrics["rag_gain_exact_match"] = metrics["rag_exact_match"] - metrics["closed_book_exact_match"]
    samples = [
        {
            "question": q,
            "answer": a,
            **{name: r[i] for name, r in replies.items()},
            "context": prompts["rag"][i],
        }
        for i, (q, a) in enumerate(zip(questions[:num_samples], answers[:num_samples], strict=True))
    ]
    return metrics, samples


def rag_usage(output_dir: str | Path, top_k: int) -> str:
    """The model card's usage snippet: retrieve from the saved index, prompt, generate."""
    return (
        "from transformers import pipeline\nfrom hfrecipes.text.rag import rag_prompt\n"
        "from hfrecipes.text.retrieval import RetrievalIndex\n\n"
        f'index = RetrievalIndex.load("{output_dir}/index")\nquestion = "How many parameters does `textwrap.wrap` take?"\n'
        f"ids, _ = index.search([question], k={top_k})\n"
        "prompt = rag_prompt(question, [index.texts[i] for i in ids[0]])\n"
        f'chat = pipeline("text-generation", model="{output_dir}")\n'
        'print(chat([{"role": "user", "content": prompt}], max_new_tokens=12)[0]["generated_text"][-1])'
    )
