"""Parse each lifecycle stage's arguments with its recipe's own `parse_args` and stop there (used by
`hfrecipes run` before anything trains). Reads a JSON plan on stdin: [{"stage", "recipe", "args"}]; prints the
first problem naming the stage and the offending key, exit code 2."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import sys
from pathlib import Path


def _load(recipe: str):
    """Import a recipe script as a module; its folder goes first on sys.path, as `python recipe.py` puts it, so
    the modules beside it (what `hfrecipes copy` brings along) import."""
    folder = str(Path(recipe).resolve().parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    name = "hfrecipes_check_" + Path(recipe).stem
    spec = importlib.util.spec_from_file_location(name, recipe)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def check(stage: str, recipe: str, args: list[str]) -> str | None:
    """The first problem with one stage's arguments, or None when its recipe's `parse_args` accepts them."""
    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors):
            parse_args = getattr(_load(recipe), "parse_args", None)
            if parse_args is None:
                return f"stage {stage!r}: {recipe} has no parse_args(argv) to check its arguments with"
            parse_args(args)
    except SystemExit:  # argparse reports unknown options / bad values on stderr, then exits
        said = [line for line in errors.getvalue().splitlines() if "error" in line.lower()]
        return f"stage {stage!r}: arguments do not parse: {said[-1] if said else errors.getvalue()[-300:]}"
    except Exception as err:  # noqa: BLE001 - the message names the key; the stage name is added here
        return f"stage {stage!r}: config does not parse: {err}"
    return None


def main() -> int:
    """Check every stage of the plan on stdin; exit status 2 at the first problem."""
    for item in json.loads(sys.stdin.read()):
        problem = check(item["stage"], item["recipe"], item["args"])
        if problem:
            print(f"hfrecipes: error: {problem}")
            return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
