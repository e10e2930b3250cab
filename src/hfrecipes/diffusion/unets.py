"""UNet presets (`UNET_PRESETS`: tiny and small pixel-space ones, Stable Diffusion 1.x's) and the
UNet2DModel / UNet2DConditionModel configs built from them (`unet_config`, `build_unet`)."""

from __future__ import annotations

from typing import Any

from diffusers import UNet2DConditionModel, UNet2DModel
from torch import nn

from hfrecipes.core.errors import RecipeInputError

# Pixel-space presets are for 16-64 px images; "sd" is Stable Diffusion 1.x's UNet (latent 64 x 64 x 4).
UNET_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(
        block_out_channels=(32, 64, 64), layers_per_block=1, norm_num_groups=8, attention_head_dim=8
    ),
    "small": dict(
        block_out_channels=(64, 128, 128, 256), layers_per_block=2, norm_num_groups=32, attention_head_dim=32
    ),
    "sd": dict(
        block_out_channels=(320, 640, 1280, 1280),
        layers_per_block=2,
        norm_num_groups=32,
        attention_head_dim=8,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    ),
}


# What a conditional preset's attention blocks become in an unconditional UNet2DModel.
_UNCONDITIONAL_BLOCKS = {"CrossAttnDownBlock2D": "AttnDownBlock2D", "CrossAttnUpBlock2D": "AttnUpBlock2D"}


def downsampling_factor(unet_config: dict[str, Any]) -> int:
    """How many times a UNet config halves its input side: 2 ** (levels - 1)."""
    return 2 ** (len(unet_config["block_out_channels"]) - 1)


def unet_config(
    preset: str,
    *,
    conditional: bool,
    sample_size: int,
    in_channels: int,
    out_channels: int,
    cross_attention_dim: int | None = None,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A UNet2DModel (unconditional) or UNet2DConditionModel config from a preset. Conditional UNets attend
    to the prompt at every resolution but the highest, and also add an attention-pooled prompt embedding to
    the timestep embedding (`addition_embed_type: text`), which carries global facts (which digit, which
    colour) cheaply. Refuses sizes the UNet cannot halve `len(block_out_channels) - 1` times."""
    if preset not in UNET_PRESETS:
        raise RecipeInputError(f"Unknown unet_preset {preset!r}. Available: {', '.join(UNET_PRESETS)}.")
    preset_config = dict(UNET_PRESETS[preset])
    if not conditional:
        for key in ("down_block_types", "up_block_types"):
            if key in preset_config:
                preset_config[key] = tuple(_UNCONDITIONAL_BLOCKS.get(b, b) for b in preset_config[key])
    config = {**preset_config, **(overrides or {})}
    levels = len(config["block_out_channels"])
    if conditional:
        config.setdefault("down_block_types", ("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (levels - 1))
        config.setdefault("up_block_types", ("CrossAttnUpBlock2D",) * (levels - 1) + ("UpBlock2D",))
        config.setdefault("cross_attention_dim", cross_attention_dim)
        config.setdefault("addition_embed_type", "text")
        config.setdefault("addition_embed_type_num_heads", min(64, max(1, (cross_attention_dim or 64) // 16)))
    else:
        config.setdefault("down_block_types", ("DownBlock2D",) * (levels - 1) + ("AttnDownBlock2D",))
        config.setdefault("up_block_types", ("AttnUpBlock2D",) + ("UpBlock2D",) * (levels - 1))
        config.pop("cross_attention_dim", None)
    factor = downsampling_factor(config)
    if sample_size % factor:
        raise RecipeInputError(
            f"Image size {sample_size} (latent size for latent models) is not divisible by the UNet's down-sampling "
            f"factor {factor} ({levels} levels of block_out_channels): use a multiple of {factor}, e.g. "
            f"{max(factor, sample_size // factor * factor)}, or fewer levels in unet_overrides."
        )
    return {**config, "sample_size": sample_size, "in_channels": in_channels, "out_channels": out_channels}


def build_unet(config: dict[str, Any], conditional: bool) -> nn.Module:
    """A UNet2DConditionModel (conditional) or UNet2DModel from `unet_config`'s output; RecipeInputError if
    diffusers refuses it."""
    cls = UNet2DConditionModel if conditional else UNet2DModel
    try:
        return cls(**config)
    except (TypeError, ValueError) as err:
        raise RecipeInputError(f"Cannot build a {cls.__name__} from {config}: {err}") from err
