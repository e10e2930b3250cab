"""The backbones of the text-to-video recipe (recipes/video/train_video_diffusion.py): their presets, pipelines and
denoisers by name, the sampling schedulers of flow matching, and `AsPipelineCalls`.

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

from types import SimpleNamespace
from typing import Any

import torch
from diffusers import FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler
from torch import nn

from hfrecipes.core.errors import RecipeInputError

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
    )
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


FLOW_SCHEDULERS = ("flow-euler", "unipc")


DEFAULT_SCHEDULERS = {"unet3d": "ddim", "animatediff": "ddim", "cogvideox": "ddim", "wan": "flow-euler"}


TIMESTEP_SAMPLING = ("logit_normal", "uniform")


PIPELINES = {
    "unet3d": "TextToVideoSDPipeline",
    "animatediff": "AnimateDiffPipeline",
    "cogvideox": "CogVideoXPipeline",
    "wan": "WanPipeline",
}


DENOISERS = {
    "unet3d": "UNet3DConditionModel",
    "animatediff": "UNetMotionModel",
    "cogvideox": "CogVideoXTransformer3DModel",
    "wan": "WanTransformer3DModel",
}


# The UNet backbones: a CLIP text encoder, an image VAE applied frame by frame.
UNET_BACKBONES = ("unet3d", "animatediff")


# DDPM-style noise (epsilon / v / sample targets, the image recipe's schedulers); wan uses flow matching.
DDPM_BACKBONES = ("unet3d", "animatediff", "cogvideox")


# Transformers: a T5 / UMT5 (or CLIP) text encoder, a video VAE, the pipeline's "transformer" component.
TRANSFORMER_BACKBONES = ("cogvideox", "wan")


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
    return {
        **config,
        "sample_size": sample_size,
        "in_channels": in_channels,
        "out_channels": in_channels,
        "cross_attention_dim": cross_attention_dim,
    }


def make_sampling_scheduler(name: str, shift: float, num_train_timesteps: int = 1000):
    """The sampling scheduler of flow matching (wan) by name: flow-euler or unipc, with the noise-level `shift`."""
    if name == "flow-euler":
        return FlowMatchEulerDiscreteScheduler(num_train_timesteps=num_train_timesteps, shift=shift)
    if name == "unipc":
        return UniPCMultistepScheduler(
            num_train_timesteps=num_train_timesteps,
            prediction_type="flow_prediction",
            use_flow_sigmas=True,
            flow_shift=shift,
        )
    raise RecipeInputError(f"Unknown sampling_scheduler {name!r}. Available: {', '.join(FLOW_SCHEDULERS)}.")


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
