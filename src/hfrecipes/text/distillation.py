"""Knowledge distillation of a causal LM into a smaller student with TRL's GKD trainer, and the from-scratch
baseline it is judged against (the same student, the same initial weights, the same data, an equal budget).

TRL 1.16 has two trainers: `trl.DistillationTrainer` (promoted from `trl.experimental.distillation`) trains only
on completions the student generates from `prompt` rows (on-policy), and `trl.experimental.gkd.GKDTrainer`
trains on the dataset's own tokens against the teacher's full next-token distribution (word-level KD), with
`lmbda` the share of on-policy batches and `seq_kd` for sequence-level KD. Distilling on a fixed transfer set
(plain text or chat rows) is the GKD case, so `recipes/text/distill.py` uses `GKDTrainer`. Both compare full
distributions over one vocabulary: teacher and student must share the tokenizer (`check_same_tokenizer`).
"""

from __future__ import annotations

import copy
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import torch
import trl
from transformers import (
    AutoModelForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    Trainer,
    TrainerCallback,
)
from transformers.trainer_callback import ExportableState

from hfrecipes.core.data_report import DataReport
from hfrecipes.core.errors import RecipeInputError
from hfrecipes.core.io import atomic_write_json
from hfrecipes.core.reports import plot_loss_curves
from hfrecipes.data import (
    load_source,
    parse_pipeline,
    prepare_text_splits,
    run_pipeline,
    tokenize_and_pack,
    validate_format,
)
from hfrecipes.text.evaluation import language_model_loss
from hfrecipes.text.models import BuiltModel, ModelLoading, context_length
from hfrecipes.text.posttraining import evaluate_chat_model, get_chat_lm, prompts_of, split_eval

try:  # experimental in TRL (and it may go): a TRL without it refuses chat data only, when it is asked for
    from trl.experimental.utils import DataCollatorForChatML
except ImportError:
    DataCollatorForChatML = None

logger = logging.getLogger(__name__)

DATASET_KINDS = ("text", "chat")
BUDGETS = ("time", "steps")
CROSS_TOKENIZER_HINT = (
    "GKD compares the teacher's and the student's full next-token distributions, which needs one shared "
    "vocabulary. Build the student from a preset (it adopts the teacher's tokenizer), pick a student of the "
    "teacher's family (e.g. SmolLM2-1.7B -> SmolLM2-135M), or use TRL's cross-tokenizer trainer "
    "(trl.experimental.gold.GOLDTrainer with use_uld_loss=True and teacher_tokenizer_name_or_path), which this "
    "recipe does not wrap."
)
TESTED_TRL = "1.16.0"


def missing_trl_feature(feature: str) -> RecipeInputError:
    """The error for a TRL without `feature`: an experimental API, which TRL may move or drop."""
    return RecipeInputError(
        f"Distillation needs TRL's {feature}, which the installed TRL {trl.__version__} does not have: "
        f"pip install 'trl>=1.0' (tested with {TESTED_TRL}; if a newer TRL dropped it: "
        f"pip install 'trl=={TESTED_TRL}')."
    )


# --- input checks ---------------------------------------------------------------------------------------------


def check_arguments(
    teacher: str | None,
    student: str | None,
    script_args: Any,
    on_policy: bool = False,
    use_peft: bool = False,
) -> None:
    """What can be refused from the arguments alone, before anything is loaded."""
    if use_peft:
        raise RecipeInputError("distill.py trains the whole (small) student: remove use_peft.")
    if not teacher:
        raise RecipeInputError(
            "Set teacher_model_name_or_path: a previous stage's output directory or a Hub id."
        )
    if script_args.dataset_kind not in DATASET_KINDS or script_args.compare_budget not in BUDGETS:
        raise RecipeInputError(
            f"dataset_kind must be one of {DATASET_KINDS}, compare_budget one of {BUDGETS}."
        )
    if (
        on_policy
        and script_args.dataset_kind == "text"
        and not 0 < script_args.prompt_tokens < script_args.block_size
    ):
        raise RecipeInputError(
            f"On-policy distillation (lmbda > 0 or seq_kd) generates from each block's first prompt_tokens; "
            f"set 0 < prompt_tokens < block_size={script_args.block_size}, got {script_args.prompt_tokens}."
        )
    limit = min(
        context_length(teacher, None),
        context_length(student, script_args.student_preset, script_args.student_overrides),
    )
    if script_args.dataset_kind == "text" and script_args.block_size > limit:
        raise RecipeInputError(f"block_size={script_args.block_size} exceeds the models' context of {limit}.")


def check_same_tokenizer(
    teacher: PreTrainedTokenizerBase, student: PreTrainedTokenizerBase, teacher_ref: str, student_ref: str
) -> None:
    """Refuse a teacher/student pair whose tokenizers map text to different ids."""
    teacher_vocab, student_vocab = teacher.get_vocab(), student.get_vocab()
    if teacher_vocab == student_vocab:
        return
    differing = sum(student_vocab.get(token) != i for token, i in teacher_vocab.items())
    raise RecipeInputError(
        f"The teacher ({teacher_ref}, {len(teacher_vocab)} tokens) and the student ({student_ref}, "
        f"{len(student_vocab)} tokens) have different tokenizers: {differing} teacher tokens have another id or "
        f"none in the student's vocabulary. {CROSS_TOKENIZER_HINT}"
    )


def check_pair(teacher: PreTrainedModel, student: PreTrainedModel) -> None:
    """Same output vocabulary (what GKD compares); warn when the 'student' is not smaller than the teacher."""
    t_vocab = teacher.config.get_text_config().vocab_size
    s_vocab = student.config.get_text_config().vocab_size
    if t_vocab != s_vocab:
        raise RecipeInputError(
            f"The teacher predicts {t_vocab} token ids and the student {s_vocab}. {CROSS_TOKENIZER_HINT}"
        )
    if student.num_parameters() >= teacher.num_parameters():
        logger.warning(
            "The student (%.2f M parameters) is not smaller than the teacher (%.2f M)",
            student.num_parameters() / 1e6,
            teacher.num_parameters() / 1e6,
        )


def build_student(
    student_path: str | None,
    script_args: Any,
    tokenizer: PreTrainedTokenizerBase,
    teacher: BuiltModel,
    loading: ModelLoading | None = None,
) -> BuiltModel:
    """The student: `student_path`, else `script_args.student_preset` (with `student_overrides`) built over the
    teacher's output vocabulary; generating up to the tokenizer's stop tokens, checked against the teacher
    (`check_pair`) and both sizes logged."""
    built = get_chat_lm(
        student_path,
        script_args.student_preset,
        tokenizer,
        overrides=script_args.student_overrides,
        vocab_size=teacher.model.config.get_text_config().vocab_size,
        loading=loading,
    )
    check_pair(teacher.model, built.model)
    logger.warning(
        "Teacher %s: %.2f M parameters; student %s: %.2f M",
        teacher.source,
        teacher.num_parameters / 1e6,
        built.source,
        built.num_parameters / 1e6,
    )
    return built


# --- batches --------------------------------------------------------------------------------------------------


@dataclass
class BlockCollator:
    """Packed text blocks as causal-LM batches. With `prompt_tokens`, also each block's first tokens as the
    `prompts` GKD's on-policy step (`lmbda` > 0, `seq_kd`) generates from."""

    prompt_tokens: int = 0

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        ids = torch.tensor([row["input_ids"] for row in rows], dtype=torch.long)
        batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()}
        if self.prompt_tokens:
            batch["prompts"] = ids[:, : self.prompt_tokens]
            batch["prompt_attention_mask"] = torch.ones_like(batch["prompts"])
        return batch


class ModelInputsOnly:
    """Wrap a distillation collator for plain causal-LM training: keep only what the model's forward takes."""

    KEYS = ("input_ids", "attention_mask", "labels")

    def __init__(self, collator: Any) -> None:
        self.collator = collator

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = self.collator(rows)
        return {k: batch[k] for k in self.KEYS}


@torch.no_grad()
def reply_loss(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, rows: datasets.Dataset, batch_size: int = 16
) -> dict[str, float]:
    """Held-out loss of chat rows on the last assistant turn only (what chat distillation and SFT train),
    given the conversation before it: nats per token and per character of the rendered reply up to its
    end-of-turn token (what a model generates; the template's trailing whitespace after it is not scored)."""
    was_training, device = model.training, next(model.parameters()).device
    model.eval()
    total, tokens, characters = 0.0, 0, 0
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    prompts = prompts_of(rows)
    for first in range(0, len(rows), batch_size):
        sequences = []
        for prompt, messages in zip(
            prompts[first : first + batch_size], rows["messages"][first : first + batch_size], strict=True
        ):
            head = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)
            full = tokenizer.apply_chat_template(messages[: len(prompt) + 1], tokenize=False).rstrip()
            sequences.append(
                (
                    tokenizer(full, add_special_tokens=False)["input_ids"],
                    len(tokenizer(head, add_special_tokens=False)["input_ids"]),
                )
            )
            characters += len(full) - len(head)
        width = max(len(ids) for ids, _ in sequences)
        input_ids = torch.full((len(sequences), width), pad, dtype=torch.long)
        labels = torch.full_like(input_ids, -100)
        mask = torch.zeros_like(input_ids)
        for row, (ids, start) in enumerate(sequences):
            input_ids[row, : len(ids)], mask[row, : len(ids)] = torch.tensor(ids), 1
            labels[row, start : len(ids)] = torch.tensor(ids[start:])
        logits = model(input_ids=input_ids.to(device), attention_mask=mask.to(device), use_cache=False).logits
        targets = labels[:, 1:].to(device)
        total += torch.nn.functional.cross_entropy(
            logits[:, :-1].float().reshape(-1, logits.shape[-1]),
            targets.reshape(-1),
            ignore_index=-100,
            reduction="sum",
        ).item()
        tokens += int((targets != -100).sum())
    model.train(was_training)
    return {"nats_per_token": total / max(tokens, 1), "nats_per_char": total / max(characters, 1)}


@dataclass
class TransferData:
    """What the distillation and its baseline train on, and what both are judged on."""

    train: datasets.Dataset
    collator: Any
    heldout_texts: list[str]  # text data: held-out documents
    chat_rows: datasets.Dataset | None  # chat data: held-out conversations
    report: Any


def prepare_transfer_data(
    kind: str,
    data_args: Any,
    tokenizer: PreTrainedTokenizerBase,
    *,
    block_size: int,
    max_length: int | None,
    max_train_documents: int | None,
    eval_max_documents: int,
    prompt_tokens: int,
    seed: int,
) -> TransferData:
    """`text`: the cleaned text split as in pretraining (the held-out part is the same one a teacher pretrained
    here with the same data settings never saw), training part packed into blocks. `chat`: `messages` rows
    split as in SFT, batched by TRL's ChatML collator (loss on the last assistant turn only)."""
    if kind == "text":
        train, heldout, report = prepare_text_splits(data_args, seed=seed)
    else:
        report = DataReport(source=data_args.dataset_name)
        dataset = load_source(
            data_args.dataset_name, split=data_args.dataset_split, hub_config=data_args.dataset_config
        )
        dataset = run_pipeline(dataset, parse_pipeline(data_args.pipeline), report)
        validate_format(dataset, "sft")
        train, heldout = split_eval(dataset, data_args.validation_fraction, seed, report)
    if max_train_documents:
        train = train.select(range(min(max_train_documents, len(train))))
        report.add(
            "transfer_subset",
            rows_in=len(train),
            rows_out=len(train),
            details={"max_train_documents": max_train_documents},
        )
    heldout = heldout.select(range(min(eval_max_documents, len(heldout))))
    if kind == "text":
        blocks, stats = tokenize_and_pack(train, tokenizer, block_size, report, "train")
        report.summary.update(train=stats, heldout_documents=len(heldout))
        return TransferData(blocks, BlockCollator(prompt_tokens), list(heldout["text"]), None, report)
    if DataCollatorForChatML is None:
        raise missing_trl_feature("ChatML collator (trl.experimental.utils.DataCollatorForChatML)")
    report.summary.update(train_rows=len(train), heldout_rows=len(heldout))
    return TransferData(
        train.select_columns(["messages"]),
        DataCollatorForChatML(tokenizer=tokenizer, max_length=max_length),
        [],
        heldout,
        report,
    )


# --- the equal-time budget ------------------------------------------------------------------------------------


def seconds_per_step(
    student: PreTrainedModel,
    batches: Sequence[dict[str, torch.Tensor]],
    loss: Callable[[PreTrainedModel, dict[str, torch.Tensor]], torch.Tensor] | None = None,
    repeats: int = 4,
) -> float:
    """Median seconds of one optimizer step on a copy of `student`: `loss(model, batch)` (e.g. a distillation
    trainer's `compute_loss`, teacher forward included), or the model's own cross-entropy on the labels. The
    first step is a warm-up."""
    model = copy.deepcopy(student).train()
    device = next(student.parameters()).device
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    timings = []
    for i in range(repeats + 1):
        batch = {k: v.to(device) for k, v in batches[i % len(batches)].items() if isinstance(v, torch.Tensor)}
        started = time.perf_counter()
        value = (
            loss(model, batch)
            if loss is not None
            else model(**{k: batch[k] for k in ModelInputsOnly.KEYS}).loss
        )
        value.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if i:
            timings.append(time.perf_counter() - started)
    return sorted(timings)[len(timings) // 2]


@dataclass
class ScratchBudget:
    """How long the from-scratch baseline trains: `steps` for its schedule and, for an equal-time budget,
    `seconds` as a hard cap (the distillation's training time)."""

    budget: str
    steps: int
    seconds: float | None
    distill_steps: int
    distill_seconds_per_step: float
    calibrated_distill_seconds_per_step: float | None = None
    calibrated_scratch_seconds_per_step: float | None = None

    @classmethod
    def load_or_plan(
        cls,
        path: Path,
        *,
        budget: str,
        distill_steps: int,
        distill_seconds_per_step: float,
        calibrate: Any,
        on_policy: bool = False,
    ) -> ScratchBudget:
        """Equal steps, or as many steps as fit in the distillation's training time: `calibrate()` times one
        distillation step and one scratch step back to back outside the Trainer, and their ratio scales the
        distillation's steps (so a busier machine during calibration cancels out). With `on_policy` generation
        (GKD's lmbda > 0 or seq_kd), which calibration does not time, the measured seconds per distillation step
        are divided by the calibrated scratch step instead. The seconds are also a hard cap (`TrainClock`).
        Saved to `path`, so a resumed baseline keeps the step count its learning-rate schedule was built for."""
        if path.is_file():
            return cls(**json.loads(path.read_text()))
        if budget not in BUDGETS:
            raise RecipeInputError(f"compare_budget must be one of {BUDGETS}, got {budget!r}.")
        planned = cls(budget, distill_steps, None, distill_steps, distill_seconds_per_step)
        if budget == "time":
            distill_cal, scratch_cal = calibrate()
            per_distill_step = distill_seconds_per_step if on_policy else distill_cal
            planned.seconds = distill_steps * distill_seconds_per_step
            planned.steps = max(1, round(distill_steps * per_distill_step / scratch_cal))
            planned.calibrated_distill_seconds_per_step = distill_cal
            planned.calibrated_scratch_seconds_per_step = scratch_cal
        atomic_write_json(path, planned.__dict__)
        return planned


class TrainClock(TrainerCallback, ExportableState):
    """Training wall time that survives resume: every checkpoint's trainer_state.json records the seconds spent
    up to it, and a resumed run adds its own. With `limit_seconds` it also stops training (and saves a
    checkpoint) once that much time has passed: the equal-wall-time cap of the scratch baseline."""

    def __init__(self, limit_seconds: float | None = None) -> None:
        self.limit_seconds = limit_seconds
        self.before, self.started, self.ended = 0.0, None, None

    def state(self) -> dict[str, Any]:
        return {"args": {"limit_seconds": self.limit_seconds}, "attributes": {"before": self.elapsed()}}

    def elapsed(self) -> float:
        if self.started is None:
            return self.before
        return self.before + (self.ended or time.perf_counter()) - self.started

    def on_train_begin(self, args, state, control, **kwargs):
        self.before = saved_clock(state.stateful_callbacks)
        self.started, self.ended = time.perf_counter(), None

    def on_step_end(self, args, state, control, **kwargs):
        if self.limit_seconds is not None and self.elapsed() >= self.limit_seconds:
            control.should_training_stop = True
            control.should_save = args.save_strategy != "no"

    def on_train_end(self, args, state, control, **kwargs):
        self.ended = time.perf_counter()


def saved_clock(stateful_callbacks: dict[str, Any] | None) -> float:
    """The training seconds a checkpoint's trainer state recorded (0 without a TrainClock)."""
    saved = (stateful_callbacks or {}).get(TrainClock.__name__)
    saved = saved[-1] if isinstance(saved, list) else saved
    return float(saved["attributes"]["before"]) if saved else 0.0


def train_scratch_baseline(
    student: PreTrainedModel,
    initial_state: dict[str, torch.Tensor],
    args: Any,
    train_dataset: datasets.Dataset,
    collator: Any,
    budget: ScratchBudget,
    output_dir: Path,
    resume: Any,
) -> tuple[PreTrainedModel, dict[str, Any]]:
    """The student architecture from the same initial weights, trained with plain cross-entropy (no teacher)
    on the same rows with the same optimizer settings, for the budget's steps (and at most its seconds).
    Returns the model and its run figures. `resume(args)` finds the checkpoint to resume from; a checkpoint that
    already used up the budget is the result, as it is."""
    scratch_args = copy.deepcopy(args)
    scratch_args.output_dir, scratch_args.max_steps = str(output_dir), budget.steps
    scratch_args.remove_unused_columns = False
    checkpoint = resume(scratch_args)
    if checkpoint:
        saved = json.loads((Path(checkpoint) / "trainer_state.json").read_text())
        seconds = saved_clock(saved.get("stateful_callbacks"))
        if saved["global_step"] >= budget.steps or (budget.seconds is not None and seconds >= budget.seconds):
            model = AutoModelForCausalLM.from_pretrained(checkpoint, use_safetensors=True)
            return model, {
                "global_step": saved["global_step"],
                "train_seconds": seconds,
                "resumed_from": checkpoint,
                "log_history": saved["log_history"],
            }
    model = AutoModelForCausalLM.from_config(copy.deepcopy(student.config))
    model.load_state_dict(initial_state)
    model.generation_config = copy.deepcopy(student.generation_config)
    clock = TrainClock(budget.seconds)
    trainer = Trainer(
        model=model,
        args=scratch_args,
        train_dataset=train_dataset,
        data_collator=ModelInputsOnly(collator),
        callbacks=[clock],
    )
    trainer.train(resume_from_checkpoint=checkpoint)
    return trainer.model, {
        "global_step": trainer.state.global_step,
        "train_seconds": clock.elapsed(),
        "resumed_from": checkpoint,
        "log_history": trainer.state.log_history,
    }


def run_scratch_baseline(
    trainer: Any,
    data: TransferData,
    initial_state: dict[str, torch.Tensor],
    budget_kind: str,
    distill_seconds_per_step: float,
    output_dir: Path,
    resume: Any,
) -> tuple[PreTrainedModel, dict[str, Any]]:
    """Plan the baseline's budget against the finished distillation `trainer` (saved under
    `output_dir/budget.json`), then train it (`train_scratch_baseline`)."""
    args = trainer.args
    size, n = args.per_device_train_batch_size, len(data.train)
    sample = [data.collator([data.train[i % n] for i in range(j * size, (j + 1) * size)]) for j in (0, 1)]
    budget = ScratchBudget.load_or_plan(
        output_dir / "budget.json",
        budget=budget_kind,
        distill_steps=trainer.state.global_step,
        distill_seconds_per_step=distill_seconds_per_step,
        calibrate=lambda: (
            seconds_per_step(trainer.model, sample, trainer.compute_loss),
            seconds_per_step(trainer.model, sample),
        ),
        on_policy=args.lmbda > 0 or args.seq_kd,
    )
    model, run = train_scratch_baseline(
        trainer.model, initial_state, args, data.train, data.collator, budget, output_dir, resume
    )
    run["budget"] = budget.__dict__
    return model, run


def baseline_writer(
    model: PreTrainedModel | None, run: dict[str, Any] | None, tokenizer: PreTrainedTokenizerBase
) -> Callable[[Path], None] | None:
    """`save_more` for the stage: the scratch student, its tokenizer and loss curve in `scratch_baseline/`."""
    if model is None or run is None:
        return None

    def write(staging: Path) -> None:
        model.save_pretrained(staging / "scratch_baseline")
        tokenizer.save_pretrained(staging / "scratch_baseline")
        plot_loss_curves(run["log_history"], staging / "scratch_baseline" / "loss_curve.png", "scratch loss")

    return write


# --- evaluation -----------------------------------------------------------------------------------------------


def evaluate_student(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    heldout_texts: list[str],
    block_size: int,
    chat_rows: datasets.Dataset | None = None,
    max_samples: int = 64,
    max_new_tokens: int = 16,
) -> dict[str, float]:
    """Held-out nats per character and per token: of the documents (text data) or of the last assistant turns
    (chat data, `reply_loss`); with chat rows that carry an `answer`, also task accuracy."""
    if chat_rows is None:
        loss = language_model_loss(model, tokenizer, heldout_texts, block_size=block_size)
    else:
        loss = reply_loss(model, tokenizer, chat_rows)
    metrics = {
        "heldout_nats_per_char": loss["nats_per_char"],
        "heldout_nats_per_token": loss["nats_per_token"],
    }
    if chat_rows is not None and "answer" in chat_rows.column_names:
        chat = evaluate_chat_model(model, tokenizer, chat_rows, None, max_samples, max_new_tokens)
        metrics.update({k: v for k, v in chat.metrics.items() if k.startswith("task_")})
    return metrics


def compare(
    results: dict[str, dict[str, float]],
    runs: dict[str, dict[str, Any]],
    teacher_name: str,
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Rows of the comparison table and the flat metrics: the distilled student's own keys, `teacher_*` and
    `scratch_*`, and `distill_gain_nats_per_char` (scratch minus distilled: positive = distillation won).
    `results` / `runs` are keyed teacher, distilled and (optionally) scratch; runs hold parameters, steps and
    train_seconds."""
    titles = {
        "teacher": f"teacher ({teacher_name})",
        "distilled": "student, distilled",
        "scratch": "student, from scratch",
    }
    rows = {titles[k]: {**runs[k], **results[k]} for k in titles if k in results}
    metrics = dict(results["distilled"])
    for key in ("teacher", "scratch"):
        metrics.update({f"{key}_{k}": v for k, v in {**runs.get(key, {}), **results.get(key, {})}.items()})
    if "scratch" in results:
        metrics["distill_gain_nats_per_char"] = (
            results["scratch"]["heldout_nats_per_char"] - results["distilled"]["heldout_nats_per_char"]
        )
    return rows, metrics


def comparison_table(rows: dict[str, dict[str, Any]]) -> str:
    """Markdown table: one row per model (teacher, distilled student, scratch student)."""
    columns = [
        ("parameters", "parameters", lambda v: f"{v / 1e6:.2f} M"),
        ("steps", "steps", lambda v: f"{v}"),
        ("train_seconds", "train time", lambda v: f"{v:.1f} s"),
        ("heldout_nats_per_char", "held-out nats/char", lambda v: f"{v:.4f}"),
        ("task_accuracy", "task accuracy", lambda v: f"{v:.3f}"),
    ]
    present = [c for c in columns if any(r.get(c[0]) is not None for r in rows.values())]
    lines = [
        "| model | " + " | ".join(title for _, title, _ in present) + " |",
        "|---|" + "---|" * len(present),
    ]
    for name, row in rows.items():
        cells = [fmt(row[key]) if row.get(key) is not None else "-" for key, _, fmt in present]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_figures(
    teacher_parameters: int,
    student_parameters: int,
    steps: int,
    train_seconds: float,
    scratch: dict[str, Any] | None,
) -> dict[str, dict[str, Any]]:
    """Parameters, steps and training seconds of the teacher, the distilled student and (when trained) the
    scratch student, as `compare` takes them."""
    runs = {
        "teacher": {"parameters": teacher_parameters},
        "distilled": {"parameters": student_parameters, "steps": steps, "train_seconds": train_seconds},
    }
    if scratch is not None:
        runs["scratch"] = {
            "parameters": student_parameters,
            "steps": scratch["global_step"],
            "train_seconds": scratch["train_seconds"],
        }
    return runs


def judge_students(
    models: dict[str, PreTrainedModel | None],
    runs: dict[str, dict[str, Any]],
    tokenizer: PreTrainedTokenizerBase,
    data: TransferData,
    script_args: Any,
    teacher_name: str,
) -> tuple[dict[str, dict[str, Any]], dict[str, Any], str]:
    """Teacher, distilled and scratch students (those not None) on the same held-out data (`evaluate_student`),
    then `compare`d: the table's rows, the flat metrics and the markdown table for the card."""
    results = {
        name: evaluate_student(
            model,
            tokenizer,
            data.heldout_texts,
            script_args.block_size,
            data.chat_rows,
            script_args.eval_max_samples,
            script_args.eval_max_new_tokens,
        )
        for name, model in models.items()
        if model is not None
    }
    rows, metrics = compare(results, runs, teacher_name)
    table = comparison_table(rows)
    if script_args.dataset_kind == "chat":
        table += "\n\nHeld-out nats/char: on the held-out assistant replies, given their conversation."
    return rows, metrics, table


def distillation_card(
    output_dir: Path,
    student: BuiltModel,
    teacher_name: str,
    training_args: Any,
    data_args: Any,
    script_args: Any,
    table: str,
    with_scratch: bool,
) -> dict[str, Any]:
    """The model card of a distilled student: what it was distilled from and on, the comparison table, usage."""
    limit = script_args.max_train_documents
    transfer = f"transfer set: the first {limit} training documents" if limit else "the whole training split"
    versus = "Against the teacher"
    if with_scratch:
        versus = (
            f"Against the same student from scratch (`scratch_baseline/`), equal {script_args.compare_budget}"
        )
    if script_args.dataset_kind == "chat":
        example = 'print(generator([{"role": "user", "content": "What is 3 + 4?"}], max_new_tokens=16))'
    else:
        example = 'print(generator("ROMEO:", max_new_tokens=40)[0]["generated_text"])'
    dataset_name = data_args.dataset_name
    return {
        "title": f"{output_dir.name}: a student distilled with hfrecipes",
        "description": f"A {student.num_parameters / 1e6:.2f} M-parameter student ({student.source}) distilled "
        f"from `{teacher_name}` with TRL's GKDTrainer (beta={training_args.beta}, lmbda={training_args.lmbda}) "
        f"on `{dataset_name}` ({transfer}). {versus}:\n\n{table}",
        "usage": f'from transformers import pipeline\n\ngenerator = pipeline("text-generation", model="{output_dir}")\n'
        + example,
        "base_model": teacher_name,
        "datasets": [dataset_name],
        "tags": ["distillation", "gkd", "trl"],
    }
