"""Tokenize documents and pack them into fixed-length blocks for causal-LM training."""

from __future__ import annotations

from itertools import chain

import datasets
from transformers import PreTrainedTokenizerBase

from hfrecipes.core.data_report import DataReport
from hfrecipes.core.errors import RecipeInputError


def tokenize_documents(
    dataset: datasets.Dataset, tokenizer: PreTrainedTokenizerBase, num_proc: int | None = None
) -> datasets.Dataset:
    """Add `input_ids` (document tokens followed by EOS) and `num_chars` (characters + 1 for the separator
    the EOS stands for), so nats per character can be computed for any tokenizer."""
    if tokenizer.eos_token_id is None:
        raise RecipeInputError(
            "The tokenizer has no EOS token; documents could not be separated. Add one (eos_token)."
        )
    eos = tokenizer.eos_token_id

    def encode(batch: dict) -> dict:
        ids = tokenizer(batch["text"], add_special_tokens=False)["input_ids"]
        return {"input_ids": [doc + [eos] for doc in ids], "num_chars": [len(t) + 1 for t in batch["text"]]}

    return dataset.map(
        encode, batched=True, num_proc=num_proc, remove_columns=dataset.column_names, desc="tokenize"
    )


def pack_blocks(
    tokenized: datasets.Dataset, block_size: int, num_proc: int | None = None, map_batch_size: int = 1000
) -> datasets.Dataset:
    """Concatenate documents (already EOS-terminated) and cut them into `block_size` blocks with labels.

    Each map batch of `map_batch_size` documents drops its last partial block; `pack_report` counts it.
    """

    def pack(batch: dict) -> dict:
        stream = list(chain.from_iterable(batch["input_ids"]))
        usable = len(stream) // block_size * block_size
        blocks = [stream[i : i + block_size] for i in range(0, usable, block_size)]
        return {"input_ids": blocks, "labels": [list(b) for b in blocks]}

    return tokenized.map(
        pack,
        batched=True,
        batch_size=map_batch_size,
        num_proc=num_proc,
        remove_columns=tokenized.column_names,
        desc=f"pack into {block_size}-token blocks",
    )


def tokenize_and_pack(
    dataset: datasets.Dataset,
    tokenizer: PreTrainedTokenizerBase,
    block_size: int,
    report: DataReport,
    name: str,
    num_proc: int | None = None,
) -> tuple[datasets.Dataset, dict]:
    """Tokenize + pack one split; record tokens in/out and return (blocks, stats)."""
    tokenized = tokenize_documents(dataset, tokenizer, num_proc=num_proc)
    tokens_in = sum(len(ids) for ids in tokenized["input_ids"])
    chars = sum(tokenized["num_chars"])
    if tokens_in < block_size:
        raise RecipeInputError(
            f"The {name} split has {tokens_in} tokens, fewer than one block of {block_size}. "
            "Use more data, a smaller `block_size`, or a smaller `validation_fraction`."
        )
    blocks = pack_blocks(tokenized, block_size, num_proc=num_proc)
    if len(blocks) == 0:
        raise RecipeInputError(
            f"The {name} split packed into 0 blocks of {block_size} tokens; lower `block_size`."
        )
    tokens_out = len(blocks) * block_size
    stats = {
        "documents": len(dataset),
        "characters": chars,
        "tokens": tokens_in,
        "tokens_packed": tokens_out,
        "tokens_dropped": tokens_in - tokens_out,
        "blocks": len(blocks),
        "tokens_per_char": tokens_in / chars,
    }
    report.add(
        f"tokenize_pack_{name}",
        rows_in=len(dataset),
        rows_out=len(blocks),
        removed=0,
        tokens_in=tokens_in,
        tokens_out=tokens_out,
        details={
            "unit": "documents -> blocks",
            "block_size": block_size,
            "tokens_dropped": tokens_in - tokens_out,
            "characters": chars,
        },
    )
    return blocks, stats
