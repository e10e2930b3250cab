"""Evaluation helpers shared by the SFT, DPO and RL recipes: held-out loss (perplexity, nats per character,
forgetting), batched chat generation, task accuracy, refusal rates, reward-model accuracy and win rates.
The offline `evaluate` metric modules shipped in the package load through `hfrecipes.text.metric_modules`.

Every function takes plain Python lists (or a model and tokenizer) and returns plain floats, so results go
straight into `metrics.json` and the model card. Models run wherever they already are (`model.device`).
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import datasets
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm
from transformers import AutoModelForCausalLM, PreTrainedModel, PreTrainedTokenizerBase

from hfrecipes.core.errors import RecipeInputError
from hfrecipes.data.packing import tokenize_documents
from hfrecipes.text.tokenization import IM_END, load_tokenizer

Conversation = list[dict[str, str]]


# --- models and tokenizers ----------------------------------------------------------------------------------


def _resolve_model(model: PreTrainedModel | str | Path) -> PreTrainedModel:
    """Use a model object where it is; load a saved directory (safetensors only) onto the GPU if there is one."""
    if not isinstance(model, (str, Path)):
        return model
    try:
        loaded = AutoModelForCausalLM.from_pretrained(str(model), use_safetensors=True)
    except OSError as err:
        raise RecipeInputError(f"Could not load a causal LM from {str(model)!r}: {err}") from err
    return loaded.to("cuda") if torch.cuda.is_available() else loaded


def _resolve_tokenizer(tokenizer: PreTrainedTokenizerBase | str | Path) -> PreTrainedTokenizerBase:
    return load_tokenizer(str(tokenizer)) if isinstance(tokenizer, (str, Path)) else tokenizer


def _context_length(model: PreTrainedModel) -> int | None:
    return getattr(model.config, "max_position_embeddings", None)


# --- held-out loss --------------------------------------------------------------------------------------------


def _token_stream(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str]) -> tuple[list[int], int, int]:
    """Documents as one stream `[EOS] doc1 EOS doc2 EOS ...`, the number of tokens to predict, and characters.

    The leading EOS is the document boundary a pretrained model saw before every packed document, so the
    first token of the first document is predicted too: every token that `tokenize_documents` counts (document
    tokens + its EOS) is scored, and nats per character covers every character it counts (len + 1).
    """
    tokenized = tokenize_documents(datasets.Dataset.from_dict({"text": list(texts)}), tokenizer)
    documents = tokenized["input_ids"]
    stream = [tokenizer.eos_token_id]
    for ids in documents:
        stream.extend(ids)
    return stream, len(stream) - 1, sum(tokenized["num_chars"])


@torch.no_grad()
def language_model_loss(
    model: PreTrainedModel | str | Path,
    tokenizer: PreTrainedTokenizerBase | str | Path,
    texts: Sequence[str],
    block_size: int = 256,
    batch_size: int = 8,
) -> dict[str, float | int]:
    """Exact summed negative log-likelihood of `texts` under a causal LM, per token and per character.

    Documents are EOS-terminated and packed into one stream (as in pretraining), cut into windows of at most
    `block_size` tokens that overlap by one token, so each token is predicted exactly once and the total is a
    true sum over tokens (not a mean of per-batch means). Nats per character divides by len(text) + 1 per
    document, the convention of `hfrecipes.data.packing`, so models with different tokenizers compare.

    Returns `nats_per_token`, `nats_per_char`, `perplexity` (per token), `tokens` (predicted) and `characters`.
    """
    if isinstance(texts, str) or not texts:
        raise RecipeInputError("language_model_loss needs a non-empty list of texts (not a single string).")
    if block_size < 2:
        raise RecipeInputError(
            f"block_size must be >= 2 (one context token and one target), got {block_size}."
        )
    if batch_size < 1:
        raise RecipeInputError(f"batch_size must be >= 1, got {batch_size}.")
    model, tokenizer = _resolve_model(model), _resolve_tokenizer(tokenizer)
    limit = _context_length(model)
    if limit is not None and block_size > limit:
        raise RecipeInputError(
            f"block_size={block_size} exceeds the model's context length ({limit}); lower block_size."
        )
    stream, tokens, characters = _token_stream(tokenizer, texts)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    windows = [stream[start : start + block_size] for start in range(0, tokens, block_size - 1)]

    was_training = model.training
    model.eval()
    total_nll = 0.0
    try:
        for first in tqdm(range(0, len(windows), batch_size), desc="held-out loss", leave=False):
            batch = windows[first : first + batch_size]
            width = max(len(w) for w in batch)
            input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
            attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, window in enumerate(batch):
                input_ids[row, : len(window)] = torch.tensor(window)
                attention_mask[row, : len(window)] = 1
            input_ids, attention_mask = input_ids.to(model.device), attention_mask.to(model.device)
            logits = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits
            targets = input_ids[:, 1:].masked_fill(attention_mask[:, 1:] == 0, -100)
            # float32 log-softmax: bf16 logits would round the summed loss.
            nll = F.cross_entropy(
                logits[:, :-1].float().reshape(-1, logits.shape[-1]),
                targets.reshape(-1),
                ignore_index=-100,
                reduction="sum",
            )
            total_nll += nll.item()
    finally:
        model.train(was_training)

    nats_per_token = total_nll / tokens
    return {
        "nats_per_token": nats_per_token,
        "nats_per_char": total_nll / characters,
        "perplexity": math.exp(min(nats_per_token, 50.0)),
        "tokens": tokens,
        "characters": characters,
    }


def forgetting(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """How much worse held-out pretraining text got: `after - before` for nats/char, nats/token, perplexity.

    Sign convention: positive = higher loss after fine-tuning = forgetting; negative = the model improved.
    Both dicts come from `language_model_loss` on the same texts with the same tokenizer (checked through
    `characters` when both carry it). Keys: `<metric>_delta` for every metric present in both.
    """
    if "nats_per_char" not in before or "nats_per_char" not in after:
        raise RecipeInputError(
            "forgetting needs `nats_per_char` in both measurements; pass results of language_model_loss."
        )
    if "characters" in before and "characters" in after and before["characters"] != after["characters"]:
        raise RecipeInputError(
            f"The two measurements cover different texts ({before['characters']} vs {after['characters']} "
            "characters); measure forgetting on the same held-out texts before and after."
        )
    return {
        f"{key}_delta": after[key] - before[key]
        for key in ("nats_per_char", "nats_per_token", "perplexity")
        if key in before and key in after
    }


# --- generation -----------------------------------------------------------------------------------------------


def _check_conversations(conversations: Sequence[Conversation]) -> None:
    for index, conversation in enumerate(conversations):
        if not conversation or not isinstance(conversation, list) or conversation[-1].get("role") != "user":
            raise RecipeInputError(
                f"Conversation {index} must be a non-empty list of messages ending with a user turn "
                f"({{'role': 'user', 'content': ...}}); got {conversation!r:.200}."
            )


def end_of_turn_token_id(tokenizer: PreTrainedTokenizerBase) -> int | None:
    """The special token the chat template writes right after an assistant reply (`<|im_end|>`, `<|eot_id|>`,
    `<end_of_turn>`, `<|end|>`, `</s>` ...), found by rendering one short exchange; None when there is none."""
    reply = "Q7ZX"
    try:
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": "hi"}, {"role": "assistant", "content": reply}], tokenize=False
        )
    except Exception:  # a template that cannot render this exchange (jinja raises many kinds) names no token
        return None
    if not isinstance(text, str) or reply not in text:
        return None
    after = tokenizer(text[text.rindex(reply) + len(reply) :], add_special_tokens=False)["input_ids"]
    special = set(tokenizer.all_special_ids) | set(tokenizer.added_tokens_decoder)
    return after[0] if after and after[0] in special else None


def stop_token_ids(tokenizer: PreTrainedTokenizerBase, model: PreTrainedModel | None = None) -> list[int]:
    """Where a chat reply ends: the tokenizer's EOS, the model's own stop tokens (its generation config, as the
    family's checkpoints ship them), and the template's end-of-turn token. Without the last, a chat model would
    go on to write the next user turn itself."""
    stop = [tokenizer.eos_token_id]
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    stop += configured if isinstance(configured, list) else [configured]
    stop += [end_of_turn_token_id(tokenizer), tokenizer.get_vocab().get(IM_END)]
    return list(dict.fromkeys(token for token in stop if token is not None))


@torch.no_grad()
def generate_replies(
    model: PreTrainedModel | str | Path,
    tokenizer: PreTrainedTokenizerBase | str | Path,
    conversations: Sequence[Conversation],
    max_new_tokens: int = 64,
    batch_size: int = 16,
    do_sample: bool = False,
    seed: int | None = None,
) -> list[str]:
    """The assistant's reply to each conversation (each a list of messages ending with a user turn).

    Prompts are rendered with the tokenizer's chat template (`add_generation_prompt=True`), sorted by length so
    batches carry little padding, left-padded (the tokenizer's `padding_side` is restored afterwards) and
    decoded from the new tokens only. Greedy by default; with `do_sample=True` the model's generation config
    sets temperature/top-k/top-p, and `seed` makes sampling reproducible without touching the global RNG.
    """
    if batch_size < 1 or max_new_tokens < 1:
        raise RecipeInputError(
            f"batch_size and max_new_tokens must be >= 1, got {batch_size} and {max_new_tokens}."
        )
    _check_conversations(conversations)
    if not conversations:
        return []
    model, tokenizer = _resolve_model(model), _resolve_tokenizer(tokenizer)
    if not tokenizer.chat_template:
        raise RecipeInputError(
            "The tokenizer has no chat template; use one trained by hfrecipes (ChatML) or set tokenizer.chat_template."
        )
    if tokenizer.pad_token_id is None or tokenizer.eos_token_id is None:
        raise RecipeInputError(
            "Batched generation needs pad and EOS tokens; set tokenizer.pad_token (e.g. to tokenizer.eos_token)."
        )
    prompts = tokenizer.apply_chat_template(list(conversations), add_generation_prompt=True, tokenize=False)
    # Chat templates write their own BOS where the model wants one; adding special tokens would double it.
    prompt_ids = tokenizer(prompts, add_special_tokens=False)["input_ids"]
    limit = _context_length(model)
    longest = max(len(ids) for ids in prompt_ids)
    if limit is not None and longest + max_new_tokens > limit:
        raise RecipeInputError(
            f"The longest prompt has {longest} tokens; with max_new_tokens={max_new_tokens} it exceeds the "
            f"model's context length ({limit}). Shorten the conversations or lower max_new_tokens."
        )

    order = sorted(range(len(prompts)), key=lambda i: len(prompt_ids[i]), reverse=True)
    replies: list[str] = [""] * len(prompts)
    stop_ids = stop_token_ids(tokenizer, model)
    was_training, padding_side = model.training, tokenizer.padding_side
    model.eval()
    tokenizer.padding_side = "left"  # new tokens must follow each prompt directly, with no padding between
    rng_devices = [model.device] if model.device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=rng_devices, enabled=seed is not None):
            if seed is not None:
                torch.manual_seed(seed)
            for first in tqdm(range(0, len(order), batch_size), desc="generate", leave=False):
                indices = order[first : first + batch_size]
                encoded = tokenizer(
                    [prompts[i] for i in indices], padding=True, add_special_tokens=False, return_tensors="pt"
                ).to(model.device)
                generated = model.generate(
                    **encoded,
                    max_new_tokens=max_new_tokens,
                    do_sample=do_sample,
                    pad_token_id=tokenizer.pad_token_id,
                    eos_token_id=stop_ids,
                )
                new_tokens = generated[:, encoded["input_ids"].shape[1] :]
                for index, text in zip(
                    indices, tokenizer.batch_decode(new_tokens, skip_special_tokens=True), strict=True
                ):
                    replies[index] = text
    finally:
        tokenizer.padding_side = padding_side
        model.train(was_training)
    return replies


# --- scoring replies ------------------------------------------------------------------------------------------

_NUMBER = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?|-?\.\d+")
# Sentence punctuation, quotes, brackets and markdown emphasis around an answer; never signs or "+" ("-5", "C++").
_ANSWER_WRAPPING = ".,;:!?\"'`*_()[]" + string.whitespace


def normalize_answer(text: str) -> str:
    """Casefold, collapse whitespace and strip sentence punctuation, quotes, brackets and markdown emphasis at
    both ends: "  **Paris.** " == "paris", while "-5" != "5" and "C++" != "C"."""
    return " ".join(text.casefold().split()).strip(_ANSWER_WRAPPING)


def last_number(text: str) -> float | None:
    """The last number written in `text` ("1,234" -> 1234.0), or None: how math replies are usually graded."""
    found = _NUMBER.findall(text)
    return float(found[-1].replace(",", "")) if found else None


def _as_number(answer: Any) -> float | None:
    if isinstance(answer, bool):
        return None
    if isinstance(answer, (int, float)):
        return float(answer)
    if isinstance(answer, str) and _NUMBER.fullmatch(answer.strip()):
        return float(answer.strip().replace(",", ""))
    return None


def _default_match(reply: str, answer: Any) -> bool:
    number = _as_number(answer)
    if number is not None:
        found = last_number(reply)
        return found is not None and math.isclose(found, number, rel_tol=1e-9, abs_tol=1e-9)
    return normalize_answer(reply) == normalize_answer(str(answer))


def exact_match_accuracy(
    replies: Sequence[str], answers: Sequence[Any], extract: Callable[[str], str | None] | None = None
) -> float:
    """Fraction of replies that give the reference answer.

    Default rule, per answer: a numeric answer (an int/float, or a string that is a number such as "42" or
    "1,234") matches the last number in the reply ("... so the answer is 42." is right); any other answer
    matches the whole reply after `normalize_answer` (case, whitespace and wrapping punctuation ignored).
    With `extract` (reply -> answer string, or None when the reply has none), the extracted answer is
    compared with the reference, both through `normalize_answer`.
    """
    _check_same_length(replies, answers, "replies", "answers")
    if extract is None:
        correct = sum(_default_match(reply, answer) for reply, answer in zip(replies, answers, strict=True))
    else:
        correct = 0
        for reply, answer in zip(replies, answers, strict=True):
            extracted = extract(reply)
            correct += extracted is not None and normalize_answer(extracted) == normalize_answer(str(answer))
    return correct / len(replies)


def refusal_rate(replies: Sequence[str], is_refusal: Callable[[str], bool]) -> float:
    """Fraction of replies that `is_refusal` calls refusals."""
    if not replies:
        raise RecipeInputError("refusal_rate needs at least one reply.")
    return sum(bool(is_refusal(reply)) for reply in replies) / len(replies)


def refusal_metrics(
    replies_harmful: Sequence[str], replies_benign: Sequence[str], is_refusal: Callable[[str], bool]
) -> dict[str, float]:
    """`refusal_rate` on harmful prompts (higher is safer) and `over_refusal_rate` on benign look-alikes
    (lower is more helpful): a model that refuses everything scores 1.0 on both, which only the pair reveals."""
    return {
        "refusal_rate": refusal_rate(replies_harmful, is_refusal),
        "over_refusal_rate": refusal_rate(replies_benign, is_refusal),
    }


# --- reward models and judged comparisons ---------------------------------------------------------------------


def _check_same_length(
    first: Sequence[Any], second: Sequence[Any], first_name: str, second_name: str
) -> None:
    if len(first) != len(second):
        raise RecipeInputError(
            f"{first_name} and {second_name} must pair up one to one; got {len(first)} and {len(second)}."
        )
    if not len(first):
        raise RecipeInputError(f"Nothing to score: {first_name} and {second_name} are empty.")


def _scores(values: Sequence[float] | torch.Tensor, name: str) -> torch.Tensor:
    scores = torch.as_tensor(values, dtype=torch.float64).flatten().cpu()
    if not torch.isfinite(scores).all():
        raise RecipeInputError(f"{name} contains NaN or infinite scores; check the reward model's outputs.")
    return scores


def win_rate(scores_a: Sequence[float] | torch.Tensor, scores_b: Sequence[float] | torch.Tensor) -> float:
    """Fraction of pairs where A scores higher than B; a tie counts as half a win, so 0.5 means no preference."""
    a, b = _scores(scores_a, "scores_a"), _scores(scores_b, "scores_b")
    _check_same_length(a, b, "scores_a", "scores_b")
    return float(((a > b).double() + 0.5 * (a == b).double()).mean())


def pairwise_accuracy(
    chosen_scores: Sequence[float] | torch.Tensor, rejected_scores: Sequence[float] | torch.Tensor
) -> dict[str, float]:
    """Reward-model accuracy on preference pairs (chosen scored above rejected; ties count half, as in
    `win_rate`) and the mean margin chosen - rejected (how confidently it separates them)."""
    chosen, rejected = _scores(chosen_scores, "chosen_scores"), _scores(rejected_scores, "rejected_scores")
    _check_same_length(chosen, rejected, "chosen_scores", "rejected_scores")
    return {"accuracy": win_rate(chosen, rejected), "mean_margin": float((chosen - rejected).mean())}


# --- SFT evaluation -------------------------------------------------------------------------------------------


def evaluate_sft(
    model: PreTrainedModel | str | Path,
    tokenizer: PreTrainedTokenizerBase | str | Path,
    *,
    task_conversations: Sequence[Conversation] | None = None,
    task_answers: Sequence[Any] | None = None,
    extract: Callable[[str], str | None] | None = None,
    harmful_conversations: Sequence[Conversation] | None = None,
    benign_conversations: Sequence[Conversation] | None = None,
    is_refusal: Callable[[str], bool] | None = None,
    heldout_texts: Sequence[str] | None = None,
    max_new_tokens: int = 48,
    batch_size: int = 16,
    block_size: int = 256,
    num_samples: int = 3,
) -> dict[str, Any]:
    """Evaluate a chat model on whichever parts are given and return flat metrics for `metrics.json`.

    - task: `task_accuracy` (`exact_match_accuracy` with `extract`), `task_examples`;
    - safety: `refusal_rate` on harmful prompts, `over_refusal_rate` on benign look-alikes (with `is_refusal`);
    - held-out text: `heldout_nats_per_char`, `heldout_nats_per_token`, `heldout_perplexity`, ... (compare with
      the base model's through `forgetting`).
    All conversations are generated in one batched pass. `samples` holds the first `num_samples`
    prompt/reply pairs of each part, for the model card.
    """
    if (task_conversations is None) != (task_answers is None):
        raise RecipeInputError(
            "Pass task_conversations and task_answers together (one answer per conversation)."
        )
    if task_conversations is not None and len(task_conversations) != len(task_answers):
        raise RecipeInputError(
            f"task_conversations and task_answers must pair up one to one; got {len(task_conversations)} "
            f"and {len(task_answers)}."
        )
    safety_parts = {"harmful": harmful_conversations, "benign": benign_conversations}
    if any(part is not None for part in safety_parts.values()) and is_refusal is None:
        raise RecipeInputError(
            "Refusal metrics need `is_refusal` (e.g. hfrecipes.builtins.safety.is_refusal)."
        )
    parts = {"task": task_conversations, **safety_parts}
    # An empty part (e.g. a held-out split with no harmful rows) is skipped rather than scored as 0/0.
    parts = {name: list(conversations) for name, conversations in parts.items() if conversations}
    if not parts and not heldout_texts:
        raise RecipeInputError(
            "evaluate_sft got nothing to evaluate: pass task_conversations/task_answers, "
            "harmful_conversations/benign_conversations with is_refusal, or heldout_texts."
        )
    model, tokenizer = _resolve_model(model), _resolve_tokenizer(tokenizer)

    metrics: dict[str, Any] = {}
    samples: list[dict[str, Any]] = []
    if parts:
        every_conversation = [
            conversation for conversations in parts.values() for conversation in conversations
        ]
        every_reply = generate_replies(
            model, tokenizer, every_conversation, max_new_tokens=max_new_tokens, batch_size=batch_size
        )
        start = 0
        for name, conversations in parts.items():
            replies = every_reply[start : start + len(conversations)]
            start += len(conversations)
            for position, (conversation, reply) in enumerate(zip(conversations, replies, strict=True)):
                if position == num_samples:
                    break
                sample = {"part": name, "prompt": conversation[-1]["content"], "reply": reply}
                if name == "task":
                    sample["answer"] = task_answers[position]
                samples.append(sample)
            if name == "task":
                metrics["task_accuracy"] = exact_match_accuracy(replies, task_answers, extract)
                metrics["task_examples"] = len(replies)
            elif name == "harmful":
                metrics["refusal_rate"] = refusal_rate(replies, is_refusal)
                metrics["harmful_prompts"] = len(replies)
            else:
                metrics["over_refusal_rate"] = refusal_rate(replies, is_refusal)
                metrics["benign_prompts"] = len(replies)
    if heldout_texts:
        # A model with a shorter context than `block_size` is still measured, on windows it can attend over.
        window = min(block_size, _context_length(model) or block_size)
        loss = language_model_loss(model, tokenizer, heldout_texts, block_size=window)
        metrics.update({f"heldout_{key}": value for key, value in loss.items()})
    metrics["samples"] = samples
    return metrics
