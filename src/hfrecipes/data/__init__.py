"""THE common data-prep module: sources, cleaning steps, dedup, splits, tokenization/packing and reports."""

# Modules imported for their registrations (builtin: generators and pipeline steps).
from hfrecipes.data import builtins as _builtins  # noqa: F401
from hfrecipes.data import formats as _formats  # noqa: F401
from hfrecipes.data import images as _images  # noqa: F401
from hfrecipes.data import instructions as _instructions  # noqa: F401
from hfrecipes.data import labels as _labels  # noqa: F401
from hfrecipes.data import media as _media  # noqa: F401
from hfrecipes.data import mixing as _mixing  # noqa: F401
from hfrecipes.data import near_dedup as _near_dedup  # noqa: F401
from hfrecipes.data import preferences as _preferences  # noqa: F401
from hfrecipes.data import qa as _qa  # noqa: F401
from hfrecipes.data import quality as _quality  # noqa: F401
from hfrecipes.data import safety as _safety  # noqa: F401
from hfrecipes.data import speech as _speech  # noqa: F401
from hfrecipes.data import synthetic as _synthetic  # noqa: F401
from hfrecipes.data import videos as _videos  # noqa: F401
from hfrecipes.data.formats import (
    FORMATS,
    alpaca_to_messages,
    convert,
    detect_format,
    hh_to_preference,
    prompt_completion_to_messages,
    transcript_to_messages,
    validate_format,
)
from hfrecipes.data.instructions import REFUSAL_MARKERS, extract_number, is_refusal, self_instruct
from hfrecipes.data.media import (
    UnreadableMediaError,
    load_audio,
    load_image,
    load_media_folder,
    load_video_frames,
)
from hfrecipes.data.mixing import mix_domains, split_by_domain, temperature_shares
from hfrecipes.data.near_dedup import minhash_clusters
from hfrecipes.data.packing import pack_blocks, tokenize_and_pack, tokenize_documents
from hfrecipes.data.pipeline import SourceSpec, load_sources, prepare_text_splits
from hfrecipes.data.report import DataReport
from hfrecipes.data.sources import check_jsonl, list_builtins, load_local, load_source, register_builtin
from hfrecipes.data.steps import (
    FilterStep,
    Step,
    TransformStep,
    parse_pipeline,
    register_step,
    registered_steps,
    row_text,
    run_pipeline,
)
from hfrecipes.data.synthetic import noisy_web, planted_duplicate_pairs
from hfrecipes.data.text import dedup_key, normalize_text, select_text_column, train_validation_split

__all__ = [
    "REFUSAL_MARKERS",
    "extract_number",
    "is_refusal",
    "self_instruct",
    "minhash_clusters",
    "noisy_web",
    "planted_duplicate_pairs",
    "UnreadableMediaError",
    "load_audio",
    "load_image",
    "load_media_folder",
    "load_video_frames",
    "FORMATS",
    "SourceSpec",
    "alpaca_to_messages",
    "convert",
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
    "register_builtin",
    "register_step",
    "registered_steps",
    "row_text",
    "run_pipeline",
    "select_text_column",
    "tokenize_and_pack",
    "tokenize_documents",
    "train_validation_split",
]
