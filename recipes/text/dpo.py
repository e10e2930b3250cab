"""Direct preference optimisation with TRL's `DPOTrainer`, from the SFT stage's output.

    accelerate launch --config_file accelerate_configs/cpu.yaml recipes/text/dpo.py \
        --config recipes/text/configs/dpo_tiny.yaml [--key value ...]

The policy and the frozen reference are both loaded from `model_name_or_path` (a saved path, which is how TRL
builds the reference; with LoRA the reference is the base with the adapter switched off). `loss_type` picks the
objective (sigmoid = DPO, ipo, hinge, robust, ... as TRL offers). Pairs come from a dataset or, with
`ai_feedback: true`, from two sampled replies per prompt labelled by reward functions / a reward model. The start
and the trained policy are compared on held-out prompts: reward-model score and win rate, accuracy, refusals, KL.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from transformers.trainer_utils import IntervalStrategy
from trl import DPOConfig, DPOTrainer, ModelConfig, get_peft_config

from hfrecipes.builtins.preferences import ai_feedback_pairs, as_preference_rows
from hfrecipes.core.args import CardArguments
from hfrecipes.core.config import RecipeParser, run_main
from hfrecipes.core.efficiency import track_efficiency
from hfrecipes.core.errors import RecipeInputError
from hfrecipes.core.guards import guard_nonfinite
from hfrecipes.core.stages import merged_adapter_writer, start_stage
from hfrecipes.core.training import cpu_only_defaults, resume_checkpoint
from hfrecipes.data import parse_pipeline
from hfrecipes.text.alignment import (
    AlignmentDataArguments,
    chat_usage,
    compare,
    comparison_table,
    evaluate_policy,
    load_reward_model,
    reply_logprobs,
)
from hfrecipes.text.evaluation import generate_replies
from hfrecipes.text.models import load_pretrained, model_loading
from hfrecipes.text.posttraining import check_lora_targets
from hfrecipes.text.rewards import check_weights, combined_scorer, resolve_reward_functions
from hfrecipes.text.tokenization import load_tokenizer

logger = logging.getLogger(__name__)


@dataclass
class DPOScriptArguments(AlignmentDataArguments):
    reward_model_path: str | None = field(
        default=None, metadata={"help": "Reward model judging held-out replies (win rate vs the start)."}
    )
    ai_feedback: bool = field(
        default=False, metadata={"help": "Build pairs by sampling two replies per prompt and scoring them."}
    )
    ai_feedback_reward_funcs: list[str] | None = field(
        default=None,
        metadata={"help": "Reward functions labelling AI-feedback pairs (plus reward_model_path)."},
    )
    merge_adapter: bool = field(
        default=False, metadata={"help": "With LoRA: also write merged/ (standalone)."}
    )


def logprob_margin(model, tokenizer, rows) -> float:
    """Mean log p(chosen) - log p(rejected) on held-out pairs: what DPO pushes up relative to the reference."""
    prompts = list(rows["prompt"])
    chosen = reply_logprobs(model, tokenizer, prompts, [c[-1]["content"] for c in rows["chosen"]])
    rejected = reply_logprobs(model, tokenizer, prompts, [r[-1]["content"] for r in rows["rejected"]])
    return sum(c - r for c, r in zip(chosen, rejected, strict=True)) / len(prompts)


def parse_args(argv: list[str] | None = None) -> tuple:
    """The run's settings: the --config YAML file, then any --key value overrides."""
    parser = RecipeParser((DPOScriptArguments, DPOConfig, ModelConfig, CardArguments))
    parser.set_defaults(**cpu_only_defaults(), output_dir="runs/dpo", eval_strategy="steps")
    return parser.parse_args_and_config(argv)


def main() -> None:
    # --- args ---------------------------------------------------------------------------------------------
    script_args, training_args, model_args, card_args = parse_args()
    start_path = model_args.model_name_or_path
    if not start_path:
        raise RecipeInputError(
            "DPO starts from a trained chat model: set model_name_or_path (e.g. runs/sft_chat_tiny)."
        )
    stage = start_stage(
        "text/dpo",
        script_args,
        training_args,
        model_args,
        card_args,
        inputs={
            "data": script_args.dataset_name,
            "model": start_path,
            "reward_model": script_args.reward_model_path,
        },
    )
    loading = model_loading(model_args, training_args.trust_remote_code)  # before any work
    output_dir = Path(training_args.output_dir)

    # --- data, start model, reward model ------------------------------------------------------------------
    steps = parse_pipeline(script_args.pipeline)
    kind = "prompt" if script_args.ai_feedback else "preference"
    train_data, eval_data, report = script_args.load(kind, training_args.seed, steps)
    tokenizer = load_tokenizer(start_path, loading.trust_remote_code, loading.revision)
    start = load_pretrained(start_path, loading)
    reward_model = load_reward_model(script_args.reward_model_path, tokenizer)
    if script_args.ai_feedback:
        functions = resolve_reward_functions(script_args.ai_feedback_reward_funcs or [])
        scorer = combined_scorer(
            functions, reward_model, check_weights(len(functions) + bool(reward_model), None)
        )
        train_data, dropped = ai_feedback_pairs(
            train_data,
            lambda prompts, seed: generate_replies(
                start, tokenizer, prompts, script_args.eval_max_new_tokens, do_sample=True, seed=seed
            ),
            scorer,
        )
        report.add(
            "ai_feedback",
            rows_in=len(train_data) + sum(dropped.values()),
            rows_out=len(train_data),
            removed=sum(dropped.values()),
            details=dropped,
        )
    peft_config = get_peft_config(model_args)
    check_lora_targets(start, peft_config)
    evaluate = script_args.evaluation()
    before = evaluate_policy(start, tokenizer, eval_data, reward_model=reward_model, **evaluate)
    has_pairs = "chosen" in eval_data.column_names
    margin_before = logprob_margin(start, tokenizer, eval_data) if has_pairs else None
    if not has_pairs:  # AI-feedback prompts have no held-out pairs for the trainer's eval loss
        training_args.eval_strategy = IntervalStrategy.NO

    # --- trainer and training -----------------------------------------------------------------------------
    training_args.model_init_kwargs = {
        **loading.model_init_kwargs(),
        **(training_args.model_init_kwargs or {}),
    }
    trainer = DPOTrainer(
        model=start_path,  # a path: TRL loads the policy and, from the same path, the frozen reference
        args=training_args,
        train_dataset=as_preference_rows(train_data),
        eval_dataset=as_preference_rows(eval_data) if has_pairs else None,
        processing_class=tokenizer,
        peft_config=peft_config,
        quantization_config=loading.quantization,
    )
    track_efficiency(trainer)  # throughput, MFU, energy and CO2e -> lineage["efficiency"]
    guard_nonfinite(trainer)  # NaN/inf gradients stop the run naming the step (or skip it)
    resumed_from = resume_checkpoint(training_args)
    train_result = trainer.train(resume_from_checkpoint=resumed_from)

    # --- evaluate -----------------------------------------------------------------------------------------
    dpo_metrics = trainer.evaluate() if has_pairs else {}
    policy = trainer.model  # with LoRA a PeftModel: evaluated as is, merged only after the adapter is saved
    after = evaluate_policy(
        policy, tokenizer, eval_data, reward_model=reward_model, reference=start, **evaluate
    )
    metrics = {
        "global_step": trainer.state.global_step,
        "train_loss": train_result.training_loss,
        "loss_type": ",".join(training_args.loss_type),
        **{k.replace("/", "_"): v for k, v in dpo_metrics.items() if k.startswith("eval_rewards")},
        **compare(before, after),
    }
    if has_pairs:
        metrics.update(
            logprob_margin_before=margin_before, logprob_margin=logprob_margin(policy, tokenizer, eval_data)
        )

    # --- save (atomically), model card, push --------------------------------------------------------------
    kind = f"LoRA adapter (r={model_args.lora_r})" if peft_config else "fully fine-tuned model"
    stage.finish_trainer(
        trainer,
        tokenizer=tokenizer,
        config={"script": script_args, "training": training_args, "model": model_args, "card": card_args},
        report=report,
        metrics=metrics,
        card={
            "title": f"{output_dir.name}: DPO with hfrecipes",
            "description": f"A {kind} trained with TRL's DPOTrainer (loss {metrics['loss_type']}, beta "
            f"{training_args.beta}) on `{script_args.dataset_name}` from `{start_path}`.\n\n"
            + comparison_table(before, after, "start (SFT)", "DPO"),
            "usage": chat_usage(output_dir),
            "base_model": start_path,
            "datasets": [script_args.dataset_name],
            "tags": ["dpo", "trl"],
        },
        samples={"before": before.samples, "after": after.samples},
        loss_title="DPO loss",
        extra={"resumed_from": resumed_from, "model_loading": loading.record()},
        save_more=merged_adapter_writer(
            trainer, tokenizer, peft_config is not None and script_args.merge_adapter
        ),
    )
    if trainer.is_world_process_zero():
        summary = ", ".join(f"{k} {before.metrics[k]:.3f} -> {after.metrics[k]:.3f}" for k in before.metrics)
        print(f"DPO done: {summary}; outputs in {output_dir}")


if __name__ == "__main__":
    run_main(main)
