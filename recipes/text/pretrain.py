"""Causal-LM pretraining from scratch (a preset) or continued pretraining (a path), with `transformers.Trainer`.

    accelerate launch --config_file accelerate_configs/cpu.yaml recipes/text/pretrain.py \
        --config recipes/text/configs/pretrain_tiny.yaml [--output_dir runs/pretrain_tiny] [--key value ...]

Without a tokenizer (none given and no `model_name_or_path`), a tokenizer is trained on the training split
first. Re-running the same command resumes from the last complete checkpoint in `output_dir`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from transformers import TrainingArguments, default_data_collator

from hfrecipes.core.args import CardArguments, DataArguments, ModelArguments, TokenizerArguments
from hfrecipes.core.config import RecipeParser, run_main
from hfrecipes.core.efficiency import track_efficiency
from hfrecipes.core.errors import RecipeInputError
from hfrecipes.core.guards import guard_nonfinite
from hfrecipes.core.stages import start_stage
from hfrecipes.core.training import (
    CausalLMTrainer,
    cpu_only_defaults,
    ranks_in_sync,
    resume_checkpoint,
    tokens_seen,
)
from hfrecipes.data import prepare_text_splits, tokenize_and_pack
from hfrecipes.text.models import ModelLoading, context_length, get_causal_lm, special_token_ids
from hfrecipes.text.tokenization import fertility, load_or_train_tokenizer

logger = logging.getLogger(__name__)


@dataclass
class PretrainArguments:
    block_size: int = field(default=256, metadata={"help": "Tokens per training sequence (packed)."})
    sample_prompts: list[str] = field(
        default_factory=lambda: ["def ", "The "], metadata={"help": "Prompts sampled at each eval."}
    )
    sample_max_new_tokens: int = field(default=48, metadata={"help": "Tokens generated per sample prompt."})


def parse_args(argv: list[str] | None = None) -> tuple:
    """The run's settings: the --config YAML file, then any --key value overrides."""
    parser = RecipeParser(
        (
            DataArguments,
            ModelArguments,
            TokenizerArguments,
            PretrainArguments,
            TrainingArguments,
            CardArguments,
        )
    )
    parser.set_defaults(**cpu_only_defaults(), output_dir="runs/pretrain", eval_strategy="steps")
    return parser.parse_args_and_config(argv)


def main() -> None:
    # --- args -------------------------------------------------------------------------------------------
    data_args, model_args, tok_args, script_args, training_args, card_args = parse_args()
    stage = start_stage(
        "text/pretrain",
        data_args,
        model_args,
        tok_args,
        script_args,
        training_args,
        card_args,
        inputs={
            "data": data_args.dataset_name,
            "model": model_args.model_name_or_path,
            "tokenizer": model_args.tokenizer_name_or_path,
        },
    )
    max_context = context_length(
        model_args.model_name_or_path, model_args.model_preset, model_args.model_overrides
    )
    if script_args.block_size > max_context:
        raise RecipeInputError(
            f"block_size={script_args.block_size} exceeds the model's context of {max_context} tokens. "
            f"Lower block_size or raise max_position_embeddings in model_overrides."
        )
    output_dir = Path(training_args.output_dir)

    # --- data and tokenizer -------------------------------------------------------------------------------
    with training_args.main_process_first(desc="data preparation"):
        train_text, validation_text, report = prepare_text_splits(data_args, seed=training_args.seed)
        tokenizer, tokenizer_source = load_or_train_tokenizer(
            tokenizer_name_or_path=model_args.tokenizer_name_or_path,
            model_name_or_path=model_args.model_name_or_path,
            trained_dir=output_dir / "tokenizer",
            texts=train_text["text"],
            tokenizer_type=tok_args.tokenizer_type,
            vocab_size=tok_args.vocab_size,
            min_frequency=tok_args.min_frequency,
            trust_remote_code=model_args.trust_remote_code,
        )
        num_proc = data_args.preprocessing_num_proc
        train_blocks, train_stats = tokenize_and_pack(
            train_text, tokenizer, script_args.block_size, report, "train", num_proc
        )
        eval_blocks, eval_stats = tokenize_and_pack(
            validation_text, tokenizer, script_args.block_size, report, "validation", num_proc
        )
    report.summary.update(train=train_stats, validation=eval_stats)
    eval_batch = training_args.per_device_eval_batch_size * training_args.world_size
    if training_args.dataloader_drop_last and len(eval_blocks) < eval_batch:
        raise RecipeInputError(
            f"Only {len(eval_blocks)} validation blocks, fewer than one evaluation batch of {eval_batch} "
            "with dataloader_drop_last: raise validation_fraction or lower per_device_eval_batch_size."
        )

    # --- model --------------------------------------------------------------------------------------------
    built = get_causal_lm(
        model_name_or_path=model_args.model_name_or_path,
        preset=model_args.model_preset,
        vocab_size=len(tokenizer),
        overrides=model_args.model_overrides,
        special_ids=special_token_ids(tokenizer),
        loading=ModelLoading(trust_remote_code=model_args.trust_remote_code),
    )
    model = built.model
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    logger.warning(
        "Model %s: %.2f M parameters; %d training blocks of %d tokens",
        built.source,
        built.num_parameters / 1e6,
        len(train_blocks),
        script_args.block_size,
    )

    # --- trainer and training -----------------------------------------------------------------------------
    trainer = CausalLMTrainer(
        model=model,
        args=training_args,
        train_dataset=train_blocks,
        eval_dataset=eval_blocks,
        processing_class=tokenizer,
        data_collator=default_data_collator,
        tokens_per_char=eval_stats["tokens_per_char"],
        sample_prompts=script_args.sample_prompts,
        sample_max_new_tokens=script_args.sample_max_new_tokens,
    )
    # Throughput, MFU, energy and CO2e of train() -> lineage["efficiency"] (in stage.finish_trainer).
    track_efficiency(trainer, seq_len=script_args.block_size)
    guard_nonfinite(trainer)  # NaN/inf gradients stop the run naming the step (or skip it)
    resumed_from = resume_checkpoint(training_args)
    train_result = trainer.train(resume_from_checkpoint=resumed_from)
    train_seconds = trainer.training_seconds()

    # --- evaluate -----------------------------------------------------------------------------------------
    eval_metrics = trainer.final_metrics()
    sync = ranks_in_sync(model)
    seen = tokens_seen(training_args, trainer.state.global_step, script_args.block_size)
    metrics = {
        "parameters": built.num_parameters,
        "global_step": trainer.state.global_step,
        "tokens_seen": seen,
        "train_loss": train_result.training_loss,
        "train_runtime_s": train_result.metrics.get("train_runtime"),
        "tokens_per_second": seen / train_seconds if train_seconds else None,
        **{
            k: v
            for k, v in eval_metrics.items()
            if k in ("eval_loss", "eval_perplexity", "eval_nats_per_char")
        },
    }
    if tokenizer_source is None:
        metrics.update(
            {f"tokenizer_{k}": v for k, v in fertility(tokenizer, validation_text[:200]["text"]).items()}
        )

    # --- save (atomically), model card, push --------------------------------------------------------------
    stage.finish_trainer(  # every rank saves: FSDP / ZeRO-3 gather their shards there
        trainer,
        tokenizer=tokenizer,
        config={
            "data": data_args,
            "model": model_args,
            "tokenizer": tok_args,
            "script": script_args,
            "training": training_args,
            "card": card_args,
        },
        more_inputs={"tokenizer": tokenizer_source},  # the model's own when no tokenizer is given
        report=report,
        metrics=metrics,
        card={
            "title": f"{output_dir.name}: a causal LM pretrained with hfrecipes",
            "description": f"A {built.num_parameters / 1e6:.2f} M-parameter decoder-only LM ({built.source}) "
            f"trained on `{data_args.dataset_name}` for {trainer.state.global_step} steps ({seen:,} tokens).",
            "usage": f'from transformers import pipeline\n\ngenerator = pipeline("text-generation", model="{output_dir}")\n'
            f'print(generator("{script_args.sample_prompts[0] if script_args.sample_prompts else "The "}", max_new_tokens=40)[0]["generated_text"])',
            "base_model": model_args.model_name_or_path,
            "datasets": [data_args.dataset_name],
        },
        samples=trainer.samples,
        loss_title="pretraining loss",
        extra={"distributed": sync, "resumed_from": resumed_from},
    )
    if trainer.is_world_process_zero():
        if trainer.samples:
            sample = trainer.samples[-len(script_args.sample_prompts)]
            print(f"\nSample at step {sample['step']}: {sample['prompt']}{sample['completion']}")
        print(
            f"Final validation loss: {metrics['eval_loss']:.4f} nats/token, {metrics.get('eval_nats_per_char', float('nan')):.4f} "
            f"nats/char (perplexity {metrics['eval_perplexity']:.2f}); outputs in {output_dir}"
        )


if __name__ == "__main__":
    run_main(main)
