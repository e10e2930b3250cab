"""The `hfrecipes` command: a thin catalogue over the recipe scripts (each stays a normal script)."""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

RECIPES_DIR = Path(__file__).resolve().parents[2] / "recipes"


def recipe_catalogue(recipes_dir: Path = RECIPES_DIR) -> list[tuple[str, str, list[str]]]:
    """(recipe path relative to recipes/, first docstring line, config file names) for every recipe script."""
    entries = []
    for script in sorted(recipes_dir.rglob("*.py")):
        doc = ast.get_docstring(ast.parse(script.read_text())) or ""
        configs_dir = script.parent / "configs"
        # Configs are named after the recipe: pretrain_tiny.yaml, tokenizer_tiny.yaml (train_tokenizer.py),
        # prepare_tiny.yaml (prepare_data.py).
        prefixes = tuple(
            {script.stem, script.stem.removeprefix("train_"), script.stem.split("_")[0]} - {"train"}
        )
        configs = (
            sorted(p.name for p in configs_dir.glob("*.yaml") if p.name.startswith(prefixes))
            if configs_dir.is_dir()
            else []
        )
        entries.append((str(script.relative_to(recipes_dir)), doc.splitlines()[0] if doc else "", configs))
    return entries


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hfrecipes", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="every recipe with its configs")
    sub.add_parser("builtins", help="the builtin: data sources")
    sub.add_parser("presets", help="the model presets")
    sub.add_parser("steps", help="the data-preparation pipeline steps and their parameters")
    args = parser.parse_args(argv)

    if args.command == "list":
        for recipe, summary, configs in recipe_catalogue():
            print(f"{recipe:32s} {summary}")
            for config in configs:
                print(f"{'':34s}configs/{config}")
    elif args.command == "builtins":
        from hfrecipes.data import list_builtins

        print("\n".join(f"builtin:{name}" for name in list_builtins()))
    elif args.command == "presets":
        from hfrecipes.models import CAUSAL_LM_PRESETS

        for name, values in CAUSAL_LM_PRESETS.items():
            print(f"{name:14s} " + " ".join(f"{k}={v}" for k, v in values.items()))
    elif args.command == "steps":
        import dataclasses

        from hfrecipes.data import registered_steps

        for name, cls in registered_steps().items():
            summary = (cls.__doc__ or "").strip().splitlines()[0]
            params = ", ".join(f.name for f in dataclasses.fields(cls))
            print(f"{name:22s} {summary}\n{'':23s}params: {params}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
