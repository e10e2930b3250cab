"""Benchmark: training images/s of the tiny diffusion configs, and prompt adherence and Fréchet distance versus
training time for digits and shapes.

    python bench/diffusion_bench.py [--runs digits shapes] [--output_dir runs/bench_diffusion] [--quick]
    python bench/diffusion_bench.py --runs shapes_clip_text --clip_dir runs/clip_shapes_tiny   # + CLIP score

Runs recipes/image/train_diffusion.py once per configuration (a subprocess each, so each pays its own start-up)
with the shipped tiny config (`digits`: diffusion_digits_tiny.yaml, 400 steps; `shapes`:
diffusion_shapes_tiny.yaml, 1000 steps; `shapes_clip_text`: diffusion_shapes_clip_text_tiny.yaml with the CLIP
recipe's output as frozen text encoder, which also gives the CLIP score), evaluating more often than the config
does (9 points per curve). The curves come from the run's own evaluation history: the x axis is the training
clock at each evaluation (optimizer steps only: evaluation, sampling, checkpoints, data preparation and the
evaluator's classifier are excluded; recovered from the logged images/s at that step), so one run gives the
whole curve. Prompt adherence is the accuracy, on samples generated for each prompt, of a classifier trained on
the real images (digits: the label; shapes: all four attributes right at once, solid line, and the mean of the
four attribute accuracies, dashed; dotted: chance, the product of the attributes' chances). The Fréchet distance
is computed in that classifier's feature space (an offline stand-in for FID, comparable between runs on the same
dataset only). Images/s is the recipe's training throughput over the whole run.

Writes diffusion_bench.md (tables), diffusion_bench.png (adherence and Fréchet distance vs training seconds)
and diffusion_bench.json to --output_dir, one sub-folder per run (the recipe's output). A finished run folder
is reused (delete it to measure again); an unfinished one resumes. `--quick` (< 2 min on 2 busy cores) runs
20 steps on 400 images per config, to check the script, not to measure. The last line is machine-readable.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "recipes" / "image" / "configs"
RUNS = {  # name -> (config, recipe overrides for the benchmark)
    "digits": ("diffusion_digits_tiny.yaml", ["--eval_steps", "50", "--logging_steps", "10"]),
    "shapes": ("diffusion_shapes_tiny.yaml", ["--eval_steps", "125", "--logging_steps", "25"]),
    "shapes_clip_text": (
        "diffusion_shapes_clip_text_tiny.yaml",
        ["--eval_steps", "125", "--logging_steps", "25"],
    ),
}
QUICK = {
    "common": [
        *("--max_steps", "20", "--per_device_train_batch_size", "16", "--warmup_steps", "2"),
        *("--eval_steps", "10", "--logging_steps", "5", "--eval_samples_per_prompt", "1"),
        *("--num_inference_steps", "4", "--save_steps", "0"),
    ],
    "digits": ["--dataset_name", "builtin:digits?size=16&n=400"],
    "shapes": ["--dataset_name", "builtin:shapes?n=400&size=16"],
    "shapes_clip_text": ["--dataset_name", "builtin:shapes?n=400&size=16"],
}


def recipe_command(name: str, run_dir: Path, quick: bool, clip_dir: str | None) -> list[str]:
    config, overrides = RUNS[name][0], QUICK["common"] + QUICK[name] if quick else RUNS[name][1]
    command = [
        sys.executable,
        str(ROOT / "recipes" / "image" / "train_diffusion.py"),
        "--config",
        str(CONFIGS / config),
        "--output_dir",
        str(run_dir),
        *overrides,
    ]
    if name == "shapes_clip_text":
        command += ["--text_encoder_name_or_path", clip_dir]
    return command


def run(name: str, run_dir: Path, command: list[str]) -> dict:
    """The recipe's outputs for one configuration, training it unless a finished run of the same command is
    there."""
    record = run_dir / "bench_run.json"
    if (run_dir / "lineage.json").is_file() and record.is_file():
        saved = json.loads(record.read_text())
        if saved["command"][1:] != command[1:]:
            sys.exit(f"{run_dir} holds a finished run of another command; give a new --output_dir.")
        print(f"[{name}] reusing the finished run in {run_dir} (delete it to measure again)", flush=True)
    else:
        print(f"[{name}] running:", " ".join(command), flush=True)
        started = time.perf_counter()
        subprocess.run(command, check=True, cwd=ROOT)
        saved = {"command": command, "end_to_end_s": time.perf_counter() - started}
        record.write_text(json.dumps(saved, indent=2))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    history = json.loads((run_dir / "log_history.json").read_text())
    lineage = json.loads((run_dir / "lineage.json").read_text())
    return {
        "name": name,
        "metrics": metrics,
        "history": history,
        "end_to_end_s": saved["end_to_end_s"],
        "resumed_from": lineage.get("resumed_from"),
        "curve": curve(metrics, history),
    }


def train_seconds_at(step: int, train_log: list[dict], images_per_step: float) -> float:
    """The training clock at `step`: each log entry carries images/s since the start, so seconds = images / rate
    (linear between logged steps when `step` was not logged)."""
    points = [(0, 0.0)] + [
        (e["step"], e["step"] * images_per_step / e["images_per_second"]) for e in train_log
    ]
    for (s0, t0), (s1, t1) in zip(points, points[1:], strict=False):
        if s0 <= step <= s1:
            return t0 + (t1 - t0) * (step - s0) / max(s1 - s0, 1)
    return points[-1][1]


def headline(metrics: dict) -> str:
    """The adherence metric the curve shows: all attributes at once when there are several, else the one."""
    if "adherence_all" in metrics:
        return "adherence_all"
    return next((k for k in metrics if k.startswith("adherence_")), "")


def chance(metrics: dict, key: str) -> float | None:
    chances = {k.removeprefix("chance_adherence_"): v for k, v in metrics.items() if k.startswith("chance_")}
    if key == "adherence_all":
        return math.prod(chances.values()) if chances else None
    return chances.get(key.removeprefix("adherence_"))


def curve(metrics: dict, history: dict) -> list[dict]:
    images_per_step = metrics["images_seen"] / max(metrics["global_step"], 1)
    key = headline(metrics)
    points = []
    for e in history["eval"]:
        point = {
            "step": e["step"],
            "train_s": train_seconds_at(e["step"], history["train"], images_per_step),
            "adherence": e.get(key),
            "frechet_distance": e.get("frechet_distance"),
            "validation_loss": e.get("validation_loss"),
            "clip_score": e.get("clip_score"),
        }
        point.update({k: v for k, v in e.items() if k.startswith("adherence_")})
        attributes = [v for k, v in e.items() if k.startswith("adherence_") and k != "adherence_all"]
        point["adherence_mean"] = sum(attributes) / len(attributes) if len(attributes) > 1 else None
        points.append(point)
    return points


def fmt(value, digits: int = 3) -> str:
    if value is None:
        return "–"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def markdown(results: list[dict], quick: bool, threads: str) -> str:
    lines = [
        "# Diffusion benchmark" + (" (--quick: a smoke check, not a measurement)" if quick else ""),
        "",
        f"OMP_NUM_THREADS={threads}; torch CPU. Training seconds exclude evaluation, sampling and data preparation.",
        "",
        "| run | UNet params | batch | steps | train s | images/s | end-to-end s | adherence | (chance) "
        "| Fréchet distance | CLIP score |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        m, key = r["metrics"], headline(r["metrics"])
        batch = m["images_seen"] // max(m["global_step"], 1)
        lines.append(
            f"| {r['name']} | {m.get('denoiser_parameters', m.get('unet_parameters')) / 1e6:.2f} M | {batch} | {m['global_step']} | "
            f"{m['train_seconds']:.0f} | {m['images_per_second']:.1f} | {r['end_to_end_s']:.0f} | "
            f"{key.removeprefix('adherence_')} {fmt(m.get(key))} | {fmt(chance(m, key), 4)} | "
            f"{fmt(m.get('frechet_distance'), 1)} | {fmt(m.get('clip_score'), 1)} |"
        )
    for r in results:
        m = r["metrics"]
        first = r["curve"][0] if r["curve"] else {}
        attributes = [k for k, v in first.items() if k.startswith("adherence_") and v is not None]
        classifier = ", ".join(
            f"{k.removeprefix('classifier_accuracy_')} {v:.3f}"
            for k, v in m.items()
            if k.startswith("classifier_accuracy_")
        )
        lines += [
            "",
            f"## {r['name']}: evaluations during training",
            "",
            f"Evaluator classifier accuracy on real held-out images: {classifier or '–'}."
            + (
                f" CLIP score of real held-out images: {m['clip_score_real']:.1f} with their captions, "
                f"{m['clip_score_real_shuffled']:.1f} with mismatched ones."
                if "clip_score_real" in m
                else ""
            ),
            "",
            "| step | train s | "
            + " | ".join(a.removeprefix("adherence_") for a in attributes)
            + " | Fréchet distance | validation loss | CLIP score |",
            "|" + "---:|" * (len(attributes) + 5),
        ]
        for p in r["curve"]:
            cells = [
                str(p["step"]),
                f"{p['train_s']:.0f}",
                *(fmt(p.get(a)) for a in attributes),
                fmt(p["frechet_distance"], 1),
                fmt(p["validation_loss"], 4),
                fmt(p["clip_score"], 1),
            ]
            lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "![adherence and Fréchet distance vs training seconds](diffusion_bench.png)", ""]
    return "\n".join(lines)


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for r in results:
        xs = [p["train_s"] for p in r["curve"]]
        key = headline(r["metrics"])
        (line,) = left.plot(
            xs,
            [p["adherence"] for p in r["curve"]],
            marker="o",
            label=f"{r['name']} ({key.removeprefix('adherence_')})",
        )
        if r["curve"] and r["curve"][-1]["adherence_mean"] is not None:
            left.plot(
                xs,
                [p["adherence_mean"] for p in r["curve"]],
                linestyle="--",
                color=line.get_color(),
                label=f"{r['name']} (mean of attributes)",
            )
        if (level := chance(r["metrics"], key)) is not None:
            left.axhline(level, color=line.get_color(), linestyle=":", linewidth=1)
        right.plot(xs, [p["frechet_distance"] for p in r["curve"]], marker="o", label=r["name"])
    left.set(
        xlabel="training seconds",
        ylabel="prompt adherence (dotted: chance)",
        ylim=(-0.02, 1.02),
        title="Prompt adherence vs training time",
    )
    right.set(
        xlabel="training seconds",
        ylabel="Fréchet distance (classifier features)",
        yscale="log",
        title="Fréchet distance vs training time",
    )
    for axis in (left, right):
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", nargs="+", choices=list(RUNS), default=["digits", "shapes"])
    parser.add_argument("--output_dir", default=None, help="default: runs/bench_diffusion[_quick]")
    parser.add_argument("--quick", action="store_true", help="20 steps per config: a smoke check (< 2 min)")
    parser.add_argument(
        "--clip_dir",
        default=str(ROOT / "runs" / "clip_shapes_tiny"),
        help="the CLIP recipe's output, for shapes_clip_text",
    )
    args = parser.parse_args()

    if "shapes_clip_text" in args.runs and not (Path(args.clip_dir) / "lineage.json").is_file():
        sys.exit(
            f"shapes_clip_text needs a finished CLIP run in --clip_dir ({args.clip_dir}): run "
            "recipes/multimodal/train_clip.py --config recipes/multimodal/configs/clip_shapes_tiny.yaml first."
        )
    default = ROOT / "runs" / ("bench_diffusion_quick" if args.quick else "bench_diffusion")
    output_dir = Path(args.output_dir or default)
    output_dir.mkdir(parents=True, exist_ok=True)
    threads = os.environ.get("OMP_NUM_THREADS", "unset")
    started = time.perf_counter()
    results = []
    for name in args.runs:
        command = recipe_command(name, output_dir / name, args.quick, str(Path(args.clip_dir).resolve()))
        results.append(run(name, output_dir / name, command))

    table = markdown(results, args.quick, threads)
    (output_dir / "diffusion_bench.md").write_text(table)
    plot(results, output_dir / "diffusion_bench.png")
    summary = {
        r["name"]: {
            "metrics": r["metrics"],
            "curve": r["curve"],
            "end_to_end_s": r["end_to_end_s"],
            "resumed_from": r["resumed_from"],
        }
        for r in results
    }
    (output_dir / "diffusion_bench.json").write_text(json.dumps(summary, indent=2))
    print("\n" + table)
    print(
        f"bench wall time {time.perf_counter() - started:.0f} s; outputs: {output_dir}/diffusion_bench.md, "
        f"diffusion_bench.png, diffusion_bench.json"
    )
    for r in results:
        if r["resumed_from"]:
            print(
                f"note: {r['name']} resumed from {r['resumed_from']}: its end-to-end time covers the last part"
            )
    print(
        " ".join(
            f"{r['name']}_images_per_s={r['metrics']['images_per_second']:.1f} "
            f"{r['name']}_train_s={r['metrics']['train_seconds']:.0f} "
            f"{r['name']}_{headline(r['metrics'])}={fmt(r['metrics'].get(headline(r['metrics'])))} "
            f"{r['name']}_frechet_distance={fmt(r['metrics'].get('frechet_distance'), 1)}"
            for r in results
        )
    )


if __name__ == "__main__":
    main()
