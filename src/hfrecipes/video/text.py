"""The text encoders of the video backbones: T5 / UMT5 presets (`T5_PRESETS`, `t5_encoder`), encoders built
(`new_text_encoder`) or loaded (`load_text_encoder`) for a backbone, CLIP towers with longer position tables
(`extend_positions`), and prompts encoded exactly as WanPipeline encodes them (`encode_text`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from diffusers.pipelines.wan.pipeline_wan import prompt_clean
from torch import nn
from torch.nn import functional as F
from transformers import (
    AutoConfig,
    AutoTokenizer,
    CLIPTextModel,
    T5Config,
    T5EncoderModel,
    UMT5Config,
    UMT5EncoderModel,
)

from hfrecipes.core.errors import RecipeInputError
from hfrecipes.multimodal.vision_text import TEXT_PRESETS, caption_tokenizer, text_config
from hfrecipes.video.backbones import TRANSFORMER_BACKBONES

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
    )
    for name, (d_model, d_kv, d_ff, layers, heads, buckets, distance) in {
        "tiny": (64, 16, 128, 2, 4, 16, 32),
        "small": (256, 32, 1024, 4, 8, 32, 64),
    }.items()
}


def t5_encoder(preset: str, tokenizer: Any, overrides: dict[str, Any] | None = None, *, umt5: bool = True):
    """A UMT5 encoder (WanPipeline's kind) or, with umt5=False, a T5 one (CogVideoXPipeline's) from a preset."""
    config_class, model_class = (UMT5Config, UMT5EncoderModel) if umt5 else (T5Config, T5EncoderModel)

    if preset not in T5_PRESETS:
        raise RecipeInputError(f"Unknown text_encoder_preset {preset!r}. Available: {', '.join(T5_PRESETS)}.")
    unknown = [k for k in overrides or {} if not hasattr(config_class(), k)]
    if unknown:
        raise RecipeInputError(
            f"text_encoder_overrides has keys {config_class.__name__} does not know: {unknown}."
        )
    config = config_class(
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id or 0,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id or 0,
        feed_forward_proj="gated-gelu",
        **{"dropout_rate": 0.0, **T5_PRESETS[preset], **(overrides or {})},
    )
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
    path = Path(name_or_path)
    model_dir, tok_dir = name_or_path, name_or_path
    if (path / "text_encoder").is_dir():
        model_dir, tok_dir = str(path / "text_encoder"), str(path / "tokenizer")
    try:
        kind = AutoConfig.from_pretrained(model_dir).model_type
        classes = {
            "t5": T5EncoderModel,
            "mt5": T5EncoderModel,
            "umt5": UMT5EncoderModel,
            "clip": CLIPTextModel,
            "clip_text_model": CLIPTextModel,
        }
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
    """Prompts cleaned as WanPipeline cleans them before tokenizing (`prompt_clean`)."""
    return [prompt_clean(p) for p in prompts]


def encode_text(
    encoder: nn.Module, tokenizer: Any, prompts: Sequence[str], *, max_sequence_length: int, device: Any
) -> torch.Tensor:
    """WanPipeline's prompt embeddings (B x max_sequence_length x D: the encoder's last hidden state, zero past
    each prompt's tokens), computed on prompts padded only to the longest one (same values, less work). Prompts
    are cut at the tokenizer's own limit when it is below max_sequence_length (CLIP: 77)."""
    limit = min(
        max_sequence_length,
        getattr(tokenizer, "model_max_length", max_sequence_length) or max_sequence_length,
    )
    tokens = tokenizer(
        clean_prompts(prompts),
        padding="longest",
        max_length=limit,
        truncation=True,
        add_special_tokens=True,
        return_attention_mask=True,
        return_tensors="pt",
    )
    ids, mask = tokens.input_ids.to(device), tokens.attention_mask.to(device)
    hidden = encoder(ids, mask).last_hidden_state  # `encoder` may be DDP-wrapped: no .dtype / .config on it
    hidden = hidden * mask[..., None].to(hidden.dtype)
    return F.pad(hidden, (0, 0, 0, max_sequence_length - hidden.shape[1]))


def hidden_size(encoder: Any) -> int:
    """The width of a text encoder's outputs (T5's d_model, CLIP's hidden_size)."""
    config = encoder.config
    return int(getattr(config, "d_model", None) or config.hidden_size)


def preset_width(kind: str, preset: str, overrides: dict[str, Any]) -> int:
    """The hidden size of the text encoder `new_text_encoder` will build for backbone `kind` (T5 presets for the
    transformers, CLIP ones for the UNets); RecipeInputError for an unknown preset."""
    t5 = kind in TRANSFORMER_BACKBONES
    presets = T5_PRESETS if t5 else TEXT_PRESETS
    if preset not in presets:
        raise RecipeInputError(f"Unknown text_encoder_preset {preset!r}. Available: {', '.join(presets)}.")
    return {**presets[preset], **overrides}["d_model" if t5 else "hidden_size"]


def new_text_encoder(
    kind: str, texts: Sequence[str], preset: str, overrides: dict[str, Any], max_sequence_length: int
) -> tuple[Any, Any]:
    """(encoder, tokenizer) built here for backbone `kind`, with a word-level tokenizer of `texts`: a T5 (cogvideox)
    or UMT5 (wan) encoder, or a CLIP text model (the UNets), randomly initialised from the global RNG."""
    words = [t for t in texts if t]
    if kind in TRANSFORMER_BACKBONES:
        tokenizer = caption_tokenizer(words, model_max_length=max_sequence_length)
        return t5_encoder(preset, tokenizer, overrides, umt5=kind == "wan"), tokenizer
    # TextToVideoSDPipeline pads prompts to the tokenizer's model_max_length: short captions need few positions,
    # and fewer padding tokens leave the caption words more of the attention.
    tokenizer = caption_tokenizer(words, model_max_length=min(max_sequence_length, 77))
    return CLIPTextModel(text_config(preset, tokenizer, overrides)), tokenizer
