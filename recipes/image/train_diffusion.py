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
Beside this script: its settings (diffusion_arguments.py) and what it computes: the training step and its loss,
sampling and the evaluation (diffusion_training.py).
"""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path

import diffusion_training
import torch
from diffusion_arguments import DiffusionModelArguments, ImageDataArguments

from hfrecipes.core.args import PublishArguments
from hfrecipes.core.config import RecipeParser, run_main
from hfrecipes.core.stages import start_stage
from hfrecipes.diffusion.args import DiffusionTrainingArguments
from hfrecipes.diffusion.loop import DiffusionLoop
from hfrecipes.diffusion.runs import run_metrics, write_run_files
from hfrecipes.image.components import ImageComponents
from hfrecipes.multimodal.vision_text import PixelCaptionDataset, prepare_image_splits

logger = logging.getLogger(__name__)


def parse_args(argv: list[str] | None = None) -> tuple:
    """The run's settings: the --config YAML file, then any --key value overrides."""
    parser = RecipeParser(
        (ImageDataArguments, DiffusionModelArguments, DiffusionTrainingArguments, PublishArguments)
    )
    parser.set_defaults(use_cpu=not torch.cuda.is_available(), output_dir="runs/diffusion")
    return parser.parse_args_and_config(argv)


def main() -> None:
    """Train, evaluate, save and publish one image diffusion model."""
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
        dataset_name=data_args.dataset_name,
        dataset_split=data_args.dataset_split,
        dataset_config=data_args.dataset_config,
        image_column=data_args.image_column,
        required_columns=components.required_columns,
        pipeline=data_args.pipeline,
        validation_fraction=data_args.validation_fraction,
        max_samples=data_args.max_samples,
        seed=args.seed,
    )
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
    logger.warning(
        "UNet: %.2f M parameters; %d training images; pipeline %s",
        components.unet_parameters / 1e6,
        len(train_set),
        components.kind,
    )

    # --- trainer: the step and the evaluation are diffusion_training's ---------------------------------------
    samples_dir = output_dir / "samples"
    loop = DiffusionLoop(
        args,
        components=components,
        loss_fn=partial(diffusion_training.training_step, components, dropout=model_args.condition_dropout),
        dataset=train_set,
        num_rows=len(train_set),
        evaluate=partial(
            diffusion_training.evaluate,
            components=components,
            plan=plan,
            validation_set=validation_set,
            evaluator=evaluator,
            samples_dir=samples_dir,
            seed=args.seed,
        ),
    )

    # --- train ----------------------------------------------------------------------------------------------
    clip_reference = components.clip_reference(validation_set, device=loop.accelerator.device)
    result = loop.train()
    loop.copy_ema_to_modules()

    # --- evaluate -------------------------------------------------------------------------------------------
    extra = {**(evaluator.reference_metrics if evaluator else {}), **clip_reference}
    metrics, untrained, final = run_metrics(result, components, unit="images", extra=extra)

    # --- save, model card, push -------------------------------------------------------------------------
    # DDP keeps every rank's weights identical (result.distributed): the main process alone saves and publishes.
    if not loop.is_main_process:
        return
    clip_scorer = components.clip_model_path  # an input unless it is the text encoder itself
    clip_scorer = None if clip_scorer == model_args.text_encoder_name_or_path else clip_scorer
    with stage.staging() as staging:
        components.save(staging)
        write_run_files(staging, result, samples_dir, suffix="png", loss_title="denoising loss (MSE)")
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
            card=components.card(metrics, result.global_step, output_dir, plan.row_labels),
        )
    adherence = {k: round(v, 3) for k, v in metrics.items() if "adherence" in k and "chance" not in k}
    before, after = untrained.get("validation_loss", float("nan")), final.get("validation_loss", float("nan"))
    print(
        f"Trained {result.global_step} steps in {result.train_seconds:.0f} s; validation loss "
        f"{before:.4f} -> {after:.4f}; {adherence}; outputs in {output_dir}"
    )


if __name__ == "__main__":
    run_main(main)
