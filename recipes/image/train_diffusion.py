"""Diffusion training for images: unconditional, class- or text-conditional, from scratch or fine-tuning a
pipeline (fully or with LoRA), in pixel space (tiny presets) or latent space (with a VAE).

    accelerate launch --config_file accelerate_configs/cpu.yaml recipes/image/train_diffusion.py \
        --config recipes/image/configs/diffusion_digits_tiny.yaml [--output_dir runs/digits] [--key value ...]

Output: a pipeline folder for `diffusers.DiffusionPipeline.from_pretrained` (DDPMPipeline unconditional,
IFPipeline text-conditional in pixel space, StableDiffusionPipeline with a VAE), or LoRA weights for the base
pipeline (`pipe.load_lora_weights(output_dir)`); sample grids (`samples.png`, `samples/step-*.png`), metrics
of the untrained and trained model (prompt adherence, Fréchet distance, validation loss, and the CLIP score when
a trained CLIP is at hand: `clip_model_path`, or the text encoder's source when it is the CLIP recipe's output),
lineage and card.
Class conditioning is text conditioning on captions made from the labels (`class_caption_template`), so the
standard text-to-image pipelines load and sample it. Re-running resumes from the last complete checkpoint.
"""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path

import torch

from hfrecipes.core.args import PublishArguments
from hfrecipes.core.config import RecipeParser, run_main
from hfrecipes.core.stages import start_stage
from hfrecipes.diffusion import loop as dm
from hfrecipes.image.components import DiffusionModelArguments, ImageComponents, ImageDataArguments
from hfrecipes.multimodal.vision_text import PixelCaptionDataset, prepare_image_splits

logger = logging.getLogger(__name__)


def parse_args(argv: list[str] | None = None) -> tuple:
    """The run's settings: the --config YAML file, then any --key value overrides."""
    parser = RecipeParser(
        (ImageDataArguments, DiffusionModelArguments, dm.DiffusionTrainingArguments, PublishArguments)
    )
    parser.set_defaults(use_cpu=not torch.cuda.is_available(), output_dir="runs/diffusion")
    return parser.parse_args_and_config(argv)


def main() -> None:
    # --- args -------------------------------------------------------------------------------------------
    data_args, model_args, args, publish_args = parse_args()
    stage = start_stage(
        "image/train_diffusion",
        data_args,
        model_args,
        args,
        publish_args,
        inputs={
            "data": data_args.dataset_name,
            "pipeline": model_args.pretrained_pipeline,
            "text_encoder": model_args.text_encoder_name_or_path,
        },
    )
    # The VAE and the CLIP scorer are loaded (and a bad one refused, naming its class) right here, before any data.
    components = ImageComponents.plan(data_args, model_args)
    output_dir = Path(args.output_dir)

    # --- data -------------------------------------------------------------------------------------------
    train, validation, report = prepare_image_splits(
        dataset_name=data_args.dataset_name, dataset_split=data_args.dataset_split,
        dataset_config=data_args.dataset_config, image_column=data_args.image_column,
        required_columns=components.required_columns, pipeline=data_args.pipeline,
        validation_fraction=data_args.validation_fraction, max_samples=data_args.max_samples, seed=args.seed,
    )  # fmt: skip
    train_captions, validation_captions = components.captions(train), components.captions(validation)
    size, channels = data_args.resolution, data_args.channels
    train_set = PixelCaptionDataset(train, train_captions, size, channels, report=report, split="train")
    validation_set = PixelCaptionDataset(
        validation, validation_captions, size, channels, report=report, split="validation"
    )
    plan = components.eval_plan(train, validation, validation_captions)

    # --- model --------------------------------------------------------------------------------------------
    components.build((train_captions or []) + plan.row_labels, seed=args.seed)
    evaluator = components.evaluator(train, train_set, validation, validation_set, seed=args.seed)
    logger.warning("UNet: %.2f M parameters; %d training images; pipeline %s", components.unet_parameters / 1e6,
                   len(train_set), components.kind)  # fmt: skip

    # --- trainer ------------------------------------------------------------------------------------------
    samples_dir = output_dir / "samples"

    def evaluate(step: int, modules: dict) -> dict:
        images = components.sample(modules, plan.prompts, seed=args.seed)
        dm.save_image_grid(images, samples_dir / f"step-{step:06d}.png", row_labels=plan.row_labels or None,
                           rows=len(plan.row_labels) or model_args.num_eval_prompts)  # fmt: skip
        metrics = components.validation_losses(modules, validation_set, seed=args.seed)
        if evaluator is not None:
            metrics.update(evaluator(images, plan.targets))
        metrics.update(
            components.clip_metrics(images, plan.prompts, next(modules["unet"].parameters()).device)
        )
        return metrics

    loop = dm.DiffusionLoop(
        args, modules=components.trainable(), loss_fn=partial(components.loss, dropout=model_args.condition_dropout),
        dataset=train_set, num_rows=len(train_set), evaluate=evaluate, fingerprint=components.fingerprint(),
        ema_modules=[] if model_args.lora_rank else list(components.trainable()),
    )  # fmt: skip

    # --- train ----------------------------------------------------------------------------------------------
    clip_reference = components.clip_reference(validation_set, device=loop.accelerator.device)
    result = loop.train()
    loop.copy_ema_to_modules()

    # --- evaluate -------------------------------------------------------------------------------------------
    extra = {**(evaluator.reference_metrics if evaluator else {}), **clip_reference}
    metrics, untrained, final = dm.run_metrics(result, components.trainable(), unit="images", extra=extra)

    # --- save, model card, push -------------------------------------------------------------------------
    # DDP keeps every rank's weights identical (result.distributed): the main process alone saves and publishes.
    if not loop.is_main_process:
        return
    clip_scorer = components.clip_model_path  # an input unless it is the text encoder itself
    clip_scorer = None if clip_scorer == model_args.text_encoder_name_or_path else clip_scorer
    with stage.staging() as staging:
        components.save(staging)
        dm.write_run_files(staging, result, samples_dir, suffix="png", loss_title="denoising loss (MSE)")
        stage.finish(
            staging,
            config={"data": data_args, "model": model_args, "training": args, "publish": publish_args},
            more_inputs={"vae": model_args.vae_name_or_path, "clip_score_model": clip_scorer},
            report=report,
            metrics=metrics,
            efficiency=result.efficiency,
            extra={
                "resumed_from": result.resumed_from,
                "pipeline_class": components.pipeline_class_name,
                "distributed": result.distributed,
            },
            card={
                "title": f"{output_dir.name}: {components.describe()}",
                "description": components.card_description(
                    metrics, data_args.dataset_name, result.global_step
                ),
                "usage": components.usage(str(output_dir), plan.row_labels),
                "tags": ["diffusers", "diffusion", components.pipeline_class_name],
                "base_model": model_args.pretrained_pipeline,
                "datasets": [data_args.dataset_name],
                "library_name": "diffusers",
                "pipeline_tag": "text-to-image"
                if components.conditional
                else "unconditional-image-generation",
            },
        )
    adherence = {k: round(v, 3) for k, v in metrics.items() if "adherence" in k and "chance" not in k}
    print(f"Trained {result.global_step} steps in {result.train_seconds:.0f} s; validation loss "
          f"{untrained.get('validation_loss', float('nan')):.4f} -> {final.get('validation_loss', float('nan')):.4f}; "
          f"{adherence}; outputs in {output_dir}")  # fmt: skip


if __name__ == "__main__":
    run_main(main)
