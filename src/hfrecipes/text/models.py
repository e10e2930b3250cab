"""Named model presets (tiny → real sizes) and one way to get a model: build from a preset or load a path.

Presets are Llama-architecture decoder-only configs: the architecture SmolLM and Llama 3 share, loadable by
every tool that speaks `AutoModelForCausalLM`. The vocabulary size always comes from the tokenizer.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any

import torch
from accelerate import PartialState
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    BitsAndBytesConfig,
    LlamaConfig,
    PreTrainedModel,
)
from trl import ModelConfig, get_quantization_config

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


DTYPES = ("auto", "float32", "bfloat16", "float16")

# The Auto class and extra config of each model head.
HEADS: dict[str, tuple[Any, dict[str, Any]]] = {
    "causal-lm": (AutoModelForCausalLM, {}),
    "reward": (AutoModelForSequenceClassification, {"num_labels": 1}),
}


def _head(head: str) -> tuple[Any, dict[str, Any]]:
    if head not in HEADS:
        raise RecipeInputError(f"Unknown model head {head!r}; use {' or '.join(HEADS)}.")
    return HEADS[head]


@dataclass(frozen=True)
class ModelLoading:
    """How a checkpoint is loaded: TRL's `ModelConfig` options, passed to `from_pretrained` the way TRL's own
    scripts pass them (`create_model_from_path`), and recorded in lineage.json and the card."""

    revision: str = "main"
    dtype: str = "float32"
    attn_implementation: str | None = None
    trust_remote_code: bool = False
    quantization: BitsAndBytesConfig | None = None

    def torch_dtype(self) -> torch.dtype:
        """The dtype of a model built from a config here ("auto" keeps float32)."""
        return torch.float32 if self.dtype == "auto" else getattr(torch, self.dtype)

    def model_init_kwargs(self) -> dict[str, Any]:
        """TRL's `model_init_kwargs`, as TRL's scripts build them from `ModelConfig` (quantization goes to the
        trainer's own `quantization_config` argument)."""
        kwargs: dict[str, Any] = {
            "revision": self.revision,
            "trust_remote_code": self.trust_remote_code,
            "dtype": self.dtype,
        }
        if self.attn_implementation:
            kwargs["attn_implementation"] = self.attn_implementation
        return kwargs

    def float32_kwargs(self) -> dict[str, Any]:
        """`model_init_kwargs` for a run that computes in float32 (CPU int8 kernels): dtype float32 or auto
        only, refused otherwise, and no k-bit loading."""
        if self.dtype not in ("float32", "auto") or self.quantization is not None:
            raise RecipeInputError(
                "This recipe computes in float32 from the float model: remove dtype / load_in_4bit / load_in_8bit."
            )
        return {**self.model_init_kwargs(), "dtype": torch.float32}

    def set_model_init_kwargs(self, training_args: Any) -> None:
        """For TRL trainers given a path: they load it with `args.model_init_kwargs` (entries set there win)."""
        training_args.model_init_kwargs = {
            **self.model_init_kwargs(),
            **(training_args.model_init_kwargs or {}),
        }

    def from_pretrained_kwargs(self) -> dict[str, Any]:
        """What `from_pretrained` gets here: `model_init_kwargs` plus the k-bit quantization and placement."""
        kwargs = self.model_init_kwargs()
        if self.quantization is not None:
            # k-bit weights are placed on this process's GPU at load time (what TRL's get_kbit_device_map did).
            kwargs.update(
                quantization_config=self.quantization, device_map={"": PartialState().local_process_index}
            )
        return kwargs

    def record(self) -> dict[str, Any]:
        """The options as lineage.json and the card show them."""
        quantization = None
        if self.quantization is not None:
            q = self.quantization
            quantization = (
                {"bits": 4, "quant_type": q.bnb_4bit_quant_type, "nested": q.bnb_4bit_use_double_quant}
                if q.load_in_4bit
                else {"bits": 8}
            )
        return {
            "revision": self.revision,
            "dtype": self.dtype,
            "attn_implementation": self.attn_implementation,
            "trust_remote_code": self.trust_remote_code,
            "quantization": quantization,
        }


def model_loading(model_args: ModelConfig | None, trust_remote_code: bool = False) -> ModelLoading:
    """The loading options of TRL's `ModelConfig`, checked before any work: a k-bit request that cannot work
    here stops with one line naming the option and the reason."""
    if model_args is None:
        return ModelLoading(trust_remote_code=trust_remote_code)
    dtype = model_args.dtype or "float32"
    if dtype not in DTYPES:
        raise RecipeInputError(f"dtype {dtype!r} is not one of {', '.join(DTYPES)}.")
    quantization = None
    if model_args.load_in_4bit or model_args.load_in_8bit:
        option = "load_in_4bit" if model_args.load_in_4bit else "load_in_8bit"
        if model_args.load_in_4bit and model_args.load_in_8bit:
            raise RecipeInputError("load_in_4bit and load_in_8bit are both set; choose one.")
        if not torch.cuda.is_available():
            raise RecipeInputError(
                f"{option} needs a CUDA GPU (bitsandbytes k-bit layers) and this machine has none: remove {option} "
                "to train in full precision (with use_peft for LoRA), or run on a GPU."
            )
        if importlib.util.find_spec("bitsandbytes") is None:
            raise RecipeInputError(
                f"{option} needs bitsandbytes: pip install bitsandbytes, or remove {option}."
            )
        if not model_args.use_peft:
            raise RecipeInputError(
                f"{option} freezes the base weights in k-bit form, so only adapters can train: set use_peft: true "
                "(QLoRA), or remove it."
            )
        quantization = get_quantization_config(model_args)
    return ModelLoading(
        revision=model_args.model_revision or "main",
        dtype=dtype,
        attn_implementation=model_args.attn_implementation,
        trust_remote_code=trust_remote_code,
        quantization=quantization,
    )


def load_pretrained(
    model_name_or_path: str, loading: ModelLoading | None = None, head: str = "causal-lm"
) -> PreTrainedModel:
    """A checkpoint (a stage's output or a Hub id) with `loading`'s options; `head="reward"` gives a one-output
    sequence-classification model on its trunk (a reward model), as TRL's RewardTrainer expects."""
    auto_class, head_kwargs = _head(head)
    try:
        return auto_class.from_pretrained(
            model_name_or_path,
            use_safetensors=True,
            **(loading or ModelLoading()).from_pretrained_kwargs(),
            **head_kwargs,
        )
    except OSError as err:
        what = "causal LM" if head == "causal-lm" else "reward model"
        raise RecipeInputError(f"Could not load a {what} from {model_name_or_path!r}: {err}") from err


def get_causal_lm(
    *,
    model_name_or_path: str | None,
    preset: str | None,
    vocab_size: int,
    overrides: dict[str, Any] | None = None,
    special_ids: dict[str, int | None] | None = None,
    loading: ModelLoading | None = None,
    head: str = "causal-lm",
) -> BuiltModel:
    """Load `model_name_or_path` when given (with `loading`'s options), else build `preset` with random weights
    in `loading`'s dtype. `head` as in `load_pretrained`."""
    loading = loading or ModelLoading()
    if model_name_or_path:
        model = load_pretrained(model_name_or_path, loading, head)
        if model.get_input_embeddings().num_embeddings < vocab_size:
            model.resize_token_embeddings(vocab_size)
        if special_ids and special_ids.get("pad_token_id") is not None and model.config.pad_token_id is None:
            model.config.pad_token_id = special_ids["pad_token_id"]  # sequence scores are read before padding
        source = model_name_or_path
    else:
        auto_class, head_kwargs = _head(head)
        config = preset_config(preset or "", vocab_size, overrides, **(special_ids or {}), **head_kwargs)
        model = auto_class.from_config(
            config,
            dtype=loading.torch_dtype(),
            **({"attn_implementation": loading.attn_implementation} if loading.attn_implementation else {}),
        )
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
