"""Classic RLHF: actor-critic PPO with a value head, GAE, clipped policy/value losses and a KL penalty (adaptive or
fixed) to the frozen reference, on Accelerate. TRL 1.x removed its PPOTrainer: the rollout, the losses and the
update are in `ppo_training.py` beside this script (`ppo_loss`, `ppo_step`: change them there), the plumbing
(models, prompt order, KL controller, checkpoints, resume) in `hfrecipes.text.ppo`; this recipe wires data,
rewards and evaluation around them.

    accelerate launch --config_file accelerate_configs/cpu.yaml recipes/text/ppo.py \
        --config recipes/text/configs/ppo_tiny.yaml [--key value ...]

Rewards: a reward model (`reward_model_path`, e.g. reward.py's output) and/or registered reward functions
(`reward_funcs`), weighted. Re-running resumes from the last complete `checkpoint-<update>/`. The start model is
loaded with TRL's `ModelConfig` options (dtype, attn_implementation, model_revision, load_in_4bit/8bit); with
`use_peft: true` the actor is a LoRA adapter on one frozen base, the critic a value head on that adapted trunk
and the reference the base with the adapter disabled (no second copy); `bf16` and `gradient_checkpointing`
combine with it, and an `accelerate launch` DeepSpeed config shards the trainable part.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import torch
from accelerate import Accelerator
from ppo_training import ppo_step
from trl import ModelConfig, get_peft_config

from hfrecipes.core.args import PublishArguments
from hfrecipes.core.config import RecipeParser, run_main
from hfrecipes.core.efficiency import EfficiencyMeter
from hfrecipes.core.errors import RecipeInputError
from hfrecipes.core.stages import merged_adapter_writer, start_stage
from hfrecipes.core.training import last_complete_checkpoint
from hfrecipes.data import parse_pipeline
from hfrecipes.text.alignment import (
    AlignmentDataArguments,
    chat_usage,
    check_generation_fits,
    compare,
    comparison_table,
    evaluate_policy,
    load_reward_model,
    prompt_conversations,
)
from hfrecipes.text.models import load_pretrained, model_loading
from hfrecipes.text.ppo import PPOConfig, PPOTrainer, build_policy, plot_ppo_curves, ppo_efficiency
from hfrecipes.text.rewards import check_weights, combined_scorer, resolve_reward_functions
from hfrecipes.text.tokenization import load_tokenizer

logger = logging.getLogger(__name__)


@dataclass
class PPOScriptArguments(AlignmentDataArguments):
    dataset_name: str = field(
        default="builtin:chat-mix", metadata={"help": "Prompts (+ answer/label columns)."}
    )
    reward_funcs: list[str] | None = field(default=None, metadata={"help": "Registered reward functions."})
    reward_model_path: str | None = field(
        default=None, metadata={"help": "A reward model (reward.py's output)."}
    )
    reward_weights: list[float] | None = field(
        default=None, metadata={"help": "Functions first, then the RM."}
    )
    merge_adapter: bool = field(
        default=False, metadata={"help": "With LoRA: also write merged/ (standalone)."}
    )


def parse_args(argv: list[str] | None = None) -> tuple:
    """The run's settings: the --config YAML file, then any --key value overrides."""
    parser = RecipeParser((PPOScriptArguments, PPOConfig, ModelConfig, PublishArguments))
    return parser.parse_args_and_config(argv)


def main() -> None:
    # --- args ---------------------------------------------------------------------------------------------
    script_args, config, model_args, publish_args = parse_args()
    start_path = model_args.model_name_or_path
    if not start_path:
        raise RecipeInputError(
            "PPO starts from a chat model: set model_name_or_path (e.g. runs/sft_chat_tiny)."
        )
    stage = start_stage(
        "text/ppo",
        script_args,
        config,
        model_args,
        publish_args,
        inputs={
            "data": script_args.dataset_name,
            "model": start_path,
            "reward_model": script_args.reward_model_path,
        },
    )
    # A k-bit request that cannot work here (no CUDA, no bitsandbytes) stops before any data is read.
    loading = model_loading(model_args, config.trust_remote_code)
    output_dir = Path(config.output_dir)

    # --- data, rewards, models ----------------------------------------------------------------------------
    train_data, eval_data, report = script_args.load(
        "prompt", config.seed, parse_pipeline(script_args.pipeline)
    )
    tokenizer = load_tokenizer(
        start_path, loading.trust_remote_code, loading.revision
    )  # pads with EOS if none
    functions = resolve_reward_functions(script_args.reward_funcs or [])
    reward_model = load_reward_model(script_args.reward_model_path, tokenizer)
    weights = check_weights(len(functions) + bool(reward_model), script_args.reward_weights)
    scorer = combined_scorer(functions, reward_model, weights)
    # With LoRA one base serves as actor, critic trunk and (adapter disabled) reference; else three models.
    peft_config = get_peft_config(model_args)
    policy = build_policy(start_path, loading, peft_config, config.gradient_checkpointing)
    reference = None if peft_config else load_pretrained(start_path, loading).eval()
    conversations = prompt_conversations(train_data)
    check_generation_fits(
        tokenizer, conversations, config.max_new_tokens, policy.config.max_position_embeddings
    )
    # Templates write their own BOS (Llama-3, Gemma-3, Mistral): the trainer tokenizes without special tokens.
    prompts = tokenizer.apply_chat_template(conversations, add_generation_prompt=True, tokenize=False)
    columns = {c: list(train_data[c]) for c in ("answer", "label") if c in train_data.column_names}

    # --- trainer and training -----------------------------------------------------------------------------
    # Created after the models are loaded: under ZeRO-3 (zero3_init_flag) models loaded later would be partitioned
    # at load, and the frozen ones (reference, reward model) never go through a DeepSpeed engine to be gathered.
    accelerator = Accelerator(
        cpu=not torch.cuda.is_available(), mixed_precision="bf16" if config.bf16 else None
    )
    if reward_model is not None:  # frozen, beside the policy: on its device, in the dtype asked for
        dtype = {} if loading.dtype == "auto" else {"dtype": loading.torch_dtype()}
        reward_model.model.to(accelerator.device, **dtype)
    trainer = PPOTrainer(
        config,
        policy,
        reference,
        tokenizer,
        reward_fn=scorer,
        train_prompts=prompts,
        accelerator=accelerator,
        prompt_columns=columns,
        step_fn=ppo_step,
    )
    reference = trainer.ref_policy  # with LoRA: the base under the adapter, switched off
    evaluate = script_args.evaluation()
    before = evaluate_policy(reference, tokenizer, eval_data, reward_model=reward_model, **evaluate)
    # train() restores the last complete checkpoint itself (RNG states at the point the run saved them); the
    # efficiency record counts the updates of the log that ran after the start of this process.
    started = last_complete_checkpoint(config.output_dir)
    meter = EfficiencyMeter(accelerator.device).start()
    log_history = trainer.train(resume_from_checkpoint=True)
    first_update = (
        len(log_history) - (trainer.update - int(Path(started).name.split("-")[-1])) if started else 0
    )
    efficiency = ppo_efficiency(trainer, meter, max(first_update, 0))

    # --- evaluate -----------------------------------------------------------------------------------------
    after = evaluate_policy(
        trainer.policy, tokenizer, eval_data, reward_model=reward_model, reference=reference, **evaluate
    )
    scores = [entry["score"] for entry in log_history]
    window = max(1, len(scores) // 5)
    metrics = {
        "updates": trainer.update,
        "train_score_first": sum(scores[:window]) / window,
        "train_score_last": sum(scores[-window:]) / window,
        "train_kl_last": log_history[-1]["kl"],
        "kl_coef_last": log_history[-1]["kl_coef"],
        **compare(before, after),
    }

    # --- save (atomically), model card, push --------------------------------------------------------------
    staging = stage.shared_staging(accelerator.is_main_process, accelerator.main_process_first)
    trainer.save_model(staging)  # with LoRA: the adapter (+ merged/ with merge_adapter), and the value head
    merge = merged_adapter_writer(
        SimpleNamespace(model=trainer.policy), tokenizer, bool(peft_config) and script_args.merge_adapter
    )

    def save_more(staging: Path) -> None:
        plot_ppo_curves(log_history, staging / "ppo_curves.png")
        if merge is not None:
            merge(staging)

    kind = f"A LoRA adapter (r={model_args.lora_r})" if peft_config else "A policy"
    if accelerator.is_main_process:
        stage.finish(
            staging,
            tokenizer=tokenizer,
            config={"script": script_args, "ppo": config, "model": model_args, "publish": publish_args},
            report=report,
            metrics=metrics,
            card={
                "title": f"{output_dir.name}: PPO with hfrecipes",
                "description": f"{kind} trained with actor-critic PPO (hfrecipes.text.ppo: GAE, clipped losses, "
                f"{'adaptive' if config.target_kl else 'fixed'} KL penalty) from `{start_path}`; rewards "
                f"{[f.__name__ for f in functions] + (['reward_model'] if reward_model else [])} weighted {weights}. "
                "The value head (the critic, on the policy's trunk) is in value_head.safetensors.\n\n"
                + comparison_table(before, after, "start", "PPO"),
                "usage": chat_usage(output_dir),
                "base_model": start_path,
                "datasets": [script_args.dataset_name],
                "tags": ["ppo", "rlhf", "reinforcement-learning"],
            },
            log_history=log_history,
            samples={"before": before.samples, "after": after.samples},
            loss_title="PPO loss",
            save_more=save_more,
            efficiency=efficiency,
            extra={"model_loading": loading.record()},
        )
        summary = ", ".join(f"{k} {before.metrics[k]:.3f} -> {after.metrics[k]:.3f}" for k in before.metrics)
        print(
            f"PPO done: train score {metrics['train_score_first']:.3f} -> {metrics['train_score_last']:.3f}; "
            f"{summary}; outputs in {output_dir}"
        )


if __name__ == "__main__":
    run_main(main)
