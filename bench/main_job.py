"""The main job's figures: run `recipes/lifecycle/text_tiny.yaml` from scratch (or read a finished run) and print
each stage's wall time, the total against the 8-minute budget, the stage expectations that hold and any
reward-hacking flag, from the run's pipeline_state.json and verdicts.json.

    python bench/main_job.py [--run_dir DIR] [--reuse]

`--reuse` reads DIR as it is instead of running (the lifecycle skips finished stages anyway; without it, DIR is
emptied first so every stage runs). The last line is `stages_seconds=<s> budget_seconds=480 expectations=<held>/<all>`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from hfrecipes.lifecycle.runner import run_lifecycle_file

ROOT = Path(__file__).resolve().parents[1]
BUDGET_SECONDS = 480


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run_dir", default="runs/main_job_bench")
    parser.add_argument("--reuse", action="store_true", help="Read a finished run instead of running it.")
    args = parser.parse_args()
    run_dir = Path(args.run_dir)
    if not args.reuse:
        shutil.rmtree(run_dir, ignore_errors=True)
        if run_lifecycle_file(ROOT / "recipes/lifecycle/text_tiny.yaml", run_dir=run_dir) != 0:
            print(f"the main job failed; see {run_dir}/logs", file=sys.stderr)
            return 1
    state = json.loads((run_dir / "pipeline_state.json").read_text())
    records = json.loads((run_dir / "verdicts.json").read_text())
    print("| stage | seconds |\n|---|---:|")
    for stage, entry in state.items():
        print(f"| {stage} | {entry['seconds']:.0f} |")
    verdicts = [r for r in records if "expectation" in r]
    for record in verdicts:
        print(f"{record['mark']} {record['stage']}: {record['explanation']}")
    for record in records:
        if "reward_hacking" in record:
            print(f"reward hacking: {record['reward_hacking']}")
    total = sum(entry["seconds"] for entry in state.values())
    held = sum(bool(r["passed"]) for r in verdicts)
    print(f"stages_seconds={total:.0f} budget_seconds={BUDGET_SECONDS} expectations={held}/{len(verdicts)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
