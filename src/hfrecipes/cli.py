"""The `hfrecipes` command: a thin catalogue over the recipe scripts (each stays a normal script)."""

from __future__ import annotations

import argparse
import ast
import shutil
import sys
from pathlib import Path

from hfrecipes.errors import RecipeInputError

RECIPES_DIR = Path(__file__).resolve().parents[2] / "recipes"
EXTRA_CONFIG_PREFIXES = {"grpo": ("rloo",)}  # grpo.py also runs RLOO (`algorithm: rloo`)


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
        ) + EXTRA_CONFIG_PREFIXES.get(script.stem, ())
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
    run = sub.add_parser(
        "run", help="run a lifecycle pipeline file (stages in order, skipping finished ones)"
    )
    run.add_argument("pipeline", help="e.g. recipes/lifecycle/text_tiny.yaml")
    run.add_argument("--run_dir", help="where stage outputs go (default: the file's run_dir)")
    run.add_argument(
        "--from", dest="start_from", metavar="STAGE", help="run this stage and the ones after it"
    )
    run.add_argument("--only", metavar="STAGE", help="run only this stage (its inputs must exist)")
    run.add_argument("--dry_run", action="store_true", help="print the commands without running them")
    copy = sub.add_parser("copy", help="copy a recipe script and its configs out, to modify and run")
    copy.add_argument("recipe", help="e.g. text/sft.py (see `hfrecipes list`)")
    copy.add_argument("directory")
    push = sub.add_parser("push", help="upload a finished stage output with its model card")
    push.add_argument("output_dir")
    push.add_argument("repo_id", nargs="?", help="e.g. you/tiny-sft (not needed with --offline-export)")
    push.add_argument("--offline-export", dest="offline_export", metavar="DIR",
                      help="write exactly the folder that would be uploaded into DIR (new or empty) instead")  # fmt: skip
    push.add_argument("--private", action="store_true")
    synth = sub.add_parser(
        "synthesize", help="text -> WAV with a recipes/audio/train_tts.py output directory"
    )
    synth.add_argument("model_dir", help="a train_tts output_dir")
    synth.add_argument("text")
    synth.add_argument("wav_path")
    synth.add_argument("--speaker", help="a training speaker id (default: the first; see tts_config.json)")
    synth.add_argument(
        "--vocoder", help="SpeechT5HifiGan dir/id (default: the one recorded at training, else Griffin-Lim)"
    )
    synth.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        return _dispatch(args)
    except RecipeInputError as err:
        print(f"hfrecipes: error: {err}", file=sys.stderr)
        return 2


def _dispatch(args: argparse.Namespace) -> int:

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
    elif args.command == "run":
        from hfrecipes.lifecycle import run_pipeline_file

        return run_pipeline_file(args.pipeline, run_dir=args.run_dir, start_from=args.start_from, only=args.only,
                                 dry_run=args.dry_run)  # fmt: skip
    elif args.command == "copy":
        for path in copy_recipe(args.recipe, Path(args.directory)):
            print(path)
    elif args.command == "push":
        from hfrecipes.hub import offline_export, push_output_dir

        if args.offline_export:
            files = offline_export(args.output_dir, args.offline_export)
            print(f"Wrote {len(files)} files to {args.offline_export}: exactly what `push` would upload.")
        elif not args.repo_id:
            raise RecipeInputError("push needs a repo_id (e.g. you/tiny-sft), or --offline-export DIR.")
        else:
            commit = push_output_dir(args.output_dir, args.repo_id, private=args.private)
            print(f"Pushed {args.output_dir} to https://huggingface.co/{args.repo_id} ({commit})")
    elif args.command == "synthesize":
        from hfrecipes.speech import synthesize

        result = synthesize(args.model_dir, args.text, args.wav_path, speaker=args.speaker, vocoder=args.vocoder,
                            seed=args.seed)  # fmt: skip
        note = "" if result["stopped"] else " (no stop token before the length limit)"
        print(
            f"Wrote {result['path']}: {result['seconds']:.2f} s, speaker {result['speaker']}, {result['vocoder']}{note}"
        )
    return 0


def copy_recipe(recipe: str, directory: Path, recipes_dir: Path = RECIPES_DIR) -> list[Path]:
    """The script and its configs, side by side as in the repository (configs/ next to the script), so
    `python <dir>/<script> --config <dir>/configs/<config>` runs as is (recipes import only `hfrecipes`)."""
    catalogue = {entry[0]: entry[2] for entry in recipe_catalogue(recipes_dir)}
    if recipe not in catalogue:
        raise RecipeInputError(f"Unknown recipe {recipe!r}; recipes: {', '.join(catalogue)}.")
    source = recipes_dir / recipe
    target = directory / source.name
    if target.exists():
        raise RecipeInputError(f"{target} already exists; copy into another directory.")
    (directory / "configs").mkdir(parents=True, exist_ok=True)
    copied = [Path(shutil.copy2(source, target))]
    for config in catalogue[recipe]:
        destination = directory / "configs" / config
        if not destination.exists():
            copied.append(Path(shutil.copy2(source.parent / "configs" / config, destination)))
    return copied


if __name__ == "__main__":
    raise SystemExit(main())
