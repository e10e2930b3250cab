"""What the preference and RL recipes (reward, DPO, GRPO/RLOO, PPO) share: held-out prompts, one evaluation of a
policy (reward-model score, task accuracy, refusal / over-refusal, KL to the reference, reply length), the
before/after table for the model card, and the data/model loading they all do the same way."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from hfrecipes.builtins.instructions import extract_number
from hfrecipes.builtins.safety import is_refusal
from hfrecipes.core.data_report import DataReport
from hfrecipes.core.errors import RecipeInputError
from hfrecipes.data import load_source, run_pipeline, validate_format
from hfrecipes.data.steps import Step
from hfrecipes.text.evaluation import exact_match_accuracy, generate_replies, stop_token_ids, win_rate
from hfrecipes.text.posttraining import split_eval
from hfrecipes.text.rewards import RewardModelScorer

Conversation = list[dict[str, str]]


def load_split(
    dataset_name: str,
    *,
    split: str,
    hub_config: str | None,
    steps: list[Step],
    kind: str,
    eval_fraction: float,
    seed: int,
) -> tuple[datasets.Dataset, datasets.Dataset, DataReport]:
    """Load, run the pipeline steps, check the format (`preference` or `prompt`) and hold out an eval split."""
    report = DataReport(source=dataset_name)
    dataset = run_pipeline(load_source(dataset_name, split=split, hub_config=hub_config), steps, report)
    validate_format(dataset, kind)
    train, heldout = split_eval(dataset, eval_fraction, seed, report)
    return train, heldout, report


def prompt_conversations(rows: datasets.Dataset) -> list[Conversation]:
    """The held-out prompts as conversations: a conversational `prompt`, a plain-string one as a user turn."""
    if "prompt" not in rows.column_names:
        raise RecipeInputError(f"Evaluation needs a `prompt` column; the data has {rows.column_names}.")
    return [p if isinstance(p, list) else [{"role": "user", "content": str(p)}] for p in rows["prompt"]]


def chat_ids(
    tokenizer: PreTrainedTokenizerBase, conversation: Conversation, add_generation_prompt=False
) -> list[int]:
    """Token ids of a conversation rendered with the chat template (which writes its own special tokens)."""
    text = tokenizer.apply_chat_template(
        conversation, add_generation_prompt=add_generation_prompt, tokenize=False
    )
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def check_generation_fits(
    tokenizer, prompts: Sequence[Conversation], max_new_tokens: int, context: int
) -> None:
    """Refuse a generation length that, after the longest templated prompt, runs past the model's context."""
    longest = max(len(chat_ids(tokenizer, prompt, add_generation_prompt=True)) for prompt in prompts)
    if longest + max_new_tokens > context:
        raise RecipeInputError(
            f"Generation does not fit the model's context: the longest prompt has {longest} tokens and "
            f"{max_new_tokens} new tokens are asked for, beyond its {context} positions. Lower the generation "
            "length (max_completion_length / max_new_tokens) or drop long prompts."
        )


@torch.no_grad()
def reply_logprobs(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[Conversation],
    replies: list[str],
) -> list[float]:
    """Sum of the model's log-probabilities of each reply given the prompt, up to and including its end-of-turn
    token: what the chat template writes after that token (ChatML's newline) is never generated, and a policy
    trained only on its own replies drifts there freely (it made the KL estimate negative)."""
    totals = []
    stops = set(stop_token_ids(tokenizer, model))
    was_training = model.training
    model.eval()
    for prompt, reply in zip(prompts, replies, strict=True):
        prefix = chat_ids(tokenizer, prompt, add_generation_prompt=True)
        full = chat_ids(tokenizer, [*prompt, {"role": "assistant", "content": reply}])
        end = next((i + 1 for i in range(len(prefix), len(full)) if full[i] in stops), len(full))
        ids = torch.tensor([full[:end]], device=model.device)
        logprobs = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), dim=-1)
        targets = ids[0, 1:]
        picked = logprobs.gather(-1, targets[:, None])[:, 0]
        totals.append(float(picked[len(prefix) - 1 :].sum()))
    model.train(was_training)
    return totals


@dataclass
class PolicyEvaluation:
    """Before/after measures of a policy (`evaluate_policy`), its greedy replies, reward scores and samples."""

    metrics: dict[str, float]
    replies: list[str]
    rm_scores: list[float] | None = None
    sampled_rm_scores: list[float] | None = None
    samples: list[dict[str, Any]] = field(default_factory=list)


def evaluate_policy(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    heldout: datasets.Dataset,
    *,
    reward_model: RewardModelScorer | None = None,
    reference: PreTrainedModel | None = None,
    max_samples: int = 64,
    max_new_tokens: int = 24,
    seed: int = 0,
    num_samples: int = 4,
    samples_per_prompt: int = 2,
) -> PolicyEvaluation:
    """One table row for a policy on held-out prompts (greedy replies):

    - `rm_reward`: mean reward-model score; `task_accuracy` on rows with an `answer`;
    - `refusal_rate` / `over_refusal_rate` on rows labelled harmful / benign;
    - `kl_to_reference`: Monte-Carlo KL(policy || reference) in nats per reply, from the sampled replies
      (log-ratio summed over the reply's tokens, averaged over replies);
    - `sampled_task_accuracy` / `sampled_rm_reward`: task accuracy / reward-model score of `samples_per_prompt`
      sampled replies per prompt (temperature 1): what preference tuning and RL change is the sampling
      distribution, which greedy replies show only where its mode flips. `sampled_rm_scores` holds each prompt's
      mean over its samples, so a win rate on them compares the two policies prompt by prompt with less noise;
    - `reply_chars`: mean reply length.
    """
    rows = heldout.select(range(min(max_samples, len(heldout))))
    prompts = prompt_conversations(rows)
    replies = generate_replies(model, tokenizer, prompts, max_new_tokens=max_new_tokens)
    metrics: dict[str, float] = {"reply_chars": statistics.fmean(len(r) for r in replies)}
    columns = set(rows.column_names)
    answers = list(rows["answer"]) if "answer" in columns else [""] * len(rows)
    labels = list(rows["label"]) if "label" in columns else [""] * len(rows)
    task = [i for i, a in enumerate(answers) if a not in (None, "")]
    if task:
        metrics["task_accuracy"] = exact_match_accuracy(
            [replies[i] for i in task], [str(answers[i]) for i in task], extract_number
        )
    for name, label in (("refusal_rate", "harmful"), ("over_refusal_rate", "benign")):
        chosen = [replies[i] for i, value in enumerate(labels) if value == label]
        if chosen:
            metrics[name] = sum(map(is_refusal, chosen)) / len(chosen)
    rm_scores = None
    if reward_model is not None:
        rm_scores = reward_model.score(prompts, replies)
        metrics["rm_reward"] = statistics.fmean(rm_scores)
    # Sampled replies (temperature 1): RL optimises the sampling policy, so its accuracy is reported beside the
    # greedy one, and the same samples give the KL estimate. Reply j of prompt i sits at j * len(prompts) + i.
    repeats = max(samples_per_prompt, 1)
    sampled_prompts = prompts * repeats
    sampled = generate_replies(
        model, tokenizer, sampled_prompts, max_new_tokens=max_new_tokens, do_sample=True, seed=seed
    )
    if task:
        rows_of_task = [j * len(prompts) + i for j in range(repeats) for i in task]
        metrics["sampled_task_accuracy"] = exact_match_accuracy(
            [sampled[k] for k in rows_of_task],
            [str(answers[k % len(prompts)]) for k in rows_of_task],
            extract_number,
        )
    sampled_rm_scores = None
    if reward_model is not None:
        scores = reward_model.score(sampled_prompts, sampled)
        sampled_rm_scores = [statistics.fmean(scores[i :: len(prompts)]) for i in range(len(prompts))]
        metrics["sampled_rm_reward"] = statistics.fmean(scores)
    if reference is not None:
        policy = reply_logprobs(model, tokenizer, sampled_prompts, sampled)
        ref = reply_logprobs(reference, tokenizer, sampled_prompts, sampled)
        metrics["kl_to_reference"] = statistics.fmean(p - r for p, r in zip(policy, ref, strict=True))
    samples = [
        {
            "prompt": p[-1]["content"],
            "reply": r,
            **({"rm_score": round(rm_scores[i], 3)} if rm_scores else {}),
        }
        for i, (p, r) in enumerate(zip(prompts[:num_samples], replies, strict=False))
    ]
    return PolicyEvaluation(
        metrics=metrics,
        replies=replies,
        rm_scores=rm_scores,
        sampled_rm_scores=sampled_rm_scores,
        samples=samples,
    )


def compare(before: PolicyEvaluation, after: PolicyEvaluation) -> dict[str, float]:
    """Flat metrics for metrics.json: the trained policy's, the start's with `_before`, and the RM-judged win rate
    of the trained policy's replies against the starting policy's on the same prompts: greedy
    (`win_rate_vs_start`) and the mean score of each prompt's sampled replies (`sampled_win_rate_vs_start`)."""
    metrics = {**{f"{k}_before": v for k, v in before.metrics.items()}, **after.metrics}
    if before.rm_scores is not None and after.rm_scores is not None:
        metrics["win_rate_vs_start"] = win_rate(after.rm_scores, before.rm_scores)
    if before.sampled_rm_scores is not None and after.sampled_rm_scores is not None:
        metrics["sampled_win_rate_vs_start"] = win_rate(after.sampled_rm_scores, before.sampled_rm_scores)
    return metrics


def comparison_table(before: PolicyEvaluation, after: PolicyEvaluation, start: str, trained: str) -> str:
    """The before/after markdown table every preference/RL model card carries."""
    lines = [f"| metric | {start} | {trained} |", "|---|---|---|"]
    for name in after.metrics:
        old = before.metrics.get(name)
        lines.append(f"| {name} | {'' if old is None else f'{old:.4g}'} | {after.metrics[name]:.4g} |")
    return "\n".join(lines)


REWARD_COLUMNS = ("answer", "label", "category")


def as_conversational_prompts(rows: datasets.Dataset) -> datasets.Dataset:
    """Prompt rows for the online trainers: `prompt` as a conversation (so TRL applies the chat template) plus
    the columns reward functions read; everything else (e.g. the SFT `messages`) is dropped."""
    keep = [c for c in REWARD_COLUMNS if c in rows.column_names]
    prompts = prompt_conversations(rows)
    return rows.select_columns(keep).add_column("prompt", prompts)


@dataclass
class AlignmentDataArguments:
    """Data and held-out evaluation fields shared by reward.py, dpo.py, grpo.py and ppo.py."""

    dataset_name: str = field(
        default="builtin:preferences", metadata={"help": "builtin:, local path or Hub id."}
    )
    dataset_config: str | None = field(default=None, metadata={"help": "Hub dataset configuration."})
    dataset_split: str = field(default="train", metadata={"help": "Split to read."})
    pipeline: list[str] | None = field(default=None, metadata={"help": "Data steps run first."})
    eval_fraction: float = field(default=0.1, metadata={"help": "Held out for the before/after measures."})
    eval_max_samples: int = field(default=64, metadata={"help": "Held-out prompts generated for the table."})
    eval_max_new_tokens: int = field(default=24, metadata={"help": "Tokens generated per held-out prompt."})
    eval_samples_per_prompt: int = field(
        default=2, metadata={"help": "Sampled replies per held-out prompt (sampled accuracy, RM reward, KL)."}
    )

    def evaluation(self) -> dict[str, int]:
        """`evaluate_policy` keyword arguments for the before/after table."""
        return dict(
            max_samples=self.eval_max_samples,
            max_new_tokens=self.eval_max_new_tokens,
            samples_per_prompt=self.eval_samples_per_prompt,
        )

    def load(
        self, kind: str, seed: int, steps: list[Step]
    ) -> tuple[datasets.Dataset, datasets.Dataset, DataReport]:
        return load_split(
            self.dataset_name,
            split=self.dataset_split,
            hub_config=self.dataset_config,
            steps=steps,
            kind=kind,
            eval_fraction=self.eval_fraction,
            seed=seed,
        )


def load_reward_model(
    path: str | None, policy_tokenizer: PreTrainedTokenizerBase
) -> RewardModelScorer | None:
    """The reward model at `path` as a scorer of the policy's conversations, or None when no path is given."""
    return RewardModelScorer.from_pretrained(path, policy_tokenizer) if path else None


def chat_usage(output_dir: str | Path) -> str:
    """The model card's usage snippet for a chat policy."""
    return (
        f'from transformers import pipeline\n\nchat = pipeline("text-generation", model="{output_dir}")\n'
        'print(chat([{"role": "user", "content": "What is 2 + 3?"}], max_new_tokens=24)[0]["generated_text"])'
    )
