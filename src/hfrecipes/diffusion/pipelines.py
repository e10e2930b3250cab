"""The diffusers pipelines the image recipe saves and fine-tunes: which one fits a model (`pipeline_kind`),
assembling it (`assemble_pipeline`), loading one to fine-tune (`load_pipeline`), and LoRA adapters on a denoiser
(`add_lora`, `save_lora`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import diffusers
from diffusers import DiffusionPipeline
from diffusers.utils import convert_state_dict_to_diffusers
from peft import LoraConfig
from peft.utils import get_peft_model_state_dict
from torch import nn

from hfrecipes.core.errors import RecipeInputError

PIPELINE_KINDS = {
    "ddpm": "DDPMPipeline",  # unconditional, pixel space (UNet2DModel)
    "if": "IFPipeline",  # text-conditional, pixel space (UNet2DConditionModel predicting 2C channels)
    "stable-diffusion": "StableDiffusionPipeline",  # text-conditional, latent space (with a VAE)
}


PIPELINE_CLASSES_TO_KIND = {
    "DDPMPipeline": "ddpm",
    "DDIMPipeline": "ddpm",
    "IFPipeline": "if",
    "StableDiffusionPipeline": "stable-diffusion",
}


def pipeline_kind(conditional: bool, latent: bool) -> str:
    """Which pipeline a new model saves as: ddpm (unconditional), if (text, pixels) or stable-diffusion (text,
    latents)."""
    if not conditional:
        if latent:
            raise RecipeInputError(
                "Unconditional training is pixel-space only (DDPMPipeline): drop the VAE, or condition on captions."
            )
        return "ddpm"
    return "stable-diffusion" if latent else "if"


def assemble_pipeline(
    kind: str,
    *,
    unet: nn.Module,
    scheduler: Any,
    text_encoder: Any = None,
    tokenizer: Any = None,
    vae: Any = None,
):
    """The standard diffusers pipeline for these components (loadable with `DiffusionPipeline.from_pretrained`).
    IFPipeline reads `scheduler.config.variance_type`, so it gets a DDPMScheduler."""
    if kind == "ddpm":
        return diffusers.DDPMPipeline(unet=unet, scheduler=scheduler)
    if kind == "if":
        if type(scheduler).__name__ != "DDPMScheduler":
            scheduler = diffusers.DDPMScheduler.from_config(scheduler.config, variance_type="fixed_small")
        return diffusers.IFPipeline(
            tokenizer=tokenizer,
            text_encoder=text_encoder,
            unet=unet,
            scheduler=scheduler,
            safety_checker=None,
            feature_extractor=None,
            watermarker=None,
            requires_safety_checker=False,
        )
    if kind == "stable-diffusion":
        return diffusers.StableDiffusionPipeline(
            vae=vae,
            text_encoder=text_encoder,
            tokenizer=tokenizer,
            unet=unet,
            scheduler=scheduler,
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
    raise RecipeInputError(f"Unknown pipeline kind {kind!r}; one of {', '.join(PIPELINE_KINDS)}.")


def load_pipeline(name_or_path: str):
    """A pipeline to fine-tune (full or LoRA), and its kind."""
    try:
        pipe = DiffusionPipeline.from_pretrained(name_or_path, use_safetensors=True)
    except (OSError, ValueError) as err:
        raise RecipeInputError(f"Could not load a diffusers pipeline from {name_or_path!r}: {err}") from err
    kind = PIPELINE_CLASSES_TO_KIND.get(type(pipe).__name__)
    if kind is None:
        raise RecipeInputError(
            f"{name_or_path!r} is a {type(pipe).__name__}; this recipe fine-tunes {', '.join(PIPELINE_CLASSES_TO_KIND)}."
        )
    return pipe, kind


def add_lora(unet: nn.Module, rank: int, alpha: int | None, target_modules: Sequence[str]) -> int:
    """Freeze the UNet and add LoRA adapters (PEFT) to `target_modules`; returns the trainable parameter count."""
    unet.requires_grad_(False)
    config = LoraConfig(
        r=rank, lora_alpha=alpha or rank, init_lora_weights="gaussian", target_modules=list(target_modules)
    )
    try:
        unet.add_adapter(config)
    except ValueError as err:
        raise RecipeInputError(f"Cannot add LoRA to {list(target_modules)}: {err}") from err
    for p in unet.parameters():
        if p.requires_grad:
            p.data = p.data.float()
    return sum(p.numel() for p in unet.parameters() if p.requires_grad)


def save_lora(pipeline_class: type, denoiser: nn.Module, directory: Path, component: str = "unet") -> None:
    """`pytorch_lora_weights.safetensors`, which `pipe.load_lora_weights(directory)` loads into the base;
    `component` is the pipeline's name for the adapted denoiser (unet, transformer)."""
    layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(denoiser))
    pipeline_class.save_lora_weights(
        save_directory=str(directory), **{f"{component}_lora_layers": layers}, safe_serialization=True
    )
