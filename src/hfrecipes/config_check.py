"""Parse each pipeline stage's arguments with its recipe's own parser and stop there (used by `hfrecipes run`
before anything trains). Reads a JSON plan on stdin: [{"stage", "recipe", "args"}]; prints the first problem
naming the stage and the offending key, exit code 2."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import sys
from pathlib import Path

from trl import TrlParser

from hfrecipes.args import checked_config_parsing


class _Parsed(Exception):
    """Raised once the recipe's final parse succeeded: the config is valid, nothing else must run."""


def _load(recipe: str):
    name = "hfrecipes_check_" + Path(recipe).stem
    spec = importlib.util.spec_from_file_location(name, recipe)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def check(stage: str, recipe: str, args: list[str]) -> str | None:
    with checked_config_parsing():  # the same config checks as a real launch (hfrecipes.errors.run_main)
        return _check(stage, recipe, args)


def _check(stage: str, recipe: str, args: list[str]) -> str | None:
    original = TrlParser.parse_args_and_config

    def parse_then_stop(self, *args, **kwargs):
        result = original(self, *args, **kwargs)
        if not kwargs.get(
            "return_remaining_strings"
        ):  # a first pass (e.g. grpo.py's `algorithm`) is not the final parse
            raise _Parsed
        return result

    TrlParser.parse_args_and_config = parse_then_stop
    old_argv = sys.argv
    sys.argv = [recipe, *args]
    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors):
            _load(recipe).main()
    except _Parsed:
        return None
    except SystemExit:  # argparse reports unknown options / bad values on stderr, then exits
        said = [line for line in errors.getvalue().splitlines() if "error" in line.lower()]
        return f"stage {stage!r}: arguments do not parse: {said[-1] if said else errors.getvalue()[-300:]}"
    except Exception as err:  # noqa: BLE001 - the message names the key; the stage name is added here
        return f"stage {stage!r}: config does not parse: {err}"
    finally:
        sys.argv = old_argv
        TrlParser.parse_args_and_config = original
    return f"stage {stage!r}: {recipe} finished without parsing its arguments through TrlParser"


def main() -> int:
    for item in json.loads(sys.stdin.read()):
        problem = check(item["stage"], item["recipe"], item["args"])
        if problem:
            print(f"hfrecipes: error: {problem}")
            return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
