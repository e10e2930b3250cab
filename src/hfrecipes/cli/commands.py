"""The `hfrecipes` command: a thin catalogue over the recipe scripts (each stays a normal script)."""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import importlib.util
import os
import platform
import re
import shutil
import sys
from pathlib import Path

import torch
from packaging.requirements import Requirement

from hfrecipes.core import catalogue
from hfrecipes.core.catalogue import recipe_catalogue, shipped_lifecycles
from hfrecipes.core.errors import RecipeInputError
from hfrecipes.core.hub import offline_export, push_output_dir
from hfrecipes.data import list_builtins, registered_steps
from hfrecipes.lifecycle.runner import run_lifecycle_file

# What `hfrecipes env` reports: the libraries a recipe's result depends on, and the optional extras.
ENV_LIBRARIES = (
    *("torch", "transformers", "tokenizers", "trl", "datasets", "accelerate", "peft", "diffusers"),
    *("huggingface_hub", "safetensors", "evaluate", "numpy"),
)
EXTRAS = ("audio", "video", "scale", "retrieval", "quantization", "tracking", "gpu")


def main(argv: list[str] | None = None) -> int:
    """Run `hfrecipes <command>` (`argv` defaults to the command line); returns the exit status, 2 on bad input."""
    parser = argparse.ArgumentParser(prog="hfrecipes", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="every recipe with its configs")
    sub.add_parser("builtins", help="the builtin: data sources")
    sub.add_parser("presets", help="the model presets")
    sub.add_parser("steps", help="the data-preparation pipeline steps and their parameters")
    sub.add_parser("env", help="versions, devices, installed extras and where recipes are (for bug reports)")
    run = sub.add_parser("run", help="run a lifecycle (its stages in order, skipping finished ones)")
    run.add_argument(
        "lifecycle",
        help="a lifecycle file, or a shipped lifecycle's name: " + ", ".join(shipped_lifecycles()),
    )
    run.add_argument(
        "--run_dir", help="where stage outputs go (default: the file's run_dir, under the current directory)"
    )
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
    push.add_argument(
        "repo_id", nargs="?", help="e.g. you/tiny-sft (default: the output directory's name under your user)"
    )
    push.add_argument(
        "--offline-export",
        dest="offline_export",
        metavar="DIR",
        help="write exactly the folder that would be uploaded into DIR (new or empty) instead",
    )
    push.add_argument("--private", action="store_true", help="create the repository private")
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
    plan = sub.add_parser(
        "plan", help="GPU memory per GPU of a text recipe's config, and whether it fits on 80 GB"
    )
    plan.add_argument("config", help="a recipe config, e.g. recipes/text/configs/dpo_zephyr_7b.yaml")
    plan.add_argument(
        "--accelerate_config", help="the sharding, e.g. accelerate_configs/zero3.yaml (default: one GPU)"
    )
    plan.add_argument("--recipe", help="the recipe, e.g. text/sft.py (default: found from the config's name)")
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
        print("\n".join(f"builtin:{name}" for name in list_builtins()))
    elif args.command == "presets":
        # Model modules import transformers' model classes, and with them torchao when it is installed: seconds
        # of start-up and import warnings on stderr for every command. Only the two commands that need one pay.
        from hfrecipes.text.models import CAUSAL_LM_PRESETS

        for name, values in CAUSAL_LM_PRESETS.items():
            print(f"{name:14s} " + " ".join(f"{k}={v}" for k, v in values.items()))
    elif args.command == "steps":
        for name, cls in registered_steps().items():
            summary = (cls.__doc__ or "").strip().splitlines()[0]
            params = ", ".join(f.name for f in dataclasses.fields(cls))
            print(f"{name:22s} {summary}\n{'':23s}params: {params}")
    elif args.command == "env":
        print("Copy-paste the following information when reporting an issue:\n")
        for key, value in environment_report():
            print(f"- {key}: {value}")
    elif args.command == "run":
        return run_lifecycle_file(
            args.lifecycle,
            run_dir=args.run_dir,
            start_from=args.start_from,
            only=args.only,
            dry_run=args.dry_run,
        )
    elif args.command == "copy":
        for path in copy_recipe(args.recipe, Path(args.directory)):
            print(path)
    elif args.command == "push":
        if args.offline_export:
            files = offline_export(args.output_dir, args.offline_export)
            print(f"Wrote {len(files)} files to {args.offline_export}: exactly what `push` would upload.")
        else:
            commit = push_output_dir(args.output_dir, args.repo_id, private=True if args.private else None)
            print(f"Pushed {args.output_dir}: {commit}")
    elif args.command == "synthesize":
        from hfrecipes.audio.synthesis import synthesize  # see "presets"

        result = synthesize(
            args.model_dir,
            args.text,
            args.wav_path,
            speaker=args.speaker,
            vocoder=args.vocoder,
            seed=args.seed,
        )
        note = "" if result["stopped"] else " (no stop token before the length limit)"
        print(
            f"Wrote {result['path']}: {result['seconds']:.2f} s, speaker {result['speaker']}, {result['vocoder']}{note}"
        )
    elif args.command == "plan":
        from hfrecipes.lifecycle.plan import plan_config  # see "presets"

        print(plan_config(args.config, args.accelerate_config, args.recipe).render())
    return 0


def copy_recipe(recipe: str, directory: Path, recipes_dir: Path | None = None) -> list[Path]:
    """The script, the modules beside it that it imports (its loss, sampling, evaluation) and its configs, laid
    out as in the repository (configs/ next to the script), so `python <dir>/<script> --config
    <dir>/configs/<config>` runs as is and edits to the copied modules take effect."""
    recipes_dir = recipes_dir or catalogue.recipes_dir()
    configs = {entry[0]: entry[2] for entry in recipe_catalogue(recipes_dir)}
    if recipe not in configs:
        raise RecipeInputError(f"Unknown recipe {recipe!r}; recipes: {', '.join(configs)}.")
    source = recipes_dir / recipe
    target = directory / source.name
    if target.exists():
        raise RecipeInputError(f"{target} already exists; copy into another directory.")
    (directory / "configs").mkdir(parents=True, exist_ok=True)
    modules = catalogue.recipe_modules(source)
    for module in modules:
        if (directory / module.name).exists():
            raise RecipeInputError(f"{directory / module.name} already exists; copy into another directory.")
    copied = [Path(shutil.copy2(source, target))]
    copied += [Path(shutil.copy2(module, directory / module.name)) for module in modules]
    for config in configs[recipe]:
        destination = directory / "configs" / config
        if not destination.exists():
            copied.append(Path(shutil.copy2(source.parent / "configs" / config, destination)))
    return copied


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def extras_status() -> dict[str, str]:
    """Each optional extra: "yes (pkg version, ...)" when all its packages are installed and importable, else
    "no (missing: ...)". The packages come from the installed hfrecipes metadata (what pyproject.toml declares);
    importable means found by the import system, without importing (vllm or spacy take seconds to import)."""

    def normalize(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    try:
        requirements = [Requirement(r) for r in importlib.metadata.requires("hfrecipes") or []]
    except importlib.metadata.PackageNotFoundError:
        return {extra: "unknown (hfrecipes is not installed: no package metadata)" for extra in EXTRAS}
    modules: dict[str, list[str]] = {}
    for module, distributions in importlib.metadata.packages_distributions().items():
        for distribution in distributions:
            modules.setdefault(normalize(distribution), []).append(module)
    status = {}
    for extra in EXTRAS:
        names = [
            r.name
            for r in requirements
            if r.marker is not None
            and r.marker.evaluate({"extra": extra})
            and normalize(r.name) != "hfrecipes"
        ]
        if not names:
            status[extra] = "unknown (not declared by the installed hfrecipes; reinstall it)"
            continue
        found, missing = [], []
        for name in names:
            version = _version(name)
            importable = version is not None and all(
                importlib.util.find_spec(module) is not None
                for module in modules.get(normalize(name), [])
                if module.isidentifier()
            )
            (found if importable else missing).append(f"{name} {version}" if importable else name)
        status[extra] = (
            f"yes ({', '.join(found)})"
            if not missing
            else f"no (missing: {', '.join(missing)}; pip install 'hfrecipes[{extra}]')"
        )
    return status


def environment_report() -> list[tuple[str, str]]:
    """What `hfrecipes env` prints: platform, versions, devices, extras and where the recipes are."""
    rows = [
        ("Platform", platform.platform()),
        ("Python version", platform.python_version()),
        ("hfrecipes version", _version("hfrecipes") or "not installed (imported from a source tree)"),
    ]
    rows += [(f"{name} version", _version(name) or "not installed") for name in ENV_LIBRARIES]
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        affinity = os.cpu_count()
    rows.append(("CPU count", f"{os.cpu_count()} ({affinity} usable by this process)"))
    if torch.cuda.is_available():
        names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        cuda = f"yes, {len(names)} GPU(s): {', '.join(names)} (CUDA {torch.version.cuda})"
    else:
        cuda = "no" + (
            f" (torch built with CUDA {torch.version.cuda})" if torch.version.cuda else " (CPU build)"
        )
    mps = getattr(torch.backends, "mps", None)
    rows += [("CUDA available", cuda), ("MPS available", "yes" if mps and mps.is_available() else "no")]
    rows += [(f"Extra {extra}", value) for extra, value in extras_status().items()]
    recipes = catalogue.recipes_dir()
    package = Path(catalogue.__file__).resolve().parents[1]
    where = "shipped in the installed package" if recipes.is_relative_to(package) else "the checkout's"
    rows += [
        ("hfrecipes package", str(package)),
        ("Recipes", f"{recipes} ({where}{'' if recipes.is_dir() else '; MISSING'})"),
        ("Accelerate configs", str(catalogue.accelerate_configs_dir())),
        ("Lifecycle pipelines", ", ".join(shipped_lifecycles()) or "none found"),
    ]
    return rows


if __name__ == "__main__":
    raise SystemExit(main())
