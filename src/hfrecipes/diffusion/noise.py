"""The training noise and the conditioning it trains with: `ShardedGenerator` / `rows` (per-sample draws that
match between N processes and one with an N-times batch), caption dropout for classifier-free guidance
(`drop_captions`) and prompt encoding as the pipelines do it (`encode_prompts`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn


class ShardedGenerator(torch.Generator):
    """The training noise generator, seeded alike on every rank: per-sample draws (`rows`) are made for the global
    batch and each rank keeps its own slice, so N processes with batch B see exactly the noise, timesteps and
    caption dropout that one process with batch N·B sees (and data-parallel training matches it)."""

    def __new__(cls, seed: int, rank: int = 0, world: int = 1):
        return super().__new__(cls)

    def __init__(self, seed: int, rank: int = 0, world: int = 1):
        super().__init__()
        self.manual_seed(seed)
        self.rank, self.world = rank, world


def rows(draw: Callable[[int], torch.Tensor], count: int, generator: torch.Generator) -> torch.Tensor:
    """`draw(n)` gives n per-sample values from `generator`; this rank's `count` of them (see ShardedGenerator)."""
    rank, world = getattr(generator, "rank", 0), getattr(generator, "world", 1)
    return draw(count * world)[rank * count : (rank + 1) * count]


def drop_captions(captions: Sequence[str], probability: float, generator: torch.Generator) -> list[str]:
    """Caption dropout for classifier-free guidance: each caption becomes "" with `probability`; "" is what the
    pipelines encode as the unconditional prompt, so the model learns exactly the embedding they guide with."""
    if probability <= 0:
        return list(captions)
    drop = rows(lambda n: torch.rand(n, generator=generator), len(captions), generator) < probability
    return ["" if d else c for c, d in zip(captions, drop.tolist(), strict=True)]


def encode_prompts(
    text_encoder: nn.Module,
    tokenizer: Any,
    prompts: Sequence[str],
    *,
    max_length: int,
    use_attention_mask: bool,
    device: torch.device | str,
) -> torch.Tensor:
    """The prompt embeddings a pipeline would compute: padded to `max_length`, last hidden state."""
    tokens = tokenizer(
        list(prompts), padding="max_length", max_length=max_length, truncation=True, return_tensors="pt"
    )
    mask = tokens.attention_mask.to(device) if use_attention_mask else None
    return text_encoder(tokens.input_ids.to(device), attention_mask=mask)[0]
