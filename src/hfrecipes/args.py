"""Argument dataclasses shared by recipes. YAML keys and `--key value` overrides are these field names.

Also the checks that turn a bad configuration file into one `RecipeInputError` before any parser or recipe code
sees it (`checked_config_parsing`, used by `hfrecipes.errors.run_main` and `hfrecipes.config_check`): a missing,
non-UTF-8, invalid or non-mapping YAML file, an alias bomb, and values whose type cannot fit the field (a list
where a number is expected, a number where a list is).
"""

from __future__ import annotations

import dataclasses
import enum
import sys
import types
import typing
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hfrecipes.errors import RecipeInputError


@dataclass
class DataArguments:
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
    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "A previous stage's output dir or a Hub model id; when unset, `model_preset` is built from scratch."
        },
    )
    model_preset: str | None = field(
        default="tiny", metadata={"help": "Preset from hfrecipes.models.CAUSAL_LM_PRESETS."}
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


# --- configuration checks ------------------------------------------------------------------------------------

MAX_CONFIG_VALUES = 100_000  # YAML aliases can make a few lines expand to billions of values (a "YAML bomb")


def check_config_file(path: str | Path) -> dict[str, Any]:
    """Read a recipe's YAML config the way TrlParser will, refusing what would otherwise end in a traceback."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise RecipeInputError(f"Config file {path} does not exist (relative paths start from {Path.cwd()}).")
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as err:
        raise RecipeInputError(f"Cannot read config file {path}: {err.strerror or err}.") from err
    except UnicodeDecodeError as err:
        raise RecipeInputError(
            f"Config file {path} is not UTF-8 text ({err.reason} at byte {err.start}); is it really a YAML file?"
        ) from err
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as err:
        where = _one_line(err).replace('"<unicode string>"', str(path))
        raise RecipeInputError(f"Config file {path} is not valid YAML: {where}") from err
    except RecursionError as err:
        raise RecipeInputError(f"Config file {path} is nested too deeply to read.") from err
    if not isinstance(config, dict):
        raise RecipeInputError(
            f"Config file {path} must be a YAML mapping of `key: value` lines, got {type(config).__name__}."
        )
    if _expanded_size(config) > MAX_CONFIG_VALUES:
        raise RecipeInputError(
            f"Config file {path} expands to more than {MAX_CONFIG_VALUES:,} values through YAML aliases (&/*); "
            "write the values out instead."
        )
    bad_keys = [k for k in config if not isinstance(k, str)]
    if bad_keys:
        raise RecipeInputError(f"Config file {path}: keys must be names, got {bad_keys[:5]!r}.")
    env = config.get("env", {})
    if not isinstance(env, dict) or any(isinstance(v, (dict, list)) for v in env.values()):
        raise RecipeInputError(
            f"Config file {path}: `env` must be a mapping of VARIABLE: value, got {env!r:.100}."
        )
    return config


def _expanded_size(value: Any) -> int:
    """Number of values `value` has once aliases are expanded (a shared object counts once per reference); a
    structure that contains itself counts as infinite."""
    sizes: dict[int, int] = {}
    open_: set[int] = set()
    stack: list[tuple[Any, bool]] = [(value, False)]
    while stack:
        item, children_done = stack.pop()
        if not isinstance(item, (dict, list)):
            continue
        key = id(item)
        children = [
            c for c in (item.values() if isinstance(item, dict) else item) if isinstance(c, (dict, list))
        ]
        if not children_done:
            if key in sizes:
                continue
            if key in open_:
                return MAX_CONFIG_VALUES + 1  # a cycle: `&a [*a]`
            open_.add(key)
            stack.append((item, True))
            stack.extend((c, False) for c in children)
            continue
        open_.discard(key)
        sizes[key] = len(item) + 1 + sum(sizes.get(id(c), 0) for c in children)
        if sizes[key] > MAX_CONFIG_VALUES:
            return sizes[key]
    return sizes.get(id(value), 1)


def _one_line(err: BaseException, limit: int = 300) -> str:
    text = " ".join(str(err).split())
    return text if len(text) <= limit else text[:limit] + "..."


def _is_union(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType)


def value_fits(value: Any, hint: Any, strings_convert: bool = False) -> bool:
    """Whether a YAML value can fill a field annotated `hint`. Containers are checked strictly (a list for a
    number, a number for a list, a string for a list of strings); scalars leniently when `strings_convert`
    (argparse converts a string default such as `5e-5` to the field's type)."""
    if hint is Any or hint is object or isinstance(hint, (typing.TypeVar, str)):
        return True
    if _is_union(hint):
        return any(value_fits(value, option, strings_convert) for option in typing.get_args(hint))
    if hint is type(None):
        return value is None
    origin = typing.get_origin(hint)
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    if hint is bool:
        return isinstance(value, bool) or (strings_convert and isinstance(value, str))
    if hint in (int, float):
        numeric = isinstance(value, int) and not isinstance(value, bool)
        numeric = numeric or (hint is float and isinstance(value, float))
        return numeric or (
            strings_convert and isinstance(value, (str, float, int)) and not isinstance(value, bool)
        )
    if hint is str:
        return isinstance(value, str) or (strings_convert and isinstance(value, (int, float)))
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return isinstance(value, (str, hint))
    if origin in (list, tuple, set, frozenset) or hint in (list, tuple):
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        element = args[0] if args else Any
        if strings_convert and isinstance(value, str):
            return element in (str, Any)  # argparse takes one string for a list of strings (`all-linear`)
        if not isinstance(value, (list, tuple)):
            return False
        if element is str and not strings_convert:
            return all(isinstance(v, str) for v in value)
        if element is str:  # recipe lists of sources/steps also take mappings
            return all(isinstance(v, (str, dict)) for v in value)
        return all(value_fits(v, element, strings_convert) for v in value)
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            return False
        args = typing.get_args(hint)
        return len(args) != 2 or all(value_fits(v, args[1], strings_convert) for v in value.values())
    return True  # other classes (Path, configs objects, ...) are left to the parser


def describe_type(hint: Any) -> str:
    """`list[str] | None` -> "a list of text or null"."""
    if _is_union(hint):
        return " or ".join(describe_type(option) for option in typing.get_args(hint))
    if hint is type(None):
        return "null"
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (list, tuple, set, frozenset) and args:
        return "a list of " + describe_type(args[0]).removeprefix("a ").replace(
            "whole number", "whole numbers"
        )
    if origin is dict:
        return "a mapping" + (
            f" of {describe_type(args[1]).removeprefix('a ')} values" if len(args) == 2 else ""
        )
    if isinstance(hint, type) and not typing.get_args(hint):
        return {"int": "a whole number", "float": "a number", "bool": "true/false", "str": "text"}.get(
            hint.__name__, hint.__name__
        )
    return str(hint).replace("typing.", "")


def check_config_values(config: dict[str, Any], dataclass_types: list[type], source: str = "config") -> None:
    """Refuse config values whose type cannot fit the field they set (one message naming key, type and value)."""
    for dataclass_type in dataclass_types:
        try:
            hints = typing.get_type_hints(dataclass_type)
        except Exception:  # noqa: BLE001 - an annotation that cannot be resolved is not checked
            continue
        for field_ in dataclasses.fields(dataclass_type):
            if field_.name in config and field_.name in hints:
                value = config[field_.name]
                if not value_fits(value, hints[field_.name], strings_convert=True):
                    shown = repr(value)
                    raise RecipeInputError(
                        f"{source}: `{field_.name}` must be {describe_type(hints[field_.name])}, got "
                        f"{shown if len(shown) <= 100 else shown[:100] + '...'}. Fix that line."
                    )


@contextmanager
def checked_config_parsing() -> Iterator[None]:
    """While active, every `TrlParser.parse_args_and_config` first checks the `--config` file
    (`check_config_file`) and its values' types (`check_config_values`), and an error the parser itself raises
    (an unknown key, a value a training-arguments check refuses) becomes one RecipeInputError."""
    import yaml
    from trl import TrlParser

    original = TrlParser.parse_args_and_config

    def parse(self, args=None, *rest, **kwargs):
        argv = list(args) if args is not None else sys.argv[1:]
        if "--config" in argv:
            position = argv.index("--config")
            if position + 1 >= len(argv):
                raise RecipeInputError("--config needs the path of a YAML file.")
            path = argv[position + 1]
            config = check_config_file(path)
            check_config_values(config, list(self.dataclass_types), source=f"Config file {path}")
        try:
            return original(self, args, *rest, **kwargs)
        except RecipeInputError:
            raise
        except (ValueError, TypeError, KeyError, AttributeError, OSError, yaml.YAMLError) as err:
            raise RecipeInputError(f"The configuration does not parse: {_one_line(err)}") from err

    TrlParser.parse_args_and_config = parse
    try:
        yield
    finally:
        TrlParser.parse_args_and_config = original
