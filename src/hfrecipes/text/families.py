"""Tiny random checkpoints of the model families users fine-tune: Llama-3, Qwen2.5, Qwen3, Gemma-3, Phi-3 and
Mistral, each with its family's architecture class, special tokens and real chat template.

The templates are the ones TRL ships in `trl/chat_templates/` (TRL recognises them byte for byte and swaps in
its training templates); Mistral's, which TRL does not ship, is Mistral-7B-Instruct-v0.1's. The vocabulary is
the 256 bytes plus the family's special tokens, so a checkpoint is built in a second with no download. Tests,
`bench/dress_rehearsal.py` and `bench/gpu_check.sh` stand these in for the Hub models of the same class.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import trl
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    GenerationConfig,
    PreTrainedTokenizerFast,
)

from hfrecipes.core.errors import RecipeInputError

TRL_TEMPLATES = Path(trl.__file__).parent / "chat_templates"

MISTRAL_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}"
    "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}"
)


@dataclass(frozen=True)
class Family:
    """One model family: its config class (by model_type), tokens and chat template."""

    model_type: str
    template: str  # a file name in trl/chat_templates, or the template itself
    bos: str | None
    eos: str
    pad: str | None
    specials: tuple[str, ...]
    stop: tuple[str, ...]  # generation_config.eos_token_id, as the family's instruct checkpoints ship it
    added: tuple[str, ...] = ()  # added tokens that are not special (Qwen3's think tags)
    config: dict[str, Any] = field(default_factory=dict)

    def chat_template(self) -> str | None:
        """The template's text (None for a base model that ships none)."""
        if self.template.endswith(".jinja"):
            return (TRL_TEMPLATES / self.template).read_text(encoding="utf-8")
        return self.template or None


FAMILIES: dict[str, Family] = {
    "llama3": Family(
        model_type="llama",
        template="llama3.jinja",
        bos="<|begin_of_text|>",
        eos="<|eot_id|>",
        pad=None,
        specials=(
            "<|begin_of_text|>",
            "<|end_of_text|>",
            "<|start_header_id|>",
            "<|end_header_id|>",
            "<|eot_id|>",
        ),
        stop=("<|end_of_text|>", "<|eot_id|>"),
        config={"rope_theta": 500000.0, "tie_word_embeddings": True},
    ),
    "qwen2.5": Family(
        model_type="qwen2",
        template="qwen2_5.jinja",
        bos=None,
        eos="<|im_end|>",
        pad="<|endoftext|>",
        specials=("<|endoftext|>", "<|im_start|>", "<|im_end|>"),
        stop=("<|im_end|>", "<|endoftext|>"),
        config={"tie_word_embeddings": True},
    ),
    "qwen3": Family(
        model_type="qwen3",
        template="qwen3.jinja",
        bos=None,
        eos="<|im_end|>",
        pad="<|endoftext|>",
        specials=("<|endoftext|>", "<|im_start|>", "<|im_end|>"),
        stop=("<|im_end|>", "<|endoftext|>"),
        added=("<think>", "</think>", "<tool_call>", "</tool_call>"),
        config={"tie_word_embeddings": True, "head_dim": 16},
    ),
    "gemma3": Family(
        model_type="gemma3_text",
        template="gemma3.jinja",
        bos="<bos>",
        eos="<eos>",
        pad="<pad>",
        specials=("<pad>", "<eos>", "<bos>", "<start_of_turn>", "<end_of_turn>"),
        stop=("<eos>", "<end_of_turn>"),
        config={"head_dim": 16, "sliding_window": 64, "query_pre_attn_scalar": 16},
    ),
    "phi3": Family(
        model_type="phi3",
        template="phi3.jinja",
        bos="<s>",
        eos="<|endoftext|>",
        pad="<|endoftext|>",
        specials=("<s>", "</s>", "<|endoftext|>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"),
        stop=("<|endoftext|>", "<|end|>"),
        config={"tie_word_embeddings": False},
    ),
    "mistral": Family(
        model_type="mistral",
        template=MISTRAL_TEMPLATE,
        bos="<s>",
        eos="</s>",
        pad=None,
        specials=("<unk>", "<s>", "</s>", "[INST]", "[/INST]"),
        stop=("</s>",),
        config={"sliding_window": None},
    ),
}

# The shape every family shares: ~0.1 M parameters, so a recipe's 2 steps take about a second.
TINY_SHAPE: dict[str, Any] = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=1024,
)


def family_tokenizer(family: Family) -> PreTrainedTokenizerFast:
    """A byte-level tokenizer (every byte a token, no merges) with the family's special tokens and template."""
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {symbol: index for index, symbol in enumerate(sorted(alphabet))}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=family.bos,
        eos_token=family.eos,
        pad_token=family.pad,
        additional_special_tokens=[
            t for t in family.specials if t not in (family.bos, family.eos, family.pad)
        ],
        clean_up_tokenization_spaces=False,
        model_max_length=TINY_SHAPE["max_position_embeddings"],
    )
    if family.added:
        tokenizer.add_tokens(list(family.added))
    tokenizer.chat_template = family.chat_template()
    return tokenizer


def build_family(
    family: str | Family, directory: str | Path, seed: int = 0, head: str = "causal-lm", **shape: Any
) -> Path:
    """Write a tiny random checkpoint of `family` (a FAMILIES name or a Family) to `directory`: the model
    (`head` "causal-lm" with the family's generation config, or "reward": one-label sequence classification),
    its tokenizer and template. `shape` overrides TINY_SHAPE (max_position_embeddings sets the context)."""
    if isinstance(family, str):
        if family not in FAMILIES:
            raise RecipeInputError(f"Unknown model family {family!r}. Known: {', '.join(FAMILIES)}.")
        family = FAMILIES[family]
    if head not in ("causal-lm", "reward"):
        raise RecipeInputError(f"Unknown model head {head!r}; use causal-lm or reward.")
    tokenizer = family_tokenizer(family)
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in family.specials}
    config = AutoConfig.for_model(
        family.model_type,
        vocab_size=len(tokenizer),
        bos_token_id=ids.get(family.bos) if family.bos else None,
        eos_token_id=ids[family.eos],
        pad_token_id=ids.get(family.pad) if family.pad else None,
        **{**TINY_SHAPE, **family.config, **shape},
    )
    tokenizer.model_max_length = config.max_position_embeddings
    torch.manual_seed(seed)
    if head == "reward":
        config.num_labels = 1
        model = AutoModelForSequenceClassification.from_config(config)
    else:
        model = AutoModelForCausalLM.from_config(config)
        model.generation_config = GenerationConfig(
            bos_token_id=config.bos_token_id,
            eos_token_id=[ids[token] for token in family.stop],
            pad_token_id=config.pad_token_id,
        )
    directory = Path(directory)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
