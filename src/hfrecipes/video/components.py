"""`VideoComponents`: the model side of the text-to-video recipe (recipes/video/train_video_diffusion.py), the
`hfrecipes.diffusion.components.DiffusionComponents` of clips: input checks before any data is read, captions and
the evaluation plan, VAE / text encoder / denoiser / schedulers for the four backbones (`hfrecipes.video.backbones`
describes them), prompt embeddings as each pipeline computes them, the denoiser's input space, the evaluator, and
the saved pipeline or LoRA weights. The training loss, sampling and the evaluation call are the recipe's
(recipes/video/video_training.py, video_sampling.py).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import diffusers
import torch
from diffusers import DiffusionPipeline
from torch import nn

from hfrecipes.builtins.videos import MOTION_DIRECTIONS
from hfrecipes.core.errors import RecipeInputError
from hfrecipes.diffusion.components import DiffusionComponents, diffusion_card
from hfrecipes.diffusion.noise import encode_prompts
from hfrecipes.diffusion.pipelines import add_lora, save_lora
from hfrecipes.diffusion.runs import fingerprint_of
from hfrecipes.diffusion.schedulers import (
    PREDICTION_TYPES,
    check_scheduler_name,
    make_scheduler,
    timestep_weights,
    training_scheduler,
)
from hfrecipes.diffusion.vaes import decode_latents, encode_latents, load_vae
from hfrecipes.multimodal.vision_text import (
    class_names,
    label_indices,
    load_text_tower,
)
from hfrecipes.video.backbones import (
    BACKBONES,
    COGVIDEOX_PRESETS,
    DDPM_BACKBONES,
    DEFAULT_SCHEDULERS,
    DENOISERS,
    PIPELINES,
    TIMESTEP_SAMPLING,
    TRANSFORMER_BACKBONES,
    TRANSFORMER_PRESETS,
    UNET_BACKBONES,
    AsPipelineCalls,
    make_sampling_scheduler,
    unet3d_config,
)
from hfrecipes.video.data import VideoCaptionDataset
from hfrecipes.video.evaluation import (
    FRAME_ATTRIBUTES,
    VideoEvaluator,
    VideoPromptPlan,
    motion_words,
    round_robin_rows,
)
from hfrecipes.video.text import encode_text, hidden_size, load_text_encoder, new_text_encoder, preset_width
from hfrecipes.video.vaes import load_video_vae, pixel_cogvideox_vae, pixel_image_vae, pixel_vae, vae_factors

logger = logging.getLogger(__name__)


class VideoComponents(DiffusionComponents):
    """Input checks (`plan`, before any data is read), captions, VAE / text encoder / denoiser / schedulers
    (`build`), the training loss, sampling and decoding, the evaluator, and the saved pipeline or LoRA weights.
    `data_args` / `model_args` are the recipe's dataclasses; `kind` is the backbone (one of BACKBONES)."""

    def __init__(self, data_args: Any, model_args: Any):
        self.data, self.args = data_args, model_args
        self.kind = model_args.backbone
        self.pipe = self.vae = self.text_encoder = self.tokenizer = self.denoiser = None
        self.pixel_space = True
        self.train_text_encoder = False
        self.model_kwargs: dict[str, Any] = {}
        self.denoiser_parameters = 0
        self.timestep_weights: torch.Tensor | None = None  # set by `plan` from timestep_bias_*
        self._device_ready: Any = None

    # -- input checks ------------------------------------------------------------------------------
    @classmethod
    def plan(cls, data_args: Any, model_args: Any) -> VideoComponents:
        self, a = cls(data_args, model_args), model_args
        if a.backbone not in BACKBONES:
            raise RecipeInputError(f"backbone must be one of {', '.join(BACKBONES)}, got {a.backbone!r}.")
        if a.timestep_sampling not in TIMESTEP_SAMPLING:
            raise RecipeInputError(
                f"timestep_sampling must be one of {', '.join(TIMESTEP_SAMPLING)}, got {a.timestep_sampling!r}."
            )
        if a.prediction_type not in PREDICTION_TYPES:
            raise RecipeInputError(
                f"prediction_type must be one of {', '.join(PREDICTION_TYPES)}, got {a.prediction_type!r}."
            )
        if not 0 <= a.condition_dropout < 1:
            raise RecipeInputError(f"condition_dropout must be in [0, 1), got {a.condition_dropout}.")
        if a.guidance_scale > 1 and a.condition_dropout == 0 and not a.pretrained_pipeline:
            logger.warning(
                "guidance_scale=%s but condition_dropout=0: the model never learns the unconditional prediction "
                "classifier-free guidance subtracts; set condition_dropout (e.g. 0.1).",
                a.guidance_scale,
            )
        if a.flow_shift <= 0 or a.max_sequence_length < 2 or data_args.num_frames < 1:
            raise RecipeInputError("flow_shift must be > 0, max_sequence_length >= 2 and num_frames >= 1.")
        self.timestep_weights = timestep_weights(
            a.timestep_bias_strategy,
            a.timestep_bias_portion,
            a.timestep_bias_multiplier,
            a.num_train_timesteps,
        )
        if self.timestep_weights is not None and a.backbone == "wan" and not a.pretrained_pipeline:
            raise RecipeInputError(
                "timestep_bias_* is for the DDPM backbones; wan's flow matching draws noise "
                "levels by timestep_sampling and flow_shift."
            )
        if a.lora_rank and not a.pretrained_pipeline:
            raise RecipeInputError("lora_rank > 0 fine-tunes an existing pipeline: set pretrained_pipeline.")
        if a.lora_rank and a.train_text_encoder:
            raise RecipeInputError("LoRA here adapts the denoiser only; set train_text_encoder: false.")
        if a.pretrained_pipeline:
            self._plan_pretrained()
        else:
            self._plan_scratch()
        self.sampler_name = a.sampling_scheduler or DEFAULT_SCHEDULERS[self.kind]
        self.scheduler()  # an unknown name stops here
        self._check_shapes()
        return self

    def _plan_pretrained(self) -> None:
        a = self.args
        if a.vae_name_or_path or a.text_encoder_name_or_path:
            raise RecipeInputError(
                "With pretrained_pipeline, its own VAE and text encoder are used: unset "
                "vae_name_or_path / text_encoder_name_or_path."
            )
        try:
            self.pipe = DiffusionPipeline.from_pretrained(a.pretrained_pipeline)
        except (OSError, ValueError) as err:
            raise RecipeInputError(
                f"Could not load a diffusers pipeline from {a.pretrained_pipeline!r}: {err}"
            ) from err
        kinds = {name: kind for kind, name in PIPELINES.items()}
        if type(self.pipe).__name__ not in kinds:
            raise RecipeInputError(
                f"{a.pretrained_pipeline!r} is a {type(self.pipe).__name__}; this recipe trains "
                f"{' and '.join(PIPELINES.values())} text-to-video models."
            )
        self.kind = kinds[type(self.pipe).__name__]
        if self.kind == "cogvideox":
            raise RecipeInputError(
                "Fine-tuning a CogVideoXPipeline is not supported here (its noise schedule is CogVideoX's own SNR-shifted "
                "one): train cogvideox from scratch, or fine-tune a WanPipeline / AnimateDiffPipeline / TextToVideoSDPipeline."
            )
        if a.lora_rank and self.kind == "unet3d":
            raise RecipeInputError(
                "diffusers has no LoRA support for UNet3DConditionModel (TextToVideoSDPipeline cannot load adapters "
                "into it): set lora_rank: 0 to fine-tune it fully, or use LoRA with a WanPipeline."
            )
        self.denoiser = getattr(self.pipe, self.denoiser_component)
        self.vae, self.text_encoder, self.tokenizer = (
            self.pipe.vae,
            self.pipe.text_encoder,
            self.pipe.tokenizer,
        )
        self.pixel_space = self.vae_factors() == (1, 1)
        self.train_text_encoder = bool(a.train_text_encoder)

    def _plan_scratch(self) -> None:
        a = self.args
        wan, t5 = self.kind == "wan", self.kind in TRANSFORMER_BACKBONES
        if a.vae_name_or_path:
            if self.kind == "cogvideox":
                raise RecipeInputError(
                    "cogvideox trains in pixel space here (unset vae_name_or_path); for latent space "
                    "use unet3d / animatediff / wan with a VAE."
                )
            self.vae = load_video_vae(a.vae_name_or_path) if wan else load_vae(a.vae_name_or_path)
            self.pixel_space = False
        else:
            self.vae = pixel_vae(3) if wan else pixel_cogvideox_vae(3) if t5 else pixel_image_vae(3)
        if a.text_encoder_name_or_path:
            if t5:
                self.text_encoder, self.tokenizer = load_text_encoder(
                    a.text_encoder_name_or_path, a.max_sequence_length
                )
            else:
                self.text_encoder, self.tokenizer = load_text_tower(a.text_encoder_name_or_path)
            self.train_text_encoder = bool(a.train_text_encoder)
            text_dim = hidden_size(self.text_encoder)
        else:
            text_dim = preset_width(self.kind, a.text_encoder_preset, a.text_encoder_overrides)
            self.train_text_encoder = a.train_text_encoder is not False
        channels = self.latent_channels
        if wan:
            if a.model_preset not in TRANSFORMER_PRESETS:
                raise RecipeInputError(
                    f"Unknown model_preset {a.model_preset!r} for wan. Available: {', '.join(TRANSFORMER_PRESETS)}."
                )
            self.model_kwargs = {
                **TRANSFORMER_PRESETS[a.model_preset],
                "patch_size": tuple(a.patch_size),
                "in_channels": channels,
                "out_channels": channels,
                "text_dim": text_dim,
                **a.model_overrides,
            }
        elif self.kind == "cogvideox":
            if a.model_preset not in COGVIDEOX_PRESETS:
                raise RecipeInputError(
                    f"Unknown model_preset {a.model_preset!r} for cogvideox. Available: "
                    f"{', '.join(COGVIDEOX_PRESETS)}."
                )
            temporal, spatial = self.vae_factors()
            side = self.data.resolution // spatial
            # The sin-cos position table and the text slots are sized from these; the pipeline's
            # max_sequence_length must equal max_text_seq_length.
            self.model_kwargs = {
                **COGVIDEOX_PRESETS[a.model_preset],
                "in_channels": channels,
                "out_channels": channels,
                "text_embed_dim": text_dim,
                "sample_height": side,
                "sample_width": side,
                "sample_frames": self.data.num_frames,
                "patch_size": int(a.patch_size[-1]),
                "temporal_compression_ratio": temporal,
                "max_text_seq_length": a.max_sequence_length,
                **a.model_overrides,
            }
        else:
            side = self.data.resolution // self.vae_factors()[1]
            self.model_kwargs = unet3d_config(
                a.model_preset,
                sample_size=side,
                in_channels=channels,
                kind=self.kind,
                cross_attention_dim=text_dim,
                overrides=a.model_overrides,
            )

    @property
    def latent_channels(self) -> int:
        return int(self.vae.config.z_dim if self.kind == "wan" else self.vae.config.latent_channels)

    def vae_factors(self) -> tuple[int, int]:
        """(temporal, spatial) compression of the VAE."""
        if self.kind == "wan":
            return vae_factors(self.vae)
        if self.kind == "cogvideox":
            config = self.vae.config
            return int(config.temporal_compression_ratio), 2 ** (len(config.block_out_channels) - 1)
        return 1, 2 ** (len(self.vae.config.block_out_channels) - 1)

    def _denoiser_config(self) -> dict[str, Any]:
        return dict(self.denoiser.config) if self.denoiser is not None else self.model_kwargs

    def _check_shapes(self) -> None:
        """Frame count and size against the VAE's compression and the denoiser's patch / down-sampling."""
        frames, side = self.data.num_frames, self.data.resolution
        temporal, spatial = self.vae_factors()
        config = self._denoiser_config()
        where = "pixel space" if self.pixel_space else f"the VAE (spatial factor {spatial})"
        if self.kind in TRANSFORMER_BACKBONES:
            if self.kind == "wan":
                pt, ph, pw = (int(p) for p in config["patch_size"])
            else:
                pt, ph = int(config.get("patch_size_t") or 1), int(config["patch_size"])
                pw = ph
            if temporal > 1 and (frames - 1) % temporal:
                good = ((frames - 1) // temporal) * temporal + 1
                raise RecipeInputError(
                    f"num_frames={frames} does not fit the video VAE: its temporal factor is {temporal}, so clips need "
                    f"1 + a multiple of {temporal} frames (e.g. {max(good, 1)} or {good + temporal})."
                )
            latent_frames = (frames - 1) // temporal + 1
            if latent_frames % pt:
                raise RecipeInputError(
                    f"num_frames={frames} gives {latent_frames} latent frames, not a multiple of the "
                    f"transformer's temporal patch {pt}."
                )
            multiple, what = spatial * max(ph, pw), f"the transformer's patch {ph}x{pw}"
            if self.kind == "cogvideox":  # CogVideoXPipeline refuses sides not divisible by 8
                multiple, what = math.lcm(multiple, 8), f"{what} (and CogVideoXPipeline's multiple of 8)"
        else:
            down = 2 ** (len(config["block_out_channels"]) - 1)
            multiple = math.lcm(spatial * down, 8)  # both UNet pipelines refuse sides not divisible by 8
            what = f"the UNet's down-sampling factor {down} (and {self.pipeline_class_name}'s multiple of 8)"
        if side % multiple:
            raise RecipeInputError(
                f"resolution {side} is not compatible with {where} and {what}: use a multiple of {multiple}, "
                f"e.g. {max(multiple, side // multiple * multiple)}."
            )

    def model_input_shape(self) -> tuple[int, int, int, int]:
        temporal, spatial = self.vae_factors()
        side = self.data.resolution // spatial
        return (self.latent_channels, (self.data.num_frames - 1) // temporal + 1, side, side)

    @property
    def frame_attributes(self) -> list[str] | None:
        return None if self.args.eval_attributes is None else list(self.args.eval_attributes)

    @property
    def required_columns(self) -> list[str]:
        return list(dict.fromkeys(self.frame_attributes or []))

    # -- data side ---------------------------------------------------------------------------------
    def captions(self, dataset: Any) -> list[str]:
        return [str(c) if c is not None else "" for c in dataset[self.data.caption_column]]

    def attributes(self, dataset: Any) -> list[str]:
        if self.frame_attributes is not None:
            return self.frame_attributes
        return [c for c in FRAME_ATTRIBUTES if c in dataset.column_names]

    def eval_plan(self, train: Any, validation: Any) -> VideoPromptPlan:
        """Distinct validation captions, picked round-robin over the direction column when there is one (so every
        direction is asked for), each sampled `eval_samples_per_prompt` times, with their per-frame attribute
        targets and motion words (`motion_columns`: the direction column, then the speed column)."""
        a = self.args
        per = a.eval_samples_per_prompt
        if a.eval_prompts:
            prompts = list(a.eval_prompts)
            return VideoPromptPlan([p for p in prompts for _ in range(per)], prompts, {}, {})
        captions = self.captions(validation)
        motion = motion_words(train, validation, a.motion_columns)
        if "direction" in motion and not set(motion["direction"]) <= set(MOTION_DIRECTIONS):
            logger.warning(
                "Column %r holds %s, not the tracker's directions %s: no motion accuracy.",
                a.motion_columns[0],
                sorted(set(motion["direction"])),
                list(MOTION_DIRECTIONS),
            )
            motion = {}
        rows = round_robin_rows(captions, motion.get("direction", [""] * len(captions)), a.num_eval_prompts)
        attributes = self.attributes(validation)
        names = {c: class_names(train, c, validation) for c in attributes}
        labels = {c: label_indices(validation, c, names[c]) for c in attributes}
        return VideoPromptPlan(
            prompts=[captions[r] for r in rows for _ in range(per)],
            row_labels=[captions[r] for r in rows],
            targets={c: torch.tensor([labels[c][r] for r in rows for _ in range(per)]) for c in attributes},
            motion={k: [v[r] for r in rows for _ in range(per)] for k, v in motion.items()},
        )

    def evaluator(
        self,
        train: Any,
        train_set: VideoCaptionDataset,
        validation: Any,
        validation_set: VideoCaptionDataset,
        plan: VideoPromptPlan,
        seed: int,
        limit: int = 1000,
    ):
        """Per-frame attribute classifier fitted on real training clips, plus the motion / consistency measures
        of real validation clips as references; None when the data has neither frame attributes nor motion
        columns (the tracker's measures assume one bright object on a dark background, as in moving-shapes)."""
        attributes = self.attributes(validation)
        if not attributes and not plan.motion:
            return None
        names = {c: class_names(train, c, validation) for c in attributes}
        train_clips, validation_clips = train_set.stack(limit), validation_set.stack(limit)

        def labels(dataset: Any, count: int) -> dict[str, torch.Tensor]:
            return {c: torch.tensor(label_indices(dataset, c, names[c])[:count]) for c in attributes}

        motion = None
        if plan.motion:
            words = motion_words(train, validation, self.args.motion_columns)
            motion = {role: v[: len(validation_clips)] for role, v in words.items() if role in plan.motion}
        return VideoEvaluator(
            train_clips,
            labels(train, len(train_clips)),
            validation_clips,
            labels(validation, len(validation_clips)),
            {c: len(n) for c, n in names.items()},
            validation_motion=motion,
            seed=seed,
        )

    # -- models ------------------------------------------------------------------------------------
    def build(self, texts: Sequence[str], seed: int) -> None:
        a = self.args
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            if self.text_encoder is None:
                self.text_encoder, self.tokenizer = new_text_encoder(
                    self.kind, texts, a.text_encoder_preset, a.text_encoder_overrides, a.max_sequence_length
                )
            if self.denoiser is None:
                cls = getattr(diffusers, DENOISERS[self.kind])
                try:
                    self.denoiser = cls(**self.model_kwargs)
                except (TypeError, ValueError) as err:
                    raise RecipeInputError(
                        f"Cannot build a {cls.__name__} from {self.model_kwargs}: {err}"
                    ) from err
        if self.kind in DDPM_BACKBONES:
            self.noise_scheduler = training_scheduler(
                a.num_train_timesteps, a.beta_schedule, a.prediction_type
            )
            if self.pipe is not None:  # keep the base pipeline's noise schedule and target
                config = self.pipe.scheduler.config
                self.noise_scheduler = make_scheduler(
                    "ddpm", config, prediction_type=config.get("prediction_type", "epsilon")
                )
        for frozen in (self.vae, None if self.train_text_encoder else self.text_encoder):
            if frozen is not None:
                frozen.requires_grad_(False).eval()
        if a.lora_rank:
            add_lora(self.denoiser, a.lora_rank, a.lora_alpha, a.lora_target_modules)
        else:
            self.denoiser.requires_grad_(True)
        self.denoiser_parameters = sum(p.numel() for p in self.denoiser.parameters())

    def trainable(self) -> dict[str, nn.Module]:
        """The denoiser (under "unet", the loop's name for it), and the text encoder when it is trained."""
        modules = {"unet": self.denoiser}
        if self.train_text_encoder:
            modules["text_encoder"] = self.text_encoder
        return modules

    def ema_modules(self) -> list[str]:
        """Every trainable module keeps EMA weights, except LoRA adapters."""
        return [] if self.args.lora_rank else list(self.trainable())

    def frozen_to(self, device: Any) -> None:
        """Move the VAE and a frozen text encoder to `device` (once per device)."""
        if self._device_ready != device:
            for module in (self.vae, self.text_encoder):
                if module is not None and not (module is self.text_encoder and self.train_text_encoder):
                    module.to(device)
            self._device_ready = device

    def embed(self, modules: dict[str, nn.Module], prompts: Sequence[str], device: Any) -> torch.Tensor:
        """Prompt embeddings as the saved pipeline computes them."""
        encoder = modules.get("text_encoder", self.text_encoder)
        with nullcontext() if "text_encoder" in modules and torch.is_grad_enabled() else torch.no_grad():
            if self.kind == "wan":
                return encode_text(
                    encoder,
                    self.tokenizer,
                    prompts,
                    max_sequence_length=self.args.max_sequence_length,
                    device=device,
                )
            # CogVideoXPipeline: padded to max_sequence_length, no attention mask, nothing zeroed.
            if self.kind == "cogvideox":
                return encode_prompts(
                    encoder,
                    self.tokenizer,
                    prompts,
                    max_length=self.args.max_sequence_length,
                    use_attention_mask=False,
                    device=device,
                )
            # The config from the bare encoder: `encoder` may be its DDP wrapper, which has none.
            mask = bool(getattr(self.text_encoder.config, "use_attention_mask", False))
            return encode_prompts(
                encoder,
                self.tokenizer,
                prompts,
                max_length=self.tokenizer.model_max_length,
                use_attention_mask=mask,
                device=device,
            )

    def to_model_space(self, pixels: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        if self.pixel_space:
            return pixels
        with torch.no_grad():
            if self.kind in UNET_BACKBONES:  # an image VAE, frame by frame
                n, c, f, h, w = pixels.shape
                flat = pixels.permute(0, 2, 1, 3, 4).reshape(n * f, c, h, w)
                latents = encode_latents(self.vae, flat, generator).float()
                return latents.reshape(n, f, *latents.shape[1:]).permute(0, 2, 1, 3, 4)
            latents = self.vae.encode(pixels.to(self.vae.dtype)).latent_dist.sample(generator)
        mean, std = self._latent_stats(latents)
        return ((latents - mean) / std).float()

    def _latent_stats(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (1, self.vae.config.z_dim, 1, 1, 1)
        mean = torch.tensor(self.vae.config.latents_mean).view(shape).to(like.device, like.dtype)
        return mean, torch.tensor(self.vae.config.latents_std).view(shape).to(like.device, like.dtype)

    @torch.no_grad()
    def to_pixels(self, samples: torch.Tensor) -> torch.Tensor:
        if self.pixel_space:
            return samples.float().clamp(-1, 1).cpu()
        device = next(self.vae.parameters()).device
        latents = samples.to(device, self.vae.dtype)
        if self.kind in UNET_BACKBONES:
            n, c, f, h, w = latents.shape
            frames = decode_latents(self.vae, latents.permute(0, 2, 1, 3, 4).reshape(n * f, c, h, w))
            return frames.reshape(n, f, *frames.shape[1:]).permute(0, 2, 1, 3, 4).float().clamp(-1, 1).cpu()
        mean, std = self._latent_stats(latents)
        return self.vae.decode(latents * std + mean).sample.float().clamp(-1, 1).cpu()

    def denoiser_call(self, modules: dict[str, nn.Module]) -> nn.Module:
        """The denoiser as the DDPM-style loss and sampler call it (`AsPipelineCalls`; wan's flow matching calls it
        directly)."""
        return AsPipelineCalls(modules["unet"], self.kind) if self.kind in DDPM_BACKBONES else modules["unet"]

    # -- outputs -----------------------------------------------------------------------------------
    def fingerprint(self) -> dict[str, Any]:
        a = self.args
        return fingerprint_of(
            backbone=self.kind,
            denoiser=dict(self.denoiser.config),
            lora_rank=a.lora_rank,
            pretrained_pipeline=a.pretrained_pipeline,
            text_encoder=self.text_encoder.config.to_dict(),
            train_text_encoder=self.train_text_encoder,
            vae=a.vae_name_or_path,
            num_frames=self.data.num_frames,
            resolution=self.data.resolution,
            max_sequence_length=a.max_sequence_length,
            noise=(
                dict(self.noise_scheduler.config)
                | {
                    "timestep_bias": [
                        a.timestep_bias_strategy,
                        a.timestep_bias_portion,
                        a.timestep_bias_multiplier,
                    ]
                }
                if self.kind in DDPM_BACKBONES
                else {"timestep_sampling": a.timestep_sampling, "flow_shift": a.flow_shift}
            ),
        )

    def scheduler(self):
        """The sampling scheduler (the one the saved pipeline gets); for unet3d, None before `build`."""
        name = self.sampler_name
        if self.kind == "wan":
            return make_sampling_scheduler(name, self.args.flow_shift)
        check_scheduler_name(name, "sampling_scheduler")
        base = getattr(self, "noise_scheduler", None)
        return None if base is None else make_scheduler(name, base.config)

    @property
    def denoiser_component(self) -> str:
        """The pipeline's name for the denoiser."""
        return "transformer" if self.kind in TRANSFORMER_BACKBONES else "unet"

    @property
    def pipeline_class_name(self) -> str:
        return PIPELINES[self.kind]

    def save(self, directory: Path) -> None:
        pipeline_class = getattr(diffusers, self.pipeline_class_name)
        self.denoiser.to("cpu")
        if self.args.lora_rank:
            save_lora(
                pipeline_class,
                self.denoiser,
                directory,
                self.denoiser_component,
            )
            return
        for module in (self.vae, self.text_encoder):
            module.to("cpu")
        parts = {
            "vae": self.vae,
            "text_encoder": self.text_encoder,
            "tokenizer": self.tokenizer,
            "scheduler": self.scheduler(),
            self.denoiser_component: self.denoiser,
        }
        if self.kind == "animatediff":
            parts["motion_adapter"] = None  # the UNetMotionModel already holds its motion modules
        pipeline_class(**parts).save_pretrained(str(directory), safe_serialization=True)

    def describe(self) -> str:
        a = self.args
        model = DENOISERS[self.kind]
        how = (
            f"LoRA (rank {a.lora_rank}) on {a.pretrained_pipeline}"
            if a.lora_rank
            else f"fine-tuned from {a.pretrained_pipeline}"
            if a.pretrained_pipeline
            else f"trained from scratch, {a.model_preset} {model}"
        )
        return f"text-to-video {self.pipeline_class_name} ({how})"

    def request_frames(self) -> int:
        """What to pass as num_frames to get num_frames back (WanPipeline rounds to k * temporal + 1)."""
        if self.kind == "wan" and self.vae_factors()[0] == 1:
            return self.data.num_frames - 1
        return self.data.num_frames

    def usage(self, output_dir: str, prompts: Sequence[str]) -> str:
        a, d = self.args, self.data
        prompt = repr(prompts[0]) if prompts else '"a red square moving right"'
        load = (
            f'pipe = DiffusionPipeline.from_pretrained("{a.pretrained_pipeline}")\npipe.load_lora_weights("{output_dir}")'
            if a.lora_rank
            else f'pipe = DiffusionPipeline.from_pretrained("{output_dir}")'
        )
        extra = f", max_sequence_length={a.max_sequence_length}" if self.kind in TRANSFORMER_BACKBONES else ""
        note = (
            f"  # WanPipeline adds a frame when the VAE has no temporal compression: {d.num_frames} frames"
            if self.request_frames() != d.num_frames
            else ""
        )
        return (
            "from diffusers import DiffusionPipeline\nfrom diffusers.utils import export_to_gif\n\n"
            + load
            + "\n"
            f"frames = pipe({prompt}, num_frames={self.request_frames()}, height={d.resolution}, width={d.resolution},\n"
            f"              num_inference_steps={a.num_inference_steps}, guidance_scale={a.guidance_scale}{extra},\n"
            f'              output_type="pil").frames[0]{note}\nexport_to_gif(frames, "clip.gif")'
        )

    def card(
        self, metrics: dict[str, Any], steps: int, output_dir: Path, prompts: Sequence[str]
    ) -> dict[str, Any]:
        """The model card's fields (`hfrecipes.core.stages.Stage.finish`'s `card`) after `steps` steps."""
        return diffusion_card(
            self, metrics, steps, output_dir, prompts, task_tag="text-to-video", pipeline_tag="text-to-video"
        )

    def card_description(self, metrics: dict[str, Any], dataset: str, steps: int) -> str:
        def cell(*keys: str) -> str:
            value = next((metrics[k] for k in keys if isinstance(metrics.get(k), float)), None)
            return "" if value is None else f"{value:.3g}"

        keys = [
            k
            for k in metrics
            if f"untrained_{k}" in metrics and not k.startswith(("untrained_", "real_", "chance_"))
        ]
        rows = [
            f"| {k} | {cell('untrained_' + k)} | {cell(k)} | "
            f"{cell('real_' + k, 'classifier_accuracy_' + k.removeprefix('adherence_') if k.startswith('adherence_') else '')}"
            f" | {cell('chance_' + k)} |"
            for k in keys
        ]
        table = "\n".join(
            ["| metric | untrained | trained | real clips | chance |", "|---|---:|---:|---:|---:|", *rows]
        )
        space = (
            f"pixel space ({self.data.resolution} px, identity VAE)"
            if self.pixel_space
            else f"latent space ({type(self.vae).__name__})"
        )
        a = self.args
        return (
            f"A {self.describe()}, {space}, {self.data.num_frames} frames, {steps} steps on `{dataset}`.\n\n"
            "![samples: one row per prompt](samples.gif)\n\n"
            f"Evaluation: {a.num_eval_prompts} prompts x {a.eval_samples_per_prompt} clips, {self.sampler_name} "
            f"{a.num_inference_steps} steps, guidance {a.guidance_scale}. *Motion accuracy*: the object's centroid is "
            "tracked across frames and its direction (and speed bucket) compared with the prompt's. *Temporal "
            "consistency* (lower is steadier): color_drift / area_drift (the object's mean colour and area between "
            "consecutive frames), flicker (background change between frames), track_jitter (second difference of "
            "the track). *Per-frame adherence*: a small classifier fitted on real frames checks every generated "
            "frame; frame_agreement is the fraction of clips whose frames all get the same prediction. `real clips` "
            "is the same measurement on real held-out clips (what the measures can show).\n\n" + table
        )
