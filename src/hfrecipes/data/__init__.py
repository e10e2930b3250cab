"""THE common data-prep module: sources, cleaning, dedup, splits, tokenization/packing and reports."""

from hfrecipes.data import builtins as _builtins  # noqa: F401  (registers builtin: generators)
from hfrecipes.data.packing import pack_blocks, tokenize_and_pack, tokenize_documents
from hfrecipes.data.pipeline import prepare_text_splits
from hfrecipes.data.report import DataReport
from hfrecipes.data.sources import check_jsonl, list_builtins, load_local, load_source, register_builtin
from hfrecipes.data.text import (
    exact_dedup,
    normalize_and_drop_empty,
    normalize_text,
    select_text_column,
    train_validation_split,
)

__all__ = [
    "DataReport",
    "check_jsonl",
    "exact_dedup",
    "list_builtins",
    "load_local",
    "load_source",
    "normalize_and_drop_empty",
    "normalize_text",
    "pack_blocks",
    "prepare_text_splits",
    "register_builtin",
    "select_text_column",
    "tokenize_and_pack",
    "tokenize_documents",
    "train_validation_split",
]
