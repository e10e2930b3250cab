"""The model side of the text-to-video recipe (recipes/video/train_video_diffusion.py), on the shared machinery of
`hfrecipes.diffusion.loop` (training loop, EMA, checkpoints and exact resume, caption dropout, LoRA, schedulers).

Four diffusers backbones, each saved as its standard pipeline, so the output folder loads with
`DiffusionPipeline.from_pretrained` and generates clips:

- `unet3d`: `UNet3DConditionModel` (ModelScope's text-to-video UNet: 2D convolutions + temporal convolutions,
  temporal attention, text cross-attention), DDPM-style noise (epsilon / v-prediction, as the image recipe), a
  CLIP text encoder; saved as `TextToVideoSDPipeline`. The tiny preset trains in **pixel space**: the pipeline's
  VAE is `pixel_image_vae()`, an `AutoencoderKL` whose weights make it an identity with scale factor 1, so the
  standard pipeline decodes the UNet's pixels unchanged. With `vae_name_or_path` (an `AutoencoderKL`, applied
  frame by frame as ModelScope does) it trains in latent space. Its convolutions learn coherent motion within a
  few hundred CPU steps, but not which way the prompt says to move (see the tiny config).
- `animatediff`: `UNetMotionModel` (AnimateDiff: a 2D text-conditioned UNet whose motion modules are temporal
  attention with *absolute* sinusoidal frame positions), built from the same presets, noise, text encoder and
  VAEs as `unet3d`; saved as `AnimateDiffPipeline` (the motion modules live in the UNet, so no separate
  MotionAdapter). `AsPipelineCalls` calls it as the pipeline does (one prompt embedding per frame). LoRA on an
  existing AnimateDiffPipeline loads with `pipe.load_lora_weights`.
- `cogvideox`: `CogVideoXTransformer3DModel` (CogVideoX: video and text tokens in one attention, *absolute* 3D
  sin-cos positions), DDPM-style noise as `unet3d`, a T5 text encoder (prompts padded to `max_sequence_length`,
  which must equal the transformer's `max_text_seq_length`); saved as `CogVideoXPipeline` in pixel space with
  `pixel_cogvideox_vae()` (an identity `AutoencoderKLCogVideoX`). The tiny config uses it (with a frozen text
  encoder and training biased to the noisiest timesteps): tying the direction word to the frame order needs
  absolute frame and pixel positions, which the other backbones lack (UNet3D: none; Wan: relative RoPE;
  AnimateDiff: frame positions only inside its temporal attention), and it is ~8x faster per step than the tiny
  UNets on the CPU.
- `wan`: `WanTransformer3DModel` (a DiT over space-time patches with 3D RoPE), flow matching
  (`flow_matching_loss`: x_s = (1 - s) x + s noise, target noise - x), a UMT5 / T5 / CLIP text encoder; saved as
  `WanPipeline`. In latent space with a given `AutoencoderKLWan` (frame counts 1 + a multiple of its temporal
  factor, sides multiples of its spatial factor x the patch), or in pixel space with `pixel_vae()` (an identity
  `AutoencoderKLWan`; WanPipeline rounds `num_frames` to k * temporal + 1, i.e. N + 1 for a temporal factor of
  1, so ask for N - 1). On the CPU the tiny Wan learnt coherent objects but not motion in 3000 steps.

Either can instead fine-tune an existing pipeline (`pretrained_pipeline`: a TextToVideoSDPipeline or WanPipeline,
e.g. Wan-AI/Wan2.1-T2V-1.3B-Diffusers), fully or with LoRA adapters on the denoiser (`lora_rank`), saved as
`pytorch_lora_weights.safetensors` for `pipe.load_lora_weights`.

Text encoders built here are word-level-tokenized tiny towers (CLIP for unet3d, UMT5 for wan); loaded ones are
the CLIP recipe's output or a Hub CLIP (unet3d, wan), a T5 / UMT5 encoder (wan), or a pipeline folder's
text_encoder/. For wan, prompts are encoded exactly as WanPipeline does (cleaned, padded to
`max_sequence_length`, embeddings past the prompt zeroed) and CLIP towers get their position table extended to
that length (the new rows only ever see padding, which the pipeline zeroes).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import nn
from torch.nn import functional as F

from hfrecipes.core.errors import RecipeInputError
from hfrecipes.diffusion import loop as dm
from hfrecipes.diffusion.loop import add_lora, drop_captions, fingerprint_of

logger = logging.getLogger(__name__)

BACKBONES = ("unet3d", "animatediff", "cogvideox", "wan")
# UNet3DConditionModel fields; `cross_attention` says which resolution levels attend to the prompt (the mid
# block always does). "modelscope" is damo-vilab/text-to-video-ms-1.7b's UNet (latent space, for reference).
UNET3D_PRESETS: dict[str, dict[str, Any]] = {
    # name: (block_out_channels, layers_per_block, norm_num_groups, attention_head_dim, cross_attention)
    name: dict(
        block_out_channels=channels,
        layers_per_block=layers,
        norm_num_groups=groups,
        attention_head_dim=head_dim,
        cross_attention=cross,
    )  # fmt: skip
    for name, (channels, layers, groups, head_dim, cross) in {
        "tiny": ((32, 64, 64), 1, 8, 8, (False, False, False)),
        "small": ((64, 128, 128), 2, 32, 16, (False, True, True)),
        "modelscope": ((320, 640, 1280, 1280), 2, 32, 64, (True, True, True, False)),
    }.items()
}
# WanTransformer3DModel fields. "wan2.1-1.3b" is Wan2.1-T2V-1.3B's transformer; text_dim comes from the encoder.
TRANSFORMER_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(num_attention_heads=4, attention_head_dim=32, ffn_dim=256, num_layers=3, freq_dim=64),
    "small": dict(num_attention_heads=6, attention_head_dim=32, ffn_dim=768, num_layers=6, freq_dim=128),
    "wan2.1-1.3b": dict(
        num_attention_heads=12, attention_head_dim=128, ffn_dim=8960, num_layers=30, freq_dim=256
    ),
}
# CogVideoXTransformer3DModel fields (absolute 3D sin-cos positions, text and video tokens in one attention).
# "cogvideox-2b" is CogVideoX-2b's transformer; sizes, channels and text_embed_dim come from the data and encoder.
COGVIDEOX_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(num_attention_heads=4, attention_head_dim=16, time_embed_dim=64, num_layers=3),
    "small": dict(num_attention_heads=6, attention_head_dim=32, time_embed_dim=128, num_layers=6),
    "cogvideox-2b": dict(num_attention_heads=30, attention_head_dim=64, time_embed_dim=512, num_layers=30),
}
# UMT5 encoder fields for the wan text encoders built here (WanPipeline's own is UMT5-XXL).
T5_PRESETS: dict[str, dict[str, Any]] = {
    name: dict(
        d_model=d_model,
        d_kv=d_kv,
        d_ff=d_ff,
        num_layers=layers,
        num_heads=heads,
        relative_attention_num_buckets=buckets,
        relative_attention_max_distance=distance,
    )  # fmt: skip
    for name, (d_model, d_kv, d_ff, layers, heads, buckets, distance) in {
        "tiny": (64, 16, 128, 2, 4, 16, 32),
        "small": (256, 32, 1024, 4, 8, 32, 64),
    }.items()
}
FLOW_SCHEDULERS = ("flow-euler", "unipc")
DEFAULT_SCHEDULERS = {"unet3d": "ddim", "animatediff": "ddim", "cogvideox": "ddim", "wan": "flow-euler"}
TIMESTEP_SAMPLING = ("logit_normal", "uniform")
PIXEL_VAE_LEVEL = 1000.0  # the constant channel that makes the norms of the identity VAEs (near-)linear
PIPELINES = {"unet3d": "TextToVideoSDPipeline", "animatediff": "AnimateDiffPipeline",
             "cogvideox": "CogVideoXPipeline", "wan": "WanPipeline"}  # fmt: skip
DENOISERS = {"unet3d": "UNet3DConditionModel", "animatediff": "UNetMotionModel",
             "cogvideox": "CogVideoXTransformer3DModel", "wan": "WanTransformer3DModel"}  # fmt: skip
# The UNet backbones: a CLIP text encoder, an image VAE applied frame by frame.
UNET_BACKBONES = ("unet3d", "animatediff")
# DDPM-style noise (epsilon / v / sample targets, the image recipe's schedulers); wan uses flow matching.
DDPM_BACKBONES = ("unet3d", "animatediff", "cogvideox")
# Transformers: a T5 / UMT5 (or CLIP) text encoder, a video VAE, the pipeline's "transformer" component.
TRANSFORMER_BACKBONES = ("cogvideox", "wan")


@dataclass
class VideoDataArguments:
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


FRAME_ATTRIBUTES = ("color", "shape", "size", "position")


# ---------------------------------------------------------------------------------------------- VAEs


def pixel_image_vae(channels: int = 3):
    """An AutoencoderKL that is an identity map with scale factor 1 (scaling_factor 1), so a TextToVideoSDPipeline
    over pixels decodes them unchanged. Built from zeros: every residual branch and attention output is zero;
    conv_in writes [x, -x, L, -L] (L = PIXEL_VAE_LEVEL), so the one-group GroupNorm before the output has mean 0
    and std ~L/2 whatever x is (error ~1e-5), its gain undoes that, and conv_out takes silu(x) - silu(-x) = x.
    The encoder is built the same way (mean x, log-variance -30)."""
    from diffusers import AutoencoderKL

    width = 2 * channels + 2
    vae = AutoencoderKL(in_channels=channels, out_channels=channels, latent_channels=channels,
                        block_out_channels=(width,), down_block_types=("DownEncoderBlock2D",),
                        up_block_types=("UpDecoderBlock2D",), layers_per_block=1, norm_num_groups=1,
                        scaling_factor=1.0)  # fmt: skip
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


def unet3d_config(
    preset: str,
    *,
    sample_size: int,
    in_channels: int,
    cross_attention_dim: int,
    overrides: dict[str, Any],
    kind: str = "unet3d",
) -> dict[str, Any]:
    """A UNet3DConditionModel (kind "unet3d") or UNetMotionModel ("animatediff") config from a preset
    (`cross_attention`: which levels attend to the prompt; `attention_head_dim` is, as in UNet3DConditionModel's
    own naming, the number of heads)."""
    if preset not in UNET3D_PRESETS:
        raise RecipeInputError(
            f"Unknown model_preset {preset!r} for {kind}. Available: {', '.join(UNET3D_PRESETS)}."
        )
    config = {**UNET3D_PRESETS[preset], **overrides}
    levels = config.pop("cross_attention")
    if len(levels) != len(config["block_out_channels"]):
        raise RecipeInputError(
            "model_overrides: cross_attention needs one flag per block_out_channels entry."
        )
    suffix = "Motion" if kind == "animatediff" else "3D"
    if kind == "animatediff":
        heads = config.pop("attention_head_dim")
        config.setdefault("num_attention_heads", heads)
        config.setdefault("motion_num_attention_heads", heads)
    config.setdefault(
        "down_block_types",
        tuple(f"CrossAttnDownBlock{suffix}" if a else f"DownBlock{suffix}" for a in levels),
    )
    config.setdefault(
        "up_block_types",
        tuple(f"CrossAttnUpBlock{suffix}" if a else f"UpBlock{suffix}" for a in reversed(levels)),
    )
    return {**config, "sample_size": sample_size, "in_channels": in_channels, "out_channels": in_channels,
            "cross_attention_dim": cross_attention_dim}  # fmt: skip


def pixel_vae(channels: int = 3):
    """An AutoencoderKLWan that is an identity map with scale factors 1, so a WanPipeline over pixels decodes
    them unchanged. Built from zeros: every residual branch and attention output is zero; conv_in writes
    [x, -x, L, -L] (L = PIXEL_VAE_LEVEL), so the RMS norm before the output divides by ~sqrt(2) L whatever x is
    (error |x|^2 / 2L^2 < 2e-6), its gain undoes that, and conv_out takes silu(x) - silu(-x) = x. The encoder is
    built the same way (mean x, log-variance -30); like every Wan VAE it encodes clips of 4k + 1 frames."""
    from diffusers import AutoencoderKLWan

    width = 2 * channels + 2
    vae = AutoencoderKLWan(base_dim=width, z_dim=channels, dim_mult=[1], num_res_blocks=1, attn_scales=[],
                           temperal_downsample=[], latents_mean=[0.0] * channels, latents_std=[1.0] * channels,
                           in_channels=channels, out_channels=channels, scale_factor_temporal=1,
                           scale_factor_spatial=1)  # fmt: skip
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
    from diffusers import AutoencoderKLCogVideoX

    width = 2 * channels + 2
    vae = AutoencoderKLCogVideoX(in_channels=channels, out_channels=channels, latent_channels=channels,
                                 down_block_types=("CogVideoXDownBlock3D",), up_block_types=("CogVideoXUpBlock3D",),
                                 block_out_channels=(width,), layers_per_block=1, norm_num_groups=1,
                                 temporal_compression_ratio=1, scaling_factor=1.0)  # fmt: skip
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
    from diffusers import AutoencoderKLWan

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


# ------------------------------------------------------------------------------------- text encoders


def t5_encoder(preset: str, tokenizer: Any, overrides: dict[str, Any] | None = None, *, umt5: bool = True):
    """A UMT5 encoder (WanPipeline's kind) or, with umt5=False, a T5 one (CogVideoXPipeline's) from a preset."""
    from transformers import T5Config, T5EncoderModel, UMT5Config, UMT5EncoderModel

    config_class, model_class = (UMT5Config, UMT5EncoderModel) if umt5 else (T5Config, T5EncoderModel)

    if preset not in T5_PRESETS:
        raise RecipeInputError(f"Unknown text_encoder_preset {preset!r}. Available: {', '.join(T5_PRESETS)}.")
    unknown = [k for k in overrides or {} if not hasattr(config_class(), k)]
    if unknown:
        raise RecipeInputError(
            f"text_encoder_overrides has keys {config_class.__name__} does not know: {unknown}."
        )
    config = config_class(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id or 0,
                        eos_token_id=tokenizer.eos_token_id, decoder_start_token_id=tokenizer.pad_token_id or 0,
                        feed_forward_proj="gated-gelu",
                        **{"dropout_rate": 0.0, **T5_PRESETS[preset], **(overrides or {})})  # fmt: skip
    return model_class(config)


def extend_positions(encoder: Any, length: int) -> None:
    """Give a CLIP text tower `length` positions: rows past the old table copy its last row. Only padding sits
    there (prompts are truncated to the old length by the caller's tokenizer max) and CLIP's causal mask keeps
    padding from reaching earlier tokens, so real tokens' outputs are unchanged."""
    embeddings = getattr(encoder, "text_model", encoder).embeddings  # transformers 5 dropped `text_model`
    old = embeddings.position_embedding.weight
    if length <= old.shape[0]:
        return
    table = nn.Embedding(length, old.shape[1])
    with torch.no_grad():
        table.weight[: old.shape[0]] = old
        table.weight[old.shape[0] :] = old[-1]
    embeddings.position_embedding = table
    embeddings.position_ids = torch.arange(length).expand((1, -1))
    encoder.config.max_position_embeddings = length


def load_text_encoder(name_or_path: str, max_sequence_length: int) -> tuple[Any, Any]:
    """(encoder, tokenizer) from a T5 / UMT5 / MT5 encoder, a CLIP model or text tower (CLIP recipe output, Hub
    CLIP), or a pipeline folder's text_encoder/ + tokenizer/."""
    from transformers import AutoConfig, AutoTokenizer, CLIPTextModel, T5EncoderModel, UMT5EncoderModel

    path = Path(name_or_path)
    model_dir, tok_dir = name_or_path, name_or_path
    if (path / "text_encoder").is_dir():
        model_dir, tok_dir = str(path / "text_encoder"), str(path / "tokenizer")
    try:
        kind = AutoConfig.from_pretrained(model_dir).model_type
        classes = {"t5": T5EncoderModel, "mt5": T5EncoderModel, "umt5": UMT5EncoderModel,
                   "clip": CLIPTextModel, "clip_text_model": CLIPTextModel}  # fmt: skip
        if kind not in classes:
            raise RecipeInputError(
                f"{name_or_path!r} is a {kind!r} model; the text encoder must be a T5, UMT5 or CLIP (text) model."
            )
        encoder = classes[kind].from_pretrained(model_dir, use_safetensors=True)
        tokenizer = AutoTokenizer.from_pretrained(tok_dir)
    except (OSError, ValueError) as err:
        if isinstance(err, RecipeInputError):
            raise
        raise RecipeInputError(
            f"Could not load a text encoder and tokenizer from {name_or_path!r}: {err}. Point text_encoder_name_or_path "
            "at a T5/UMT5 encoder, the CLIP recipe's output, a Hub CLIP id or a pipeline folder."
        ) from err
    if isinstance(encoder, CLIPTextModel):
        limit = encoder.config.max_position_embeddings
        tokenizer.model_max_length = min(getattr(tokenizer, "model_max_length", limit), limit)
        extend_positions(encoder, max_sequence_length)
    return encoder, tokenizer


def clean_prompts(prompts: Sequence[str]) -> list[str]:
    from diffusers.pipelines.wan.pipeline_wan import prompt_clean

    return [prompt_clean(p) for p in prompts]


def encode_text(encoder: nn.Module, tokenizer: Any, prompts: Sequence[str], *, max_sequence_length: int,
                device: Any) -> torch.Tensor:  # fmt: skip
    """WanPipeline's prompt embeddings (B x max_sequence_length x D: the encoder's last hidden state, zero past
    each prompt's tokens), computed on prompts padded only to the longest one (same values, less work). Prompts
    are cut at the tokenizer's own limit when it is below max_sequence_length (CLIP: 77)."""
    limit = min(
        max_sequence_length,
        getattr(tokenizer, "model_max_length", max_sequence_length) or max_sequence_length,
    )
    tokens = tokenizer(clean_prompts(prompts), padding="longest", max_length=limit, truncation=True,
                       add_special_tokens=True, return_attention_mask=True, return_tensors="pt")  # fmt: skip
    ids, mask = tokens.input_ids.to(device), tokens.attention_mask.to(device)
    hidden = encoder(ids, mask).last_hidden_state  # `encoder` may be DDP-wrapped: no .dtype / .config on it
    hidden = hidden * mask[..., None].to(hidden.dtype)
    return F.pad(hidden, (0, 0, 0, max_sequence_length - hidden.shape[1]))


# ------------------------------------------------------------------------------------ flow matching


def noise_levels(count: int, generator: torch.Generator, sampling: str, shift: float) -> torch.Tensor:
    """Noise levels s in (0, 1): logit-normal (SD3) or uniform, then shifted like the sampler's sigmas
    (s' = shift s / (1 + (shift - 1) s))."""
    if sampling == "logit_normal":
        levels = torch.sigmoid(dm.rows(lambda n: torch.randn(n, generator=generator), count, generator))
    else:
        levels = dm.rows(lambda n: torch.rand(n, generator=generator), count, generator)
    return shift * levels / (1 + (shift - 1) * levels)


def flow_matching_loss(
    predict: Any,
    clean: torch.Tensor,
    generator: torch.Generator,
    *,
    sampling: str = "logit_normal",
    shift: float = 1.0,
    num_train_timesteps: int = 1000,
) -> torch.Tensor:
    """MSE between `predict(noisy, timestep)` and the velocity noise - clean, on x_s = (1 - s) clean + s noise
    with timestep = s * num_train_timesteps (what FlowMatchEulerDiscreteScheduler steps with). Noise and levels
    come from `generator` (CPU), so a resumed run replays them."""
    noise = dm.rows(
        lambda n: torch.randn((n, *clean.shape[1:]), generator=generator), clean.shape[0], generator
    )
    noise = noise.to(clean.device, clean.dtype)
    levels = noise_levels(clean.shape[0], generator, sampling, shift).to(clean.device, clean.dtype)
    view = levels.view(-1, *([1] * (clean.dim() - 1)))
    noisy = (1 - view) * clean + view * noise
    prediction = predict(noisy, levels * num_train_timesteps)
    return F.mse_loss(prediction.float(), (noise - clean).float())


def make_sampling_scheduler(name: str, shift: float, num_train_timesteps: int = 1000):
    from diffusers import FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler

    if name == "flow-euler":
        return FlowMatchEulerDiscreteScheduler(num_train_timesteps=num_train_timesteps, shift=shift)
    if name == "unipc":
        return UniPCMultistepScheduler(num_train_timesteps=num_train_timesteps, prediction_type="flow_prediction",
                                       use_flow_sigmas=True, flow_shift=shift)  # fmt: skip
    raise RecipeInputError(f"Unknown sampling_scheduler {name!r}. Available: {', '.join(FLOW_SCHEDULERS)}.")


@torch.no_grad()
def sample_clips(
    transformer: nn.Module,
    scheduler: Any,
    *,
    shape: tuple[int, int, int, int],
    prompt_embeds: torch.Tensor,
    negative_embeds: torch.Tensor,
    guidance_scale: float,
    num_inference_steps: int,
    seed: int = 0,
    batch_size: int = 32,
) -> torch.Tensor:
    """Model-space samples (N x C x F x H x W) the way WanPipeline makes them: noise from `seed`, the scheduler's
    steps, classifier-free guidance uncond + g (cond - uncond) against `negative_embeds` (1 x L x D)."""
    device, dtype = next(transformer.parameters()).device, next(transformer.parameters()).dtype
    generator = torch.Generator().manual_seed(seed)
    guided = guidance_scale > 1.0
    outputs = []
    for start in range(0, len(prompt_embeds), batch_size):
        cond = prompt_embeds[start : start + batch_size].to(device, dtype)
        count = len(cond)
        scheduler.set_timesteps(num_inference_steps, device=device)
        x = torch.randn((count, *shape), generator=generator).to(device, torch.float32)
        if guided:
            cond = torch.cat([negative_embeds.to(device, dtype).expand_as(cond), cond])
        for t in scheduler.timesteps:
            model_input = torch.cat([x, x]) if guided else x
            out = transformer(model_input.to(dtype), t.expand(len(model_input)), cond, return_dict=False)[
                0
            ].float()
            if guided:
                uncond, text = out.chunk(2)
                out = uncond + guidance_scale * (text - uncond)
            x = scheduler.step(out, t, x, return_dict=False)[0]
        outputs.append(x.cpu())
    return torch.cat(outputs)


# -------------------------------------------------------------------------------------------- GIFs


def save_clip_grid(
    clips: torch.Tensor, path: Path, rows: int, row_labels: Sequence[str] | None = None, min_cell: int = 48,
    fps: int = 4,
) -> Path:  # fmt: skip
    """A looping GIF of a rows x (N / rows) grid of clips (N x C x F x H x W in [-1, 1]), small frames enlarged
    (nearest) to `min_cell` px, each row's label (its prompt) on the left."""
    from hfrecipes.video.data import save_gif
    from hfrecipes.video.evaluation import to_uint8_clips

    array = to_uint8_clips(clips)  # N x F x H x W x 3
    n, frames, h, w, _ = array.shape
    cols = math.ceil(n / rows)
    scale = max(1, math.ceil(min_cell / max(h, w)))
    cell_h, cell_w = h * scale, w * scale
    margin = 8 + 6 * max((len(label) for label in row_labels), default=0) if row_labels else 0
    images = []
    for t in range(frames):
        grid = Image.new("RGB", (margin + cols * (cell_w + 2), rows * (cell_h + 2)), (255, 255, 255))
        draw = ImageDraw.Draw(grid)
        for i in range(n):
            r, c = divmod(i, cols)
            tile = Image.fromarray(array[i, t]).resize((cell_w, cell_h), Image.Resampling.NEAREST)
            grid.paste(tile, (margin + c * (cell_w + 2), r * (cell_h + 2)))
        for r, label in enumerate(row_labels or []):
            draw.text((4, r * (cell_h + 2) + cell_h // 2 - 5), label, fill=(0, 0, 0))
        images.append(grid)
    return save_gif(images, path, fps=fps)


# ----------------------------------------------------------------------------------------- data side


OPPOSITE_DIRECTIONS = {"left": "right", "right": "left", "up": "down", "down": "up"}
_DIRECTION_WORD = re.compile(rf"\b({'|'.join(OPPOSITE_DIRECTIONS)})\b")


def swap_directions(caption: str) -> str:
    """The caption with each direction word (left/right/up/down) replaced by its opposite."""
    return _DIRECTION_WORD.sub(lambda m: OPPOSITE_DIRECTIONS[m.group(1)], caption)


class AsPipelineCalls(nn.Module):
    """Calls a denoiser the way its pipeline does, on N x C x F x H x W samples: UNetMotionModel with one copy of
    the prompt embedding per frame (AnimateDiffPipeline repeats it; UNet3DConditionModel does so itself);
    CogVideoXTransformer3DModel on N x F x C x H x W with one timestep per sample. Returns `.sample`."""

    def __init__(self, denoiser: nn.Module, kind: str):
        super().__init__()
        self.denoiser, self.kind = denoiser, kind

    def forward(self, sample: torch.Tensor, timestep: Any, encoder_hidden_states: torch.Tensor | None = None):
        if self.kind == "animatediff" and encoder_hidden_states is not None:
            encoder_hidden_states = encoder_hidden_states.repeat_interleave(sample.shape[2], dim=0)
        if self.kind != "cogvideox":
            return self.denoiser(sample, timestep, encoder_hidden_states=encoder_hidden_states)
        timestep = torch.as_tensor(timestep, device=sample.device).expand(sample.shape[0])
        out = self.denoiser(
            sample.permute(0, 2, 1, 3, 4), encoder_hidden_states, timestep, return_dict=False
        )[0]
        return SimpleNamespace(sample=out.permute(0, 2, 1, 3, 4))


class VideoCaptionDataset(torch.utils.data.Dataset):
    """Rows as {"pixels": C x F x H x W in [-1, 1], "caption": str} from a prepared dataset (`video`: lists of
    frames at the training size). Small datasets are decoded once into a uint8 cache."""

    def __init__(self, dataset: Any, captions: Sequence[str] | None, cache_limit: int = 400_000_000):
        from hfrecipes.video.data import clip_array

        self.dataset, self.captions = dataset, list(captions) if captions is not None else None
        self.cache = None
        first = clip_array(dataset[0]["video"])
        if len(dataset) * first.size <= cache_limit:
            self.cache = torch.from_numpy(np.stack([clip_array(v) for v in dataset["video"]]))

    def __len__(self) -> int:
        return len(self.dataset)

    def clip(self, index: int) -> torch.Tensor:
        from hfrecipes.video.data import clip_array

        array = (
            self.cache[index]
            if self.cache is not None
            else torch.from_numpy(clip_array(self.dataset[int(index)]["video"]))
        )
        return array.permute(3, 0, 1, 2).float() / 127.5 - 1.0

    def stack(self, limit: int | None = None) -> torch.Tensor:
        count = len(self) if limit is None else min(limit, len(self))
        return torch.stack([self.clip(i) for i in range(count)])

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"pixels": self.clip(index), "caption": self.captions[index] if self.captions else ""}


@dataclass
class VideoPromptPlan:
    prompts: list[str]  # one per generated clip
    row_labels: list[str]  # one per distinct prompt
    targets: dict[str, torch.Tensor]  # per-frame attributes, per clip
    motion: dict[str, list[str]]  # direction / speed names, per clip


# ------------------------------------------------------------------------------------------ components


class VideoComponents:
    """Input checks (`plan`, before any data is read), captions, VAE / text encoder / denoiser / schedulers
    (`build`), the training loss, sampling and decoding, the evaluator, and the saved pipeline or LoRA weights.
    `data_args` / `model_args` are the recipe's dataclasses; `kind` is the backbone (one of BACKBONES)."""

    def __init__(self, data_args: VideoDataArguments, model_args: VideoModelArguments):
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
    def plan(cls, data_args: VideoDataArguments, model_args: VideoModelArguments) -> VideoComponents:
        self, a = cls(data_args, model_args), model_args
        if a.backbone not in BACKBONES:
            raise RecipeInputError(f"backbone must be one of {', '.join(BACKBONES)}, got {a.backbone!r}.")
        if a.timestep_sampling not in TIMESTEP_SAMPLING:
            raise RecipeInputError(
                f"timestep_sampling must be one of {', '.join(TIMESTEP_SAMPLING)}, got {a.timestep_sampling!r}."
            )
        if a.prediction_type not in dm.PREDICTION_TYPES:
            raise RecipeInputError(
                f"prediction_type must be one of {', '.join(dm.PREDICTION_TYPES)}, got {a.prediction_type!r}."
            )
        if not 0 <= a.condition_dropout < 1:
            raise RecipeInputError(f"condition_dropout must be in [0, 1), got {a.condition_dropout}.")
        if a.guidance_scale > 1 and a.condition_dropout == 0 and not a.pretrained_pipeline:
            logger.warning("guidance_scale=%s but condition_dropout=0: the model never learns the unconditional prediction "
                           "classifier-free guidance subtracts; set condition_dropout (e.g. 0.1).", a.guidance_scale)  # fmt: skip
        if a.flow_shift <= 0 or a.max_sequence_length < 2 or data_args.num_frames < 1:
            raise RecipeInputError("flow_shift must be > 0, max_sequence_length >= 2 and num_frames >= 1.")
        self.timestep_weights = dm.timestep_weights(a.timestep_bias_strategy, a.timestep_bias_portion,
                                                    a.timestep_bias_multiplier, a.num_train_timesteps)  # fmt: skip
        if self.timestep_weights is not None and a.backbone == "wan" and not a.pretrained_pipeline:
            raise RecipeInputError("timestep_bias_* is for the DDPM backbones; wan's flow matching draws noise "
                                   "levels by timestep_sampling and flow_shift.")  # fmt: skip
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
        from diffusers import DiffusionPipeline

        a = self.args
        if a.vae_name_or_path or a.text_encoder_name_or_path:
            raise RecipeInputError("With pretrained_pipeline, its own VAE and text encoder are used: unset "
                                   "vae_name_or_path / text_encoder_name_or_path.")  # fmt: skip
        try:
            self.pipe = DiffusionPipeline.from_pretrained(a.pretrained_pipeline)
        except (OSError, ValueError) as err:
            raise RecipeInputError(
                f"Could not load a diffusers pipeline from {a.pretrained_pipeline!r}: {err}"
            ) from err
        kinds = {name: kind for kind, name in PIPELINES.items()}
        if type(self.pipe).__name__ not in kinds:
            raise RecipeInputError(f"{a.pretrained_pipeline!r} is a {type(self.pipe).__name__}; this recipe trains "
                                   f"{' and '.join(PIPELINES.values())} text-to-video models.")  # fmt: skip
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
        from hfrecipes.image.components import load_vae
        from hfrecipes.multimodal.vision_text import TEXT_PRESETS, load_text_tower

        a = self.args
        wan, t5 = self.kind == "wan", self.kind in TRANSFORMER_BACKBONES
        if a.vae_name_or_path:
            if self.kind == "cogvideox":
                raise RecipeInputError("cogvideox trains in pixel space here (unset vae_name_or_path); for latent space "
                                       "use unet3d / animatediff / wan with a VAE.")  # fmt: skip
            self.vae = load_video_vae(a.vae_name_or_path) if wan else load_vae(a.vae_name_or_path)
            self.pixel_space = False
        else:
            self.vae = pixel_vae(3) if wan else pixel_cogvideox_vae(3) if t5 else pixel_image_vae(3)
        presets = T5_PRESETS if t5 else TEXT_PRESETS
        if a.text_encoder_name_or_path:
            if t5:
                self.text_encoder, self.tokenizer = load_text_encoder(
                    a.text_encoder_name_or_path, a.max_sequence_length
                )
            else:
                self.text_encoder, self.tokenizer = load_text_tower(a.text_encoder_name_or_path)
            self.train_text_encoder = bool(a.train_text_encoder)
            text_dim = _hidden_size(self.text_encoder)
        else:
            if a.text_encoder_preset not in presets:
                raise RecipeInputError(
                    f"Unknown text_encoder_preset {a.text_encoder_preset!r}. Available: {', '.join(presets)}."
                )
            preset = {**presets[a.text_encoder_preset], **a.text_encoder_overrides}
            text_dim = preset["d_model" if t5 else "hidden_size"]
            self.train_text_encoder = a.train_text_encoder is not False
        channels = self.latent_channels
        if wan:
            if a.model_preset not in TRANSFORMER_PRESETS:
                raise RecipeInputError(
                    f"Unknown model_preset {a.model_preset!r} for wan. Available: {', '.join(TRANSFORMER_PRESETS)}."
                )
            self.model_kwargs = {**TRANSFORMER_PRESETS[a.model_preset], "patch_size": tuple(a.patch_size), "in_channels": channels,
                                 "out_channels": channels, "text_dim": text_dim, **a.model_overrides}  # fmt: skip
        elif self.kind == "cogvideox":
            if a.model_preset not in COGVIDEOX_PRESETS:
                raise RecipeInputError(f"Unknown model_preset {a.model_preset!r} for cogvideox. Available: "
                                       f"{', '.join(COGVIDEOX_PRESETS)}.")  # fmt: skip
            temporal, spatial = self.vae_factors()
            side = self.data.resolution // spatial
            # The sin-cos position table and the text slots are sized from these; the pipeline's
            # max_sequence_length must equal max_text_seq_length.
            self.model_kwargs = {**COGVIDEOX_PRESETS[a.model_preset], "in_channels": channels, "out_channels": channels,
                                 "text_embed_dim": text_dim, "sample_height": side, "sample_width": side,
                                 "sample_frames": self.data.num_frames, "patch_size": int(a.patch_size[-1]),
                                 "temporal_compression_ratio": temporal, "max_text_seq_length": a.max_sequence_length,
                                 **a.model_overrides}  # fmt: skip
        else:
            side = self.data.resolution // self.vae_factors()[1]
            self.model_kwargs = unet3d_config(a.model_preset, sample_size=side, in_channels=channels, kind=self.kind,
                                              cross_attention_dim=text_dim, overrides=a.model_overrides)  # fmt: skip

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
                raise RecipeInputError(f"num_frames={frames} gives {latent_frames} latent frames, not a multiple of the "
                                       f"transformer's temporal patch {pt}.")  # fmt: skip
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
        from hfrecipes.builtins.videos import MOTION_DIRECTIONS
        from hfrecipes.multimodal.vision_text import class_names, label_indices

        a = self.args
        per = a.eval_samples_per_prompt
        if a.eval_prompts:
            prompts = list(a.eval_prompts)
            return VideoPromptPlan([p for p in prompts for _ in range(per)], prompts, {}, {})
        captions = self.captions(validation)
        motion: dict[str, list[str]] = {}
        for role, column in zip(("direction", "speed"), a.motion_columns, strict=False):
            if column in validation.column_names:
                names = class_names(train, column, validation)
                motion[role] = [names[i] for i in label_indices(validation, column, names)]
        if "direction" in motion and not set(motion["direction"]) <= set(MOTION_DIRECTIONS):
            logger.warning("Column %r holds %s, not the tracker's directions %s: no motion accuracy.",
                           a.motion_columns[0], sorted(set(motion["direction"])), list(MOTION_DIRECTIONS))  # fmt: skip
            motion = {}
        groups: dict[str, list[int]] = {}
        for row, key in enumerate(motion.get("direction", [""] * len(captions))):
            groups.setdefault(key, []).append(row)
        queues = [groups[k] for k in sorted(groups)]
        chosen: dict[str, int] = {}
        while len(chosen) < a.num_eval_prompts and any(queues):
            for queue in queues:
                while queue and captions[queue[0]] in chosen:
                    queue.pop(0)
                if queue and len(chosen) < a.num_eval_prompts:
                    row = queue.pop(0)
                    chosen[captions[row]] = row
        rows = list(chosen.values())
        attributes = self.attributes(validation)
        names = {c: class_names(train, c, validation) for c in attributes}
        labels = {c: label_indices(validation, c, names[c]) for c in attributes}
        return VideoPromptPlan(
            prompts=[captions[r] for r in rows for _ in range(per)],
            row_labels=[captions[r] for r in rows],
            targets={c: torch.tensor([labels[c][r] for r in rows for _ in range(per)]) for c in attributes},
            motion={k: [v[r] for r in rows for _ in range(per)] for k, v in motion.items()},
        )

    def evaluator(self, train: Any, train_set: VideoCaptionDataset, validation: Any,
                  validation_set: VideoCaptionDataset, plan: VideoPromptPlan, seed: int, limit: int = 1000):  # fmt: skip
        """Per-frame attribute classifier fitted on real training clips, plus the motion / consistency measures
        of real validation clips as references; None when the data has neither frame attributes nor motion
        columns (the tracker's measures assume one bright object on a dark background, as in moving-shapes)."""
        from hfrecipes.multimodal.vision_text import class_names, label_indices
        from hfrecipes.video.evaluation import VideoEvaluator

        attributes = self.attributes(validation)
        if not attributes and not plan.motion:
            return None
        names = {c: class_names(train, c, validation) for c in attributes}
        train_clips, validation_clips = train_set.stack(limit), validation_set.stack(limit)

        def labels(dataset: Any, count: int) -> dict[str, torch.Tensor]:
            return {c: torch.tensor(label_indices(dataset, c, names[c])[:count]) for c in attributes}

        motion = None
        if plan.motion:
            motion = {}
            for role, column in zip(("direction", "speed"), self.args.motion_columns, strict=False):
                if role in plan.motion:
                    column_names = class_names(train, column, validation)
                    motion[role] = [column_names[i] for i in label_indices(validation, column, column_names)][
                        : len(validation_clips)
                    ]
        return VideoEvaluator(train_clips, labels(train, len(train_clips)), validation_clips,
                              labels(validation, len(validation_clips)), {c: len(n) for c, n in names.items()},
                              validation_motion=motion, seed=seed)  # fmt: skip

    # -- models ------------------------------------------------------------------------------------
    def build(self, texts: Sequence[str], seed: int) -> None:
        from hfrecipes.multimodal.vision_text import caption_tokenizer, text_config

        a = self.args
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            if self.text_encoder is None:
                words = [t for t in texts if t]
                if self.kind in TRANSFORMER_BACKBONES:
                    self.tokenizer = caption_tokenizer(words, model_max_length=a.max_sequence_length)
                    self.text_encoder = t5_encoder(a.text_encoder_preset, self.tokenizer, a.text_encoder_overrides,
                                                   umt5=self.kind == "wan")  # fmt: skip
                else:
                    from transformers import CLIPTextModel

                    # TextToVideoSDPipeline pads prompts to the tokenizer's model_max_length: short captions need
                    # few positions, and fewer padding tokens leave the caption words more of the attention.
                    self.tokenizer = caption_tokenizer(words, model_max_length=min(a.max_sequence_length, 77))
                    self.text_encoder = CLIPTextModel(
                        text_config(a.text_encoder_preset, self.tokenizer, a.text_encoder_overrides)
                    )
            if self.denoiser is None:
                import diffusers

                cls = getattr(diffusers, DENOISERS[self.kind])
                try:
                    self.denoiser = cls(**self.model_kwargs)
                except (TypeError, ValueError) as err:
                    raise RecipeInputError(
                        f"Cannot build a {cls.__name__} from {self.model_kwargs}: {err}"
                    ) from err
        if self.kind in DDPM_BACKBONES:
            self.noise_scheduler = dm.training_scheduler(
                a.num_train_timesteps, a.beta_schedule, a.prediction_type
            )
            if self.pipe is not None:  # keep the base pipeline's noise schedule and target
                config = self.pipe.scheduler.config
                self.noise_scheduler = dm.make_scheduler(
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
        # DiffusionLoop looks the denoiser up under "unet" (the image recipe's name for it).
        modules = {"unet": self.denoiser}
        if self.train_text_encoder:
            modules["text_encoder"] = self.text_encoder
        return modules

    def _frozen_to(self, device: Any) -> None:
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
                return encode_text(encoder, self.tokenizer, prompts, max_sequence_length=self.args.max_sequence_length,
                                   device=device)  # fmt: skip
            # CogVideoXPipeline: padded to max_sequence_length, no attention mask, nothing zeroed.
            if self.kind == "cogvideox":
                return dm.encode_prompts(encoder, self.tokenizer, prompts, max_length=self.args.max_sequence_length,
                                         use_attention_mask=False, device=device)  # fmt: skip
            # The config from the bare encoder: `encoder` may be its DDP wrapper, which has none.
            mask = bool(getattr(self.text_encoder.config, "use_attention_mask", False))
            return dm.encode_prompts(encoder, self.tokenizer, prompts, max_length=self.tokenizer.model_max_length,
                                     use_attention_mask=mask, device=device)  # fmt: skip

    def to_model_space(self, pixels: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        if self.pixel_space:
            return pixels
        with torch.no_grad():
            if self.kind in UNET_BACKBONES:  # an image VAE, frame by frame
                n, c, f, h, w = pixels.shape
                flat = pixels.permute(0, 2, 1, 3, 4).reshape(n * f, c, h, w)
                latents = dm.encode_latents(self.vae, flat, generator).float()
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
            frames = dm.decode_latents(self.vae, latents.permute(0, 2, 1, 3, 4).reshape(n * f, c, h, w))
            return frames.reshape(n, f, *frames.shape[1:]).permute(0, 2, 1, 3, 4).float().clamp(-1, 1).cpu()
        mean, std = self._latent_stats(latents)
        return self.vae.decode(latents * std + mean).sample.float().clamp(-1, 1).cpu()

    def loss(self, modules: dict[str, nn.Module], batch: dict[str, Any], generator: torch.Generator,
             dropout: float = 0.0) -> torch.Tensor:  # fmt: skip
        pixels = batch["pixels"]
        self._frozen_to(pixels.device)
        clean = self.to_model_space(pixels, generator)
        embeds = self.embed(modules, drop_captions(batch["caption"], dropout, generator), clean.device)
        denoiser = self._denoiser_call(modules)
        if self.kind in DDPM_BACKBONES:
            return dm.denoising_loss(lambda x, t: denoiser(x, t, encoder_hidden_states=embeds).sample,
                                     self.noise_scheduler, clean, generator, self.timestep_weights)  # fmt: skip
        return flow_matching_loss(lambda x, t: denoiser(x, t, embeds, return_dict=False)[0], clean, generator,
                                  sampling=self.args.timestep_sampling, shift=self.args.flow_shift)  # fmt: skip

    def _denoiser_call(self, modules: dict[str, nn.Module]) -> nn.Module:
        """The denoiser as the DDPM-style loss and sampler call it (wan's flow matching calls it directly)."""
        return AsPipelineCalls(modules["unet"], self.kind) if self.kind in DDPM_BACKBONES else modules["unet"]

    def validation_losses(self, modules: dict[str, nn.Module], dataset: VideoCaptionDataset, seed: int,
                          limit: int = 128) -> dict[str, float]:  # fmt: skip
        """The image recipe's losses, plus `validation_loss_direction_swapped` when captions name directions of
        motion: every direction word replaced by its opposite (left <-> right, up <-> down). Its gap to
        validation_loss is how much the model uses the direction word (colour, shape and the rest unchanged)."""
        edits = {}
        if any(_DIRECTION_WORD.search(c) for c in dataset.captions or []):
            edits["validation_loss_direction_swapped"] = swap_directions
        return dm.validation_losses(self.loss, modules, dataset, seed, limit=limit, batch_size=32,
                                    edited_captions=edits)  # fmt: skip

    @torch.no_grad()
    def sample(self, modules: dict[str, nn.Module], prompts: Sequence[str], seed: int) -> torch.Tensor:
        """Clips for `prompts` in pixels (N x 3 x F x H x W in [-1, 1]), made the way the saved pipeline makes them."""
        denoiser = self._denoiser_call(modules)
        device = next(denoiser.parameters()).device
        self._frozen_to(device)
        embeds = torch.cat(
            [self.embed(modules, prompts[i : i + 128], device) for i in range(0, len(prompts), 128)]
        )
        negative = self.embed(modules, [""], device)
        a = self.args
        if self.kind in DDPM_BACKBONES:
            samples = dm.sample_images(denoiser, self.scheduler(), num_images=len(prompts), shape=self.model_input_shape(),
                                       prompt_embeds=embeds, negative_embeds=negative, guidance_scale=a.guidance_scale,
                                       num_inference_steps=a.num_inference_steps, seed=seed, batch_size=32)  # fmt: skip
        else:
            samples = sample_clips(denoiser, self.scheduler(), shape=self.model_input_shape(), prompt_embeds=embeds,
                                   negative_embeds=negative, guidance_scale=a.guidance_scale,
                                   num_inference_steps=a.num_inference_steps, seed=seed)  # fmt: skip
        return torch.cat([self.to_pixels(samples[i : i + 8]) for i in range(0, len(samples), 8)])

    # -- outputs -----------------------------------------------------------------------------------
    def fingerprint(self) -> dict[str, Any]:
        a = self.args
        return fingerprint_of(
            backbone=self.kind, denoiser=dict(self.denoiser.config), lora_rank=a.lora_rank,
            pretrained_pipeline=a.pretrained_pipeline, text_encoder=self.text_encoder.config.to_dict(),
            train_text_encoder=self.train_text_encoder, vae=a.vae_name_or_path, num_frames=self.data.num_frames,
            resolution=self.data.resolution, max_sequence_length=a.max_sequence_length,
            noise=(dict(self.noise_scheduler.config) | {"timestep_bias": [a.timestep_bias_strategy, a.timestep_bias_portion,
                                                                          a.timestep_bias_multiplier]}
                   if self.kind in DDPM_BACKBONES else
                   {"timestep_sampling": a.timestep_sampling, "flow_shift": a.flow_shift}),
        )  # fmt: skip

    def scheduler(self):
        """The sampling scheduler (the one the saved pipeline gets); for unet3d, None before `build`."""
        name = self.sampler_name
        if self.kind == "wan":
            return make_sampling_scheduler(name, self.args.flow_shift)
        dm.check_scheduler_name(name, "sampling_scheduler")
        base = getattr(self, "noise_scheduler", None)
        return None if base is None else dm.make_scheduler(name, base.config)

    @property
    def denoiser_component(self) -> str:
        """The pipeline's name for the denoiser."""
        return "transformer" if self.kind in TRANSFORMER_BACKBONES else "unet"

    @property
    def pipeline_class_name(self) -> str:
        return PIPELINES[self.kind]

    def save(self, directory: Path) -> None:
        import diffusers

        pipeline_class = getattr(diffusers, self.pipeline_class_name)
        self.denoiser.to("cpu")
        if self.args.lora_rank:
            dm.save_lora(
                pipeline_class,
                self.denoiser,
                directory,
                self.denoiser_component,
            )
            return
        for module in (self.vae, self.text_encoder):
            module.to("cpu")
        parts = {"vae": self.vae, "text_encoder": self.text_encoder, "tokenizer": self.tokenizer,
                 "scheduler": self.scheduler(),
                 self.denoiser_component: self.denoiser}  # fmt: skip
        if self.kind == "animatediff":
            parts["motion_adapter"] = None  # the UNetMotionModel already holds its motion modules
        pipeline_class(**parts).save_pretrained(str(directory), safe_serialization=True)

    def describe(self) -> str:
        a = self.args
        model = DENOISERS[self.kind]
        how = (f"LoRA (rank {a.lora_rank}) on {a.pretrained_pipeline}" if a.lora_rank else
               f"fine-tuned from {a.pretrained_pipeline}" if a.pretrained_pipeline else
               f"trained from scratch, {a.model_preset} {model}")  # fmt: skip
        return f"text-to-video {self.pipeline_class_name} ({how})"

    def request_frames(self) -> int:
        """What to pass as num_frames to get num_frames back (WanPipeline rounds to k * temporal + 1)."""
        if self.kind == "wan" and self.vae_factors()[0] == 1:
            return self.data.num_frames - 1
        return self.data.num_frames

    def usage(self, output_dir: str, prompts: Sequence[str]) -> str:
        a, d = self.args, self.data
        prompt = repr(prompts[0]) if prompts else '"a red square moving right"'
        load = (f'pipe = DiffusionPipeline.from_pretrained("{a.pretrained_pipeline}")\npipe.load_lora_weights("{output_dir}")'
                if a.lora_rank else f'pipe = DiffusionPipeline.from_pretrained("{output_dir}")')  # fmt: skip
        extra = f", max_sequence_length={a.max_sequence_length}" if self.kind in TRANSFORMER_BACKBONES else ""
        note = (f"  # WanPipeline adds a frame when the VAE has no temporal compression: {d.num_frames} frames"
                if self.request_frames() != d.num_frames else "")  # fmt: skip
        return (
            "from diffusers import DiffusionPipeline\nfrom diffusers.utils import export_to_gif\n\n"
            + load
            + "\n"
            f"frames = pipe({prompt}, num_frames={self.request_frames()}, height={d.resolution}, width={d.resolution},\n"
            f"              num_inference_steps={a.num_inference_steps}, guidance_scale={a.guidance_scale}{extra},\n"
            f'              output_type="pil").frames[0]{note}\nexport_to_gif(frames, "clip.gif")'
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
        rows = [f"| {k} | {cell('untrained_' + k)} | {cell(k)} | "
                f"{cell('real_' + k, 'classifier_accuracy_' + k.removeprefix('adherence_') if k.startswith('adherence_') else '')}"
                f" | {cell('chance_' + k)} |" for k in keys]  # fmt: skip
        table = "\n".join(
            ["| metric | untrained | trained | real clips | chance |", "|---|---:|---:|---:|---:|", *rows]
        )
        space = (f"pixel space ({self.data.resolution} px, identity VAE)" if self.pixel_space
                 else f"latent space ({type(self.vae).__name__})")  # fmt: skip
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


def _hidden_size(encoder: Any) -> int:
    config = encoder.config
    return int(getattr(config, "d_model", None) or config.hidden_size)


__all__ = [
    "BACKBONES",
    "FLOW_SCHEDULERS",
    "FRAME_ATTRIBUTES",
    "OPPOSITE_DIRECTIONS",
    "PIPELINES",
    "AsPipelineCalls",
    "COGVIDEOX_PRESETS",
    "T5_PRESETS",
    "TIMESTEP_SAMPLING",
    "TRANSFORMER_PRESETS",
    "UNET3D_PRESETS",
    "VideoCaptionDataset",
    "VideoComponents",
    "VideoDataArguments",
    "VideoModelArguments",
    "VideoPromptPlan",
    "clean_prompts",
    "encode_text",
    "extend_positions",
    "flow_matching_loss",
    "load_text_encoder",
    "load_video_vae",
    "make_sampling_scheduler",
    "noise_levels",
    "pixel_cogvideox_vae",
    "pixel_image_vae",
    "pixel_vae",
    "sample_clips",
    "save_clip_grid",
    "swap_directions",
    "t5_encoder",
    "unet3d_config",
    "vae_factors",
]
