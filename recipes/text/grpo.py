"""Online RL with TRL's `GRPOTrainer` (group-relative advantages) or `RLOOTrainer` (leave-one-out baseline):
the policy samples `num_generations` replies per prompt, scored by named reward functions and/or a reward model.

    accelerate launch --config_file accelerate_configs/cpu.yaml recipes/text/grpo.py \
        --config recipes/text/configs/grpo_tiny.yaml [--algorithm rloo] [--key value ...]

Rewards: `reward_funcs` from the registry in `hfrecipes.text.rewards` (correctness, format, length_penalty, refusal,
abstention) plus `reward_model_path`, weighted by `reward_weights` (functions first, then the reward model). Generation runs
in transformers on CPU; on GPUs set `use_vllm: true` with `vllm_mode: colocate` (one node, shares the GPUs) or
`server` (a separate `trl vllm-serve` process) — see the full-scale config.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from trl import GRPOConfig, GRPOTrainer, ModelConfig, RLOOConfig, RLOOTrainer, get_peft_config

from hfrecipes.core.args import CardArguments
from hfrecipes.core.config import RecipeParser, run_main
from hfrecipes.core.efficiency import track_efficiency
from hfrecipes.core.errors import RecipeInputError
from hfrecipes.core.guards import guard_nonfinite
from hfrecipes.core.stages import start_stage
from hfrecipes.core.training import cpu_only_defaults, resume_checkpoint
from hfrecipes.data import parse_pipeline
from hfrecipes.text.alignment import (
    AlignmentDataArguments,
    as_conversational_prompts,
    chat_usage,
    check_generation_fits,
    compare,
    comparison_table,
    evaluate_policy,
    load_reward_model,
    prompt_conversations,
)
from hfrecipes.text.models import load_pretrained, model_loading
from hfrecipes.text.posttraining import check_lora_targets
from hfrecipes.text.rewards import check_weights, resolve_reward_functions
from hfrecipes.text.tokenization import load_tokenizer

logger = logging.getLogger(__name__)
ALGORITHMS = {"grpo": (GRPOConfig, GRPOTrainer), "rloo": (RLOOConfig, RLOOTrainer)}


@dataclass
class GRPOScriptArguments(AlignmentDataArguments):
    algorithm: str = field(default="grpo", metadata={"help": "grpo or rloo."})
    dataset_name: str = field(
        default="builtin:chat-mix", metadata={"help": "Prompts (+ answer/label columns for the rewards)."}
    )
    reward_funcs: list[str] | None = field(
        default=None, metadata={"help": "Registered reward functions, e.g. [correctness, format]."}
    )
    reward_model_path: str | None = field(
        default=None, metadata={"help": "A reward model (reward.py's output)."}
    )


def parse_args(argv: list[str] | None = None) -> tuple:
    """Two passes: `algorithm` decides which TRL config class parses the rest of the arguments."""
    first, _ = RecipeParser((GRPOScriptArguments,)).parse_args_and_config(argv, return_remaining_strings=True)
    if first.algorithm not in ALGORITHMS:
        raise RecipeInputError(f"algorithm must be one of {sorted(ALGORITHMS)}, got {first.algorithm!r}.")
    parser = RecipeParser((GRPOScriptArguments, ALGORITHMS[first.algorithm][0], ModelConfig, CardArguments))
    parser.set_defaults(**cpu_only_defaults(), output_dir=f"runs/{first.algorithm}")
    return parser.parse_args_and_config(argv)


def main() -> None:
    # --- args ---------------------------------------------------------------------------------------------
    script_args, training_args, model_args, card_args = parse_args()
    start_path = model_args.model_name_or_path
    if not start_path:
        raise RecipeInputError(
            "Online RL starts from a chat model: set model_name_or_path (e.g. runs/sft_chat_tiny)."
        )
    stage = start_stage(
        f"text/{script_args.algorithm}",
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

    # --- data, rewards, start model -----------------------------------------------------------------------
    train_data, eval_data, report = script_args.load(
        "prompt", training_args.seed, parse_pipeline(script_args.pipeline)
    )
    tokenizer = load_tokenizer(start_path, loading.trust_remote_code, loading.revision)
    functions = resolve_reward_functions(script_args.reward_funcs or [])
    reward_model = load_reward_model(script_args.reward_model_path, tokenizer)
    training_args.reward_weights = check_weights(
        len(functions) + bool(reward_model), training_args.reward_weights
    )
    start = load_pretrained(start_path, loading)
    check_generation_fits(
        tokenizer,
        prompt_conversations(train_data),
        training_args.max_completion_length,
        start.config.max_position_embeddings,
    )
    peft_config = get_peft_config(model_args)
    check_lora_targets(start, peft_config)
    evaluate = script_args.evaluation()
    before = evaluate_policy(start, tokenizer, eval_data, reward_model=reward_model, **evaluate)

    # --- trainer and training -----------------------------------------------------------------------------
    trainer_class = ALGORITHMS[script_args.algorithm][1]
    loading.set_model_init_kwargs(training_args)
    trainer = trainer_class(
        model=start_path,
        reward_funcs=[*functions, *([reward_model.model] if reward_model else [])],
        reward_processing_classes=[None] * len(functions)
        + ([reward_model.tokenizer] if reward_model else []),
        args=training_args,
        train_dataset=as_conversational_prompts(train_data),
        processing_class=tokenizer,
        peft_config=peft_config,
        quantization_config=loading.quantization,
    )
    track_efficiency(trainer)  # throughput, MFU, energy and CO2e -> lineage["efficiency"]
    guard_nonfinite(trainer)  # NaN/inf gradients stop the run naming the step (or skip it)
    resumed_from = resume_checkpoint(training_args)
    train_result = trainer.train(resume_from_checkpoint=resumed_from)

    # --- evaluate -----------------------------------------------------------------------------------------
    policy = trainer.model  # with LoRA a PeftModel, evaluated as is (merging would change what is saved)
    after = evaluate_policy(
        policy, tokenizer, eval_data, reward_model=reward_model, reference=start, **evaluate
    )
    rewards = [entry["reward"] for entry in trainer.state.log_history if "reward" in entry]
    metrics = {
        "global_step": trainer.state.global_step,
        "train_loss": train_result.training_loss,
        "train_reward_first": rewards[0] if rewards else None,
        "train_reward_last": rewards[-1] if rewards else None,
        **compare(before, after),
    }

    # --- save (atomically), model card, push --------------------------------------------------------------
    name = script_args.algorithm.upper()
    reward_names = [f.__name__ for f in functions] + (["reward_model"] if reward_model else [])
    stage.finish_trainer(
        trainer,
        tokenizer=tokenizer,
        config={"script": script_args, "training": training_args, "model": model_args, "card": card_args},
        report=report,
        metrics=metrics,
        card={
            "title": f"{output_dir.name}: {name} with hfrecipes",
            "description": f"A policy trained online with TRL's {trainer_class.__name__} from `{start_path}` on "
            f"`{script_args.dataset_name}`; rewards {reward_names} weighted {training_args.reward_weights}, "
            f"{training_args.num_generations} generations per prompt.\n\n"
            + comparison_table(before, after, "start", name),
            "usage": chat_usage(output_dir),
            "base_model": start_path,
            "datasets": [script_args.dataset_name],
            "tags": [script_args.algorithm, "trl", "reinforcement-learning"],
        },
        samples={"before": before.samples, "after": after.samples},
        loss_title=f"{name} loss",
        extra={"resumed_from": resumed_from, "model_loading": loading.record()},
    )
    if trainer.is_world_process_zero():
        summary = ", ".join(f"{k} {before.metrics[k]:.3f} -> {after.metrics[k]:.3f}" for k in before.metrics)
        print(f"{name} done: {summary}; outputs in {output_dir}")


if __name__ == "__main__":
    run_main(main)
