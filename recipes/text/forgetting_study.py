"""Catastrophic-forgetting study: full fine-tuning vs LoRA vs replay, from the same base, in one table.

    python recipes/text/forgetting_study.py --config recipes/text/configs/sft_forgetting_study.yaml \
        [--output_dir runs/forgetting_study] [--key value ...   (passed on to every SFT run)]

Runs recipes/text/sft.py once per variant (each its own process, as `accelerate launch` would) and tabulates
task accuracy and the held-out pretraining-text nats/char before and after (the forgetting delta).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from hfrecipes.core.config import check_config_file, run_main
from hfrecipes.core.errors import RecipeInputError
from hfrecipes.core.io import atomic_write_json, atomic_write_text
from hfrecipes.core.stages import start_stage

SFT = Path(__file__).with_name("sft.py")
VARIANTS = {
    "full fine-tuning": [],
    "LoRA": ["--use_peft", "true"],
    "replay": ["--replay_fraction", "0.25"],
}
COLUMNS = (
    "task_accuracy_before",
    "task_accuracy",
    "heldout_nats_per_char_before",
    "heldout_nats_per_char",
    "forgetting_nats_per_char",
)


def without_option(argv: list[str], option: str) -> tuple[list[str], str | None]:
    """`argv` without `option value` (or `option=value`), and that value."""
    kept, value, skip = [], None, False
    for position, item in enumerate(argv):
        if skip:
            skip = False
        elif item == option and position + 1 < len(argv):
            value, skip = argv[position + 1], True
        elif item.startswith(option + "="):
            value = item.split("=", 1)[1]
        else:
            kept.append(item)
    return kept, value


def option_values(argv: list[str]) -> dict[str, str]:
    """`--key value` pairs of the options passed on to SFT (what they override in its config)."""
    return {
        key[2:]: value
        for key, value in zip(argv, argv[1:], strict=False)
        if key.startswith("--") and not value.startswith("--")
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--config", required=True, help="an SFT config with model_name_or_path, forgetting_text, replay_text"
    )
    parser.add_argument("--output_dir", default="runs/forgetting_study")
    args, passthrough = parser.parse_known_args()
    # The token goes to each SFT run through its environment, never through a command line we print or record.
    passthrough, token = without_option(passthrough, "--hub_token")
    sft_settings = {**check_config_file(args.config), **option_values(passthrough)}
    stage = start_stage(
        "text/forgetting_study",
        args,
        inputs={
            "model": sft_settings.get("model_name_or_path"),
            "data": sft_settings.get("dataset_name"),
            "forgetting_text": sft_settings.get("forgetting_text"),
            "replay_text": sft_settings.get("replay_text"),
        },
    )
    output_dir = Path(args.output_dir)
    run_env = {**os.environ, "HF_TOKEN": token} if token else None

    rows, run_dirs = {}, {variant: output_dir / variant.split()[0].lower() for variant in VARIANTS}
    for variant, overrides in VARIANTS.items():
        run_dir = run_dirs[variant]
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
        if subprocess.run(command, env=run_env).returncode != 0:
            raise RecipeInputError(f"The {variant!r} run failed; its output is in {run_dir}.")
        metrics = json.loads((run_dir / "metrics.json").read_text())
        missing = [c for c in COLUMNS if c not in metrics]
        if missing:
            raise RecipeInputError(
                f"The {variant!r} run reported no {missing}: set forgetting_text and use verifiable data."
            )
        rows[variant] = {c: metrics[c] for c in COLUMNS}

    table = [
        "| variant | task accuracy before -> after | held-out nats/char before -> after | forgetting (delta) |",
        "|---|---|---|---:|",
    ]
    for variant, m in rows.items():
        table.append(
            f"| {variant} | {m['task_accuracy_before']:.3f} -> {m['task_accuracy']:.3f} | "
            f"{m['heldout_nats_per_char_before']:.3f} -> {m['heldout_nats_per_char']:.3f} | "
            f"{m['forgetting_nats_per_char']:+.3f} |"
        )
    with stage.staging() as staging:
        atomic_write_json(staging / "forgetting_study.json", rows)
        atomic_write_text(staging / "forgetting_study.md", "\n".join(table) + "\n")
        stage.finish(
            staging,
            config={"study": vars(args), "sft_overrides": passthrough},
            metrics={f"{run_dirs[v].name}/{c}": value for v, m in rows.items() for c, value in m.items()},
            more_inputs={"model": [str(run_dir) for run_dir in run_dirs.values()]},
            card={
                "title": f"{output_dir.name}: forgetting study",
                "description": "Full fine-tuning, LoRA and replay SFT from the same base (one subdirectory each): "
                "task accuracy and held-out pretraining-text nats/char before and after.\n\n"
                + "\n".join(table),
                "usage": f'import json\n\nprint(json.load(open("{output_dir}/forgetting_study.json")))',
                "pipeline_tag": None,
            },
        )
    print("\n" + "\n".join(table))


if __name__ == "__main__":
    run_main(main)
