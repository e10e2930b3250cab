"""The data-prep machinery every recipe shares: sources, cleaning steps (by name in `registry`), dedup, mixing,
formats, splits, tokenization and packing. Generated corpora live in `hfrecipes.builtins`."""

from hfrecipes.core.data_report import DataReport
from hfrecipes.data.converters import (
    alpaca_to_messages,
    convert,
    hh_to_preference,
    prompt_completion_to_messages,
    transcript_to_messages,
)
from hfrecipes.data.demographics import count_terms, swap_terms
from hfrecipes.data.formats import FORMATS, detect_format, validate_format
from hfrecipes.data.media import load_media_folder
from hfrecipes.data.mixing import mix_domains, split_by_domain, temperature_shares
from hfrecipes.data.near_dedup import minhash_clusters
from hfrecipes.data.packing import pack_blocks, tokenize_and_pack, tokenize_documents
from hfrecipes.data.pipeline import SourceSpec, load_sources, prepare_text_splits
from hfrecipes.data.registry import parse_pipeline, register_step, registered_steps
from hfrecipes.data.sources import check_jsonl, list_builtins, load_local, load_source
from hfrecipes.data.steps import FilterStep, Step, TransformStep, row_text, run_pipeline
from hfrecipes.data.text import dedup_key, normalize_text, select_text_column, train_validation_split

__all__ = [
    "minhash_clusters",
    "load_media_folder",
    "FORMATS",
    "SourceSpec",
    "alpaca_to_messages",
    "convert",
    "count_terms",
    "swap_terms",
    "detect_format",
    "hh_to_preference",
    "load_sources",
    "mix_domains",
    "prompt_completion_to_messages",
    "split_by_domain",
    "temperature_shares",
    "transcript_to_messages",
    "validate_format",
    "DataReport",
    "FilterStep",
    "Step",
    "TransformStep",
    "check_jsonl",
    "dedup_key",
    "list_builtins",
    "load_local",
    "load_source",
    "normalize_text",
    "pack_blocks",
    "parse_pipeline",
    "prepare_text_splits",
    "register_step",
    "registered_steps",
    "row_text",
    "run_pipeline",
    "select_text_column",
    "tokenize_and_pack",
    "tokenize_documents",
    "train_validation_split",
]
