"""Knowledge distillation: a larger teacher (a previous stage's output or a Hub model) into a smaller student,
with TRL's GKD trainer (`trl.experimental.gkd`), judged against the same student trained from scratch.

    accelerate launch --config_file accelerate_configs/cpu.yaml recipes/text/distill.py \
        --config recipes/text/configs/distill_tiny.yaml [--key value ...]

The student is a `student_preset` (built with the teacher's tokenizer) or `student_model_name_or_path` (it
must share the teacher's tokenizer). With `compare_with_scratch`, the same student from the same initial
weights is also trained with plain cross-entropy on the same data for an equal budget (`compare_budget`:
`time` = the distillation's training wall time, or `steps`), and teacher, distilled and scratch students are
compared on held-out nats per character (and task accuracy on chat data with answers). Re-running resumes.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:  # experimental in TRL: a TRL without it must not break importing this module, only running it
    from trl.experimental.gkd import GKDConfig, GKDTrainer
except ImportError:
    GKDConfig = GKDTrainer = None

from trl import ModelConfig

from hfrecipes.core.args import CardArguments, DataArguments
from hfrecipes.core.config import RecipeParser, run_main
from hfrecipes.core.efficiency import track_efficiency
from hfrecipes.core.guards import guard_nonfinite
from hfrecipes.core.stages import start_stage
from hfrecipes.core.training import cpu_only_defaults, resume_checkpoint
from hfrecipes.text.distillation import (
    TrainClock,
    baseline_writer,
    build_student,
    check_arguments,
    check_same_tokenizer,
    distillation_card,
    judge_students,
    missing_trl_feature,
    prepare_transfer_data,
    run_figures,
    run_scratch_baseline,
)
from hfrecipes.text.models import get_causal_lm, model_loading
from hfrecipes.text.posttraining import prepare_chat_template
from hfrecipes.text.tokenization import load_tokenizer

logger = logging.getLogger(__name__)


@dataclass
class DistillArguments:
    dataset_kind: str = field(default="text", metadata={"help": "text (packed blocks) or chat (messages)."})
    student_preset: str = field(default="tiny", metadata={"help": "Student preset (hfrecipes.text.models)."})
    student_overrides: dict[str, Any] = field(
        default_factory=dict, metadata={"help": "Preset fields to change."}
    )
    block_size: int = field(default=128, metadata={"help": "text: tokens per packed training block."})
    max_train_documents: int | None = field(
        default=None, metadata={"help": "Transfer set: only the first N training documents / rows."}
    )
    prompt_tokens: int = field(
        default=16, metadata={"help": "text: block prefix generated from when lmbda > 0."}
    )
    compare_with_scratch: bool = field(
        default=True, metadata={"help": "Also train the student from scratch."}
    )
    compare_budget: str = field(
        default="time", metadata={"help": "Scratch budget: time (wall time) or steps."}
    )
    eval_max_documents: int = field(default=200, metadata={"help": "Held-out documents for nats/char."})
    eval_max_samples: int = field(default=64, metadata={"help": "chat: held-out prompts for task accuracy."})
    eval_max_new_tokens: int = field(default=16, metadata={"help": "chat: tokens generated per prompt."})


def parse_args(argv: list[str] | None = None) -> tuple:
    """The run's settings: the --config YAML file, then any --key value overrides."""
    # As in TRL's GKD script: ModelConfig's model_name_or_path is the student (a preset when unset).
    parser = RecipeParser((DataArguments, DistillArguments, GKDConfig, ModelConfig, CardArguments))
    parser.set_defaults(
        **cpu_only_defaults(),
        output_dir="runs/distill",
        lmbda=0.0,
        beta=0.0,
        activation_checkpointing=False,
    )
    return parser.parse_args_and_config(argv)


def main() -> None:
    if GKDConfig is None or GKDTrainer is None:  # before anything is parsed or loaded
        raise missing_trl_feature("GKD trainer (trl.experimental.gkd.GKDTrainer)")
    # --- args ---------------------------------------------------------------------------------------------
    data_args, script_args, training_args, model_args, card_args = parse_args()
    teacher_path = training_args.teacher_model_name_or_path
    student_path = model_args.model_name_or_path
    stage = start_stage(
        "text/distill",
        data_args,
        script_args,
        training_args,
        card_args,
        inputs={"teacher": teacher_path, "student": student_path, "data": data_args.dataset_name},
    )
    on_policy = training_args.lmbda > 0 or training_args.seq_kd
    check_arguments(teacher_path, student_path, script_args, on_policy, model_args.use_peft)
    loading = model_loading(model_args, training_args.trust_remote_code)
    output_dir = Path(training_args.output_dir)

    # --- teacher and tokenizer ----------------------------------------------------------------------------
    tokenizer = load_tokenizer(teacher_path, training_args.trust_remote_code)
    if student_path:
        check_same_tokenizer(tokenizer, load_tokenizer(student_path), teacher_path, student_path)
    teacher_built = get_causal_lm(
        model_name_or_path=teacher_path, preset=None, vocab_size=len(tokenizer), loading=loading
    )
    teacher = teacher_built.model.eval()
    if script_args.dataset_kind == "chat":
        prepare_chat_template(teacher, tokenizer, training_args.chat_template_path)
    training_args.chat_template_path = None  # applied above (TRL would read `chatml` as a path)

    # --- data ---------------------------------------------------------------------------------------------
    with training_args.main_process_first(desc="data preparation"):
        data = prepare_transfer_data(
            script_args.dataset_kind,
            data_args,
            tokenizer,
            block_size=script_args.block_size,
            max_length=training_args.max_length,
            max_train_documents=script_args.max_train_documents,
            eval_max_documents=script_args.eval_max_documents,
            prompt_tokens=script_args.prompt_tokens,
            seed=training_args.seed,
        )

    # --- student --------------------------------------------------------------------------------------------
    built = build_student(student_path, script_args, tokenizer, teacher_built, loading)
    student = built.model
    initial_state = copy.deepcopy(student.state_dict())  # the scratch baseline starts from the same weights

    # --- trainer and training (GKD) -------------------------------------------------------------------------
    trainer = GKDTrainer(
        model=student,
        teacher_model=teacher,
        args=training_args,
        train_dataset=data.train,
        data_collator=data.collator,
        processing_class=tokenizer,
        callbacks=[clock := TrainClock()],  # training seconds, carried across resumes in the checkpoints
    )
    track_efficiency(trainer)  # throughput, MFU, energy and CO2e -> lineage["efficiency"]
    guard_nonfinite(trainer)  # NaN/inf gradients stop the run naming the step (or skip it)
    resumed_from = resume_checkpoint(training_args)
    train_result = trainer.train(resume_from_checkpoint=resumed_from)
    steps = trainer.state.global_step
    seconds_per_distill_step = clock.elapsed() / max(steps, 1)

    # --- scratch baseline: the same student, initial weights and data, plain cross-entropy, equal budget ------
    scratch_model, scratch = None, None
    if script_args.compare_with_scratch:
        scratch_model, scratch = run_scratch_baseline(
            trainer,
            data,
            initial_state,
            script_args.compare_budget,
            seconds_per_distill_step,
            output_dir / "checkpoint-scratch",
            resume_checkpoint,  # a checkpoint-* name: never pushed
        )

    # --- evaluate: teacher, distilled and scratch students on the same held-out data ------------------------
    runs = run_figures(
        teacher_built.num_parameters, built.num_parameters, steps, seconds_per_distill_step * steps, scratch
    )
    models = {"teacher": teacher, "distilled": trainer.model, "scratch": scratch_model}
    rows, metrics, table = judge_students(models, runs, tokenizer, data, script_args, teacher_path)
    metrics.update(
        parameters=built.num_parameters,
        global_step=steps,
        train_loss=train_result.training_loss,
        train_seconds=seconds_per_distill_step * steps,
    )

    # --- save (atomically), model card, push --------------------------------------------------------------
    stage.finish_trainer(
        trainer,
        tokenizer=tokenizer,
        config={
            "data": data_args,
            "script": script_args,
            "training": training_args,
            "model": model_args,
            "card": card_args,
        },
        report=data.report,
        metrics=metrics,
        card=distillation_card(
            output_dir, built, teacher_path, training_args, data_args, script_args, table, scratch is not None
        ),
        loss_title="distillation loss (generalized JSD to the teacher)",
        extra={
            "resumed_from": resumed_from,
            "model_loading": loading.record(),
            "comparison": rows,
            "scratch_run": scratch and {k: v for k, v in scratch.items() if k != "log_history"},
        },
        save_more=baseline_writer(scratch_model, scratch, tokenizer),
    )
    if trainer.is_world_process_zero():
        print(f"\n{table}\n\nOutputs in {output_dir}")


if __name__ == "__main__":
    run_main(main)
