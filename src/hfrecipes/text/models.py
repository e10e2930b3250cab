"""Named model presets (tiny → real sizes) and one way to get a model: build from a preset or load a path.

Presets are Llama-architecture decoder-only configs: the architecture SmolLM and Llama 3 share, loadable by
every tool that speaks `AutoModelForCausalLM`. The vocabulary size always comes from the tokenizer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    LlamaConfig,
    PreTrainedModel,
)

from hfrecipes.core.errors import RecipeInputError

CAUSAL_LM_PRESETS: dict[str, dict[str, Any]] = {
    # ~1 M parameters with a 1k vocabulary: unit tests and the 1-minute tiny recipes.
    "tiny": dict(
        hidden_size=128,
        intermediate_size=512,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=512,
    ),
    # ~10 M parameters with an 8k vocabulary: CPU experiments in minutes.
    "small": dict(
        hidden_size=320,
        intermediate_size=864,
        num_hidden_layers=6,
        num_attention_heads=5,
        num_key_value_heads=5,
        max_position_embeddings=1024,
    ),
    # nanoGPT's Shakespeare-char shape (4 layers, 4 heads, 128 dims) for side-by-side benchmarks.
    "nanogpt-char": dict(
        hidden_size=128,
        intermediate_size=512,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=256,
    ),
    # HuggingFaceTB/SmolLM-135M's shape (vocab 49152 when used with its tokenizer).
    "smollm-135m": dict(
        hidden_size=576,
        intermediate_size=1536,
        num_hidden_layers=30,
        num_attention_heads=9,
        num_key_value_heads=3,
        max_position_embeddings=2048,
        rope_theta=10000.0,
    ),
    # Llama-3.2-1B's shape (vocab 128256 when used with its tokenizer).
    "llama-1b": dict(
        hidden_size=2048,
        intermediate_size=8192,
        num_hidden_layers=16,
        num_attention_heads=32,
        num_key_value_heads=8,
        max_position_embeddings=8192,
        rope_theta=500000.0,
    ),
}


@dataclass
class BuiltModel:
    """A loaded or freshly built model, where it came from and its parameter count."""

    model: PreTrainedModel
    source: str  # "preset:<name>" or the path/id it was loaded from
    num_parameters: int


def preset_config(
    preset: str, vocab_size: int, overrides: dict[str, Any] | None = None, **special_ids: Any
) -> LlamaConfig:
    """The Llama config of a named preset (CAUSAL_LM_PRESETS) for `vocab_size`, with `overrides` applied."""
    if preset not in CAUSAL_LM_PRESETS:
        raise RecipeInputError(f"Unknown model preset {preset!r}. Available: {', '.join(CAUSAL_LM_PRESETS)}.")
    values = {**CAUSAL_LM_PRESETS[preset], **(overrides or {})}
    unknown = [k for k in (overrides or {}) if not hasattr(LlamaConfig(), k)]
    if unknown:
        raise RecipeInputError(f"model_overrides has keys LlamaConfig does not know: {unknown}.")
    return LlamaConfig(
        vocab_size=vocab_size,
        tie_word_embeddings=True,
        hidden_act="silu",
        rms_norm_eps=1e-5,
        attention_dropout=0.0,
        use_cache=True,
        **values,
        **special_ids,
    )


def special_token_ids(tokenizer: Any) -> dict[str, int | None]:
    """The tokenizer's BOS/EOS/PAD ids as model-config fields, so a model built here agrees with its tokenizer."""
    return {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }


def get_causal_lm(
    *,
    model_name_or_path: str | None,
    preset: str | None,
    vocab_size: int,
    overrides: dict[str, Any] | None = None,
    special_ids: dict[str, int | None] | None = None,
    trust_remote_code: bool = False,
    head: str = "causal-lm",
) -> BuiltModel:
    """Load `model_name_or_path` when given, else build `preset` with random weights.

    `head="reward"` gives a sequence-classification model with one output (a reward model): from a causal-LM
    stage the trunk is reused and the score head starts fresh, as TRL's RewardTrainer expects."""
    if head not in ("causal-lm", "reward"):
        raise RecipeInputError(f"Unknown model head {head!r}; use causal-lm or reward.")
    auto_class = AutoModelForCausalLM if head == "causal-lm" else AutoModelForSequenceClassification
    head_kwargs = {"num_labels": 1} if head == "reward" else {}
    if model_name_or_path:
        try:
            model = auto_class.from_pretrained(
                model_name_or_path, trust_remote_code=trust_remote_code, use_safetensors=True, **head_kwargs
            )
        except OSError as err:
            what = "causal LM" if head == "causal-lm" else "reward model"
            raise RecipeInputError(f"Could not load a {what} from {model_name_or_path!r}: {err}") from err
        if model.get_input_embeddings().num_embeddings < vocab_size:
            model.resize_token_embeddings(vocab_size)
        if special_ids and special_ids.get("pad_token_id") is not None and model.config.pad_token_id is None:
            model.config.pad_token_id = special_ids["pad_token_id"]  # sequence scores are read before padding
        source = model_name_or_path
    else:
        config = preset_config(preset or "", vocab_size, overrides, **(special_ids or {}), **head_kwargs)
        model = auto_class.from_config(config)
        source = f"preset:{preset}"
    return BuiltModel(model=model, source=source, num_parameters=model.num_parameters())


def context_length(
    model_name_or_path: str | None, preset: str | None, overrides: dict[str, Any] | None = None
) -> int:
    """The model's maximum sequence length, read without building the model (for early input checks)."""
    if model_name_or_path:
        return int(AutoConfig.from_pretrained(model_name_or_path).max_position_embeddings)
    if preset not in CAUSAL_LM_PRESETS:
        raise RecipeInputError(f"Unknown model preset {preset!r}. Available: {', '.join(CAUSAL_LM_PRESETS)}.")
    return int({**CAUSAL_LM_PRESETS[preset], **(overrides or {})}["max_position_embeddings"])
