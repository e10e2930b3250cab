"""Benchmark: the web-cleaning pipeline on noisy-web documents, `datasets` backend vs datatrove backend.

    python bench/data_pipeline.py [--n 10000] [--seed 0] [--num_proc 2] [--tasks 4] [--workers 2]

Generates `builtin:noisy-web` (planted exact and near duplicates, corrupted, spam, low-information, unsafe
and non-English rows), then runs the same YAML pipeline through `run_pipeline(num_proc=...)` and through
`run_with_datatrove` (LocalPipelineExecutor, `--tasks` tasks, `--workers` at a time), in one process, and
prints for each: wall seconds, documents/s, rows in/out and seconds per step, and dedup precision/recall
against the planted duplicates. Reference on this machine kind: datatrove's Gopher+C4+FineWeb filters took
~60 s and its 4-stage MinHash ~36 s for 10k documents (34 MB) with tasks=4, workers=2.

Dedup precision/recall: a planted group is an original with its copies. When a dedup step starts, a group
with k members still present should lose k - 1 of them; a removed row counts as found when its group still
had another member present (at most k - 1 per group). Recall = found / expected removals, precision =
found / rows the step removed. "near" scores near_dedup on the rows after exact_dedup; "all" scores
exact_dedup + near_dedup together on the rows before exact_dedup. The datatrove path is scored on the
`datasets` path's rows before dedup: its filters decide identically (tests/test_data_datatrove.py), and the
bench prints both row counts to show it. After the runs, the slowest step of our path is profiled on 1,000
documents (top functions by cumulative time). The last line is machine-readable.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path

import datasets

from hfrecipes.builtins.noisy_web import planted_duplicate_pairs
from hfrecipes.core.data_report import DataReport
from hfrecipes.data import load_source, parse_pipeline, run_pipeline
from hfrecipes.data.datatrove_backend import run_with_datatrove

PIPELINE = [
    "corrupted",
    "gopher_quality",
    "gopher_repetition",
    "c4_quality",
    "fineweb_quality",
    "spam",
    "unsafe",
    "exact_dedup",
    # SHA-1 shingle hashes on both backends (datatrove needs SHA-1 offline), so the two dedups see the same
    # signatures and their precision/recall compare like for like.
    {"near_dedup": {"hash_function": "sha1"}},
]
ROW = "bench_row"
PROFILE_ROWS = 1000


def planted_groups(dataset: datasets.Dataset) -> dict[int, int]:
    """Row -> its planted group (the original's row): copies always copy a clean original."""
    groups = {}
    for original, copy in planted_duplicate_pairs(dataset):
        groups[original] = groups[copy] = original
    return groups


def dedup_scores(before: list[int], kept: set[int], groups: dict[int, int]) -> tuple[float, float, int, int]:
    """(precision, recall, removed, expected removals) of a dedup that turned `before` into `kept`."""
    present = Counter(groups[row] for row in before if row in groups)
    removed = [row for row in before if row not in kept]
    removed_per_group = Counter(groups[row] for row in removed if present.get(groups.get(row), 0) > 1)
    found = sum(min(count, present[group] - 1) for group, count in removed_per_group.items())
    expected = sum(count - 1 for count in present.values() if count > 1)
    precision = found / len(removed) if removed else 1.0
    recall = found / expected if expected else 1.0
    return precision, recall, len(removed), expected


def run_datasets_path(dataset, num_proc):
    report, seconds, snapshots = DataReport(), {}, {}
    clock = [0.0]

    def on_step(step, result):
        seconds[step.name] = time.perf_counter() - clock[0]
        snapshots[step.name] = list(result[ROW])
        clock[0] = time.perf_counter()  # the snapshot is not the next step's work

    started = time.perf_counter()
    clock[0] = started
    result = run_pipeline(dataset, parse_pipeline(PIPELINE), report, num_proc=num_proc, on_step=on_step)
    wall = time.perf_counter() - started
    return result, report, seconds, snapshots, wall


def run_datatrove_path(dataset, tasks, workers, work_dir):
    report = DataReport()
    started = time.perf_counter()
    result = run_with_datatrove(
        dataset, parse_pipeline(PIPELINE), work_dir, tasks=tasks, workers=workers, report=report
    )
    return result, report, time.perf_counter() - started


def profile_step(step_name: str, dataset: datasets.Dataset) -> str:
    """Top functions by cumulative time for one step applied in this process to `dataset`."""
    (step,) = parse_pipeline([step_name])
    profiler = cProfile.Profile()
    profiler.enable()
    step.apply(dataset, DataReport(), num_proc=None)
    profiler.disable()
    out = io.StringIO()
    # Our own functions and builtins only: the datasets.map frames above them add nothing to read.
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(
        r"^(?!.*(site-packages|steps\.py))", 14
    )
    lines = out.getvalue().splitlines()
    start = next(i for i, line in enumerate(lines) if "ncalls" in line)
    return "\n".join(line[:160] for line in lines[start:] if line.strip())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num_proc", type=int, default=2)
    parser.add_argument("--tasks", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--work_dir", default=None, help="empty folder for datatrove's shards (default: a temp dir)"
    )
    args = parser.parse_args()

    print(f"load average at start: {os.getloadavg()}", flush=True)
    started = time.perf_counter()
    dataset = load_source(f"builtin:noisy-web?n={args.n}&seed={args.seed}")
    dataset = dataset.add_column(ROW, list(range(len(dataset))))
    megabytes = sum(len(t.encode()) for t in dataset["text"]) / 1e6
    print(
        f"generated {len(dataset):,} documents ({megabytes:.1f} MB) in {time.perf_counter() - started:.1f} s"
    )
    print("kinds:", dict(Counter(dataset["kind"])))
    groups = planted_groups(dataset)

    ours, our_report, our_seconds, snapshots, our_wall = run_datasets_path(dataset, args.num_proc)
    work_dir = Path(args.work_dir or tempfile.mkdtemp(prefix="bench_datatrove_")) / "run"
    theirs, their_report, their_wall = run_datatrove_path(dataset, args.tasks, args.workers, work_dir)
    if not args.work_dir:
        shutil.rmtree(work_dir.parent)

    before_exact = snapshots[PIPELINE[PIPELINE.index("exact_dedup") - 1]]
    before_near = snapshots["exact_dedup"]
    their_records = {s.step: s for s in their_report.steps}
    print(
        f"\nrows into exact_dedup: datasets {len(before_exact)}, datatrove {their_records['exact_dedup'].rows_in}; "
        f"into near_dedup: datasets {len(before_near)}, datatrove {their_records['near_dedup'].rows_in}"
    )
    print(
        f"{'step':<18} {'rows in':>8} {'out':>7} {'datasets s':>11} {'datatrove s':>12}  (datatrove: block seconds summed over tasks)"
    )
    for mine, other in zip(our_report.steps, their_report.steps, strict=False):
        print(
            f"{mine.step:<18} {mine.rows_in:>8} {mine.rows_out:>7} {our_seconds.get(mine.step, 0):>11.2f} "
            f"{other.details.get('seconds', 0):>12.2f}"
            + (
                ""
                if (other.step, other.rows_out) == (mine.step, mine.rows_out)
                else f"  datatrove: {other.step} -> {other.rows_out}"
            )
        )

    scores = {}
    for name, kept in (("datasets", set(ours[ROW])), ("datatrove", set(theirs[ROW]))):
        near = dedup_scores(before_near, kept, groups)
        combined = dedup_scores(before_exact, kept, groups)
        scores[name] = near
        print(
            f"{name:<9} near_dedup P={near[0]:.3f} R={near[1]:.3f} (removed {near[2]}, planted {near[3]}); "
            f"exact+near P={combined[0]:.3f} R={combined[1]:.3f} (removed {combined[2]}, planted {combined[3]})"
        )

    ours_rate, theirs_rate = args.n / our_wall, args.n / their_wall
    print(
        f"\ndatasets path (num_proc={args.num_proc}): {our_wall:.1f} s, {ours_rate:.0f} docs/s, kept {len(ours)}"
    )
    print(
        f"datatrove path (tasks={args.tasks}, workers={args.workers}): {their_wall:.1f} s, {theirs_rate:.0f} docs/s, "
        f"kept {len(theirs)}"
    )
    print(f"speed ratio datasets / datatrove: {ours_rate / theirs_rate:.2f}x")

    slowest = max(our_seconds, key=our_seconds.get)
    sample = dataset.select(range(min(PROFILE_ROWS, len(dataset))))
    print(
        f"\nprofile of the slowest datasets step, {slowest} ({our_seconds[slowest]:.1f} s), on {len(sample)} rows:"
    )
    print(profile_step(slowest, sample))
    print(f"load average at end: {os.getloadavg()}")
    precision, recall = scores["datasets"][:2]
    print(
        f"datasets_docs_per_s={ours_rate:.1f} datatrove_docs_per_s={theirs_rate:.1f} "
        f"neardup_precision={precision:.4f} neardup_recall={recall:.4f}"
    )


if __name__ == "__main__":
    main()
