"""Reward modeling with TRL's `RewardTrainer`: a sequence-classification model learns to score the preferred
reply of each pair above the rejected one (Bradley-Terry loss).

    accelerate launch --config_file accelerate_configs/cpu.yaml recipes/text/reward.py \
        --config recipes/text/configs/reward_tiny.yaml [--key value ...]

`model_name_or_path` is usually the SFT stage's output (its trunk and tokenizer are reused, the score head starts
fresh); without it a `model_preset` is built with a tokenizer trained on the pairs. Held-out pairwise accuracy and
margin are measured before and after, also per kind of rejected reply. Re-running resumes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from trl import ModelConfig, RewardConfig, RewardTrainer, get_peft_config

from hfrecipes.builtins.preferences import as_preference_rows
from hfrecipes.core.args import CardArguments
from hfrecipes.core.config import RecipeParser, run_main
from hfrecipes.core.efficiency import track_efficiency
from hfrecipes.core.guards import guard_nonfinite
from hfrecipes.core.stages import start_stage
from hfrecipes.core.training import cpu_only_defaults, resume_checkpoint
from hfrecipes.data import parse_pipeline, row_text
from hfrecipes.text.alignment import AlignmentDataArguments
from hfrecipes.text.evaluation import pairwise_accuracy
from hfrecipes.text.models import get_causal_lm, model_loading, special_token_ids
from hfrecipes.text.posttraining import check_lora_targets, prepare_chat_template
from hfrecipes.text.rewards import RewardModelScorer
from hfrecipes.text.tokenization import load_or_train_tokenizer

logger = logging.getLogger(__name__)


@dataclass
class RewardScriptArguments(AlignmentDataArguments):
    model_preset: str = field(default="tiny", metadata={"help": "Preset when model_name_or_path is unset."})
    tokenizer_vocab_size: int = field(
        default=1024, metadata={"help": "Vocabulary of a tokenizer trained here."}
    )


def pairwise(scorer: RewardModelScorer, rows) -> dict[str, float]:
    chosen = scorer.score(rows["prompt"], rows["chosen"])
    rejected = scorer.score(rows["prompt"], rows["rejected"])
    result = pairwise_accuracy(chosen, rejected)
    if "rejection" in rows.column_names:  # which kinds of bad reply the model has learnt to spot
        for kind in sorted(set(rows["rejection"])):
            idx = [i for i, k in enumerate(rows["rejection"]) if k == kind]
            result[f"accuracy_{kind}"] = pairwise_accuracy(
                [chosen[i] for i in idx], [rejected[i] for i in idx]
            )["accuracy"]
    return result


def parse_args(argv: list[str] | None = None) -> tuple:
    """The run's settings: the --config YAML file, then any --key value overrides."""
    parser = RecipeParser((RewardScriptArguments, RewardConfig, ModelConfig, CardArguments))
    parser.set_defaults(**cpu_only_defaults(), output_dir="runs/reward", eval_strategy="steps")
    return parser.parse_args_and_config(argv)


def main() -> None:
    # --- args ---------------------------------------------------------------------------------------------
    script_args, training_args, model_args, card_args = parse_args()
    stage = start_stage(
        "text/reward",
        script_args,
        training_args,
        model_args,
        card_args,
        inputs={"data": script_args.dataset_name, "model": model_args.model_name_or_path},
    )
    loading = model_loading(model_args, training_args.trust_remote_code)  # before any work
    output_dir = Path(training_args.output_dir)

    # --- data ---------------------------------------------------------------------------------------------
    steps = parse_pipeline(script_args.pipeline)
    train_data, eval_data, report = script_args.load("preference", training_args.seed, steps)

    # --- tokenizer and model ------------------------------------------------------------------------------
    with training_args.main_process_first(desc="tokenizer"):
        tokenizer, _ = load_or_train_tokenizer(
            tokenizer_name_or_path=None,
            model_name_or_path=model_args.model_name_or_path,
            trained_dir=output_dir / "tokenizer",
            texts=(row_text(r, ["prompt", "chosen", "rejected"]) for r in train_data),
            tokenizer_type="byte-bpe",
            vocab_size=script_args.tokenizer_vocab_size,
            min_frequency=2,
            trust_remote_code=training_args.trust_remote_code,
            revision=model_args.model_revision,
        )
    built = get_causal_lm(
        model_name_or_path=model_args.model_name_or_path,
        preset=script_args.model_preset,
        vocab_size=len(tokenizer),
        loading=loading,
        special_ids=special_token_ids(tokenizer),
        head="reward",
    )
    template = prepare_chat_template(built.model, tokenizer, training_args.chat_template_path)
    training_args.chat_template_path = None  # applied above (TRL would read `chatml` as a path)
    peft_config = get_peft_config(model_args)
    check_lora_targets(built.model, peft_config)
    logger.warning("Reward model %s: %.2f M parameters", built.source, built.num_parameters / 1e6)
    before = pairwise(RewardModelScorer(built.model, tokenizer), eval_data)

    # --- trainer and training -----------------------------------------------------------------------------
    trainer = RewardTrainer(
        model=built.model,
        args=training_args,
        train_dataset=as_preference_rows(train_data),
        eval_dataset=as_preference_rows(eval_data),
        processing_class=tokenizer,
        peft_config=peft_config,
    )
    track_efficiency(trainer)  # throughput, MFU, energy and CO2e -> lineage["efficiency"]
    guard_nonfinite(trainer)  # NaN/inf gradients stop the run naming the step (or skip it)
    resumed_from = resume_checkpoint(training_args)
    train_result = trainer.train(resume_from_checkpoint=resumed_from)

    # --- evaluate -----------------------------------------------------------------------------------------
    after = pairwise(RewardModelScorer(trainer.model, tokenizer), eval_data)
    metrics = {
        "parameters": built.num_parameters,
        "global_step": trainer.state.global_step,
        "train_loss": train_result.training_loss,
        "eval_pairs": len(eval_data),
        **{f"{k}_before": v for k, v in before.items()},
        **after,
    }

    # --- save (atomically), model card, push --------------------------------------------------------------
    usage = (
        "import torch\nfrom transformers import AutoModelForSequenceClassification, AutoTokenizer\n\n"
        f'model = AutoModelForSequenceClassification.from_pretrained("{output_dir}")\n'
        f'tokenizer = AutoTokenizer.from_pretrained("{output_dir}")\n'
        'chat = [{"role": "user", "content": "What is 2 + 3?"}, {"role": "assistant", "content": "The answer is 5."}]\n'
        "ids = tokenizer.apply_chat_template(chat, return_tensors='pt', return_dict=True)\n"
        "print(model(**ids).logits[0, 0].item())  # higher = more preferred"
    )
    stage.finish_trainer(
        trainer,
        tokenizer=tokenizer,
        config={"script": script_args, "training": training_args, "model": model_args, "card": card_args},
        report=report,
        metrics=metrics,
        card={
            "title": f"{output_dir.name}: reward model with hfrecipes",
            "description": f"A reward model (sequence classification, one score) trained with TRL's RewardTrainer "
            f"on `{script_args.dataset_name}` from {built.source}. Held-out pairwise accuracy "
            f"{before['accuracy']:.3f} -> {after['accuracy']:.3f}, margin {after['mean_margin']:.3f}.",
            "usage": usage,
            "base_model": model_args.model_name_or_path,
            "datasets": [script_args.dataset_name],
            "tags": ["reward-model", "trl"],
            "pipeline_tag": "text-classification",
        },
        loss_title="reward model loss",
        extra={
            "resumed_from": resumed_from,
            "model_loading": loading.record(),
            "chat_template": template.record(),
        },
    )
    if trainer.is_world_process_zero():
        print(
            f"Reward model done: held-out accuracy {before['accuracy']:.3f} -> {after['accuracy']:.3f}, "
            f"margin {before['mean_margin']:.3f} -> {after['mean_margin']:.3f}; outputs in {output_dir}"
        )


if __name__ == "__main__":
    run_main(main)
