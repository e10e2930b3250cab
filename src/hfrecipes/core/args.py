"""Argument dataclasses shared by recipes. YAML keys and `--key value` overrides are these field names."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class DataArguments:
    """Where a text recipe's data comes from and how it is cleaned and split (see `hfrecipes.data`)."""

    dataset_name: str = field(
        default="builtin:python-stdlib",
        metadata={
            "help": "builtin:<name>[?k=v&...], a local file/dir (jsonl/json/parquet/csv/txt) or a Hub dataset id."
        },
    )
    dataset_config: str | None = field(default=None, metadata={"help": "Hub dataset configuration name."})
    dataset_split: str = field(default="train", metadata={"help": "Split to read from a Hub dataset."})
    text_column: str = field(default="text", metadata={"help": "Column holding the text."})
    text_file_unit: str = field(
        default="paragraph", metadata={"help": "One row of a .txt file: line, paragraph or document."}
    )
    pipeline: list[str] | None = field(
        default=None,
        metadata={
            "help": "Cleaning steps (hfrecipes.data.steps), default: normalize, drop_empty, exact_dedup."
        },
    )
    validation_fraction: float = field(default=0.05, metadata={"help": "Fraction held out for validation."})
    split_mode: str = field(
        default="random", metadata={"help": "random (seeded shuffle) or tail (last part, in order)."}
    )
    max_documents: int | None = field(
        default=None, metadata={"help": "Use only the first N documents (quick runs)."}
    )
    preprocessing_num_proc: int | None = field(default=None, metadata={"help": "Processes for datasets.map."})


@dataclass
class ModelArguments:
    """Which causal LM a text recipe starts from: a previous stage or Hub id, or a preset built from scratch."""

    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "A previous stage's output dir or a Hub model id; when unset, `model_preset` is built from scratch."
        },
    )
    model_preset: str | None = field(
        default="tiny", metadata={"help": "Preset from hfrecipes.text.models.CAUSAL_LM_PRESETS."}
    )
    model_overrides: dict[str, Any] = field(
        default_factory=dict, metadata={"help": "Config fields that replace the preset's."}
    )
    tokenizer_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "Tokenizer dir or Hub id; default: the model's, or one trained on the training split first."
        },
    )
    trust_remote_code: bool = field(
        default=False, metadata={"help": "Allow custom model code from the Hub (off by default)."}
    )


@dataclass
class TokenizerArguments:
    """How a tokenizer is trained from the data: by train_tokenizer.py, or by pretraining when given none."""

    tokenizer_type: str = field(default="byte-bpe", metadata={"help": "byte-bpe (lossless) or char."})
    vocab_size: int = field(default=1024, metadata={"help": "Target vocabulary size for byte-bpe."})
    min_frequency: int = field(default=2, metadata={"help": "Minimum pair frequency for a BPE merge."})


@dataclass
class CardArguments:
    """What the model card says that the run cannot know (for recipes whose settings are a TrainingArguments,
    which already has the publishing fields)."""

    license: str | None = field(
        default=None,
        metadata={
            "help": "The card's license (e.g. apache-2.0); default: the base model's, else none stated."
        },
    )


@dataclass
class PublishArguments(CardArguments):
    """Publishing options of recipes whose settings are not a TrainingArguments; the names and meanings are
    TrainingArguments'."""

    push_to_hub: bool = field(default=False, metadata={"help": "Upload the finished output directory."})
    hub_model_id: str | None = field(
        default=None,
        metadata={"help": "<user>/<repo>; default: the output directory's name under your user."},
    )
    hub_private_repo: bool | None = field(
        default=None, metadata={"help": "Create the repository private (default: the Hub's default)."}
    )
    hub_token: str | None = field(
        default=None,
        metadata={"help": "Hub token (default: HF_TOKEN or your login); never written anywhere."},
    )
