"""Run a recipe as 2 data-parallel CPU processes (`accelerate_configs/cpu_ddp.yaml`, gloo) and as 1 process with
the doubled per-device batch, for the equivalence tests: same global batch, so the same result within tolerance."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from .conftest import ROOT, read_json


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(recipe: str, args: list, output_dir: Path, processes: int, timeout: int = 900) -> Path:
    """`accelerate launch` the recipe with 1 (cpu.yaml) or 2 (cpu_ddp.yaml) processes; fails with its stderr."""
    config = "cpu_ddp.yaml" if processes > 1 else "cpu.yaml"
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        ROOT / "accelerate_configs" / config,
    ]
    if processes > 1:  # parallel test workers must not share the rendezvous port
        command += ["--num_processes", str(processes), "--main_process_port", str(free_port())]
    command += [ROOT / "recipes" / recipe, *args, "--output_dir", output_dir]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    result = subprocess.run([str(c) for c in command], capture_output=True, text=True, cwd=ROOT, env=env,
                            timeout=timeout)  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    return output_dir


def run_pair(recipe: str, args: list, batch_flag: str, batch: int, tmp_path: Path) -> tuple[Path, Path]:
    """(2 processes x `batch`, 1 process x 2*`batch`) outputs of the same command."""
    two = launch(recipe, [*args, batch_flag, str(batch)], tmp_path / "two_processes", 2)
    one = launch(recipe, [*args, batch_flag, str(2 * batch)], tmp_path / "one_process", 1)
    return two, one


def assert_ranks_in_sync(output_dir: Path) -> None:
    distributed = read_json(output_dir / "lineage.json")["distributed"]
    assert distributed["world_size"] == 2 and distributed["ranks_in_sync"] is True, distributed


def max_weight_difference(a: Path, b: Path) -> float:
    """Largest absolute difference between two safetensors files with the same tensors."""
    left, right = load_file(a), load_file(b)
    assert left.keys() == right.keys()
    return max(float((left[k].float() - right[k].float()).abs().max()) for k in left)


def losses(history: list[dict], key: str = "loss") -> list[float]:
    return [h[key] for h in history if key in h]


def assert_close_losses(two: list[float], one: list[float], rtol: float) -> None:
    assert len(two) == len(one) and two, (two, one)
    torch.testing.assert_close(torch.tensor(two), torch.tensor(one), rtol=rtol, atol=1e-6)
