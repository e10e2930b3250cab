"""Fault injection for the crash-safe resume tests: run a recipe as a subprocess, SIGKILL it at a seeded-random
moment or inside a checkpoint save, re-run the identical command, and compare with an uninterrupted run.

`crash_and_resume(...)` is the whole scenario for one recipe, given an uninterrupted reference run's output:

1. run 1, in a fresh output_dir, is SIGKILLed by this process at a seeded-random moment after its first complete
   checkpoint exists: k optimizer steps later plus a random fraction of a step (counted from the progress file
   that tests/fault_hooks/sitecustomize.py writes), so the kill may land inside a step, a save or a log write;
2. run 2, the same command, must resume from the newest complete checkpoint; the hook SIGKILLs it inside the
   save of a later checkpoint, after the weights are written and before the completion file
   (`trainer_state.json` / `training_state.json`), leaving a partial checkpoint behind;
3. run 3, the same command again, to the end: it must resume from the newest complete checkpoint (never the
   partial one), log exactly one loss per step, equal to the reference's at every step (a repeated or skipped
   batch would change them), and end with the reference's weights and metrics.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]
HOOKS = Path(__file__).resolve().parent / "fault_hooks"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
_RESUMED = re.compile(r"Resuming from (\S*checkpoint-(\d+))")


@dataclass(frozen=True)
class Layout:
    """How a training loop marks a checkpoint complete: `state_file` (holding `global_step`), written last."""

    state_file: str
    weights: str = "model.safetensors"

    def complete(self, path: Path) -> bool:
        """Checked independently of the code under test: the state file parses, names this step, and the weights
        file is there and readable."""
        match = _CHECKPOINT.match(path.name)
        try:
            state = json.loads((path / self.state_file).read_text())
            if not match or state.get("global_step") != int(match.group(1)):
                return False
            load_file(str(path / self.weights))
        except Exception:  # a missing or torn file: OSError, ValueError, safetensors' own error
            return False
        return True


TRAINER = Layout("trainer_state.json")  # transformers.Trainer (pretrain, SFT, DPO, ...)
DIFFUSION = Layout("training_state.json")  # hfrecipes.diffusion.loop.DiffusionLoop (accelerate save_state)


def checkpoints(output_dir: Path, layout: Layout) -> tuple[list[int], list[str]]:
    """(steps of the complete checkpoints, sorted; names of the other checkpoint-like entries: partial
    checkpoint-N dirs and leftover temporary dirs)."""
    complete, partial = [], []
    if output_dir.is_dir():
        for path in output_dir.iterdir():
            if _CHECKPOINT.match(path.name) and layout.complete(path):
                complete.append(int(_CHECKPOINT.match(path.name).group(1)))
            elif "checkpoint-" in path.name:
                partial.append(path.name)
    return sorted(complete), sorted(partial)


# ---------------------------------------------------------------------------------------------- running


def recipe_command(recipe: str, *args: Any) -> list[str]:
    """`python recipes/<recipe> <args>`: what a user runs (and re-runs after a crash)."""
    return [sys.executable, str(ROOT / "recipes" / recipe), *map(str, args)]


def _environment(**faults: Any) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        PYTHONUNBUFFERED="1",
    )
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(HOOKS), env.get("PYTHONPATH")) if p)
    for key in [k for k in env if k.startswith("HFRECIPES_FAULT_") and k != "HFRECIPES_FAULT_SEED"]:
        env.pop(key)
    env.update({f"HFRECIPES_FAULT_{k.upper()}": str(v) for k, v in faults.items() if v is not None})
    return env


@dataclass
class Run:
    name: str
    returncode: int
    seconds: float
    log: Path
    killed_by: str | None = None  # "helper" (random moment) or "hook" (inside a save)
    note: str = ""

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def resumed_from(self) -> int | None:
        """The step of the checkpoint the run said it resumed from (its "Resuming from ..." log line)."""
        found = _RESUMED.findall(self.output)
        return int(found[-1][1]) if found else None

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.output.splitlines()[-lines:])


def _start(command: list[str], log: Path, env: dict[str, str]) -> tuple[subprocess.Popen, Any]:
    handle = log.open("w")
    # A session of its own, so that a kill takes the whole process group, as a crash of the machine would.
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
    )
    return process, handle


def _kill(process: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):  # already gone
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def run_to_end(command: list[str], log: Path, *, timeout: float = 600, **faults: Any) -> Run:
    """Run `command` to completion (or until a fault hook kills it)."""
    started = time.perf_counter()
    process, handle = _start(command, log, _environment(**faults))
    try:
        returncode = process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill(process)
        raise AssertionError(f"{log.stem} ran over {timeout} s; log: {log}") from None
    finally:
        handle.close()
    run = Run(log.stem, returncode, time.perf_counter() - started, log)
    if "FAULT-HOOK: SIGKILL" in run.output:
        run.killed_by = "hook"
        run.note = run.output.split("FAULT-HOOK: SIGKILL", 1)[1].splitlines()[0].strip()
    return run


def _progress(path: Path) -> list[tuple[int, float]]:
    """(optimizer steps taken, time) per line of the progress hook's file; a line still being written is left out."""
    try:
        lines = path.read_text().split("\n")[:-1]
    except OSError:
        return []
    return [(int(a), float(b)) for a, b in (line.split() for line in lines)]


def run_and_kill_at_random(
    command: list[str],
    log: Path,
    *,
    output_dir: Path,
    layout: Layout,
    rng: random.Random,
    steps: tuple[int, int],
    timeout: float = 600,
) -> Run:
    """Start `command` and SIGKILL it at a seeded-random moment after its first complete checkpoint: once a
    complete checkpoint newer than those present at the start exists, wait k more optimizer steps (k drawn from
    `steps`, inclusive; counted by the progress hook, so the machine's speed does not matter) and a further
    random 0-1.5 times the measured seconds per step, so that the kill lands inside a step, a checkpoint save,
    a log write or an evaluation."""
    more, fraction = rng.randint(*steps), rng.uniform(0.0, 1.5)
    progress_file = log.with_suffix(".progress")
    progress_file.unlink(missing_ok=True)
    before = set(checkpoints(output_dir, layout)[0])
    started = time.perf_counter()
    process, handle = _start(command, log, _environment(progress=progress_file))
    first, base = None, 0  # the first new complete checkpoint, and the steps taken when it was seen
    try:
        while process.poll() is None:
            if time.perf_counter() - started > timeout:
                _kill(process)
                raise AssertionError(f"{log.stem} ran over {timeout} s; log: {log}")
            progress = _progress(progress_file)
            taken = progress[-1][0] if progress else 0
            if first is None:
                new = sorted(set(checkpoints(output_dir, layout)[0]) - before)
                if new:
                    first, base = new[0], taken
            elif taken >= base + more:
                recent = [t for n, t in progress if n >= base]
                gaps = sorted(b - a for a, b in zip(recent, recent[1:], strict=False))
                per_step = gaps[len(gaps) // 2] if gaps else 0.05
                time.sleep(fraction * per_step)
                if process.poll() is None:
                    _kill(process)
                    taken = _progress(progress_file)[-1][0]
                    return Run(
                        log.stem,
                        process.returncode,
                        time.perf_counter() - started,
                        log,
                        "helper",
                        f"{more} steps + {fraction:.2f} x {per_step * 1000:.0f} ms after checkpoint-{first} "
                        f"was seen (about step {first + taken - base})",
                    )
            time.sleep(0.005)
    finally:
        handle.close()
    return Run(
        log.stem,
        process.returncode,
        time.perf_counter() - started,
        log,
        None,
        f"finished before the kill ({more} steps after the first checkpoint): lengthen the run",
    )


# ------------------------------------------------------------------------------------------- comparing


# Per-step training log fields compared with the uninterrupted run's, where logged: the loss (the data and the
# noise), and what the optimizer, scheduler and data accounting restored on resume give.
LOGGED = ("loss", "grad_norm", "learning_rate", "epoch", "num_input_tokens_seen")


def step_logs(output_dir: Path) -> dict[int, list[dict[str, Any]]]:
    """Every training-loss log entry the finished stage recorded, by step (a list, so that a repeated step
    shows): Trainer's log_history.json, or the diffusion loop's {"train": [...], "eval": [...]}."""
    history = json.loads((output_dir / "log_history.json").read_text())
    entries = history["train"] if isinstance(history, dict) else history
    logs: dict[int, list[dict[str, Any]]] = {}
    for entry in entries:
        if "loss" in entry:
            logs.setdefault(int(entry["step"]), []).append(entry)
    return logs


def stage_weights(output_dir: Path) -> dict[str, torch.Tensor]:
    """Every tensor of every safetensors file of the finished stage (checkpoints excluded)."""
    tensors = {}
    for path in sorted(output_dir.rglob("*.safetensors")):
        relative = path.relative_to(output_dir)
        if not any(part.startswith(("checkpoint-", ".checkpoint-")) for part in relative.parts):
            tensors.update({f"{relative}:{k}": v for k, v in load_file(str(path)).items()})
    return tensors


def max_weight_difference(reference: Path, resumed: Path) -> float:
    expected, actual = stage_weights(reference), stage_weights(resumed)
    assert expected and expected.keys() == actual.keys(), (
        f"weights differ in names: {sorted(expected.keys() ^ actual.keys())[:5]}"
    )
    return max((expected[k].double() - actual[k].double()).abs().max().item() for k in expected)


# -------------------------------------------------------------------------------------------- scenario


@dataclass
class CrashResumeReport:
    runs: list[Run] = field(default_factory=list)
    resumes: list[int] = field(default_factory=list)  # the checkpoint step each re-run resumed from
    partial_left: list[list[str]] = field(default_factory=list)  # partial checkpoints each kill left
    max_loss_difference: float = 0.0
    max_weight_difference: float = 0.0
    metric_differences: dict[str, float] = field(default_factory=dict)

    def summary(self) -> str:
        runs = ", ".join(
            f"{r.name} {r.seconds:.1f}s rc={r.returncode}"
            + (f" killed by {r.killed_by} {r.note}" if r.killed_by else "")
            for r in self.runs
        )
        return (
            f"{runs}; resumed from steps {self.resumes}; partial checkpoints left {self.partial_left}; "
            f"max |loss diff| {self.max_loss_difference:.2e}; max |weight diff| {self.max_weight_difference:.2e}; "
            f"metric diffs {self.metric_differences}"
        )


def _expect_resume(run: Run, output_dir: Path, expected: int) -> None:
    resumed = run.resumed_from()
    assert resumed == expected, (
        f"{run.name} resumed from {resumed}, expected the last complete checkpoint {expected}:\n{run.tail()}"
    )


def crash_and_resume(
    command: list[str],
    *,
    output_dir: Path,
    reference_dir: Path,
    layout: Layout,
    max_steps: int,
    save_steps: int,
    seed: int | str = 0,
    kill_mode: str = "before",
    first_kill_after_write: str | None = None,
    metrics: tuple[str, ...] = (),
    loss_atol: float = 1e-6,
    weight_atol: float = 1e-5,
    metric_rtol: float = 1e-4,
) -> CrashResumeReport:
    """The scenario of the module docstring. `command` must end with `--output_dir output_dir` (the same
    command is re-run after each crash); `reference_dir` is an uninterrupted run of the same command. Raises
    AssertionError with the offending run's log tail when a check fails; returns the measurements.

    `kill_mode="torn"` makes run 2's kill leave half a trainer_state.json. With `first_kill_after_write` (a path
    ending, e.g. "tokenizer_config.json"), a run 0 is first SIGKILLed as soon as that file is written (a save of
    several files cut short before any checkpoint exists); the runs after it must not trip over what it left."""
    assert max_steps % save_steps == 0 and max_steps >= 3 * save_steps, (
        "need >= 3 checkpoints, the last at the end"
    )
    report, logs = CrashResumeReport(), output_dir.parent
    rng = random.Random(seed)

    if first_kill_after_write:
        run0 = run_to_end(command, logs / "run0.log", kill_after_write=first_kill_after_write)
        report.runs.append(run0)
        assert run0.killed_by == "hook" and run0.returncode == -signal.SIGKILL, (
            f"run 0 was not killed after writing {first_kill_after_write}:\n{run0.tail()}"
        )

    # Run 1: a fresh run, killed at a random moment after its first complete checkpoint, early enough that a
    # later checkpoint is left for run 2's kill-inside-a-save.
    run1 = run_and_kill_at_random(
        command,
        logs / "run1.log",
        output_dir=output_dir,
        layout=layout,
        rng=rng,
        steps=(0, max_steps - 2 * save_steps - 2),
    )
    report.runs.append(run1)
    assert run1.killed_by == "helper" and run1.returncode == -signal.SIGKILL, f"{run1.note}\n{run1.tail()}"
    complete, partial = checkpoints(output_dir, layout)
    report.partial_left.append(partial)
    assert complete, f"run 1 was killed before any complete checkpoint: {partial}"
    last = complete[-1]

    # Run 2: resumes from the newest complete checkpoint; killed inside the save of a later one.
    kill_step = last + 2 * save_steps if last + 2 * save_steps <= max_steps else last + save_steps
    run2 = run_to_end(command, logs / "run2.log", kill_save_step=kill_step, kill_mode=kill_mode)
    report.runs.append(run2)
    _expect_resume(run2, output_dir, last)
    report.resumes.append(last)
    assert run2.killed_by == "hook" and run2.returncode == -signal.SIGKILL, (
        f"run 2 was not killed inside the save of step {kill_step}:\n{run2.tail()}"
    )
    complete, partial = checkpoints(output_dir, layout)
    report.partial_left.append(partial)
    left = {f"checkpoint-{kill_step}", f".checkpoint-{kill_step}.tmp"} & set(partial)
    assert kill_step not in complete and left, (
        f"the save killed at step {kill_step} left no partial checkpoint, or a complete one: {complete} {partial}"
    )
    last = complete[-1]
    assert last == kill_step - save_steps, f"run 2 should have completed checkpoint {kill_step - save_steps}"

    # Run 3: resumes from the newest complete checkpoint (not the partial one) and finishes.
    run3 = run_to_end(command, logs / "run3.log")
    report.runs.append(run3)
    assert run3.returncode == 0, f"run 3 failed:\n{run3.tail()}"
    _expect_resume(run3, output_dir, last)
    report.resumes.append(last)
    lineage = json.loads((output_dir / "lineage.json").read_text())
    assert Path(lineage["resumed_from"]).name == f"checkpoint-{last}", lineage["resumed_from"]

    # One loss per step, every step, equal to the uninterrupted run's: no batch repeated or skipped.
    expected, actual = step_logs(reference_dir), step_logs(output_dir)
    assert sorted(expected) == list(range(1, max_steps + 1)), (
        "the reference must log every step (logging_steps 1)"
    )
    repeated = {s: len(v) for s, v in actual.items() if len(v) > 1}
    assert not repeated and sorted(actual) == sorted(expected), (
        f"logged steps differ: repeated {repeated}, missing {sorted(set(expected) - set(actual))}, "
        f"extra {sorted(set(actual) - set(expected))}"
    )
    bad = []
    for step in expected:
        (want,), (got,) = expected[step], actual[step]
        report.max_loss_difference = max(report.max_loss_difference, abs(want["loss"] - got["loss"]))
        for key in (k for k in LOGGED if k in want):
            atol = loss_atol if key == "loss" else 0.0
            if not math.isclose(want[key], got.get(key, math.nan), rel_tol=1e-6, abs_tol=atol):
                bad.append(f"step {step} {key}: {want[key]} vs resumed {got.get(key)}")
    assert not bad, "the resumed run's training log differs from the uninterrupted run's:\n" + "\n".join(bad)

    # The same final weights and metrics.
    report.max_weight_difference = max_weight_difference(reference_dir, output_dir)
    assert report.max_weight_difference <= weight_atol, (
        f"weights differ by {report.max_weight_difference:.3e}"
    )
    expected_metrics = json.loads((reference_dir / "metrics.json").read_text())
    actual_metrics = json.loads((output_dir / "metrics.json").read_text())
    for key in metrics:
        a, b = expected_metrics[key], actual_metrics[key]
        report.metric_differences[key] = abs(a - b)
        assert math.isclose(a, b, rel_tol=metric_rtol, abs_tol=metric_rtol), (
            f"metric {key}: {a} vs resumed {b}"
        )
    return report
