"""Benchmark: time for the pretraining recipe to reach 1.88 validation nats/char on Tiny Shakespeare.

    curl -O https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt
    python bench/pretrain_shakespeare.py --data input.txt [--config ...] [-- --key value]

`--data` is Karpathy's char-rnn Tiny Shakespeare `input.txt` (the package does not ship it); it may be left
out where ../shared/data/tinyshakespeare.txt (beside the checkout) exists.

Split as nanoGPT does: first 90% of the characters for training, last 10% for validation. Reference on this
machine kind: nanoGPT's CPU configuration (char-level, 4 layers/4 heads/128 dims, block 64, batch 12, 2000
iterations) reaches 1.886 nats/char in 96 s end to end. "Training seconds" exclude evaluation and sampling
(CausalLMTrainer's clock); the first evaluation at or below the target gives the time, so the figure is an
upper bound at the granularity of `eval_steps`. The last line is machine-readable.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NoReturn

ROOT = Path(__file__).resolve().parents[1]
TARGET = 1.88
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "tinyshakespeare.txt"  # the default only where it exists
GET_DATA = "curl -O https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"


def fail(message: str) -> NoReturn:
    """Bad input: one line on stderr and exit status 2, like the recipes (hfrecipes.core.config.run_main)."""
    print(f"pretrain_shakespeare: error: {message}", file=sys.stderr)
    sys.exit(2)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data",
        default=str(DEFAULT_DATA) if DEFAULT_DATA.is_file() else None,
        help=f"Tiny Shakespeare's input.txt (get it with: {GET_DATA})",
    )
    parser.add_argument(
        "--config", default=str(ROOT / "recipes" / "text" / "configs" / "pretrain_shakespeare.yaml")
    )
    parser.add_argument("--output_dir", default=None)
    parser.add_argument("overrides", nargs="*", help="extra --key value pairs for the recipe (after --)")
    args = parser.parse_args()

    if args.data is None:
        fail(f"pass --data PATH to Tiny Shakespeare's input.txt; get it with: {GET_DATA}")
    data = Path(args.data).expanduser().resolve()  # the recipe runs in the repository root
    if not data.is_file():
        fail(f"--data {args.data} does not exist; get Tiny Shakespeare's input.txt with: {GET_DATA}")
    out = Path(args.output_dir or tempfile.mkdtemp(prefix="bench_shakespeare_")).resolve()
    output_dir = str(out)
    if out.exists() and any(out.iterdir()):  # the recipe would resume from it: a benchmark needs a fresh run
        fail(f"--output_dir {output_dir} is not empty; give a new directory.")
    command = [
        *(sys.executable, str(ROOT / "recipes" / "text" / "pretrain.py"), "--config", args.config),
        *("--dataset_name", f"builtin:tinyshakespeare?path={data}", "--output_dir", output_dir),
        *args.overrides,
    ]
    print("running:", " ".join(command), flush=True)
    started = time.perf_counter()
    if returncode := subprocess.run(command, cwd=ROOT).returncode:
        sys.exit(returncode)  # the recipe has said why on stderr
    end_to_end = time.perf_counter() - started

    history = json.loads((out / "log_history.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    evals = [e for e in history if "eval_nats_per_char" in e]
    print("\nstep  train_s  val_nats_per_char")
    for e in evals:
        print(
            f"{e['step']:>5} {e.get('eval_train_seconds', float('nan')):8.1f}  {e['eval_nats_per_char']:.4f}"
        )
    reached = next((e for e in evals if e["eval_nats_per_char"] <= TARGET), None)
    time_to_target = reached["eval_train_seconds"] if reached else math.inf
    print(
        f"\nparameters={metrics['parameters']:,} tokens_seen={metrics['tokens_seen']:,} "
        f"tokenizer_chars_per_token={1 / json.loads((out / 'data_report.json').read_text())['summary']['validation']['tokens_per_char']:.3f}"
    )
    print(f"end_to_end_s={end_to_end:.1f} (recipe start-up, data, tokenizer, training, evals, save)")
    print(
        f"time_to_{TARGET}_s={time_to_target:.1f} final_nats_per_char={metrics['eval_nats_per_char']:.4f} "
        f"tokens_per_s={metrics['tokens_per_second']:.0f}"
    )


if __name__ == "__main__":
    main()
