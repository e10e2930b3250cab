"""Catastrophic-forgetting study: full fine-tuning vs LoRA vs replay, from the same base, in one table.

    python recipes/text/forgetting_study.py --config recipes/text/configs/sft_forgetting_study.yaml \
        [--output_dir runs/forgetting_study] [--key value ...   (passed on to every SFT run)]

Runs recipes/text/sft.py once per variant (each its own process, as `accelerate launch` would) and tabulates
task accuracy and the held-out pretraining-text nats/char before and after (the forgetting delta).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from hfrecipes.errors import RecipeInputError, run_main
from hfrecipes.io import atomic_write_json, atomic_write_text

SFT = Path(__file__).with_name("sft.py")
VARIANTS = {
    "full fine-tuning": [],
    "LoRA": ["--use_peft", "true"],
    "replay": ["--replay_fraction", "0.25"],
}
COLUMNS = ("task_accuracy_before", "task_accuracy", "heldout_nats_per_char_before", "heldout_nats_per_char",
           "forgetting_nats_per_char")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--config", required=True, help="an SFT config with model_name_or_path, forgetting_text, replay_text"
    )
    parser.add_argument("--output_dir", default="runs/forgetting_study")
    args, passthrough = parser.parse_known_args()
    output_dir = Path(args.output_dir)

    rows = {}
    for variant, overrides in VARIANTS.items():
        run_dir = output_dir / variant.split()[0].lower()
        command = [
            sys.executable,
            str(SFT),
            "--config",
            args.config,
            *overrides,
            *passthrough,
            "--output_dir",
            str(run_dir),
        ]
        print(f"[{variant}] {' '.join(command)}", flush=True)
        if subprocess.run(command).returncode != 0:
            raise RecipeInputError(f"The {variant!r} run failed; its output is in {run_dir}.")
        metrics = json.loads((run_dir / "metrics.json").read_text())
        missing = [c for c in COLUMNS if c not in metrics]
        if missing:
            raise RecipeInputError(
                f"The {variant!r} run reported no {missing}: set forgetting_text and use verifiable data."
            )
        rows[variant] = {c: metrics[c] for c in COLUMNS}

    table = ["| variant | task accuracy before -> after | held-out nats/char before -> after | forgetting (delta) |",
             "|---|---|---|---:|"]  # fmt: skip
    for variant, m in rows.items():
        table.append(f"| {variant} | {m['task_accuracy_before']:.3f} -> {m['task_accuracy']:.3f} | "
                     f"{m['heldout_nats_per_char_before']:.3f} -> {m['heldout_nats_per_char']:.3f} | "
                     f"{m['forgetting_nats_per_char']:+.3f} |")  # fmt: skip
    atomic_write_json(output_dir / "forgetting_study.json", rows)
    atomic_write_text(output_dir / "forgetting_study.md", "\n".join(table) + "\n")
    print("\n" + "\n".join(table))


if __name__ == "__main__":
    run_main(main)
