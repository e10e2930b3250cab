"""The VAEs of the video backbones: identity "pixel" VAEs that let the standard pipelines work in pixel space
(`pixel_image_vae` for the UNets, `pixel_vae` for Wan, `pixel_cogvideox_vae` for CogVideoX), Wan's video VAEs
(`load_video_vae`) and their compression factors (`vae_factors`)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL, AutoencoderKLCogVideoX, AutoencoderKLWan

from hfrecipes.core.errors import RecipeInputError

PIXEL_VAE_LEVEL = 1000.0  # the constant channel that makes the norms of the identity VAEs (near-)linear


def pixel_image_vae(channels: int = 3):
    """An AutoencoderKL that is an identity map with scale factor 1 (scaling_factor 1), so a TextToVideoSDPipeline
    over pixels decodes them unchanged. Built from zeros: every residual branch and attention output is zero;
    conv_in writes [x, -x, L, -L] (L = PIXEL_VAE_LEVEL), so the one-group GroupNorm before the output has mean 0
    and std ~L/2 whatever x is (error ~1e-5), its gain undoes that, and conv_out takes silu(x) - silu(-x) = x.
    The encoder is built the same way (mean x, log-variance -30)."""
    width = 2 * channels + 2
    vae = AutoencoderKL(
        in_channels=channels,
        out_channels=channels,
        latent_channels=channels,
        block_out_channels=(width,),
        down_block_types=("DownEncoderBlock2D",),
        up_block_types=("UpDecoderBlock2D",),
        layers_per_block=1,
        norm_num_groups=1,
        scaling_factor=1.0,
    )
    level = PIXEL_VAE_LEVEL
    with torch.no_grad():
        for parameter in vae.parameters():
            parameter.zero_()
        for coder, outputs in ((vae.encoder, 2 * channels), (vae.decoder, channels)):
            conv_in, conv_out = coder.conv_in, coder.conv_out
            for j in range(channels):  # centre taps of 3x3 convolutions
                conv_in.weight[j, j, 1, 1], conv_in.weight[channels + j, j, 1, 1] = 1.0, -1.0
                conv_out.weight[j, j, 1, 1], conv_out.weight[j, channels + j, 1, 1] = 1.0, -1.0
            conv_in.bias[2 * channels], conv_in.bias[2 * channels + 1] = level, -level
            coder.conv_norm_out.weight.fill_(level / 2)
            if outputs > channels:
                conv_out.bias[channels:] = -30.0  # log-variance: a (near-)deterministic encoder
        for conv, size in ((vae.quant_conv, 2 * channels), (vae.post_quant_conv, channels)):
            for j in range(size):
                conv.weight[j, j, 0, 0] = 1.0
    return vae.eval()


def pixel_vae(channels: int = 3):
    """An AutoencoderKLWan that is an identity map with scale factors 1, so a WanPipeline over pixels decodes
    them unchanged. Built from zeros: every residual branch and attention output is zero; conv_in writes
    [x, -x, L, -L] (L = PIXEL_VAE_LEVEL), so the RMS norm before the output divides by ~sqrt(2) L whatever x is
    (error |x|^2 / 2L^2 < 2e-6), its gain undoes that, and conv_out takes silu(x) - silu(-x) = x. The encoder is
    built the same way (mean x, log-variance -30); like every Wan VAE it encodes clips of 4k + 1 frames."""
    width = 2 * channels + 2
    vae = AutoencoderKLWan(
        base_dim=width,
        z_dim=channels,
        dim_mult=[1],
        num_res_blocks=1,
        attn_scales=[],
        temperal_downsample=[],
        latents_mean=[0.0] * channels,
        latents_std=[1.0] * channels,
        in_channels=channels,
        out_channels=channels,
        scale_factor_temporal=1,
        scale_factor_spatial=1,
    )
    level = PIXEL_VAE_LEVEL
    with torch.no_grad():
        for parameter in vae.parameters():
            parameter.zero_()
        for coder, outputs in ((vae.encoder, 2 * channels), (vae.decoder, channels)):
            conv_in, conv_out = coder.conv_in, coder.conv_out
            for j in range(channels):  # current frame, centre pixel: the last time tap of a causal 3x3x3 conv
                conv_in.weight[j, j, -1, 1, 1], conv_in.weight[channels + j, j, -1, 1, 1] = 1.0, -1.0
                conv_out.weight[j, j, -1, 1, 1], conv_out.weight[j, channels + j, -1, 1, 1] = 1.0, -1.0
            conv_in.bias[2 * channels], conv_in.bias[2 * channels + 1] = level, -level
            coder.norm_out.gamma.fill_(level * math.sqrt(2) / math.sqrt(width))
            if outputs > channels:
                conv_out.bias[channels:] = -30.0  # log-variance: a (near-)deterministic encoder
        for conv, size in ((vae.quant_conv, 2 * channels), (vae.post_quant_conv, channels)):
            for j in range(size):
                conv.weight[j, j, 0, 0, 0] = 1.0
    return vae.eval()


def pixel_cogvideox_vae(channels: int = 3):
    """An AutoencoderKLCogVideoX that is an identity map with scale factors 1 (scaling_factor 1), so a
    CogVideoXPipeline over pixels decodes them unchanged. Built from zeros: every residual branch is zero; the
    decoder's output norm is spatially conditioned on the latents, so its conv_b writes [z, -z] and conv_out
    takes silu(z) - silu(-z) = z; the encoder is built as `pixel_image_vae`'s ([x, -x, L, -L] through a one-group
    GroupNorm; mean x, log-variance -30)."""
    width = 2 * channels + 2
    vae = AutoencoderKLCogVideoX(
        in_channels=channels,
        out_channels=channels,
        latent_channels=channels,
        down_block_types=("CogVideoXDownBlock3D",),
        up_block_types=("CogVideoXUpBlock3D",),
        block_out_channels=(width,),
        layers_per_block=1,
        norm_num_groups=1,
        temporal_compression_ratio=1,
        scaling_factor=1.0,
    )
    level = PIXEL_VAE_LEVEL
    with torch.no_grad():
        for parameter in vae.parameters():
            parameter.zero_()
        encoder, decoder = vae.encoder, vae.decoder
        enc_in, enc_out = encoder.conv_in.conv.weight, encoder.conv_out.conv.weight
        dec_b, dec_out = decoder.norm_out.conv_b.conv.weight, decoder.conv_out.conv.weight
        for j in range(channels):  # current frame, centre pixel: the last time tap of a causal 3x3x3 conv
            enc_in[j, j, -1, 1, 1], enc_in[channels + j, j, -1, 1, 1] = 1.0, -1.0
            enc_out[j, j, -1, 1, 1], enc_out[j, channels + j, -1, 1, 1] = 1.0, -1.0
            dec_b[j, j], dec_b[channels + j, j] = 1.0, -1.0
            dec_out[j, j, -1, 1, 1], dec_out[j, channels + j, -1, 1, 1] = 1.0, -1.0
        encoder.conv_in.conv.bias[2 * channels], encoder.conv_in.conv.bias[2 * channels + 1] = level, -level
        encoder.norm_out.weight.fill_(level / 2)
        encoder.conv_out.conv.bias[channels:] = -30.0  # log-variance: a (near-)deterministic encoder
    return vae.eval()


def load_video_vae(name_or_path: str):
    """An AutoencoderKLWan from a folder, a pipeline folder / Hub pipeline id (its vae/) or a Hub VAE id."""
    subfolder = "vae" if (Path(name_or_path) / "vae").is_dir() else None
    try:
        return AutoencoderKLWan.from_pretrained(name_or_path, subfolder=subfolder)
    except (OSError, ValueError) as err:
        if subfolder is None and not Path(name_or_path).exists():
            try:
                return AutoencoderKLWan.from_pretrained(name_or_path, subfolder="vae")
            except (OSError, ValueError):
                pass
        raise RecipeInputError(
            f"Could not load an AutoencoderKLWan (video VAE) from {name_or_path!r}: {err}. Point vae_name_or_path at "
            "a Wan VAE folder, a WanPipeline folder or Hub id, or unset it to train in pixel space."
        ) from err


def vae_factors(vae: Any) -> tuple[int, int]:
    """(temporal, spatial) compression of a Wan VAE."""
    return int(vae.config.scale_factor_temporal or 1), int(vae.config.scale_factor_spatial or 1)
