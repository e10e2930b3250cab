"""Every shipped accelerate config parses with accelerate's own loader and names things that exist."""

import subprocess
import sys

import pytest
import torch
import transformers
import yaml
from accelerate.commands.config.config_args import load_config_from_file

from hfrecipes.text.models import CAUSAL_LM_PRESETS, preset_config

from .conftest import ROOT

CONFIGS = sorted((ROOT / "accelerate_configs").glob("*.yaml"))


def test_all_expected_configs_are_shipped():
    names = {p.name for p in CONFIGS}
    assert {
        "cpu.yaml",
        "cpu_ddp.yaml",
        "ddp.yaml",
        "fsdp.yaml",
        "zero2.yaml",
        "zero3.yaml",
        "multi_node.yaml",
    } <= names
    assert (ROOT / "recipes" / "launch.slurm").exists()


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_loads_with_accelerate(path):
    config = load_config_from_file(str(path))
    raw = yaml.safe_load(path.read_text())
    assert config.num_processes == raw["num_processes"] and config.mixed_precision == raw["mixed_precision"]
    if raw["distributed_type"] in ("MULTI_GPU", "FSDP", "DEEPSPEED") and path.name != "cpu_ddp.yaml":
        assert (
            raw["mixed_precision"] == "bf16"
        )  # the GPU configs train in bf16, as the full-scale recipes expect


def test_fsdp_wraps_the_decoder_layer_of_the_preset_models():
    raw = yaml.safe_load((ROOT / "accelerate_configs/fsdp.yaml").read_text())
    layer_class = raw["fsdp_config"]["fsdp_transformer_layer_cls_to_wrap"]
    for preset in CAUSAL_LM_PRESETS:  # every preset model has the layer class the policy wraps
        with torch.device("meta"):  # structure only: no memory for the 1B preset's weights
            model = transformers.AutoModelForCausalLM.from_config(preset_config(preset, 100))
        layers = {type(m).__name__ for m in model.modules()}
        assert layer_class in layers, (preset, layers)
    assert raw["fsdp_config"]["fsdp_version"] == 2


def test_cpu_ddp_config_starts_two_processes():
    raw = yaml.safe_load((ROOT / "accelerate_configs/cpu_ddp.yaml").read_text())
    assert raw["num_processes"] == 2 and raw["distributed_type"] == "MULTI_GPU"


def test_slurm_script_is_valid_bash():
    assert subprocess.run(["bash", "-n", ROOT / "recipes/launch.slurm"]).returncode == 0


def test_cli_lists_recipes_and_builtins():
    listing = subprocess.run(
        [sys.executable, "-m", "hfrecipes.cli.commands", "list"], capture_output=True, text=True, check=True
    ).stdout
    assert (
        "text/pretrain.py" in listing
        and "configs/pretrain_tiny.yaml" in listing
        and "text/train_tokenizer.py" in listing
        and "configs/prepare_tiny.yaml" in listing
        and "configs/tokenizer_tiny.yaml" in listing
    )
    builtins = subprocess.run(
        [sys.executable, "-m", "hfrecipes.cli.commands", "builtins"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "builtin:python-stdlib" in builtins
