"""bench/gpu_check.sh runs end to end on CPU (`--device cpu`, tiny sizes, 2 steps a stage), so the GPU check is
known to work before a GPU is lent: SFT -> DPO -> GRPO from a family fixture, with throughput, MFU and peak
memory in the table."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from .conftest import ROOT


def gpu_check(tmp_path, families: str, preset: bool) -> subprocess.CompletedProcess:
    env = {**os.environ, "FAMILIES": families, "PRESET": "1" if preset else "0", "PYTHON": sys.executable}
    return subprocess.run(
        ["bash", str(ROOT / "bench" / "gpu_check.sh"), "--device", "cpu", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )


def check_runs(tmp_path, result, names: list[str]) -> None:
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "gpu_check runs_failed=0"
    for name in names:
        efficiency = json.loads((tmp_path / name / "lineage.json").read_text())["efficiency"]
        assert efficiency["peak_memory_mb"] > 0 and efficiency["peak_memory_method"] == "max RSS"
        assert efficiency["tokens_per_second"] > 0
        assert f"| {name} |" in result.stdout


def test_gpu_check_runs_a_family_on_cpu(tmp_path):
    result = gpu_check(tmp_path, "qwen3", preset=False)
    check_runs(tmp_path, result, ["qwen3_sft", "qwen3_dpo", "qwen3_grpo"])


@pytest.mark.slow
def test_gpu_check_runs_every_family_and_the_preset_on_cpu(tmp_path):
    families = "llama3 qwen2.5 qwen3 gemma3 phi3 mistral"
    result = gpu_check(tmp_path, families, preset=True)
    stages = [
        f"{prefix}_{stage}" for prefix in ["preset", *families.split()] for stage in ("sft", "dpo", "grpo")
    ]
    check_runs(tmp_path, result, ["pretrain_cpu", *stages])
