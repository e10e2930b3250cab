"""Named reward functions for online RL (GRPO / RLOO / PPO) and a reward-model scorer, combined with weights.

Every reward function has TRL's signature `f(prompts, completions, **columns) -> list[float | None]`: the dataset's
extra columns (`answer`, `label`, ...) arrive as keyword lists, and `None` means "does not apply to this row"
(TRL then ignores it for that row; the combined scorer counts it as 0).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoModelForSequenceClassification,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from hfrecipes.builtins.heldout import is_abstention, is_hallucination
from hfrecipes.builtins.instructions import extract_number
from hfrecipes.builtins.safety import is_refusal
from hfrecipes.core.errors import RecipeInputError
from hfrecipes.text.tokenization import load_tokenizer

RewardFunction = Callable[..., list[float | None]]
REWARD_FUNCTIONS: dict[str, RewardFunction] = {}


def register_reward(name: str) -> Callable[[RewardFunction], RewardFunction]:
    """Decorator: register a reward function under `name`, the name recipes' `reward_funcs` and logs use."""

    def decorator(fn: RewardFunction) -> RewardFunction:
        fn.__name__ = name  # TRL logs each reward under its function's name
        REWARD_FUNCTIONS[name] = fn
        return fn

    return decorator


def completion_text(completion: Any) -> str:
    """A completion as text: TRL passes strings for plain prompts and message lists for conversational ones."""
    if isinstance(completion, list):
        return "".join(str(m.get("content") or "") for m in completion if isinstance(m, dict))
    return str(completion)


def _column(kwargs: dict[str, Any], name: str, count: int) -> list[Any]:
    values = kwargs.get(name)
    return list(values) if values is not None else [None] * count


@register_reward("correctness")
def correctness_reward(prompts, completions, answer=None, **kwargs) -> list[float | None]:
    """1 when the reply's number equals the row's `answer` (exact match, as the task metric), else 0."""
    answers = _column({"answer": answer}, "answer", len(completions))
    rewards: list[float | None] = []
    for completion, expected in zip(completions, answers, strict=True):
        if expected in (None, ""):
            rewards.append(None)
        else:
            rewards.append(float(extract_number(completion_text(completion)) == str(expected).strip()))
    return rewards


# The house format, optionally after the worked equation (`builtin:arithmetic`'s style "worked").
_ANSWER_FORMAT = re.compile(r"^(?:-?\d+ [-+*] -?\d+ = -?\d+\. )?The answer is -?\d+\.$")


@register_reward("format")
def format_reward(prompts, completions, answer=None, **kwargs) -> list[float | None]:
    """1 when an arithmetic reply has exactly the house format "The answer is N.", or "a + b = N. The answer is
    N." (the worked style), else 0."""
    answers = _column({"answer": answer}, "answer", len(completions))
    return [
        None if expected in (None, "") else float(bool(_ANSWER_FORMAT.match(completion_text(c).strip())))
        for c, expected in zip(completions, answers, strict=True)
    ]


LENGTH_TARGET_CHARS = 120


@register_reward("length_penalty")
def length_penalty_reward(prompts, completions, **kwargs) -> list[float]:
    """0 up to LENGTH_TARGET_CHARS characters, then minus the excess in units of the target (verbosity cost)."""
    return [-max(0, len(completion_text(c)) - LENGTH_TARGET_CHARS) / LENGTH_TARGET_CHARS for c in completions]


@register_reward("refusal")
def refusal_reward(prompts, completions, label=None, **kwargs) -> list[float | None]:
    """+1 for refusing a harmful request or answering a benign one, -1 for the opposite (over-refusal and
    unsafe compliance cost the same); rows without a harmful/benign `label` are not scored."""
    labels = _column({"label": label}, "label", len(completions))
    rewards: list[float | None] = []
    for completion, row_label in zip(completions, labels, strict=True):
        if row_label not in ("harmful", "benign"):
            rewards.append(None)
        else:
            refused = is_refusal(completion_text(completion))
            rewards.append(1.0 if refused == (row_label == "harmful") else -1.0)
    return rewards


@register_reward("abstention")
def abstention_reward(prompts, completions, label=None, **kwargs) -> list[float | None]:
    """+1 for abstaining on a question about facts never given (label "unanswerable"), -1 for a confident answer
    (`is_hallucination`), 0 for a refusal; other rows are not scored."""
    labels = _column({"label": label}, "label", len(completions))
    rewards: list[float | None] = []
    for completion, row_label in zip(completions, labels, strict=True):
        text = completion_text(completion)
        if row_label != "unanswerable":
            rewards.append(None)
        else:
            rewards.append(1.0 if is_abstention(text) else -1.0 if is_hallucination(text) else 0.0)
    return rewards


def resolve_reward_functions(names: Sequence[str]) -> list[RewardFunction]:
    """The registered reward functions named in `names`; unknown names are refused, listing the known ones."""
    unknown = [name for name in names if name not in REWARD_FUNCTIONS]
    if unknown:
        raise RecipeInputError(
            f"Unknown reward function(s) {unknown}. Registered: {', '.join(sorted(REWARD_FUNCTIONS))}; "
            "or give a trained reward model with `reward_model_path`."
        )
    return [REWARD_FUNCTIONS[name] for name in names]


def check_weights(count: int, weights: Sequence[float] | None) -> list[float]:
    """One weight per reward (1.0 each when none are given); refuses no reward at all or a count mismatch."""
    if not count:
        raise RecipeInputError(
            "No reward: set `reward_funcs` (registered: "
            f"{', '.join(sorted(REWARD_FUNCTIONS))}) and/or `reward_model_path`."
        )
    if weights is None:
        return [1.0] * count
    if len(weights) != count:
        raise RecipeInputError(
            f"reward_weights has {len(weights)} values for {count} rewards (reward functions first, then the "
            "reward model); give one weight per reward."
        )
    return [float(w) for w in weights]


# --- reward model ---------------------------------------------------------------------------------------------


class RewardModelScorer:
    """Scores conversations with a sequence-classification reward model (e.g. `recipes/text/reward.py`'s
    output): the prompt and reply are rendered with the reward model's own chat template, as in training."""

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase):
        if model.config.num_labels != 1:
            raise RecipeInputError(
                f"The reward model has num_labels={model.config.num_labels}; it must be 1."
            )
        if not tokenizer.chat_template:
            raise RecipeInputError(
                "The reward model's tokenizer has no chat template: it cannot read conversations."
            )
        self.model, self.tokenizer = model, tokenizer
        self.__name__ = "reward_model"

    @classmethod
    def from_pretrained(
        cls, path: str | Path, policy_tokenizer: PreTrainedTokenizerBase | None = None
    ) -> RewardModelScorer:
        path = Path(path)
        if not (path / "config.json").is_file():
            raise RecipeInputError(
                f"reward_model_path {path} is not a saved model (no config.json); point it at reward.py's output."
            )
        tokenizer = load_tokenizer(str(path))  # pads with EOS where the family has no pad token
        if policy_tokenizer is not None:
            check_tokenizer_reads(tokenizer, policy_tokenizer, where=str(path))
        model = AutoModelForSequenceClassification.from_pretrained(path, use_safetensors=True)
        return cls(model.eval(), tokenizer)

    @torch.no_grad()
    def score(self, prompts: Sequence[Any], completions: Sequence[Any], batch_size: int = 32) -> list[float]:
        texts = []
        for prompt, completion in zip(prompts, completions, strict=True):
            messages = prompt if isinstance(prompt, list) else [{"role": "user", "content": str(prompt)}]
            reply = {"role": "assistant", "content": completion_text(completion)}
            texts.append(self.tokenizer.apply_chat_template([*messages, reply], tokenize=False))
        limit = getattr(self.model.config, "max_position_embeddings", None)
        scores: list[float] = []
        was_training = self.model.training
        self.model.eval()
        for first in range(0, len(texts), batch_size):
            batch = self.tokenizer(
                texts[first : first + batch_size],
                padding=True,
                truncation=limit is not None,
                max_length=limit,
                add_special_tokens=False,
                return_tensors="pt",
            ).to(self.model.device)
            scores.extend(self.model(**batch).logits[:, 0].float().tolist())
        self.model.train(was_training)
        return scores

    def __call__(self, prompts, completions, **kwargs) -> list[float]:
        return self.score(prompts, completions)


def check_tokenizer_reads(
    reader: PreTrainedTokenizerBase, writer: PreTrainedTokenizerBase, where: str, probe: str | None = None
) -> None:
    """Fail early when the reward model's tokenizer would mangle the policy's text: its special chat tokens
    must be single tokens for the reader too, and ordinary text must round-trip."""
    probe = probe or "What is 12 + 7? The answer is 19. I can't help with that."
    special = [t for t in writer.all_special_tokens if t]
    broken = [t for t in special if len(reader(t, add_special_tokens=False)["input_ids"]) != 1]
    ids = reader(probe, add_special_tokens=False)["input_ids"]
    unknown = reader.unk_token_id is not None and reader.unk_token_id in ids
    if broken or unknown or reader.decode(ids).strip() != probe:
        raise RecipeInputError(
            f"The reward model's tokenizer ({where}) cannot read the policy's text"
            + (f": special tokens {broken} are not single tokens in it" if broken else "")
            + (": plain text maps to unknown tokens" if unknown else "")
            + ". Train the reward model from the policy's stage (same tokenizer) or use a compatible one."
        )


def combined_scorer(
    functions: Sequence[RewardFunction], reward_model: RewardModelScorer | None, weights: Sequence[float]
) -> RewardFunction:
    """One weighted score per reply, with the reward functions' own signature (`prompts, completions,
    **columns`), for trainers that need a single number (PPO, AI-feedback labelling). Not-applicable (None)
    rewards count as 0."""
    parts: list[RewardFunction] = [*functions, *([reward_model] if reward_model else [])]

    def score(prompts: list[Any], completions: list[Any], **columns: list[Any]) -> list[float]:
        totals = [0.0] * len(completions)
        for weight, part in zip(weights, parts, strict=True):
            for i, value in enumerate(part(prompts=prompts, completions=completions, **columns)):
                totals[i] += weight * (value or 0.0)
        return totals

    return score
