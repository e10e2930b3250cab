"""Text-to-video diffusion: a UNet3DConditionModel (TextToVideoSDPipeline) or WanTransformer3DModel (WanPipeline)
from a tiny preset in pixel space or with a given VAE in latent space, or an existing pipeline fine-tuned fully or
with LoRA; classifier-free guidance through caption dropout; motion accuracy, temporal consistency and per-frame
prompt adherence measured offline.

    accelerate launch --config_file accelerate_configs/cpu.yaml recipes/video/train_video_diffusion.py \
        --config recipes/video/configs/video_shapes_tiny.yaml [--output_dir runs/video] [--key value ...]

Output: a pipeline folder for `diffusers.DiffusionPipeline.from_pretrained` (or LoRA weights for the base
pipeline: `pipe.load_lora_weights(output_dir)`), sample GIFs (`samples.gif`, `samples_untrained.gif`,
`samples/step-*.gif`), metrics of the untrained and trained model beside the same measures on real clips,
loss curve, data report, lineage and model card. Re-running resumes from the last complete checkpoint.
Beside this script: its settings (video_arguments.py) and what it computes: the training step and its losses
(video_training.py), sampling and the evaluation (video_sampling.py).
"""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path

import torch
import video_sampling
import video_training
from video_arguments import VideoDataArguments, VideoModelArguments

from hfrecipes.core.args import PublishArguments
from hfrecipes.core.config import RecipeParser, run_main
from hfrecipes.core.stages import start_stage
from hfrecipes.diffusion.args import DiffusionTrainingArguments
from hfrecipes.diffusion.loop import DiffusionLoop
from hfrecipes.diffusion.runs import run_metrics, write_run_files
from hfrecipes.video.components import VideoComponents
from hfrecipes.video.data import VideoCaptionDataset, prepare_video_splits

logger = logging.getLogger(__name__)


def parse_args(argv: list[str] | None = None) -> tuple:
    """The run's settings: the --config YAML file, then any --key value overrides."""
    parser = RecipeParser(
        (VideoDataArguments, VideoModelArguments, DiffusionTrainingArguments, PublishArguments)
    )
    parser.set_defaults(use_cpu=not torch.cuda.is_available(), output_dir="runs/video_diffusion")
    return parser.parse_args_and_config(argv)


def main() -> None:
    """Train, evaluate, save and publish one text-to-video model."""
    # --- args -------------------------------------------------------------------------------------------
    data_args, model_args, args, publish_args = parse_args()
    stage = start_stage(
        "video/train_video_diffusion",
        data_args,
        model_args,
        args,
        publish_args,
        inputs={"data": data_args.dataset_name, "pipeline": model_args.pretrained_pipeline},
    )
    # The VAE and text encoder are loaded (and a bad one refused, naming its class) right here, before any data.
    components = VideoComponents.plan(data_args, model_args)
    output_dir = Path(args.output_dir)

    # --- data -------------------------------------------------------------------------------------------
    train, validation, report = prepare_video_splits(
        dataset_name=data_args.dataset_name,
        num_frames=data_args.num_frames,
        size=data_args.resolution,
        dataset_split=data_args.dataset_split,
        dataset_config=data_args.dataset_config,
        video_column=data_args.video_column,
        caption_column=data_args.caption_column,
        required_columns=components.required_columns,
        frame_stride=data_args.frame_stride,
        short_clips=data_args.short_clips,
        pipeline=data_args.pipeline,
        validation_fraction=data_args.validation_fraction,
        max_samples=data_args.max_samples,
        seed=args.seed,
    )
    train_captions = components.captions(train)
    train_set = VideoCaptionDataset(train, train_captions)
    validation_set = VideoCaptionDataset(validation, components.captions(validation))
    plan = components.eval_plan(train, validation)

    # --- model --------------------------------------------------------------------------------------------
    components.build(train_captions + plan.row_labels, seed=args.seed)
    evaluator = components.evaluator(train, train_set, validation, validation_set, plan, seed=args.seed)
    logger.warning(
        "%s: %.2f M parameters; %d training clips of %d frames; %s",
        type(components.denoiser).__name__,
        components.denoiser_parameters / 1e6,
        len(train_set),
        data_args.num_frames,
        "pixel space" if components.pixel_space else "latent space",
    )

    # --- trainer: the step is video_training's, sampling and the evaluation video_sampling's ---------------
    samples_dir = output_dir / "samples"
    loop = DiffusionLoop(
        args,
        components=components,
        loss_fn=partial(video_training.training_step, components, dropout=model_args.condition_dropout),
        dataset=train_set,
        num_rows=len(train_set),
        evaluate=partial(
            video_sampling.evaluate,
            components=components,
            plan=plan,
            validation_set=validation_set,
            evaluator=evaluator,
            samples_dir=samples_dir,
            seed=args.seed,
        ),
    )

    # --- train ----------------------------------------------------------------------------------------------
    result = loop.train()
    loop.copy_ema_to_modules()

    # --- evaluate -------------------------------------------------------------------------------------------
    extra = evaluator.reference_metrics if evaluator else {}
    metrics, untrained, final = run_metrics(result, components, unit="clips", extra=extra)

    # --- save, model card, push -------------------------------------------------------------------------
    # DDP keeps every rank's weights identical (result.distributed): the main process alone saves and publishes.
    if not loop.is_main_process:
        return
    with stage.staging() as staging:
        components.save(staging)
        write_run_files(staging, result, samples_dir, suffix="gif", loss_title="denoising loss (MSE)")
        stage.finish(
            staging,
            config={"data": data_args, "model": model_args, "training": args, "publish": publish_args},
            more_inputs={
                "text_encoder": model_args.text_encoder_name_or_path,
                "vae": model_args.vae_name_or_path,
            },
            report=report,
            metrics=metrics,
            efficiency=result.efficiency,
            extra={
                "resumed_from": result.resumed_from,
                "pipeline_class": components.pipeline_class_name,
                "backbone": components.kind,
                "pixel_space": components.pixel_space,
                "distributed": result.distributed,
            },
            card=components.card(metrics, result.global_step, output_dir, plan.row_labels),
        )
    keys = (
        "untrained_motion_accuracy_direction",
        "motion_accuracy_direction",
        "real_motion_accuracy_direction",
    )
    shown = {k: round(metrics[k], 3) for k in keys if k in metrics}
    before, after = untrained.get("validation_loss", float("nan")), final.get("validation_loss", float("nan"))
    print(
        f"Trained {result.global_step} steps in {result.train_seconds:.0f} s; validation loss "
        f"{before:.4f} -> {after:.4f}; {shown}; outputs in {output_dir}"
    )


if __name__ == "__main__":
    run_main(main)
