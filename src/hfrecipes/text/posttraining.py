"""What the post-training recipes (SFT, reward, DPO, GRPO, PPO) share: chat tokenizers, held-out splits,
LoRA checks, chat models, the plain-loss SFT trainer and the before/after evaluation that goes into every model
card."""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import torch
from peft import PeftConfig
from tokenizers import Tokenizer, models
from transformers import PreTrainedModel, PreTrainedTokenizerBase, PreTrainedTokenizerFast, Trainer
from trl import SFTTrainer, clone_chat_template
from trl.chat_template_utils import get_training_chat_template, has_generation_markers

from hfrecipes.builtins.instructions import extract_number
from hfrecipes.builtins.safety import is_refusal
from hfrecipes.core.data_report import DataReport
from hfrecipes.core.errors import RecipeInputError
from hfrecipes.text.bias import bias_probe, compare_bias
from hfrecipes.text.evaluation import end_of_turn_token_id, evaluate_sft, generate_replies, stop_token_ids
from hfrecipes.text.models import BuiltModel, ModelLoading, get_causal_lm, special_token_ids
from hfrecipes.text.tokenization import CHATML_TEMPLATE, IM_END, IM_START

logger = logging.getLogger(__name__)


def split_eval(
    dataset: datasets.Dataset, fraction: float, seed: int, report: DataReport
) -> tuple[datasets.Dataset, datasets.Dataset]:
    """Seeded train/held-out split; the held-out rows serve eval loss and the generation metrics."""
    if not 0 < fraction < 1:
        raise RecipeInputError(f"eval_fraction must be between 0 and 1, got {fraction}.")
    if len(dataset) < 2:
        raise RecipeInputError(f"Need at least 2 rows to hold some out for evaluation, got {len(dataset)}.")
    parts = dataset.train_test_split(test_size=fraction, seed=seed)
    report.add(
        "split",
        rows_in=len(dataset),
        rows_out=len(dataset),
        details={"train_rows": len(parts["train"]), "eval_rows": len(parts["test"])},
    )
    return parts["train"], parts["test"]


def chatml_source(directory: Path) -> Path:
    """A tokenizer holding only hfrecipes' ChatML template and its two turn tokens, written to `directory` so
    TRL's `clone_chat_template` can take the template from it."""
    vocab = {token: index for index, token in enumerate([IM_START, IM_END])}
    source = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(models.WordLevel(vocab=vocab, unk_token=IM_END)),
        eos_token=IM_END,
        additional_special_tokens=[IM_START],
    )
    source.chat_template = CHATML_TEMPLATE
    source.save_pretrained(directory)
    return directory


@dataclass
class ChatTemplate:
    """The chat template a post-training run uses and where it came from (for lineage.json)."""

    source: str  # "model", "chatml", a .jinja path or the tokenizer it was cloned from
    added_tokens: int = 0
    training_template: str | None = None  # "trl" when TRL swaps in its generation-marked training template

    def record(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "added_tokens": self.added_tokens,
            "training_template": self.training_template,
        }


def prepare_chat_template(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    chat_template_path: str | None,
    assistant_only_loss: bool = False,
) -> ChatTemplate:
    """Set the chat template as TRL's `chat_template_path` does, and check before any training that TRL can mask
    assistant tokens with it.

    None keeps the model's own template (saved unchanged with the model); a .jinja file replaces it; `chatml` is
    hfrecipes' ChatML, whose tokens are added (embeddings resized, through TRL's `clone_chat_template`) when the
    vocabulary lacks them; anything else is a tokenizer (path or Hub id) whose template is cloned, as in TRL.
    With `assistant_only_loss`, a template without `{% generation %}` markers is fine when TRL has a training
    template for it (SFTTrainer swaps it in for training only); otherwise TRL's own error and remedy are given."""
    record = ChatTemplate(source=chat_template_path or "model")
    if chat_template_path == "chatml" and {IM_START, IM_END} <= set(tokenizer.get_vocab()):
        tokenizer.chat_template = CHATML_TEMPLATE
    elif chat_template_path and chat_template_path.endswith((".jinja", ".j2")):
        path = Path(chat_template_path)
        if not path.is_file():
            raise RecipeInputError(f"chat_template_path {chat_template_path!r} does not exist.")
        tokenizer.chat_template = path.read_text(encoding="utf-8")
    elif chat_template_path:
        with tempfile.TemporaryDirectory() as scratch:
            source = chatml_source(Path(scratch)) if chat_template_path == "chatml" else chat_template_path
            try:
                _, _, added = clone_chat_template(model, tokenizer, str(source))
            except (OSError, ValueError) as err:
                raise RecipeInputError(
                    f"chat_template_path {chat_template_path!r} is neither 'chatml', a .jinja file nor a tokenizer "
                    f"to clone a template from: {err}"
                ) from err
        record.added_tokens = len(added)
    if not tokenizer.chat_template:
        raise RecipeInputError(
            "The tokenizer has no chat template. Set chat_template_path: chatml (hfrecipes' ChatML), a .jinja "
            "file, or a tokenizer to clone one from."
        )
    if assistant_only_loss and not has_generation_markers(tokenizer.chat_template):
        try:
            get_training_chat_template(tokenizer)
        except ValueError as err:
            raise RecipeInputError(
                f"assistant_only_loss: {err} TRL's remedy: give a template with {{% generation %}} markers "
                "(chat_template_path: a .jinja file, or chatml), or set assistant_only_loss: false."
            ) from err
        record.training_template = "trl"
    if model.can_generate():  # the template decides where a reply ends
        model.generation_config.eos_token_id = stop_token_ids(tokenizer, model)
    return record


def conversation_lengths(tokenizer: PreTrainedTokenizerBase, dataset: datasets.Dataset) -> list[int]:
    """Token count of every conversation under the chat template (to warn about truncation up front)."""
    rendered = tokenizer.apply_chat_template(list(dataset["messages"]), tokenize=False)
    return [len(ids) for ids in tokenizer(rendered, add_special_tokens=False)["input_ids"]]


def check_lora_targets(model: PreTrainedModel, peft_config: PeftConfig | None) -> None:
    """Name the modules that exist when LoRA targets ones that do not (PEFT's own error comes late)."""
    targets = getattr(peft_config, "target_modules", None)
    if not targets or targets == "all-linear":
        return
    targets = [targets] if isinstance(targets, str) else list(targets)
    linear = sorted(
        {
            name.rsplit(".", 1)[-1]
            for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear)
        }
    )
    missing = [t for t in targets if t not in linear]
    if missing:
        raise RecipeInputError(
            f"LoRA target modules {missing} do not exist in this model; its linear layers are {linear} "
            "(or use `lora_target_modules: all-linear`)."
        )


def report_conversation_lengths(
    tokenizer: PreTrainedTokenizerBase,
    train_data: datasets.Dataset,
    eval_data: datasets.Dataset,
    max_length: int | None,
    report: DataReport,
) -> None:
    """Warn about training conversations longer than `max_length` tokens (the trainer truncates them) and record
    the split sizes, the truncated rows and the mean length in the data report's summary."""
    lengths = conversation_lengths(tokenizer, train_data)
    too_long = sum(n > max_length for n in lengths) if max_length else 0
    if too_long:
        logger.warning(
            "%d of %d training conversations exceed max_length=%d tokens and will be truncated",
            too_long,
            len(lengths),
            max_length,
        )
    report.summary.update(
        train_rows=len(train_data),
        eval_rows=len(eval_data),
        truncated_rows=too_long,
        mean_tokens=sum(lengths) / len(lengths),
    )


def get_chat_lm(
    model_name_or_path: str | None,
    preset: str | None,
    tokenizer: PreTrainedTokenizerBase,
    *,
    overrides: dict[str, Any] | None = None,
    vocab_size: int | None = None,
    loading: ModelLoading | None = None,
) -> BuiltModel:
    """`get_causal_lm` for a chat tokenizer: its vocabulary (or `vocab_size`) and special ids, and generation
    that stops at the chat stop tokens (`stop_token_ids`) and pads with the tokenizer's pad token."""
    built = get_causal_lm(
        model_name_or_path=model_name_or_path,
        preset=preset,
        vocab_size=vocab_size or len(tokenizer),
        overrides=overrides,
        loading=loading,
        special_ids=special_token_ids(tokenizer),
    )
    built.model.generation_config.eos_token_id = stop_token_ids(tokenizer, built.model)
    built.model.generation_config.pad_token_id = tokenizer.pad_token_id
    return built


class PlainLossSFTTrainer(SFTTrainer):
    """SFTTrainer with the model's own cross-entropy instead of TRL's fused LM-head kernel: the same loss, about
    twice as fast for small vocabularies on CPU (no entropy / token-accuracy logging). TRL's own (less memory
    with large vocabularies on GPUs) stays the plain `SFTTrainer`."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inputs["use_cache"] = False
        # TRL's token count (efficiency accounting) lives in the compute_loss replaced here.
        if model.training:
            tokens = self.accelerator.gather_for_metrics(inputs["attention_mask"].sum())
            self._total_train_tokens += int(tokens.sum())
        return Trainer.compute_loss(self, model, inputs, return_outputs, num_items_in_batch)


@dataclass
class ChatEvaluation:
    """Before/after measures of a chat model (`evaluate_chat_model`) and a few replies for the card."""

    metrics: dict[str, float]
    samples: list[dict[str, Any]] = field(default_factory=list)
    bias: dict[str, Any] | None = None  # the `bias_probe` result, when asked for


def prompts_of(rows: datasets.Dataset) -> list[list[dict[str, str]]]:
    """Each conversation up to (not including) its last assistant turn: what the model must answer."""
    prompts = []
    for messages in rows["messages"]:
        last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
        prompts.append(messages[:last])
    return prompts


def evaluate_chat_model(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    heldout: datasets.Dataset,
    forgetting_texts: list[str] | None,
    max_samples: int,
    max_new_tokens: int,
    bias: bool = False,
) -> ChatEvaluation:
    """Task accuracy (rows with an `answer`), refusal / over-refusal (rows labelled harmful / benign) and
    nats/char on held-out pretraining text, whichever the data allows; each rate with its count (`<rate>_n`,
    for its 95% interval). With `bias`, also `bias_probe`'s bias_score (pairs only) and its interval."""
    probe = bias_probe(model, tokenizer, questions=False) if bias else None
    bias_metrics = {"bias_score": probe["bias_score"]} if probe else {}
    rows = heldout.select(range(min(max_samples, len(heldout))))
    kwargs: dict[str, Any] = {"heldout_texts": forgetting_texts, "max_new_tokens": max_new_tokens}
    # Mixed data (e.g. builtin:chat-mix) leaves `answer` / `label` empty where they do not apply.
    task_rows = rows.filter(lambda r: r["answer"] not in (None, "")) if "answer" in rows.column_names else []
    if len(task_rows):
        answers = [str(a) for a in task_rows["answer"]]
        numeric = all(a.lstrip("-").isdigit() for a in answers)
        kwargs.update(
            task_conversations=prompts_of(task_rows),
            task_answers=answers,
            extract=extract_number if numeric else None,
        )
    if "label" in rows.column_names and {"harmful", "benign"} & set(rows["label"]):
        harmful = rows.filter(lambda r: r["label"] == "harmful")
        benign = rows.filter(lambda r: r["label"] == "benign")
        kwargs.update(
            harmful_conversations=prompts_of(harmful),
            benign_conversations=prompts_of(benign),
            is_refusal=is_refusal,
        )
    if not (forgetting_texts or "task_conversations" in kwargs or "is_refusal" in kwargs):
        # Nothing verifiable in the data: still show what the model answers, for the card.
        prompts = prompts_of(rows.select(range(min(3, len(rows)))))
        replies = generate_replies(model, tokenizer, prompts, max_new_tokens=max_new_tokens)
        return ChatEvaluation(
            metrics=bias_metrics,
            samples=[{"prompt": p[-1]["content"], "reply": r} for p, r in zip(prompts, replies, strict=True)],
            bias=probe,
        )
    result = evaluate_sft(model, tokenizer, **kwargs)
    samples = result.pop("samples", [])
    metrics = {k: float(v) for k, v in result.items() if isinstance(v, int | float)}
    counts = {"task_accuracy": "task_conversations", "refusal_rate": "harmful_conversations"}
    counts["over_refusal_rate"] = "benign_conversations"
    metrics |= {f"{k}_n": len(kwargs[v]) for k, v in counts.items() if k in metrics and v in kwargs}
    return ChatEvaluation(metrics={**metrics, **bias_metrics}, samples=samples, bias=probe)


def before_after(before: ChatEvaluation, after: ChatEvaluation) -> dict[str, Any]:
    """One stage's evaluation metrics: each `<metric>_before`, each metric after, `forgetting_nats_per_char`
    (the rise in held-out pretraining nats/char) and `compare_bias` of the two bias probes (bias_score_before,
    bias_score with intervals, the paired difference interval and whether it is real) where probed."""
    metrics = {**{f"{k}_before": v for k, v in before.metrics.items()}, **after.metrics}
    if before.bias and after.bias:
        metrics |= compare_bias(before.bias, after.bias)
    if "heldout_nats_per_char" in after.metrics and "heldout_nats_per_char" in before.metrics:
        change = after.metrics["heldout_nats_per_char"] - before.metrics["heldout_nats_per_char"]
        metrics["forgetting_nats_per_char"] = change
    return metrics


def as_prompt_completion(
    conversations: datasets.Dataset, tokenizer: PreTrainedTokenizerBase
) -> datasets.Dataset:
    """Chat rows as plain prompt/completion strings: the prompt is the rendered conversation up to the last
    assistant turn (with the generation prompt), the completion the rest of the rendered conversation (the turn
    and the template's end-of-turn tokens). TRL then
    trains on completions only, which is assistant-only loss in a form plain-text rows can share."""

    def render(row: dict[str, Any]) -> dict[str, str]:
        last = max(i for i, m in enumerate(row["messages"]) if m["role"] == "assistant")
        prompt = tokenizer.apply_chat_template(
            row["messages"][:last], tokenize=False, add_generation_prompt=True
        )
        full = tokenizer.apply_chat_template(row["messages"][: last + 1], tokenize=False)
        if full.startswith(prompt):  # the template's own end of turn, whatever the family
            return {"prompt": prompt, "completion": full[len(prompt) :]}
        end = tokenizer.convert_ids_to_tokens(end_of_turn_token_id(tokenizer) or tokenizer.eos_token_id)
        return {"prompt": prompt, "completion": row["messages"][last]["content"] + end}

    return conversations.map(render, remove_columns=conversations.column_names, desc="prompt/completion")


def with_replay(
    conversations: datasets.Dataset,
    tokenizer: PreTrainedTokenizerBase,
    replay_texts: list[str],
    fraction: float,
    seed: int,
    report: DataReport,
) -> datasets.Dataset:
    """Mix pretraining text into SFT (replay, a standard mitigation of catastrophic forgetting): replay rows
    are completions with an empty prompt, so the whole text is trained on, beside the chat completions."""
    if not 0 < fraction < 1:
        raise RecipeInputError(f"replay_fraction must be between 0 and 1, got {fraction}.")
    wanted = round(len(conversations) * fraction / (1 - fraction))
    if not replay_texts:
        raise RecipeInputError("replay_text has no rows; point it at pretraining text.")
    chunks = [t[i : i + 1000] for t in replay_texts for i in range(0, len(t), 1000)][:wanted]
    replay = datasets.Dataset.from_dict({"prompt": [""] * len(chunks), "completion": chunks})
    mixed = datasets.concatenate_datasets([as_prompt_completion(conversations, tokenizer), replay]).shuffle(
        seed=seed
    )
    report.add(
        "replay",
        rows_in=len(conversations),
        rows_out=len(mixed),
        removed=0,
        details={"replay_rows": len(chunks), "replay_fraction": len(chunks) / len(mixed)},
    )
    return mixed
