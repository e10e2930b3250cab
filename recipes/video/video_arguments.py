"""The text-to-video recipe's own settings (train_video_diffusion.py): the clips (`VideoDataArguments`) and the
model, its noise, sampling and evaluation (`VideoModelArguments`). The loop's settings are shared with the image
recipe: `hfrecipes.diffusion.args.DiffusionTrainingArguments`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class VideoDataArguments:
    """Where the clips (and their captions) come from, how they are cleaned, and the frames and size they train at."""

    dataset_name: str = field(
        default="builtin:moving-shapes?n=2000&size=12&frames=6",
        metadata={
            "help": "builtin:moving-shapes, a clip folder (mp4/gif/frame dirs + metadata.jsonl), a Hub id."
        },
    )
    dataset_config: str | None = None
    dataset_split: str = "train"
    video_column: str = "video"
    caption_column: str = "text"
    num_frames: int = field(default=6, metadata={"help": "Frames per training clip."})
    resolution: int = field(default=12, metadata={"help": "Frames are resized/cropped to this square size."})
    frame_stride: int | None = field(
        default=1,
        metadata={"help": "Take every k-th frame from the clip start; null: evenly spaced over the clip."},
    )
    short_clips: str = field(
        default="pad",
        metadata={"help": "Clips with too few frames: pad (hold the last frame), skip or error."},
    )
    pipeline: list[Any] | None = field(default=None, metadata={"help": "Cleaning steps, e.g. video_filter."})
    validation_fraction: float = 0.1
    max_samples: int | None = None


@dataclass
class VideoModelArguments:
    """What is trained (backbone, preset, VAE, text encoder, LoRA), its noise and sampling, and its evaluation."""

    backbone: str = field(
        default="unet3d",
        metadata={"help": "unet3d, animatediff, cogvideox or wan (ignored with pretrained_pipeline)."},
    )
    pretrained_pipeline: str | None = field(
        default=None, metadata={"help": "A TextToVideoSDPipeline or WanPipeline to fine-tune (full or LoRA)."}
    )
    model_preset: str = field(
        default="tiny",
        metadata={
            "help": "UNET3D_PRESETS (unet3d, animatediff), COGVIDEOX_PRESETS, TRANSFORMER_PRESETS (wan)."
        },
    )
    model_overrides: dict[str, Any] = field(default_factory=dict)
    patch_size: list[int] = field(
        default_factory=lambda: [1, 2, 2], metadata={"help": "wan: (frames, h, w); cogvideox: h (= w)."}
    )
    vae_name_or_path: str | None = field(
        default=None,
        metadata={"help": "unet3d / animatediff: AutoencoderKL; wan: AutoencoderKLWan. Unset: pixel space."},
    )
    text_encoder_name_or_path: str | None = field(
        default=None, metadata={"help": "CLIP recipe output, Hub CLIP, T5/UMT5 (wan), or a pipeline folder."}
    )
    text_encoder_preset: str = "tiny"
    text_encoder_overrides: dict[str, Any] = field(default_factory=dict)
    train_text_encoder: bool | None = field(
        default=None, metadata={"help": "Default: yes if built here, no if loaded."}
    )
    max_sequence_length: int = field(
        default=512,
        metadata={"help": "wan: prompt length the pipeline pads to (WanPipeline's default: 512)."},
    )
    lora_rank: int = field(
        default=0, metadata={"help": "> 0: LoRA adapters on the denoiser of pretrained_pipeline."}
    )
    lora_alpha: int | None = None
    lora_target_modules: list[str] = field(default_factory=lambda: ["to_q", "to_k", "to_v", "to_out.0"])
    prediction_type: str = field(
        default="v_prediction", metadata={"help": "unet3d: v_prediction, epsilon, sample."}
    )
    num_train_timesteps: int = 1000
    beta_schedule: str = field(default="squaredcos_cap_v2", metadata={"help": "unet3d: noise schedule."})
    timestep_sampling: str = field(default="logit_normal", metadata={"help": "wan: logit_normal or uniform."})
    timestep_bias_strategy: str = field(
        default="none",
        metadata={
            "help": "DDPM backbones, as diffusers' SDXL example: none, later (noisier) or earlier timesteps."
        },
    )
    timestep_bias_portion: float = field(default=0.25, metadata={"help": "Fraction of timesteps biased."})
    timestep_bias_multiplier: float = field(
        default=1.0, metadata={"help": "Weight of the biased timesteps (e.g. 5: five times as often)."}
    )
    flow_shift: float = field(
        default=1.0, metadata={"help": "wan: noise-level shift for training and sampling (Wan 480p: 3)."}
    )
    sampling_scheduler: str | None = field(
        default=None, metadata={"help": "unet3d: ddim, ddpm, euler, dpm-solver...; wan: flow-euler, unipc."}
    )
    num_inference_steps: int = 25
    condition_dropout: float = field(
        default=0.1, metadata={"help": "Caption dropout (classifier-free guidance)."}
    )
    guidance_scale: float = 4.0
    eval_prompts: list[str] | None = field(
        default=None, metadata={"help": "Default: distinct validation captions."}
    )
    num_eval_prompts: int = 8
    eval_samples_per_prompt: int = 4
    eval_attributes: list[str] | None = field(
        default=None,
        metadata={"help": "Per-frame attributes to check (default: color/shape columns present)."},
    )
    motion_columns: list[str] = field(
        default_factory=lambda: ["direction", "speed"],
        metadata={"help": "Columns the motion tracker checks."},
    )
    gif_fps: int = 4
