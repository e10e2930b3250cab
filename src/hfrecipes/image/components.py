"""`ImageComponents`: the model side of the image diffusion recipe (recipes/image/train_diffusion.py), the
`hfrecipes.diffusion.components.DiffusionComponents` of images: input checks before any data is read, captions
(class labels become captions through a template, so standard text-to-image pipelines load class-conditional
models), text encoder / tokenizer / VAE / UNet / schedulers, prompt embeddings and the UNet's input space, the
evaluator, and the saved pipeline or LoRA weights. The training loss, sampling and the evaluation call are the
recipe's (recipes/image/diffusion_training.py).

Pipelines: unconditional pixel-space models save as `DDPMPipeline`; text-conditional pixel-space models as
`IFPipeline` (the standard pixel-space text-to-image pipeline: its UNet predicts 2C channels, the second half a
learned variance that this recipe does not train; the saved DDPMScheduler has `variance_type: fixed_small`, so
the pipeline ignores those channels); latent models (with a VAE) as `StableDiffusionPipeline`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from transformers import CLIPTextModel

from hfrecipes.core.errors import RecipeInputError
from hfrecipes.diffusion.components import DiffusionComponents, diffusion_card
from hfrecipes.diffusion.noise import encode_prompts
from hfrecipes.diffusion.pipelines import (
    PIPELINE_KINDS,
    add_lora,
    assemble_pipeline,
    load_pipeline,
    pipeline_kind,
    save_lora,
)
from hfrecipes.diffusion.runs import fingerprint_of
from hfrecipes.diffusion.schedulers import (
    PREDICTION_TYPES,
    check_scheduler_name,
    make_scheduler,
    training_scheduler,
)
from hfrecipes.diffusion.unets import build_unet, downsampling_factor, unet_config
from hfrecipes.diffusion.vaes import decode_latents, encode_latents, load_vae
from hfrecipes.image.evaluation import ClipScorer, ImageEvaluator, is_clip_model_dir, prompt_plan
from hfrecipes.multimodal.vision_text import (
    TEXT_MAX_LENGTH,
    TEXT_PRESETS,
    caption_tokenizer,
    class_names,
    label_indices,
    load_text_tower,
    pixel_stack,
    text_config,
)

logger = logging.getLogger(__name__)


CONDITIONINGS = ("unconditional", "class", "text")


def _vae_scale_factor(vae: Any) -> int:
    return 2 ** (len(vae.config.block_out_channels) - 1)


class ImageComponents(DiffusionComponents):
    """The model side of the image diffusion recipe: input checks (`plan`, before any data is read), captions,
    text encoder / tokenizer / VAE / UNet / schedulers (`build`), prompt embeddings, the UNet's input space, the
    evaluator, and the saved pipeline or LoRA weights. `data_args` / `model_args` are the recipe's dataclasses."""

    def __init__(self, data_args: Any, model_args: Any):
        self.data, self.args = data_args, model_args
        self.conditional = model_args.conditioning != "unconditional"
        self.pipe = self.vae = self.text_encoder = self.tokenizer = self.unet = None
        self.kind = ""
        self.train_text_encoder = False
        self.unet_parameters = 0
        self._device_ready: Any = None
        self.clip_scorer: Any = None  # hfrecipes.image.evaluation.ClipScorer when a trained CLIP is available
        self.clip_model_path: str | None = None

    # -- input checks ------------------------------------------------------------------------------
    @classmethod
    def plan(cls, data_args: Any, model_args: Any) -> ImageComponents:
        self = cls(data_args, model_args)
        a = model_args
        if a.conditioning not in CONDITIONINGS:
            raise RecipeInputError(
                f"conditioning must be one of {', '.join(CONDITIONINGS)}, got {a.conditioning!r}."
            )
        check_scheduler_name(a.sampling_scheduler, "sampling_scheduler")
        if a.prediction_type not in PREDICTION_TYPES:
            raise RecipeInputError(
                f"prediction_type must be one of {', '.join(PREDICTION_TYPES)}, got {a.prediction_type!r}."
            )
        if data_args.channels not in (1, 3):
            raise RecipeInputError(f"channels must be 1 (grayscale) or 3 (RGB), got {data_args.channels}.")
        if not 0 <= a.condition_dropout < 1:
            raise RecipeInputError(f"condition_dropout must be in [0, 1), got {a.condition_dropout}.")
        if (
            self.conditional
            and a.guidance_scale > 1
            and a.condition_dropout == 0
            and not a.pretrained_pipeline
        ):
            logger.warning(
                "guidance_scale=%s but condition_dropout=0: the model never learns the unconditional prediction that "
                "classifier-free guidance subtracts; set condition_dropout (e.g. 0.1) or guidance_scale: 1.",
                a.guidance_scale,
            )
        if a.lora_rank:
            if not a.pretrained_pipeline:
                raise RecipeInputError(
                    "lora_rank > 0 fine-tunes an existing pipeline: set pretrained_pipeline."
                )
            if a.train_text_encoder:
                raise RecipeInputError("LoRA here adapts the UNet only; set train_text_encoder: false.")
        if a.pretrained_pipeline:
            self._plan_pretrained()
        else:
            self._plan_scratch()
        self._plan_clip_score()
        return self

    def _plan_clip_score(self) -> None:
        """Load the CLIPModel that scores samples against their prompts: `clip_model_path`, or else the text
        encoder's source when it is a local CLIPModel directory (the CLIP recipe's output)."""
        a = self.args
        path = a.clip_model_path
        if path is None and self.conditional and is_clip_model_dir(a.text_encoder_name_or_path):
            path = a.text_encoder_name_or_path
        if path is None:
            return
        if not self.conditional:
            raise RecipeInputError(
                "clip_model_path scores samples against their prompts; an unconditional model "
                "has none: unset clip_model_path or set conditioning: class/text."
            )
        self.clip_scorer = ClipScorer.load(path)
        self.clip_model_path = path

    def _plan_pretrained(self) -> None:
        a = self.args
        if a.vae_name_or_path or a.text_encoder_name_or_path:
            raise RecipeInputError(
                "With pretrained_pipeline, its own VAE and text encoder are used: unset "
                "vae_name_or_path / text_encoder_name_or_path."
            )
        self.pipe, self.kind = load_pipeline(a.pretrained_pipeline)
        if (self.kind == "ddpm") == self.conditional:
            raise RecipeInputError(
                f"{a.pretrained_pipeline} is a {type(self.pipe).__name__} ({'un' if self.kind == 'ddpm' else ''}conditional); "
                f"conditioning={a.conditioning!r} does not match it."
            )
        if a.lora_rank and self.kind == "ddpm":
            raise RecipeInputError("LoRA fine-tuning needs a text-to-image pipeline (IF / Stable Diffusion).")
        self.unet, self.vae = self.pipe.unet, getattr(self.pipe, "vae", None)
        self.text_encoder, self.tokenizer = (
            getattr(self.pipe, "text_encoder", None),
            getattr(self.pipe, "tokenizer", None),
        )
        self.train_text_encoder = bool(a.train_text_encoder)
        self._check_size(self.unet.config.sample_size, downsampling_factor(dict(self.unet.config)))

    def _plan_scratch(self) -> None:
        a = self.args
        if a.vae_name_or_path:
            self.vae = load_vae(a.vae_name_or_path)
        self.kind = pipeline_kind(self.conditional, self.vae is not None)
        cross_dim = None
        if self.conditional and a.text_encoder_name_or_path:
            self.text_encoder, self.tokenizer = load_text_tower(a.text_encoder_name_or_path)
            self.train_text_encoder = bool(a.train_text_encoder)
            cross_dim = self.text_encoder.config.hidden_size
        elif self.conditional:
            if a.text_encoder_preset not in TEXT_PRESETS:
                raise RecipeInputError(
                    f"Unknown text_encoder_preset {a.text_encoder_preset!r}. Available: {', '.join(TEXT_PRESETS)}."
                )
            cross_dim = {**TEXT_PRESETS[a.text_encoder_preset], **a.text_encoder_overrides}["hidden_size"]
            self.train_text_encoder = a.train_text_encoder is not False
        size, in_channels = self.model_input_shape()[1], self.model_input_shape()[0]
        self.unet_kwargs = unet_config(
            a.unet_preset,
            conditional=self.conditional,
            sample_size=size,
            in_channels=in_channels,
            out_channels=in_channels * (2 if self.kind == "if" else 1),
            cross_attention_dim=cross_dim,
            overrides=a.unet_overrides,
        )

    def model_input_shape(self) -> tuple[int, int, int]:
        """(channels, side, side) of the UNet's input: the image's, or its VAE latents'."""
        size = self.data.resolution
        if self.vae is None:
            return (self.data.channels, size, size)
        factor = _vae_scale_factor(self.vae)
        if size % factor:
            raise RecipeInputError(
                f"resolution {size} is not divisible by the VAE's down-sampling factor {factor}."
            )
        return (self.vae.config.latent_channels, size // factor, size // factor)

    def _check_size(self, unet_size: Any, factor: int) -> None:
        channels, side, _ = self.model_input_shape()
        if side % factor:
            raise RecipeInputError(
                f"resolution {self.data.resolution} gives {side} px UNet inputs, not divisible by "
                f"the UNet's down-sampling factor {factor}."
            )
        if self.vae is None and self.unet.config.in_channels != channels:
            raise RecipeInputError(
                f"The pipeline's UNet takes {self.unet.config.in_channels} channels; set channels accordingly."
            )

    @property
    def required_columns(self) -> list[str]:
        a, d = self.args, self.data
        columns = {"text": [d.caption_column], "class": [d.label_column]}.get(a.conditioning, [])
        return list(dict.fromkeys(columns + list(self.eval_attributes)))

    @property
    def eval_attributes(self) -> list[str]:
        if self.args.eval_attributes is not None:
            return list(self.args.eval_attributes)
        return [self.data.label_column] if self.args.conditioning == "class" else []

    # -- data-side ---------------------------------------------------------------------------------
    def captions(self, dataset: Any) -> list[str] | None:
        if self.args.conditioning == "text":
            return [str(c) if c is not None else "" for c in dataset[self.data.caption_column]]
        if self.args.conditioning == "class":
            names = class_names(dataset, self.data.label_column)
            return [
                self._class_caption(names[i]) for i in label_indices(dataset, self.data.label_column, names)
            ]
        return None

    def _class_caption(self, name: str) -> str:
        try:
            return self.args.class_caption_template.format(label=name)
        except (KeyError, IndexError) as err:
            raise RecipeInputError(f"class_caption_template must use {{label}} only: {err}") from err

    def eval_plan(self, train: Any, validation: Any, captions: list[str] | None):
        """Prompts (one per class, or distinct validation captions) and their targets per attribute."""
        a = self.args
        n, per = a.num_eval_prompts, a.eval_samples_per_prompt
        if not self.conditional:
            plan = prompt_plan([""] * n, None, per)
            plan.row_labels = []
            return plan
        if a.eval_prompts:
            return prompt_plan(a.eval_prompts, None, per)
        attributes = self.eval_attributes
        names = {c: class_names(train, c, validation) for c in attributes}
        if a.conditioning == "class":
            label = self.data.label_column
            classes = class_names(train, label, validation)[:n]
            targets = [{label: i} for i in range(len(classes))] if label in attributes else None
            return prompt_plan([self._class_caption(c) for c in classes], targets, per)
        labels = {c: label_indices(validation, c, names[c]) for c in attributes}
        chosen: dict[str, int] = {}
        for row, caption in enumerate(captions or []):
            if caption and caption not in chosen:
                chosen[caption] = row
            if len(chosen) == n:
                break
        targets = [{c: labels[c][row] for c in attributes} for row in chosen.values()] if attributes else None
        return prompt_plan(list(chosen), targets, per)

    # -- models ------------------------------------------------------------------------------------
    def build(self, texts: Sequence[str], seed: int) -> None:
        a = self.args
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            if self.conditional and self.text_encoder is None:
                self.tokenizer = caption_tokenizer([t for t in texts if t])
                self.text_encoder = CLIPTextModel(
                    text_config(a.text_encoder_preset, self.tokenizer, a.text_encoder_overrides)
                )
            if self.unet is None:
                self.unet = build_unet(self.unet_kwargs, self.conditional)
        self.noise_scheduler = training_scheduler(a.num_train_timesteps, a.beta_schedule, a.prediction_type)
        if self.pipe is not None:  # keep the base pipeline's noise schedule
            self.noise_scheduler = make_scheduler(
                "ddpm",
                self.pipe.scheduler.config,
                prediction_type=self.pipe.scheduler.config.get("prediction_type", a.prediction_type),
            )
        for frozen in (self.vae, None if self.train_text_encoder else self.text_encoder):
            if frozen is not None:
                frozen.requires_grad_(False).eval()
        if a.lora_rank:
            add_lora(self.unet, a.lora_rank, a.lora_alpha, a.lora_target_modules)
        self.unet_parameters = sum(p.numel() for p in self.unet.parameters())

    def trainable(self) -> dict[str, nn.Module]:
        """The UNet, and the text encoder when it is trained."""
        modules = {"unet": self.unet}
        if self.train_text_encoder:
            modules["text_encoder"] = self.text_encoder
        return modules

    def ema_modules(self) -> list[str]:
        """Every trainable module keeps EMA weights, except LoRA adapters."""
        return [] if self.args.lora_rank else list(self.trainable())

    def evaluator(self, train: Any, train_set: Any, validation: Any, validation_set: Any, seed: int):
        """The prompt-adherence / Fréchet classifier, fitted on the real training images (<= 64 px)."""
        attributes = self.eval_attributes
        if not attributes:
            return None
        size = min(self.data.resolution, 64)

        def pixels(dataset: Any, pixel_set: Any) -> torch.Tensor:
            stack = (
                pixel_set.pixels
                if pixel_set.pixels is not None
                else pixel_stack(dataset, size, self.data.channels)
            )
            return (
                stack
                if stack.shape[-1] == size
                else F.interpolate(stack, size=(size, size), mode="bilinear", antialias=True)
            )

        names = {c: class_names(train, c, validation) for c in attributes}
        labels = {
            s: {c: torch.tensor(label_indices(d, c, names[c])) for c in attributes}
            for s, d in (("train", train), ("validation", validation))
        }
        return ImageEvaluator(
            pixels(train, train_set),
            labels["train"],
            pixels(validation, validation_set),
            labels["validation"],
            {c: len(n) for c, n in names.items()},
            seed=seed,
        )

    def clip_reference(self, validation_set: Any, device: Any = None) -> dict[str, float]:
        """The CLIP score of real held-out images with their captions (and shuffled captions); {} without CLIP."""
        return (
            self.clip_scorer.reference(validation_set, device=device) if self.clip_scorer is not None else {}
        )

    def clip_metrics(
        self, images: torch.Tensor, prompts: Sequence[str], device: Any = None
    ) -> dict[str, float]:
        """`clip_score` of the samples against their prompts; {} without a CLIP model."""
        if self.clip_scorer is None:
            return {}
        return {"clip_score": self.clip_scorer(images, prompts, device=device)}

    def frozen_to(self, device: Any) -> None:
        """Move the VAE and a frozen text encoder to `device` (once per device)."""
        if self._device_ready != device:
            for module in (self.vae, self.text_encoder):
                if module is not None and not (module is self.text_encoder and self.train_text_encoder):
                    module.to(device)
            self._device_ready = device

    @property
    def max_length(self) -> int:
        return TEXT_MAX_LENGTH if self.kind == "if" else self.tokenizer.model_max_length

    def embed(self, modules: dict[str, nn.Module], prompts: Sequence[str], device: Any) -> torch.Tensor:
        encoder = modules.get("text_encoder", self.text_encoder)
        with nullcontext() if "text_encoder" in modules and torch.is_grad_enabled() else torch.no_grad():
            return encode_prompts(
                encoder,
                self.tokenizer,
                prompts,
                max_length=self.max_length,
                use_attention_mask=self.kind == "if",
                device=device,
            )

    def to_model_space(self, pixels: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Pixels in [-1, 1] as the UNet sees them: the VAE's scaled latents, or the pixels themselves."""
        if self.vae is None:
            return pixels
        with torch.no_grad():
            return encode_latents(self.vae, pixels, generator).float()

    def to_pixels(self, samples: torch.Tensor) -> torch.Tensor:
        """UNet-space samples as pixels in [-1, 1] on the CPU (decoded by the VAE in latent space)."""
        if self.vae is not None:
            samples = decode_latents(self.vae, samples)
        return samples.float().clamp(-1, 1).cpu()

    def scheduler(self) -> Any:
        """The sampling scheduler the evaluation samples with (`sampling_scheduler`, the training betas)."""
        return make_scheduler(self.args.sampling_scheduler, self.noise_scheduler.config)

    # -- outputs -----------------------------------------------------------------------------------
    def fingerprint(self) -> dict[str, Any]:
        a = self.args
        return fingerprint_of(
            kind=self.kind,
            conditioning=a.conditioning,
            unet=dict(self.unet.config),
            lora_rank=a.lora_rank,
            text_encoder=self.text_encoder.config.to_dict() if self.text_encoder is not None else None,
            train_text_encoder=self.train_text_encoder,
            resolution=self.data.resolution,
            channels=self.data.channels,
            prediction_type=self.noise_scheduler.config.prediction_type,
            pretrained_pipeline=a.pretrained_pipeline,
            vae=a.vae_name_or_path,
        )

    @property
    def pipeline_class_name(self) -> str:
        return type(self.pipe).__name__ if self.pipe is not None else PIPELINE_KINDS[self.kind]

    def save(self, directory: Path) -> None:
        self.unet.to("cpu")
        if self.args.lora_rank:
            save_lora(type(self.pipe), self.unet, directory)
            return
        for module in (self.vae, self.text_encoder):
            if module is not None:
                module.to("cpu")
        scheduler = make_scheduler(
            "ddim"
            if self.kind == "ddpm" and self.args.sampling_scheduler not in ("ddpm", "ddim")
            else self.args.sampling_scheduler,
            self.noise_scheduler.config,
        )
        pipe = assemble_pipeline(
            self.kind,
            unet=self.unet,
            scheduler=scheduler,
            text_encoder=self.text_encoder,
            tokenizer=self.tokenizer,
            vae=self.vae,
        )
        pipe.save_pretrained(str(directory), safe_serialization=True)

    def describe(self) -> str:
        a = self.args
        what = {"unconditional": "unconditional", "class": "class-conditional", "text": "text-to-image"}[
            a.conditioning
        ]
        how = (
            f"LoRA (rank {a.lora_rank}) on {a.pretrained_pipeline}"
            if a.lora_rank
            else (
                f"fine-tuned from {a.pretrained_pipeline}"
                if a.pretrained_pipeline
                else "trained from scratch"
            )
        )
        return f"{what} {self.pipeline_class_name} ({how})"

    def card(
        self, metrics: dict[str, Any], steps: int, output_dir: Path, prompts: Sequence[str]
    ) -> dict[str, Any]:
        """The model card's fields (`hfrecipes.core.stages.Stage.finish`'s `card`) after `steps` steps."""
        pipeline_tag = "text-to-image" if self.conditional else "unconditional-image-generation"
        return diffusion_card(
            self, metrics, steps, output_dir, prompts, task_tag="diffusion", pipeline_tag=pipeline_tag
        )

    def card_description(self, metrics: dict[str, Any], dataset: str, steps: int) -> str:
        def row(key: str) -> str:
            before, after = metrics.get(f"untrained_{key}"), metrics.get(key)
            shown = [f"{v:.4g}" if isinstance(v, float) else "" for v in (before, after)]
            return f"| {key} | {shown[0]} | {shown[1]} |"

        keys = [
            k
            for k in metrics
            if not k.startswith(("untrained_", "chance_", "classifier_")) and f"untrained_{k}" in metrics
        ]
        table = "\n".join(["| metric | untrained | trained |", "|---|---:|---:|", *map(row, keys)])
        space = "latent space (VAE)" if self.vae is not None else f"pixel space ({self.data.resolution} px)"
        return (
            f"A {self.describe()}, {space}, {steps} steps on `{dataset}`.\n\n"
            f"![sample grid: one row per prompt](samples.png)\n\n"
            f"Evaluation ({self.args.num_eval_prompts} prompts x {self.args.eval_samples_per_prompt} samples, "
            f"{self.args.sampling_scheduler} {self.args.num_inference_steps} steps, guidance {self.args.guidance_scale}). "
            "Prompt adherence is the accuracy, on generated samples, of a small classifier trained on the real "
            "training images (its accuracy on real held-out images is `classifier_accuracy_*`; chance is "
            "`chance_adherence_*`). `frechet_distance` is an offline stand-in for FID, computed in that classifier's "
            "feature space (comparable only between runs scored by the same classifier)."
            + self._clip_note(metrics)
            + "\n\n"
            + table
        )

    def _clip_note(self, metrics: dict[str, Any]) -> str:
        if "clip_score_real" not in metrics:
            return ""
        return (
            f" `clip_score` is 100 x the cosine of the image and prompt embeddings of the CLIP model "
            f"`{self.clip_model_path}` (clipped at 0, averaged over the samples); on real held-out images with their "
            f"own captions it is {metrics['clip_score_real']:.4g} (`clip_score_real`), with mismatched captions "
            f"{metrics['clip_score_real_shuffled']:.4g}."
        )

    def usage(self, output_dir: str, prompts: Sequence[str]) -> str:
        prompt = repr(prompts[0]) if prompts else '"a photo"'
        if self.args.lora_rank:
            return (
                f'from diffusers import DiffusionPipeline\n\npipe = DiffusionPipeline.from_pretrained("{self.args.pretrained_pipeline}")\n'
                f'pipe.load_lora_weights("{output_dir}")\nimage = pipe({prompt}).images[0]'
            )
        if not self.conditional:
            return (
                f'from diffusers import DiffusionPipeline\n\npipe = DiffusionPipeline.from_pretrained("{output_dir}")\n'
                f"image = pipe(batch_size=1, num_inference_steps={self.args.num_inference_steps}).images[0]"
            )
        extra = ", clean_caption=False" if self.kind == "if" else ""
        return (
            f'from diffusers import DiffusionPipeline\n\npipe = DiffusionPipeline.from_pretrained("{output_dir}")\n'
            f"image = pipe({prompt}, num_inference_steps=50, guidance_scale={self.args.guidance_scale}{extra}).images[0]"
        )
