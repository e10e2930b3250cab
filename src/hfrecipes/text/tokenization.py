"""Train tokenizers with the `tokenizers` library and wrap them as `PreTrainedTokenizerFast`.

Every tokenizer made here carries BOS/EOS/PAD, ChatML turn markers and a ChatML chat template whose
assistant turn (end-of-turn token included) sits inside `{% generation %}`, so SFT can train on assistant
tokens only (`return_assistant_tokens_mask=True`, TRL's `assistant_only_loss=True`).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from hfrecipes.core.errors import RecipeInputError
from hfrecipes.data.formats import BOS, EOS, IM_END, IM_START, PAD, SPECIAL_TOKENS, UNK

CHATML_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'assistant' -%}"
    "{{ '<|im_start|>assistant\n' }}{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}{{ '\n' }}"
    "{%- else -%}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\n' }}{%- endif -%}"
)

TOKENIZER_TYPES = ("byte-bpe", "char")


def _batches(texts: Iterable[str], size: int = 1000) -> Iterator[list[str]]:
    batch: list[str] = []
    for text in texts:
        batch.append(text)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def train_tokenizer(
    texts: Iterable[str], tokenizer_type: str = "byte-bpe", vocab_size: int = 1024, min_frequency: int = 2
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE (lossless on any text) or a character-level tokenizer on `texts`."""
    if tokenizer_type == "byte-bpe":
        if vocab_size < 256 + len(SPECIAL_TOKENS):
            raise RecipeInputError(
                f"A byte-level BPE needs vocab_size >= {256 + len(SPECIAL_TOKENS)} (256 bytes + specials), got {vocab_size}."
            )
        tokenizer = Tokenizer(models.BPE())
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            special_tokens=SPECIAL_TOKENS,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tokenizer.train_from_iterator(_batches(texts), trainer=trainer)
        unk = None
    elif tokenizer_type == "char":
        # A BPE with no merges is a character vocabulary; characters never seen in training map to UNK.
        alphabet = sorted({ch for text in texts for ch in text})
        vocab = {tok: i for i, tok in enumerate([*SPECIAL_TOKENS, UNK, *alphabet])}
        tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=UNK))
        tokenizer.decoder = decoders.Fuse()
        unk = UNK
    else:
        raise RecipeInputError(
            f"Unknown tokenizer_type {tokenizer_type!r}; use one of {', '.join(TOKENIZER_TYPES)}."
        )
    return wrap_tokenizer(tokenizer, unk_token=unk)


def wrap_tokenizer(tokenizer: Tokenizer, unk_token: str | None = None) -> PreTrainedTokenizerFast:
    """A `tokenizers` tokenizer as a transformers one with hfrecipes' special tokens and ChatML template."""
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=unk_token,
        additional_special_tokens=[IM_START, IM_END],
        clean_up_tokenization_spaces=False,
        model_max_length=1_000_000,
    )
    wrapped.chat_template = CHATML_TEMPLATE
    return wrapped


def fertility(tokenizer: PreTrainedTokenizerFast, texts: list[str]) -> dict[str, float]:
    """Tokens per whitespace word and per character on `texts` (lower is a denser tokenizer)."""
    tokens = sum(len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"])
    words = sum(len(t.split()) for t in texts)
    chars = sum(len(t) for t in texts)
    if not chars:
        raise RecipeInputError("No held-out text to measure tokenizer fertility on.")
    return {
        "tokens_per_word": tokens / max(words, 1),
        "tokens_per_char": tokens / chars,
        "chars_per_token": chars / max(tokens, 1),
        "heldout_characters": chars,
        "heldout_tokens": tokens,
    }


def load_tokenizer(name_or_path: str, trust_remote_code: bool = False, revision: str = "main"):
    """A saved or Hub tokenizer (refused clearly when it cannot load), padding with EOS when it has no pad."""
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            name_or_path, trust_remote_code=trust_remote_code, revision=revision
        )
    except (OSError, ValueError) as err:
        raise RecipeInputError(f"Could not load a tokenizer from {name_or_path!r}: {err}") from err
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_or_train_tokenizer(
    *,
    tokenizer_name_or_path: str | None = None,
    model_name_or_path: str | None,
    trained_dir: Path,
    texts: Iterable[str],
    tokenizer_type: str = "byte-bpe",
    vocab_size: int,
    min_frequency: int = 2,
    trust_remote_code: bool = False,
    revision: str = "main",
) -> tuple[PreTrainedTokenizerFast, str | None]:
    """The tokenizer a recipe runs with, and the path it came from (None when trained here).

    Order: an explicit tokenizer, the model's own, one trained earlier by this same run (`trained_dir`, so a
    resumed run keeps the vocabulary its checkpoints were trained with), else a new one trained on `texts`.
    """
    if tokenizer_name_or_path or model_name_or_path:
        source = tokenizer_name_or_path or model_name_or_path
        return load_tokenizer(source, trust_remote_code, revision), source
    if (trained_dir / "tokenizer_config.json").is_file():
        return load_tokenizer(str(trained_dir)), None
    tokenizer = train_tokenizer(texts, tokenizer_type, vocab_size, min_frequency)
    # Saved beside it and renamed in: a run killed half-way through the save (tokenizer_config.json written,
    # tokenizer.json not) would otherwise leave a directory that every re-run takes for the tokenizer and fails on.
    staging = trained_dir.with_name(f".{trained_dir.name}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    tokenizer.save_pretrained(staging)
    shutil.rmtree(trained_dir, ignore_errors=True)
    os.replace(staging, trained_dir)
    return tokenizer, None
