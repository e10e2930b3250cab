"""The image diffusion recipe's own settings (train_diffusion.py): the data (`ImageDataArguments`) and the model,
its noise, sampling and evaluation (`DiffusionModelArguments`). The loop's settings are shared with the video recipe:
`hfrecipes.diffusion.args.DiffusionTrainingArguments`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class ImageDataArguments:
    """Where the images (and their captions or labels) come from and how they are cleaned and sized."""

    dataset_name: str = field(
        default="builtin:digits", metadata={"help": "builtin:digits|shapes, image folder, Hub id."}
    )
    dataset_config: str | None = None
    dataset_split: str = "train"
    image_column: str = "image"
    caption_column: str = field(default="text", metadata={"help": "Captions (conditioning: text)."})
    label_column: str = field(default="label", metadata={"help": "Class labels (conditioning: class)."})
    pipeline: list[str] | None = field(
        default=None, metadata={"help": "Cleaning steps; default image_filter >= 8 px."}
    )
    validation_fraction: float = 0.1
    max_samples: int | None = None
    resolution: int = field(
        default=16, metadata={"help": "Training images are resized/cropped to this size."}
    )
    channels: int = field(
        default=3, metadata={"help": "1 (grayscale) or 3 (RGB); other images are converted."}
    )


@dataclass
class DiffusionModelArguments:
    """What is trained (conditioning, UNet, VAE, text encoder, LoRA), its noise and sampling, and its evaluation."""

    conditioning: str = field(default="text", metadata={"help": "unconditional, class or text."})
    class_caption_template: str = field(
        default="{label}", metadata={"help": "Caption of a class, e.g. 'a digit {label}'."}
    )
    pretrained_pipeline: str | None = field(
        default=None, metadata={"help": "Pipeline to fine-tune (full or LoRA)."}
    )
    unet_preset: str = field(
        default="tiny", metadata={"help": "hfrecipes.diffusion.unets.UNET_PRESETS name."}
    )
    unet_overrides: dict[str, Any] = field(default_factory=dict)
    vae_name_or_path: str | None = field(
        default=None, metadata={"help": "AutoencoderKL (or a pipeline with vae/): latent space."}
    )
    text_encoder_name_or_path: str | None = field(
        default=None, metadata={"help": "CLIP recipe output, pipeline or Hub CLIP."}
    )
    text_encoder_preset: str = "tiny"
    text_encoder_overrides: dict[str, Any] = field(default_factory=dict)
    train_text_encoder: bool | None = field(
        default=None, metadata={"help": "Default: yes if built here, no if loaded."}
    )
    lora_rank: int = field(
        default=0, metadata={"help": "> 0: train LoRA adapters on the UNet of pretrained_pipeline."}
    )
    lora_alpha: int | None = None
    lora_target_modules: list[str] = field(default_factory=lambda: ["to_q", "to_k", "to_v", "to_out.0"])
    prediction_type: str = field(
        default="v_prediction",
        metadata={
            "help": "v_prediction, epsilon or sample (v learns prompts faster: see the digits config)."
        },
    )
    num_train_timesteps: int = 1000
    beta_schedule: str = field(
        default="squaredcos_cap_v2", metadata={"help": "linear, scaled_linear, squaredcos_cap_v2."}
    )
    sampling_scheduler: str = field(default="ddim", metadata={"help": "ddpm, ddim, euler, dpm-solver, ..."})
    num_inference_steps: int = 50
    condition_dropout: float = field(
        default=0.1, metadata={"help": "Caption dropout (classifier-free guidance)."}
    )
    guidance_scale: float = 3.0
    eval_prompts: list[str] | None = field(
        default=None, metadata={"help": "Default: per class / from validation."}
    )
    num_eval_prompts: int = 10
    eval_samples_per_prompt: int = 8
    eval_attributes: list[str] | None = field(
        default=None, metadata={"help": "Columns the evaluator checks."}
    )
    clip_model_path: str | None = field(
        default=None,
        metadata={
            "help": "CLIPModel for the CLIP score; default: text_encoder_name_or_path if it is a local one."
        },
    )
