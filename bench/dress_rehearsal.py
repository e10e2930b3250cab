"""Full-scale dress rehearsal on CPU: every shipped full-scale config (first line `# Full scale`) run for 2 steps.

    python bench/dress_rehearsal.py [--only NAME ...] [--keep DIR] [--timeout S]

Only these change in each config: every Hub model or dataset id is replaced by a local fixture of the same
architecture class / columns and splits (bench/dress_text.py for text; bench/dress_media.py, when present, for
image, audio, video and CLIP), a previous stage's output (`runs/...`) by a fixture of the class that stage
writes, bf16/fp16 by fp32, and the run length by 2 steps (the recipe's own step key). What the CPU cannot
provide is listed in CPU_CHANGES and printed in the note. Each recipe then runs as a user runs it,
`python recipes/<modality>/<script>.py --config <modified.yaml> --output_dir <dir>/<name>`. The table has one
row per config; the last line is `configs_run=<n> configs_total=<m> failures=<k>`.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import yaml

ROOT = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import dress_text  # noqa: E402  (beside this script)

from hfrecipes.core.catalogue import recipe_catalogue  # noqa: E402

datasets.disable_progress_bars()
FULL_SCALE = re.compile(r"^# *full.scale", re.IGNORECASE)
STEPS = 2
# The recipe's own key for the run length; None: the recipe has no steps (data preparation).
STEP_KEYS: dict[str, str | None] = {
    "text/ppo.py": "num_updates",
    "text/prepare_data.py": None,
    "text/train_tokenizer.py": None,
}
# Precision: key -> (values that mean half precision, the fp32 value).
PRECISION_KEYS: dict[str, tuple[tuple[Any, ...], Any]] = {
    "bf16": ((True,), False),
    "fp16": ((True,), False),
    "dtype": (("bfloat16", "float16", "bf16", "fp16", "half"), "float32"),
    "torch_dtype": (("bfloat16", "float16", "bf16", "fp16", "half"), "float32"),
    "mixed_precision": (("bf16", "fp16"), "no"),
    "weight_dtype": (("bfloat16", "float16", "bf16", "fp16"), "float32"),
}
# What a CPU cannot provide, by config: key -> (value, why). Everything else stays as shipped.
CPU_CHANGES: dict[str, dict[str, tuple[Any, str]]] = {
    "grpo_gsm8k": {"use_vllm": (False, "vLLM needs a GPU; generation in transformers")},
    # The preset is a real 135M model from scratch (no fixture stands in for it): 32 x 4 sequences of 2048 tokens
    # per step are ~1.7e14 FLOPs, hours on 2 CPU cores; 2 sequences per step keep every code path.
    "pretrain_smollm_135m": {
        "per_device_train_batch_size": (2, "a 135M model on CPU"),
        "gradient_accumulation_steps": (1, "a 135M model on CPU"),
        "per_device_eval_batch_size": (2, "a 135M model on CPU"),
    },
}


def machine_changes(config: dict) -> dict[str, tuple[Any, str]]:
    """What this machine lacks: a `report_to` tracker that is not installed becomes none."""
    trackers = config.get("report_to")
    names = [trackers] if isinstance(trackers, str) else list(trackers or [])
    missing = [
        t for t in names if t not in ("none", "all") and importlib.util.find_spec(TRACKERS.get(t, t)) is None
    ]
    if not missing:
        return {}
    return {"report_to": ("none", f"{', '.join(missing)} not installed here")}


TRACKERS = {"tensorboard": "tensorboard", "wandb": "wandb", "trackio": "trackio", "mlflow": "mlflow"}
# Keys whose value names where a run writes, not what it reads.
OUTPUT_KEYS = {"output_dir", "hub_model_id", "logging_dir", "run_dir"}
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def load_fixture_tables() -> tuple[dict[str, Callable], dict[str, tuple[str, Callable]], dict[str, str], str]:
    """The text tables merged with bench/dress_media.py's (if it exists): (fixtures by id, stage fixtures by
    runs/ path, skips by config name, a note when the media tables are missing). Its CPU_CAPS join CPU_CHANGES."""
    fixtures: dict[str, Callable] = {**dress_text.MODEL_FIXTURES, **dress_text.DATASET_FIXTURES}
    stages = dict(dress_text.STAGE_FIXTURES)
    skips: dict[str, str] = {}
    media_path = BENCH / "dress_media.py"
    if not media_path.is_file():
        return fixtures, stages, skips, "bench/dress_media.py is missing: no media fixtures"
    spec = importlib.util.spec_from_file_location("dress_media", media_path)
    media = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(media)
    except Exception as err:  # noqa: BLE001 - the media configs then fail, saying why
        return (
            fixtures,
            stages,
            skips,
            f"bench/dress_media.py cannot be imported ({type(err).__name__}: {err})",
        )
    fixtures.update(getattr(media, "MODEL_FIXTURES", {}))
    fixtures.update(getattr(media, "DATASET_FIXTURES", {}))
    stages.update(getattr(media, "STAGE_FIXTURES", {}))
    skips.update(getattr(media, "SKIP", {}))
    for name, caps in getattr(media, "CPU_CAPS", {}).items():  # the media configs' CPU changes, same format
        CPU_CHANGES.setdefault(name, {}).update(caps)
    return fixtures, stages, skips, ""


def full_scale_configs() -> list[Path]:
    """Every shipped config whose first line starts with `# Full scale`."""
    found = []
    for path in sorted((ROOT / "recipes").glob("*/configs/*.yaml")):
        first = path.read_text(encoding="utf-8").splitlines()[:1]
        if first and FULL_SCALE.match(first[0]):
            found.append(path)
    return found


def config_recipes() -> dict[Path, str]:
    """Config file -> its recipe (relative to recipes/), from the catalogue."""
    table = {}
    for recipe, _, configs in recipe_catalogue(ROOT / "recipes"):
        folder = ROOT / "recipes" / Path(recipe).parent / "configs"
        for name in configs:
            table[folder / name] = recipe
    return table


def _is_stage_path(value: str) -> bool:
    return value.startswith("runs/")


@dataclass
class Rehearsal:
    """One config's rehearsal: the modified settings, what was changed and the run's outcome."""

    name: str
    recipe: str
    config: dict
    changes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    status: str = "-"
    seconds: float = 0.0
    note: str = ""


def transform(
    config: dict,
    *,
    recipe: str,
    name: str,
    fixture_paths: dict[str, str],
    stage_paths: dict[str, str],
) -> tuple[dict, list[str], list[str]]:
    """The config as rehearsed: ids -> fixture paths, half precision -> fp32, run length -> 2 steps, plus
    CPU_CHANGES. Returns (new config, changes made, problems: Hub ids or stage paths with no fixture)."""
    changes: list[str] = []
    problems: list[str] = []

    def walk(value: Any, key: str) -> Any:
        if isinstance(value, dict):
            return {k: walk(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, key) for v in value]
        if not isinstance(value, str) or key in OUTPUT_KEYS:
            return value
        if value in fixture_paths:
            changes.append(f"{value} -> fixture")
            return fixture_paths[value]
        if _is_stage_path(value):
            if value in stage_paths:
                changes.append(f"{value} (previous stage) -> fixture")
                return stage_paths[value]
            problems.append(f"no fixture for the previous stage {value} ({key})")
        elif HUB_ID.match(value) and not (ROOT / value).exists() and not value.startswith("builtin:"):
            problems.append(f"no fixture for the Hub id {value} ({key})")
        return value

    out = walk(copy.deepcopy(config), "")
    for key, (half, full) in PRECISION_KEYS.items():
        if key in out and out[key] in half:
            changes.append(f"{key}: {out[key]} -> {full}")
            out[key] = full
    step_key = STEP_KEYS.get(recipe, "max_steps")
    if step_key:
        changes.append(f"{step_key}: {out.get(step_key, 'unset')} -> {STEPS}")
        out[step_key] = STEPS
    for key, (value, why) in {**machine_changes(out), **CPU_CHANGES.get(name, {})}.items():
        changes.append(f"{key}: {out.get(key, 'unset')} -> {value} ({why})")
        out[key] = value
    return out, changes, problems


def _fixture(cache: dict[str, str], key: str, builder: Callable[[Path], Path], root: Path) -> str:
    if key not in cache:
        slug = re.sub(r"[^\w.-]+", "_", key)
        directory = root / slug
        marker = directory / ".fixture_path"
        if marker.is_file():  # kept from an earlier run (--keep)
            cache[key] = marker.read_text().strip()
        else:
            directory.mkdir(parents=True, exist_ok=True)
            cache[key] = str(Path(builder(directory)).resolve())
            marker.write_text(cache[key])
    return cache[key]


def _needed(config: Any, key: str = "") -> set[str]:
    """Every string value the config reads (not the output keys)."""
    if isinstance(config, dict):
        return set().union(set(), *(_needed(v, k) for k, v in config.items() if k not in OUTPUT_KEYS))
    if isinstance(config, list):
        return set().union(set(), *(_needed(v, key) for v in config))
    return {config} if isinstance(config, str) else set()


def _last_error(log: str) -> str:
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    errors = [line for line in lines if re.search(r"(Error|Exception|error:|Traceback|Killed)", line)]
    return (errors or lines or [""])[-1][:300]


def rehearse(
    path: Path, recipe: str, work: Path, tables: tuple, cache: dict[str, str], timeout: float
) -> Rehearsal:
    """Build the fixtures this config needs, write the modified config and run its recipe once."""
    fixtures, stages, skips, media_note = tables
    name = path.stem
    shipped = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    result = Rehearsal(name=name, recipe=recipe, config=shipped)
    if name in skips:
        result.status, result.note = "SKIP", skips[name]
        return result
    start = time.perf_counter()
    try:
        wanted = _needed(shipped)
        fixture_paths = {
            key: _fixture(cache, key, fixtures[key], work / "fixtures") for key in wanted if key in fixtures
        }
        stage_paths = {
            key: _fixture(cache, key, stages[key][1], work / "fixtures") for key in wanted if key in stages
        }
    except Exception as err:  # noqa: BLE001 - a fixture that cannot be built is this config's failure
        result.status, result.seconds = "FAIL", time.perf_counter() - start
        result.note = f"fixture: {type(err).__name__}: {err}"[:300]
        return result
    config, result.changes, result.problems = transform(
        shipped, recipe=recipe, name=name, fixture_paths=fixture_paths, stage_paths=stage_paths
    )
    result.config = config
    for key in wanted & set(stages):
        result.changes.append(f"{key} is {stages[key][0]}")
    if result.problems:
        result.status = "FAIL"
        result.note = "; ".join(result.problems) + (f" ({media_note})" if media_note else "")
        return result
    modified = work / "configs" / path.name
    modified.parent.mkdir(parents=True, exist_ok=True)
    modified.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    output_dir = work / "out" / name
    shutil.rmtree(output_dir, ignore_errors=True)  # a kept earlier run would be resumed, not rehearsed
    command = [
        sys.executable,
        str(ROOT / "recipes" / recipe),
        "--config",
        str(modified),
        "--output_dir",
        str(output_dir),
    ]
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "WANDB_DISABLED": "true",
    }
    log_path = work / "logs" / f"{name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w", encoding="utf-8") as handle:  # written as it runs: `tail -f` it
        try:
            rc = subprocess.run(
                command,
                cwd=ROOT,
                env=env,
                stdout=handle,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                check=False,
            ).returncode
        except subprocess.TimeoutExpired:
            rc = None
    log = log_path.read_text(encoding="utf-8", errors="replace")
    result.seconds = time.perf_counter() - start
    if rc == 0:
        result.status = "ok"
        result.note = "; ".join(result.changes)
    else:
        result.status = "FAIL"
        why = f"timeout after {timeout:.0f}s" if rc is None else f"rc={rc}"
        result.note = f"{why}: {_last_error(log)} (log {log_path})"
    return result


def print_table(results: list[Rehearsal]) -> None:
    """One row per config: config, recipe, status, seconds, note."""
    print("| config | recipe | status | seconds | note |")
    print("|---|---|---|---:|---|")
    for r in results:
        note = r.note.replace("|", "/").replace("\n", " ")
        print(f"| {r.name} | {r.recipe} | {r.status} | {r.seconds:.0f} | {note} |")


def main(argv: list[str] | None = None) -> int:
    """Run the rehearsal; the last printed line is `configs_run=<n> configs_total=<m> failures=<k>`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", metavar="NAME", help="config names (file stems) to run")
    parser.add_argument("--keep", type=Path, help="work directory to keep (fixtures, configs, logs, outputs)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per config")
    args = parser.parse_args(argv)

    configs = full_scale_configs()
    if args.only:
        unknown = set(args.only) - {p.stem for p in configs}
        if unknown:
            parser.error(f"not full-scale configs: {', '.join(sorted(unknown))}")
        configs = [p for p in configs if p.stem in args.only]
    recipes = config_recipes()
    tables = load_fixture_tables()
    if tables[3]:
        print(f"note: {tables[3]}", flush=True)
    scratch = None if args.keep else tempfile.TemporaryDirectory(prefix="dress_rehearsal_")
    work = Path(args.keep or scratch.name).resolve()
    work.mkdir(parents=True, exist_ok=True)
    cache: dict[str, str] = {}
    results = []
    try:
        for path in configs:
            recipe = recipes.get(path)
            if recipe is None:
                results.append(
                    Rehearsal(path.stem, "?", {}, status="FAIL", note="no recipe in the catalogue")
                )
                continue
            result = rehearse(path, recipe, work, tables, cache, args.timeout)
            print(f"{result.name}: {result.status} in {result.seconds:.0f}s", flush=True)
            results.append(result)
    finally:
        if scratch is not None:
            scratch.cleanup()
    print_table(results)
    run = [r for r in results if r.status != "SKIP"]
    failures = sum(r.status != "ok" for r in run)
    print(f"configs_run={len(run)} configs_total={len(configs)} failures={failures}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
