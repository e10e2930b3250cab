"""How a recipe reads its settings and ends: `RecipeParser` (TrlParser with the checks that turn a bad
configuration into one clear line) and `run_main` (bad input ends with one line and exit status 2, not a traceback)."""

from __future__ import annotations

import dataclasses
import enum
import sys
import types
import typing
from pathlib import Path
from typing import Any

import yaml
from trl import TrlParser

from hfrecipes.core.errors import NonFiniteError, RecipeInputError

MAX_CONFIG_VALUES = 100_000  # YAML aliases can make a few lines expand to billions of values (a "YAML bomb")


def check_config_file(path: str | Path) -> dict[str, Any]:
    """Read a recipe's YAML config the way TrlParser will, refusing what would otherwise end in a traceback."""
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


class RecipeParser(TrlParser):
    """TRL's parser (YAML `--config` plus `--key value` overrides) that refuses a bad configuration with one
    `RecipeInputError` before any recipe code runs: a missing, non-UTF-8, invalid or non-mapping YAML file, an
    alias bomb, a value whose type cannot fit its field, and any error the parser itself raises (an unknown key,
    a value a training-arguments check refuses)."""

    def parse_args_and_config(self, args=None, return_remaining_strings=False, fail_with_unknown_args=True):
        """Check the `--config` file and its values, then parse as `TrlParser` does."""
        argv = list(args) if args is not None else sys.argv[1:]
        if "--config" in argv:
            position = argv.index("--config")
            if position + 1 >= len(argv):
                raise RecipeInputError("--config needs the path of a YAML file.")
            path = argv[position + 1]
            config = check_config_file(path)
            check_config_values(config, list(self.dataclass_types), source=f"Config file {path}")
        try:
            return super().parse_args_and_config(
                args,
                return_remaining_strings=return_remaining_strings,
                fail_with_unknown_args=fail_with_unknown_args,
            )
        except RecipeInputError:
            raise
        except (ValueError, TypeError, KeyError, AttributeError, OSError, yaml.YAMLError) as err:
            raise RecipeInputError(f"The configuration does not parse: {_one_line(err)}") from err


def run_main(main) -> None:
    """Run a recipe's `main()`; bad input ends with one line on stderr and exit status 2, not a traceback; a
    numerical fault (`NonFiniteError`) ends with one line and exit status 3.

    The configuration is checked as it is parsed (`RecipeParser`): a missing or invalid YAML file, an unknown
    key or a value of the wrong type is bad input too."""
    try:
        main()
    except RecipeInputError as err:
        print(f"hfrecipes: error: {err}", file=sys.stderr)
        sys.exit(2)
    except NonFiniteError as err:
        print(f"hfrecipes: error: {err}", file=sys.stderr)
        sys.exit(3)
