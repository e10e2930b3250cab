"""Run a recipe as 2 data-parallel CPU processes (`accelerate_configs/cpu_ddp.yaml`, gloo) and as 1 process with
the doubled per-device batch, for the equivalence tests: same global batch, so the same result within tolerance.

The 2-process run goes through this module (`accelerate launch -m tests.distributed <recipe> ...`): it runs the
recipe unchanged and then writes, per rank, a checksum of every module DistributedDataParallel wrapped, so the
tests can check that the ranks ended in sync for every recipe, not only those that record it in lineage.json."""

from __future__ import annotations

import json
import os
import runpy
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch.nn.parallel import DistributedDataParallel

from hfrecipes.core.training import parameters_checksum

from .conftest import ROOT, read_json

PROBE_DIR = "HFRECIPES_TEST_RANK_PROBE"  # where each rank writes rank<i>.json (set by `launch`)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def probe_path(output_dir: Path) -> Path:
    return output_dir.parent / f"{output_dir.name}.ranks"


def launch(recipe: str, args: list, output_dir: Path, processes: int, timeout: int = 900) -> Path:
    """`accelerate launch` the recipe with 1 (cpu.yaml) or 2 (cpu_ddp.yaml, through the rank probe) processes;
    fails with its stderr."""
    config = "cpu_ddp.yaml" if processes > 1 else "cpu.yaml"
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        ROOT / "accelerate_configs" / config,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    if processes > 1:  # parallel test workers must not share the rendezvous port
        command += ["--num_processes", str(processes), "--main_process_port", str(free_port())]
        command += ["-m", "tests.distributed"]
        env[PROBE_DIR] = str(probe_path(output_dir))
    command += [ROOT / "recipes" / recipe, *args, "--output_dir", output_dir]
    result = subprocess.run(
        [str(c) for c in command], capture_output=True, text=True, cwd=ROOT, env=env, timeout=timeout
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return output_dir


def run_pair(
    recipe: str, args: list, batch_flag: str | Sequence[str], batch: int | Sequence[int], tmp_path: Path
) -> tuple[Path, Path]:
    """(2 processes x `batch`, 1 process x 2*`batch`) outputs of the same command. Several per-process sizes
    (e.g. PPO's batch_size and mini_batch_size) are doubled together: pass tuples of flags and sizes."""
    flags = [batch_flag] if isinstance(batch_flag, str) else list(batch_flag)
    sizes = [batch] if isinstance(batch, int) else list(batch)
    per_process = [str(x) for flag, size in zip(flags, sizes, strict=True) for x in (flag, size)]
    doubled = [str(x) for flag, size in zip(flags, sizes, strict=True) for x in (flag, 2 * size)]
    two = launch(recipe, [*args, *per_process], tmp_path / "two_processes", 2)
    one = launch(recipe, [*args, *doubled], tmp_path / "one_process", 1)
    return two, one


def rank_checksums(output_dir: Path) -> list[list[float]]:
    """Per rank, the checksums of the DDP-wrapped modules at the end of the run (written by the rank probe)."""
    files = sorted(probe_path(output_dir).glob("rank*.json"))
    return [json.loads(f.read_text()) for f in files]


def assert_ranks_in_sync(output_dir: Path) -> None:
    """Both ranks hold bit-identical parameters at the end: from the probe, and from lineage.json where the
    recipe records it itself."""
    ranks = rank_checksums(output_dir)
    assert len(ranks) == 2 and ranks[0] and ranks[0] == ranks[1], ranks
    distributed = read_json(output_dir / "lineage.json").get("distributed")
    if distributed is not None:
        assert distributed["world_size"] == 2 and distributed["ranks_in_sync"] is True, distributed


def max_weight_difference(a: Path, b: Path, skip: Sequence[str] = ()) -> float:
    """Largest absolute difference between two safetensors files with the same tensors, leaving out the tensors
    whose names contain one of `skip`."""
    left, right = load_file(a), load_file(b)
    assert left.keys() == right.keys()
    kept = [k for k in left if not any(s in k for s in skip)]
    return max(float((left[k].float() - right[k].float()).abs().max()) for k in kept)


def losses(history: list[dict], key: str = "loss") -> list[float]:
    return [h[key] for h in history if key in h]


def assert_close_losses(two: list[float], one: list[float], rtol: float) -> None:
    assert len(two) == len(one) and two, (two, one)
    torch.testing.assert_close(torch.tensor(two), torch.tensor(one), rtol=rtol, atol=1e-6)


def _run_with_rank_probe(argv: list[str]) -> None:
    """Run the recipe `argv[0]` as `__main__` with `argv[1:]`; remember every module DDP wraps and, after the
    recipe returned, write this rank's parameter checksums (sum of |p| in float64) to $HFRECIPES_TEST_RANK_PROBE."""
    wrapped: list[torch.nn.Module] = []
    init = DistributedDataParallel.__init__

    def remember(self, module, *args, **kwargs):
        init(self, module, *args, **kwargs)
        wrapped.append(module)

    DistributedDataParallel.__init__ = remember
    sys.argv = argv
    sys.path.insert(0, str(Path(argv[0]).parent))  # as `python recipe.py` would
    runpy.run_path(argv[0], run_name="__main__")
    out = Path(os.environ[PROBE_DIR])
    out.mkdir(parents=True, exist_ok=True)
    rank = int(os.environ.get("RANK", "0"))
    (out / f"rank{rank}.json").write_text(json.dumps([parameters_checksum(m) for m in wrapped]))


if __name__ == "__main__":
    _run_with_rank_probe(sys.argv[1:])


def assert_trainer_runs_match(
    two: Path, one: Path, rtol: float = 1e-4, weights: str = "model.safetensors"
) -> None:
    """A Trainer recipe's 2-process run against its 1-process run: ranks in sync, the same per-step losses and
    gradient norms, and the same final weights."""
    assert_ranks_in_sync(two)
    history = [read_json(d / "log_history.json") for d in (two, one)]
    assert_close_losses(losses(history[0]), losses(history[1]), rtol)
    assert_close_losses(losses(history[0], "grad_norm"), losses(history[1], "grad_norm"), rtol)
    assert max_weight_difference(two / weights, one / weights) < rtol
