"""The installable package: the wheel carries the recipes, their configs, the lifecycle files, launch.slurm and the
accelerate configs, and a non-editable install finds them (list / copy / `run <name> --dry_run` from an empty
directory, `env`); a checkout finds its own recipes/ tree."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from hfrecipes.cli.commands import extras_status
from hfrecipes.cli.commands import main as cli
from hfrecipes.core import catalogue
from hfrecipes.core.errors import RecipeInputError
from hfrecipes.lifecycle.runner import load_lifecycle, resolve_lifecycle

from .conftest import ROOT

EXTRAS = ("audio", "video", "scale", "retrieval", "quantization", "tracking", "gpu")


def shipped_files() -> set[str]:
    """What must be in the wheel: every recipe script and config, the lifecycle files, launch.slurm and the
    accelerate configs (the checkout's paths)."""
    files = {
        *ROOT.glob("recipes/**/*.py"),
        *ROOT.glob("recipes/*/configs/*.yaml"),
        *ROOT.glob("recipes/lifecycle/*.yaml"),
        ROOT / "recipes/launch.slurm",
        *ROOT.glob("accelerate_configs/*.yaml"),
    }
    return {p.relative_to(ROOT).as_posix() for p in files if "__pycache__" not in p.parts}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel pip builds from this checkout (hatchling, no build isolation: about a second)."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (path,) = out.glob("hfrecipes-*.whl")
    return path


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> dict[str, str]:
    """The wheel unpacked as a site directory in front of sys.path: `import hfrecipes` (and its metadata) is the
    wheel's, not the editable checkout's, as after `pip install hfrecipes-*.whl`; the dependencies are this
    environment's. Returns the environment for subprocesses."""
    site = tmp_path_factory.mktemp("site")
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    return {**os.environ, "PYTHONPATH": str(site)}


def hfrecipes(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "hfrecipes.cli.commands", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
    )


def test_the_wheel_ships_recipes_configs_lifecycle_files_and_accelerate_configs(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = shipped_files()
    assert {
        "recipes/text/sft.py",
        "recipes/lifecycle/text_tiny.yaml",
        "accelerate_configs/cpu.yaml",
    } <= expected
    missing = sorted(path for path in expected if f"hfrecipes/{path}" not in names)
    assert not missing, f"not in the wheel: {missing}"
    assert {"hfrecipes/__init__.py", "hfrecipes/cli/commands.py", "hfrecipes/core/catalogue.py"} <= names
    assert not [
        n for n in names if "__pycache__" in n or n.endswith(".pyc") or n.startswith(("runs/", "tests/"))
    ]
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "hfrecipes = hfrecipes.cli.commands:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_the_installed_wheel_lists_copies_and_dry_runs_a_shipped_lifecycle_from_an_empty_directory(
    installed, tmp_path
):
    package = Path(installed["PYTHONPATH"]).resolve() / "hfrecipes"
    listing = hfrecipes(installed, tmp_path, "list")
    assert listing.returncode == 0, listing.stderr
    assert "text/sft.py" in listing.stdout and "configs/sft_tiny.yaml" in listing.stdout

    copied = hfrecipes(installed, tmp_path, "copy", "text/sft.py", "mine")
    assert copied.returncode == 0, copied.stderr
    assert (tmp_path / "mine/sft.py").read_bytes() == (ROOT / "recipes/text/sft.py").read_bytes()
    assert (tmp_path / "mine/configs/sft_tiny.yaml").is_file()

    empty = tmp_path / "empty"
    empty.mkdir()
    dry = hfrecipes(installed, empty, "run", "text_tiny", "--dry_run")
    assert dry.returncode == 0, dry.stderr
    commands = [line for line in dry.stdout.splitlines() if "would run:" in line]
    assert len(commands) == 8
    assert f"{package}/accelerate_configs/cpu.yaml {package}/recipes/text/prepare_data.py" in commands[0]
    assert f"--config {package}/recipes/text/configs/prepare_tiny.yaml" in commands[0]
    assert "--output_dir runs/text_tiny/data" in commands[0]  # relative: under the current directory
    assert str(ROOT / "recipes") not in dry.stdout and str(ROOT / "accelerate_configs") not in dry.stdout
    assert list(empty.iterdir()) == []  # a dry run writes nothing

    unknown = hfrecipes(installed, empty, "run", "text_tinny")
    assert unknown.returncode == 2
    assert unknown.stderr.strip().splitlines() == [
        "hfrecipes: error: 'text_tinny' is neither a pipeline file nor a shipped pipeline; shipped pipelines: "
        "alignment_tiny, text_full, text_tiny."
    ]

    env = hfrecipes(installed, empty, "env")
    assert env.returncode == 0, env.stderr
    assert f"- Recipes: {package}/recipes (shipped in the installed package)" in env.stdout
    for extra in EXTRAS:  # the wheel's own metadata declares every extra
        assert f"- Extra {extra}: yes (" in env.stdout or f"- Extra {extra}: no (missing: " in env.stdout


def test_a_checkout_uses_its_own_recipes_and_lifecycles_resolve_by_name_from_any_directory(
    tmp_path, monkeypatch
):
    assert catalogue.recipes_dir() == ROOT / "recipes"
    assert catalogue.accelerate_configs_dir() == ROOT / "accelerate_configs"
    monkeypatch.chdir(tmp_path)
    assert resolve_lifecycle("text_tiny") == ROOT / "recipes/lifecycle/text_tiny.yaml"
    assert resolve_lifecycle("text_tiny.yaml") == resolve_lifecycle("recipes/lifecycle/text_tiny.yaml")
    lifecycle = load_lifecycle("text_tiny")
    assert lifecycle.run_dir == Path("runs/text_tiny")
    pretrain = lifecycle.stages[lifecycle.stage_names().index("pretrain")]
    assert pretrain.config == ROOT / "recipes/text/configs/pretrain_tiny.yaml"
    assert pretrain.accelerate_config == ROOT / "accelerate_configs/cpu.yaml"
    # A file of the same relative path in the current directory wins over the shipped one.
    local = tmp_path / "recipes/text/configs/pretrain_tiny.yaml"
    local.parent.mkdir(parents=True)
    local.write_text((ROOT / "recipes/text/configs/pretrain_tiny.yaml").read_text())
    lifecycle = load_lifecycle("text_tiny")
    assert lifecycle.stages[lifecycle.stage_names().index("pretrain")].config == local
    with pytest.raises(RecipeInputError, match="shipped pipelines: alignment_tiny, text_full, text_tiny"):
        resolve_lifecycle("nope")
    assert cli(["run", "recipes/lifecycle/missing.yaml"]) == 2


def test_env_reports_versions_devices_extras_and_where_recipes_are(capsys):
    assert cli(["env"]) == 0
    out = capsys.readouterr().out
    versions = ["Python", "torch", "transformers", "trl", "datasets", "accelerate", "peft", "diffusers"]
    for key in [
        *(f"{name} version" for name in [*versions, "huggingface_hub"]),
        "CPU count",
        "CUDA available",
    ]:
        assert f"- {key}: " in out
    assert f"- Recipes: {ROOT / 'recipes'} (the checkout's)" in out
    assert "- Lifecycle pipelines: alignment_tiny, text_full, text_tiny" in out
    assert all(f"- Extra {extra}: " in out for extra in EXTRAS)


def test_extras_status_names_what_is_missing(monkeypatch):
    requires = [
        *(
            'numpy>=1; extra == "audio"',
            'surely-not-installed-xyz; extra == "audio"',
            'pyyaml; extra == "video"',
        ),
        *('hfrecipes[audio]; extra == "dev"', "torch>=2.4"),
    ]
    monkeypatch.setattr(importlib.metadata, "requires", lambda name: requires)
    status = extras_status()
    assert status["audio"] == "no (missing: surely-not-installed-xyz; pip install 'hfrecipes[audio]')"
    assert status["video"].startswith("yes (pyyaml ")
    assert status["gpu"].startswith("unknown")
