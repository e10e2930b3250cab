"""VAEs of latent diffusion: loading an AutoencoderKL (`load_vae`) and moving between pixels and scaled latents
(`encode_latents`, `decode_latents`)."""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import AutoencoderKL
from torch import nn

from hfrecipes.core.errors import RecipeInputError


def encode_latents(
    vae: nn.Module, pixels: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Scaled (and shifted) latents of pixels in [-1, 1], sampled from the VAE's posterior with `generator`."""
    latents = vae.encode(pixels.to(vae.dtype)).latent_dist.sample(generator)
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    return (latents - shift) * vae.config.scaling_factor


def decode_latents(vae: nn.Module, latents: torch.Tensor) -> torch.Tensor:
    """Pixels in [-1, 1] from scaled latents (the inverse of `encode_latents`)."""
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    return vae.decode(latents.to(vae.dtype) / vae.config.scaling_factor + shift).sample


def load_vae(name_or_path: str):
    """An AutoencoderKL from a VAE folder, a pipeline folder (its vae/) or a Hub id; RecipeInputError if none loads."""
    subfolder = "vae" if (Path(name_or_path) / "vae").is_dir() else None
    try:
        return AutoencoderKL.from_pretrained(name_or_path, subfolder=subfolder, use_safetensors=True)
    except (OSError, ValueError) as err:
        if subfolder is None and not Path(name_or_path).exists():
            try:  # a Hub pipeline id: its vae/ subfolder
                return AutoencoderKL.from_pretrained(name_or_path, subfolder="vae", use_safetensors=True)
            except (OSError, ValueError):
                pass
        raise RecipeInputError(f"Could not load an AutoencoderKL from {name_or_path!r}: {err}") from err
