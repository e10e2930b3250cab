"""`hfrecipes run <lifecycle.yaml>`: run recipe stages in order, each as its own `accelerate launch`, wiring each
stage's output directory into the next, skipping stages that are up to date.

A lifecycle file:

    run_dir: runs/text_tiny                    # stage outputs go to run_dir/<stage name>
    accelerate_config: accelerate_configs/cpu.yaml
    stages:
      - name: pretrain
        recipe: text/pretrain.py               # relative to recipes/
        config: recipes/text/configs/pretrain_tiny.yaml
        overrides: {max_steps: 100}            # any config field, as on the command line
        inputs: {dataset_name: data}           # field <- the output directory of an earlier stage
        expect: [eval_nats_per_char down]      # what the stage is for, judged in report.md (optional)

A stage is up to date when its output has a lineage.json whose `pipeline.hash` (`LINEAGE_KEY`) equals the hash of
what it would run now: recipe source, config file content, overrides, accelerate config and the hashes of its input
stages. So changing one stage re-runs it and every stage after it that reads it, and nothing else. `expect:`
(`hfrecipes.lifecycle.verdicts`: `<metric> <direction> [threshold] [strict]` lines; the recipe's defaults when
absent) only changes the report, never the hash.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hfrecipes.core.catalogue import recipes_dir, shipped_file, shipped_lifecycles
from hfrecipes.core.errors import RecipeInputError
from hfrecipes.core.io import COMPLETION_MARKER, atomic_write_json
from hfrecipes.lifecycle.report import write_report
from hfrecipes.lifecycle.verdicts import parse_expectation

# The recipes tree (the checkout's, or the copy inside an installed wheel) and the folder that holds it, which
# also holds accelerate_configs/: what `recipes/...` and `accelerate_configs/...` in a lifecycle file mean when
# they are not found relative to the current directory.
RECIPES_DIR = recipes_dir()
PROJECT_ROOT = RECIPES_DIR.parent
# Names in the files a run writes, kept from when lifecycle files were called pipelines (runs on disk stay valid):
# the key of a stage's lineage.json that records its lifecycle stage and hash, and the run's state file.
LINEAGE_KEY = "pipeline"
STATE_FILE = "pipeline_state.json"


@dataclass
class Stage:
    """One stage of a lifecycle file: its recipe and config, overrides, wired inputs and accelerate config."""

    name: str
    recipe: Path
    config: Path | None
    overrides: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, str | list[str]] = field(default_factory=dict)
    accelerate_config: Path | None = None
    expect: list[str] | None = None  # None: the recipe's DEFAULT_EXPECTATIONS

    def sources(self) -> list[str]:
        """The names of the earlier stages this one reads from."""
        return [
            name for value in self.inputs.values() for name in ([value] if isinstance(value, str) else value)
        ]


@dataclass
class Lifecycle:
    """A checked lifecycle file: its stages in order and the run directory their outputs go to."""

    path: Path
    run_dir: Path
    stages: list[Stage]
    report: dict[str, Any] = field(default_factory=dict)

    def output_dir(self, stage: str) -> Path:
        """Where a stage writes: `run_dir/<stage name>`."""
        return self.run_dir / stage

    def stage_names(self) -> list[str]:
        """The stages' names, in order."""
        return [s.name for s in self.stages]


def _resolve(path: str | None, base: Path) -> Path | None:
    """Paths in a lifecycle file are relative to the current directory if they exist there, else to `base` (for
    PROJECT_ROOT: `recipes/...` and `accelerate_configs/...` are the shipped ones, the checkout's or those inside
    the installed package)."""
    if not path:
        return None
    candidate = Path(path).expanduser()
    if candidate.is_absolute() or candidate.exists():
        return candidate.resolve() if candidate.exists() else candidate
    return (base / candidate).resolve()


def resolve_lifecycle(reference: str | Path) -> Path:
    """A lifecycle file path (relative to the current directory, else a shipped `recipes/lifecycle/...` file), or a
    catalogue name such as `text_tiny` (recipes/lifecycle/text_tiny.yaml)."""
    path = Path(reference).expanduser()
    if path.is_file():
        return path
    shipped = shipped_file(path)
    if shipped is not None and shipped.is_file():
        return shipped
    known = shipped_lifecycles()
    if len(path.parts) == 1 and path.name.removesuffix(".yaml") in known:
        return known[path.name.removesuffix(".yaml")]
    raise RecipeInputError(
        f"{str(reference)!r} is neither a pipeline file nor a shipped pipeline; shipped pipelines: "
        f"{', '.join(known) or 'none found'}."
    )


def load_lifecycle(path: str | Path, run_dir: str | Path | None = None) -> Lifecycle:
    """Read and check a lifecycle file (a path or a catalogue name, see `resolve_lifecycle`): every stage names an
    existing recipe and config, inputs point at earlier stages, names are unique. Problems are reported all at
    once, before anything runs. Outputs go to `run_dir`, relative to the current directory unless absolute."""
    path = resolve_lifecycle(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise RecipeInputError(f"Lifecycle file {path} is not valid YAML: {err}") from err
    if not isinstance(raw.get("stages"), list) or not raw["stages"]:
        raise RecipeInputError(f"Lifecycle file {path} needs a non-empty `stages:` list.")
    default_accelerate = _resolve(raw.get("accelerate_config"), PROJECT_ROOT)
    problems, stages, seen = [], [], set()
    for position, item in enumerate(raw["stages"], start=1):
        if not isinstance(item, dict) or "name" not in item or "recipe" not in item:
            problems.append(f"stage {position}: needs `name` and `recipe`")
            continue
        name = str(item["name"])
        unknown = set(item) - {
            "name",
            "recipe",
            "config",
            "overrides",
            "inputs",
            "accelerate_config",
            "expect",
        }
        if unknown:
            problems.append(f"stage {name!r}: unknown keys {sorted(unknown)}")
        if {"hub_token", "token", "hf_token", "use_auth_token"} & set(map(str, item.get("overrides") or {})):
            problems.append(f"stage {name!r}: put tokens in HF_TOKEN, not overrides (they would be in logs)")
        if name in seen:
            problems.append(f"stage {name!r}: the name is used twice")
        recipe = RECIPES_DIR / item["recipe"]
        if not recipe.is_file():
            problems.append(f"stage {name!r}: unknown recipe {item['recipe']!r} (see `hfrecipes list`)")
        config = _resolve(item.get("config"), PROJECT_ROOT)
        if config is not None and not config.is_file():
            problems.append(f"stage {name!r}: config {item['config']} does not exist")
        inputs = {
            str(k): [str(x) for x in v] if isinstance(v, list) else str(v)
            for k, v in (item.get("inputs") or {}).items()
        }
        for key, value in inputs.items():
            for source in [value] if isinstance(value, str) else value:
                if source not in seen:
                    problems.append(f"stage {name!r}: input {key} <- {source!r} is not an earlier stage")
        accelerate = _resolve(item.get("accelerate_config"), PROJECT_ROOT) or default_accelerate
        if accelerate is not None and not accelerate.is_file():
            problems.append(f"stage {name!r}: accelerate config {accelerate} does not exist")
        expect = item.get("expect")
        if expect is not None and not isinstance(expect, list):
            problems.append(
                f"stage {name!r}: `expect` must be a list of `<metric> <direction> [threshold]` lines"
            )
            expect = None
        for line in expect or []:
            try:
                parse_expectation(line)
            except RecipeInputError as err:
                problems.append(f"stage {name!r}: {err}")
        seen.add(name)
        overrides = dict(item.get("overrides") or {})
        stages.append(
            Stage(name, recipe, config, overrides, inputs, accelerate, expect and [str(e) for e in expect])
        )
    if problems:
        raise RecipeInputError(f"Lifecycle file {path} has problems: " + "; ".join(problems) + ".")
    run_dir = Path(run_dir or raw.get("run_dir") or f"runs/{path.stem}")
    return Lifecycle(path=path, run_dir=run_dir, stages=stages, report=dict(raw.get("report") or {}))


def _cli_value(value: Any) -> list[str]:
    if isinstance(value, list):
        return [str(v) for v in value]
    if isinstance(value, dict):
        return [json.dumps(value)]
    if isinstance(value, bool):
        return [str(value).lower()]
    return [str(value)]


def stage_arguments(lifecycle: Lifecycle, stage: Stage) -> list[str]:
    """The recipe's command-line arguments: --config, the wired inputs, the overrides and --output_dir."""
    args = ["--config", str(stage.config)] if stage.config else []
    for key, value in stage.inputs.items():
        sources = [value] if isinstance(value, str) else value
        args += [f"--{key}", *(str(lifecycle.output_dir(source)) for source in sources)]
    for key, value in stage.overrides.items():
        args += [f"--{key}", *_cli_value(value)]
    return [*args, "--output_dir", str(lifecycle.output_dir(stage.name))]


def stage_command(lifecycle: Lifecycle, stage: Stage) -> list[str]:
    """The stage's full command line: `accelerate launch` (with its config) of the recipe and its arguments."""
    launcher = [sys.executable, "-m", "accelerate.commands.launch"]
    if stage.accelerate_config:
        launcher += ["--config_file", str(stage.accelerate_config)]
    return [*launcher, str(stage.recipe), *stage_arguments(lifecycle, stage)]


def _file_hash(path: Path | None) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path and path.is_file() else ""


def stage_hashes(lifecycle: Lifecycle) -> dict[str, str]:
    """Each stage's hash over what decides its result, chained through its inputs' hashes."""
    hashes: dict[str, str] = {}
    for stage in lifecycle.stages:
        record = {
            "recipe": _file_hash(stage.recipe),
            "config": _file_hash(stage.config),
            "overrides": stage.overrides,
            "accelerate": _file_hash(stage.accelerate_config),
            "inputs": {
                key: [hashes[s] for s in ([v] if isinstance(v, str) else v)]
                for key, v in sorted(stage.inputs.items())
            },
        }
        hashes[stage.name] = hashlib.sha256(
            json.dumps(record, sort_keys=True, default=str).encode()
        ).hexdigest()
    return hashes


def record_stage(output_dir: Path, name: str, stage_hash: str) -> bool:
    """Write which lifecycle stage an output is, and the hash that makes it up to date, into its lineage.json
    once the stage has exited cleanly. False when the stage left no readable lineage.json (no finished output)."""
    marker = output_dir / COMPLETION_MARKER
    try:
        lineage = json.loads(marker.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    atomic_write_json(marker, {**lineage, LINEAGE_KEY: {"stage": name, "hash": stage_hash}})
    return True


def finished_hash(output_dir: Path) -> str | None:
    """The lifecycle hash recorded in a finished stage output, or None when it has none."""
    marker = output_dir / COMPLETION_MARKER
    if not marker.is_file():
        return None
    try:
        return (json.loads(marker.read_text()).get(LINEAGE_KEY) or {}).get("hash")
    except (json.JSONDecodeError, AttributeError):
        return None


def check_stage_configs(lifecycle: Lifecycle, stages: list[Stage]) -> None:
    """Parse every stage's config with its recipe's own parser (in a child process, like the real launch but
    stopping after parsing), so a typo in the last stage is reported before the first one trains."""
    plan = [{"stage": s.name, "recipe": str(s.recipe), "args": stage_arguments(lifecycle, s)} for s in stages]
    result = subprocess.run(
        [sys.executable, "-m", "hfrecipes.lifecycle.config_check"],
        input=json.dumps(plan),
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        message = result.stdout.strip() or result.stderr.strip().splitlines()[-1]
        raise RecipeInputError(message.removeprefix("hfrecipes: error: "))  # the CLI adds the prefix


def _set_aside(output_dir: Path) -> Path:
    """Move a finished output out of the way before its stage runs again. Left in place, its checkpoints would
    be resumed by a run with another config (the recipes resume from the last complete checkpoint); the one
    previous output is kept rather than deleted."""
    previous = output_dir.with_name(output_dir.name + ".previous")
    shutil.rmtree(previous, ignore_errors=True)
    output_dir.rename(previous)
    return previous


def _format_seconds(seconds: float) -> str:
    return f"{int(seconds // 60):d}:{int(seconds % 60):02d}"


def run_lifecycle_file(
    path: str | Path,
    *,
    run_dir: str | Path | None = None,
    start_from: str | None = None,
    only: str | None = None,
    dry_run: bool = False,
    out=None,
) -> int:
    """Run the stages; returns the exit code (0, or the failing stage's)."""
    out = out or sys.stdout
    lifecycle = load_lifecycle(path, run_dir)
    names = lifecycle.stage_names()
    for option, value in (("--from", start_from), ("--only", only)):
        if value is not None and value not in names:
            raise RecipeInputError(
                f"{option} {value!r} is not a stage of {lifecycle.path}; stages: {', '.join(names)}."
            )
    hashes = stage_hashes(lifecycle)
    first = names.index(start_from) if start_from else 0
    selected = [s for i, s in enumerate(lifecycle.stages) if (s.name == only if only else i >= first)]
    forced = {s.name for s in selected} if (only or start_from) else set()
    for stage in selected:  # inputs from stages that will not run must already exist
        for source in stage.sources():
            if (
                source not in {s.name for s in selected}
                and finished_hash(lifecycle.output_dir(source)) is None
            ):
                raise RecipeInputError(
                    f"Stage {stage.name!r} reads from stage {source!r}, which has no finished output in "
                    f"{lifecycle.output_dir(source)}; run it first (drop --only/--from)."
                )
    check_stage_configs(lifecycle, selected)
    logs = lifecycle.run_dir / "logs"
    if not dry_run:  # a dry run writes nothing
        logs.mkdir(parents=True, exist_ok=True)
    state_file = lifecycle.run_dir / STATE_FILE
    state = json.loads(state_file.read_text()) if state_file.is_file() else {}
    print(
        f"hfrecipes run {lifecycle.path} -> {lifecycle.run_dir} ({len(selected)} of {len(names)} stages)",
        file=out,
    )
    for number, stage in enumerate(selected, start=1):
        label = f"[{number}/{len(selected)}] {stage.name:10s}"
        output_dir = lifecycle.output_dir(stage.name)
        recorded = finished_hash(output_dir)
        if stage.name not in forced and recorded == hashes[stage.name]:
            print(f"{label} skipped (up to date: {output_dir})", file=out, flush=True)
            continue
        command = stage_command(lifecycle, stage)
        if dry_run:
            print(f"{label} would run: {shlex.join(command)}", file=out)
            continue
        if recorded is not None:
            previous = _set_aside(output_dir)
            print(
                f"{label} previous output moved to {previous} (a re-run starts fresh)", file=out, flush=True
            )
        log_path = logs / f"{stage.name}.log"
        started = time.monotonic()
        with open(log_path, "w") as log:
            log.write(shlex.join(command) + "\n")
            log.flush()
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=os.getcwd())
            live = out.isatty()  # a ticking clock on a terminal; one line in logs and CI
            if not live:
                print(f"{label} running (log: {log_path})", file=out, flush=True)
            while process.poll() is None:
                if live:
                    clock = _format_seconds(time.monotonic() - started)
                    print(f"\r{label} running {clock}", end="", file=out, flush=True)
                time.sleep(1.0)
        elapsed = time.monotonic() - started
        if process.returncode != 0:
            print(
                f"\r{label} FAILED after {_format_seconds(elapsed)} (exit code {process.returncode}); log: {log_path}",
                file=out,
                flush=True,
            )
            print(
                f"hfrecipes: stage {stage.name!r} failed with exit code {process.returncode}; see {log_path}. "
                "Finished stages are kept; fix and run again to continue from this stage.",
                file=sys.stderr,
            )
            return process.returncode
        if not record_stage(output_dir, stage.name, hashes[stage.name]):
            print(
                f"\r{label} FAILED: it exited 0 but left no finished output in {output_dir}; log: {log_path}",
                file=out,
            )
            return 1
        state[stage.name] = {"seconds": round(elapsed, 1), "log": str(log_path), "hash": hashes[stage.name]}
        atomic_write_json(state_file, state)
        print(f"\r{label} done in {_format_seconds(elapsed)} -> {output_dir}", file=out, flush=True)
    if not dry_run:
        report = write_report(lifecycle, state)
        print(f"Report: {report}", file=out)
    return 0
