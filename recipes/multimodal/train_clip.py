"""CLIP-style contrastive training of an image tower and a text tower on image–caption pairs, with the HF Trainer.

    accelerate launch --config_file accelerate_configs/cpu.yaml recipes/multimodal/train_clip.py \
        --config recipes/multimodal/configs/clip_shapes_tiny.yaml [--output_dir runs/clip] [--key value ...]

`CLIPModel` is built from a preset (with a word-level caption tokenizer trained on the captions) or loaded from
`model_name_or_path` (a Hub CLIP or a previous run). Image→text and text→image recall@k on held-out pairs are
measured before and after training; the loss and that evaluation are in clip_training.py, beside this
script. The output loads with `CLIPModel` / `CLIPProcessor.from_pretrained`, and
its text tower and tokenizer plug into the diffusion recipe (`text_encoder_name_or_path: <this output>`).
Re-running resumes from the last complete checkpoint.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clip_training import ContrastiveTrainer, evaluate_retrieval
from transformers import CLIPImageProcessor, TrainingArguments

from hfrecipes.core.args import CardArguments
from hfrecipes.core.config import RecipeParser, run_main
from hfrecipes.core.efficiency import track_efficiency
from hfrecipes.core.errors import RecipeInputError
from hfrecipes.core.guards import guard_nonfinite
from hfrecipes.core.stages import start_stage
from hfrecipes.core.training import cpu_only_defaults, resume_checkpoint
from hfrecipes.multimodal.vision_text import (
    CLIP_MEAN,
    CLIP_STD,
    CaptionCollator,
    PixelCaptionDataset,
    caption_tokenizer,
    clip_model,
    clip_processor,
    clip_usage,
    prepare_image_splits,
)
from hfrecipes.text.tokenization import load_tokenizer

logger = logging.getLogger(__name__)


@dataclass
class CLIPScriptArguments:
    """The recipe's own settings (YAML keys / --key value); training settings are TrainingArguments."""

    dataset_name: str = field(
        default="builtin:shapes", metadata={"help": "builtin:shapes, image folder, Hub id."}
    )
    dataset_config: str | None = None
    dataset_split: str = "train"
    image_column: str = "image"
    caption_column: str = "text"
    pipeline: list[str] | None = field(
        default=None, metadata={"help": "Cleaning steps; default image_filter >= 8 px."}
    )
    validation_fraction: float = field(
        default=0.1, metadata={"help": "Held-out pairs for eval loss and recall@k."}
    )
    max_samples: int | None = None
    image_size: int | None = field(
        default=32, metadata={"help": "Image tower input size (a loaded model's own if null)."}
    )
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "Hub CLIP or previous output; else a preset."}
    )
    model_preset: str = field(
        default="tiny", metadata={"help": "hfrecipes.multimodal.vision_text presets: tiny, small, clip-base."}
    )
    model_overrides: dict[str, Any] = field(
        default_factory=dict, metadata={"help": "text_config / vision_config / projection_dim."}
    )
    retrieval_ks: list[int] = field(default_factory=lambda: [1, 5])
    retrieval_max_pairs: int = field(default=1000, metadata={"help": "Held-out pairs ranked for recall@k."})


def parse_args(argv: list[str] | None = None) -> tuple:
    """The run's settings: the --config YAML file, then any --key value overrides."""
    parser = RecipeParser((CLIPScriptArguments, TrainingArguments, CardArguments))
    parser.set_defaults(
        **cpu_only_defaults(), output_dir="runs/clip", eval_strategy="steps", remove_unused_columns=False
    )
    return parser.parse_args_and_config(argv)


def main() -> None:
    # --- args -------------------------------------------------------------------------------------------
    script_args, training_args, card_args = parse_args()
    stage = start_stage(
        "multimodal/train_clip",
        script_args,
        training_args,
        card_args,
        inputs={"data": script_args.dataset_name, "model": script_args.model_name_or_path},
    )
    training_args.remove_unused_columns = False  # the collator needs the raw rows
    output_dir = Path(training_args.output_dir)
    source = script_args.model_name_or_path
    processor = CLIPImageProcessor.from_pretrained(source) if source else None
    image_size = script_args.image_size or (processor.crop_size["height"] if processor else None)
    if not image_size:
        raise RecipeInputError("Set image_size (the image tower's input size in pixels).")

    # --- data -------------------------------------------------------------------------------------------
    train, validation, report = prepare_image_splits(
        dataset_name=script_args.dataset_name,
        dataset_split=script_args.dataset_split,
        dataset_config=script_args.dataset_config,
        image_column=script_args.image_column,
        required_columns=[script_args.caption_column],
        pipeline=script_args.pipeline,
        validation_fraction=script_args.validation_fraction,
        max_samples=script_args.max_samples,
        seed=training_args.seed,
    )
    mean, std = (processor.image_mean, processor.image_std) if processor else (CLIP_MEAN, CLIP_STD)
    sets = {
        name: PixelCaptionDataset(
            split,
            [str(c) for c in split[script_args.caption_column]],
            image_size,
            3,
            mean=mean,
            std=std,
            report=report,
            split=name,
        )
        for name, split in (("train", train), ("validation", validation))
    }
    eval_batch = training_args.per_device_eval_batch_size * training_args.world_size
    if training_args.dataloader_drop_last and len(validation) < eval_batch:
        raise RecipeInputError(
            f"Only {len(validation)} validation pairs, fewer than one evaluation batch of {eval_batch} with "
            "dataloader_drop_last: raise validation_fraction or lower per_device_eval_batch_size."
        )

    # --- tokenizer and model ----------------------------------------------------------------------------
    tokenizer = load_tokenizer(source) if source else caption_tokenizer(sets["train"].captions)
    preset, overrides = script_args.model_preset, script_args.model_overrides
    model = clip_model(source, preset, overrides, tokenizer, image_size, seed=training_args.seed)
    parameters = model.num_parameters()
    logger.warning(
        "CLIPModel %s: %.2f M parameters; %d training pairs",
        source or f"preset:{script_args.model_preset}",
        parameters / 1e6,
        len(train),
    )
    ks, limit = script_args.retrieval_ks, script_args.retrieval_max_pairs
    before = evaluate_retrieval(model, sets["validation"], tokenizer, ks, limit)

    # --- trainer and training -----------------------------------------------------------------------------
    trainer = ContrastiveTrainer(
        model=model,
        args=training_args,
        train_dataset=sets["train"],  # global negatives
        eval_dataset=sets["validation"],
        data_collator=CaptionCollator(tokenizer),
    )
    track_efficiency(trainer, flops="measured", unit="pairs")  # -> lineage["efficiency"]
    guard_nonfinite(trainer)  # NaN/inf gradients stop the run naming the step (or skip it)
    resumed_from = resume_checkpoint(training_args)
    train_result = trainer.train(resume_from_checkpoint=resumed_from)

    # --- evaluate -----------------------------------------------------------------------------------------
    eval_metrics = trainer.evaluate()
    after = evaluate_retrieval(trainer.model, sets["validation"], tokenizer, ks, limit)
    metrics = {
        "parameters": parameters,
        "global_step": trainer.state.global_step,
        "train_loss": train_result.training_loss,
        "train_runtime_s": train_result.metrics.get("train_runtime"),
        "eval_loss": eval_metrics.get("eval_loss"),
        **{k: v for k, v in after.items()},
        **{f"untrained_{k}": v for k, v in before.items() if "recall" in k},
    }

    # --- save (atomically), model card, push --------------------------------------------------------------
    k1 = script_args.retrieval_ks[0]
    lineage = stage.finish_trainer(
        trainer,
        config={"script": script_args, "training": training_args, "card": card_args},
        report=report,
        metrics=metrics,
        card={
            "title": f"{output_dir.name}: a CLIP model trained with hfrecipes",
            "description": (
                f"A {parameters / 1e6:.2f} M-parameter `CLIPModel` trained contrastively for {trainer.state.global_step} steps "
                f"on `{script_args.dataset_name}` ({len(train)} pairs, {image_size} px). On {after['retrieval_images']} held-out "
                f"pairs ({after['retrieval_unique_captions']} distinct captions), image→text recall@{k1} went "
                f"{before[f'image_to_text_recall@{k1}']:.3f} → {after[f'image_to_text_recall@{k1}']:.3f} and text→image "
                f"{before[f'text_to_image_recall@{k1}']:.3f} → {after[f'text_to_image_recall@{k1}']:.3f} (chance "
                f"{after[f'image_to_text_chance@{k1}']:.3f} / {after[f'text_to_image_chance@{k1}']:.3f}). Identical captions "
                "count as one text. Its text tower plugs into `recipes/image/train_diffusion.py` via "
                f"`text_encoder_name_or_path: {output_dir}`.\n\n![loss](loss_curve.png)"
            ),
            "usage": clip_usage(output_dir),
            "tags": ["clip", "contrastive"],
            "base_model": source,
            "datasets": [script_args.dataset_name],
            "pipeline_tag": "zero-shot-image-classification",
        },
        loss_title="contrastive loss",
        extra={"resumed_from": resumed_from},
        save_more=clip_processor(tokenizer, image_size, mean, std).save_pretrained,
    )
    if lineage is None:  # not the main process
        return
    print(
        f"image→text recall@{k1} {before[f'image_to_text_recall@{k1}']:.3f} -> {after[f'image_to_text_recall@{k1}']:.3f}, "
        f"text→image {before[f'text_to_image_recall@{k1}']:.3f} -> {after[f'text_to_image_recall@{k1}']:.3f} "
        f"(chance {after[f'image_to_text_chance@{k1}']:.3f}); outputs in {output_dir}"
    )


if __name__ == "__main__":
    run_main(main)
