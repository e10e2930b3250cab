"""Supervised fine-tuning with TRL's `SFTTrainer`: full fine-tuning or LoRA adapters, assistant-only loss,
padding-free packing; task accuracy, refusal, forgetting (and bias, with counterfactual_augment) before/after.

    accelerate launch --config_file accelerate_configs/cpu.yaml recipes/text/sft.py \
        --config recipes/text/configs/sft_tiny.yaml [--key value ...]

`model_name_or_path`: a previous stage's output or a Hub model, else a fresh `model_preset`. Re-running resumes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from trl import ModelConfig, SFTConfig, SFTTrainer, get_peft_config

from hfrecipes.core.args import CardArguments
from hfrecipes.core.config import RecipeParser, run_main
from hfrecipes.core.data_report import DataReport
from hfrecipes.core.efficiency import track_efficiency
from hfrecipes.core.guards import guard_nonfinite
from hfrecipes.core.stages import merged_adapter_writer, start_stage
from hfrecipes.core.training import cpu_only_defaults, resume_checkpoint
from hfrecipes.data import load_source, parse_pipeline, row_text, run_pipeline, validate_format
from hfrecipes.text.models import model_loading
from hfrecipes.text.posttraining import (
    as_prompt_completion,
    before_after,
    check_lora_targets,
    evaluate_chat_model,
    get_chat_lm,
    prepare_chat_template,
    report_conversation_lengths,
    split_eval,
    with_replay,
)
from hfrecipes.text.tokenization import load_or_train_tokenizer

logger = logging.getLogger(__name__)


@dataclass
class SFTScriptArguments:
    dataset_name: str = field(
        default="builtin:arithmetic", metadata={"help": "builtin:, local path, prepared dir or Hub id."}
    )
    dataset_config: str | None = field(default=None, metadata={"help": "Hub dataset configuration."})
    dataset_split: str = field(default="train", metadata={"help": "Split to read."})
    pipeline: list[str] | None = field(
        default=None, metadata={"help": "Data steps first, e.g. [to_messages]."}
    )
    eval_fraction: float = field(default=0.1, metadata={"help": "Held out for eval loss and task metrics."})
    eval_dataset_name: str | None = field(
        default=None, metadata={"help": "Held-out set for task/refusal metrics instead of the split."}
    )
    model_preset: str = field(default="tiny", metadata={"help": "Preset when model_name_or_path is unset."})
    tokenizer_vocab_size: int = field(
        default=1024, metadata={"help": "Vocabulary of a tokenizer trained here."}
    )
    merge_adapter: bool = field(
        default=False, metadata={"help": "With LoRA: also write a merged standalone model to merged/."}
    )
    forgetting_text: str | None = field(
        default=None, metadata={"help": "Held-out pretraining text source: nats/char before vs after."}
    )
    replay_text: str | None = field(
        default=None, metadata={"help": "Pretraining-text source mixed into training against forgetting."}
    )
    replay_fraction: float = field(
        default=0.0, metadata={"help": "Share of replay rows in the training set."}
    )
    eval_max_samples: int = field(
        default=64, metadata={"help": "Held-out prompts generated for task/refusal metrics."}
    )
    eval_max_new_tokens: int = field(default=24, metadata={"help": "Tokens generated per held-out prompt."})
    bias_probe: bool | None = field(
        default=None, metadata={"help": "bias_score before/after; default: if augmented"}
    )


def parse_args(argv: list[str] | None = None) -> tuple:
    """The run's settings: the --config YAML file, then any --key value overrides."""
    parser = RecipeParser((SFTScriptArguments, SFTConfig, ModelConfig, CardArguments))
    parser.set_defaults(**cpu_only_defaults(), output_dir="runs/sft", eval_strategy="steps")
    return parser.parse_args_and_config(argv)


def main() -> None:
    # --- args ---------------------------------------------------------------------------------------------
    script_args, training_args, model_args, card_args = parse_args()
    stage = start_stage(
        "text/sft",
        script_args,
        training_args,
        card_args,
        inputs={
            "data": script_args.dataset_name,
            "model": model_args.model_name_or_path,
            **{k: getattr(script_args, k) for k in ("eval_dataset_name", "forgetting_text", "replay_text")},
        },
    )
    # A k-bit request that cannot work here stops before any data is read.
    loading = model_loading(model_args, training_args.trust_remote_code)
    steps = parse_pipeline(script_args.pipeline)
    output_dir = Path(training_args.output_dir)

    # --- data ---------------------------------------------------------------------------------------------
    report = DataReport(source=script_args.dataset_name)
    dataset = load_source(
        script_args.dataset_name, split=script_args.dataset_split, hub_config=script_args.dataset_config
    )
    dataset = run_pipeline(dataset, steps, report)
    validate_format(dataset, "sft")
    train_data, eval_data = split_eval(dataset, script_args.eval_fraction, training_args.seed, report)

    # --- tokenizer and model ------------------------------------------------------------------------------
    with training_args.main_process_first(desc="tokenizer"):
        tokenizer, tokenizer_source = load_or_train_tokenizer(
            model_name_or_path=model_args.model_name_or_path,
            trained_dir=output_dir / "tokenizer",
            texts=(row_text(r, ["messages"]) for r in train_data),
            vocab_size=script_args.tokenizer_vocab_size,
            trust_remote_code=training_args.trust_remote_code,
            revision=model_args.model_revision,
        )
    built = get_chat_lm(model_args.model_name_or_path, script_args.model_preset, tokenizer, loading=loading)
    model, args = built.model, training_args
    template = prepare_chat_template(model, tokenizer, args.chat_template_path, args.assistant_only_loss)
    training_args.chat_template_path = None  # applied above (TRL would read `chatml` as a path)
    report_conversation_lengths(tokenizer, train_data, eval_data, training_args.max_length, report)
    peft_config = get_peft_config(model_args)
    check_lora_targets(model, peft_config)
    logger.warning("Model %s: %.2f M parameters", built.source, built.num_parameters / 1e6)
    forgetting = script_args.forgetting_text and load_source(script_args.forgetting_text)["text"][:200]
    heldout = load_source(script_args.eval_dataset_name) if script_args.eval_dataset_name else eval_data
    evaluate = partial(  # the same held-out set before and after training
        evaluate_chat_model,
        tokenizer=tokenizer,
        heldout=heldout,
        forgetting_texts=forgetting or None,
        max_samples=script_args.eval_max_samples,
        max_new_tokens=script_args.eval_max_new_tokens,
        bias=script_args.bias_probe is not False
        and (script_args.bias_probe or any(step.name == "counterfactual_augment" for step in steps)),
    )
    before = evaluate(model)

    # --- trainer and training -----------------------------------------------------------------------------
    # Only `messages` goes to the trainer: TRL reads a string `prompt` column as a prompt-completion dataset.
    train_rows, eval_rows = train_data.select_columns(["messages"]), eval_data.select_columns(["messages"])
    if script_args.replay_text and script_args.replay_fraction > 0:
        replay = load_source(script_args.replay_text)["text"]
        train_rows = with_replay(
            train_rows, tokenizer, replay, script_args.replay_fraction, training_args.seed, report
        )
        eval_rows = as_prompt_completion(eval_rows, tokenizer)
        training_args.assistant_only_loss = False  # prompt-completion rows: TRL trains on completions only
    trainer = SFTTrainer(
        model=model,
        args=training_args,
        train_dataset=train_rows,
        eval_dataset=eval_rows,
        processing_class=tokenizer,
        peft_config=peft_config,
    )
    track_efficiency(trainer)  # throughput, MFU, energy and CO2e -> lineage["efficiency"]
    guard_nonfinite(trainer)  # NaN/inf gradients stop the run naming the step (or skip it)
    resumed_from = resume_checkpoint(training_args)
    train_result = trainer.train(resume_from_checkpoint=resumed_from)

    # --- evaluate -----------------------------------------------------------------------------------------
    eval_metrics = trainer.evaluate()
    after = evaluate(trainer.model)
    metrics = {
        "parameters": built.num_parameters,
        "global_step": trainer.state.global_step,
        "train_loss": train_result.training_loss,
        "eval_loss": eval_metrics.get("eval_loss"),
        **before_after(before, after),
    }

    # --- save (atomically), model card, push --------------------------------------------------------------
    kind = f"LoRA adapter (r={model_args.lora_r})" if peft_config else "fully fine-tuned model"
    stage.finish_trainer(
        trainer,
        tokenizer=tokenizer,
        config={"script": script_args, "training": training_args, "model": model_args, "card": card_args},
        report=report,
        metrics=metrics,
        card={
            "title": f"{output_dir.name}: SFT with hfrecipes",
            "description": f"A {kind} trained with TRL's SFTTrainer on `{script_args.dataset_name}` from "
            f"{built.source}.",
            "usage": f'from transformers import pipeline\n\nchat = pipeline("text-generation", model="{output_dir}")\n'
            'print(chat([{"role": "user", "content": "What is 12 + 7?"}], max_new_tokens=24)[0]["generated_text"])',
            "base_model": model_args.model_name_or_path,
            "datasets": [script_args.dataset_name],
            "tags": ["sft", "trl"],
        },
        samples={"before": before.samples, "after": after.samples},
        loss_title="SFT loss",
        extra={
            "resumed_from": resumed_from,
            "model_loading": loading.record(),
            "chat_template": template.record(),
        },
        save_more=merged_adapter_writer(trainer, tokenizer, bool(peft_config) and script_args.merge_adapter),
    )
    if trainer.is_world_process_zero():
        summary = ", ".join(
            f"{k} {before.metrics[k]:.3f} -> {v:.3f}" for k, v in after.metrics.items() if k in before.metrics
        )
        print(f"SFT done: eval loss {metrics['eval_loss']:.4f}; {summary}; outputs in {output_dir}")


if __name__ == "__main__":
    run_main(main)
