"""Security defaults (issue 11, part 5).

- `trust_remote_code` is off unless a config sets it, and then it is recorded in the lineage and the model card;
- only safetensors weights are written, and nothing is unpickled from a user-supplied path (`weights_only=True`
  wherever `torch.load` is reached, directly or through transformers / accelerate);
- a Hub token never appears in logs, `lineage.json`, model cards or anything `hfrecipes push` would upload (a
  tiny run with a planted token, grepped).
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import io
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from accelerate.utils import load as accelerate_load
from transformers import AutoModelForCausalLM, LlamaConfig
from transformers.trainer_pt_utils import safe_globals
from trl import DPOConfig, GRPOConfig, RewardConfig, RLOOConfig, SFTConfig

from hfrecipes.core.args import ModelArguments
from hfrecipes.core.errors import RecipeInputError
from hfrecipes.core.hub import build_lineage, offline_export, render_model_card
from hfrecipes.lifecycle import runner
from hfrecipes.text.models import get_causal_lm

from .conftest import ROOT, TINY_PRETRAIN

SOURCES = sorted(
    p
    for folder in (ROOT / "src" / "hfrecipes", ROOT / "recipes")
    for p in folder.rglob("*.py")
    if "__pycache__" not in p.parts
)
PLANTED = "hf_PLANTEDargToken0123456789abcdefABCDEF"
PLANTED_ENV = "hf_PLANTEDenvToken0123456789abcdefABCDEF"


@functools.cache
def syntax_tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def calls(name: str):
    """(path, line, ast.Call) for every call whose dotted name ends with `name`, e.g. "torch.load"."""
    for path in SOURCES:
        for node in ast.walk(syntax_tree(path)):
            if isinstance(node, ast.Call) and ast.unparse(node.func).endswith(name):
                yield path.relative_to(ROOT), node.lineno, node


def keyword(call: ast.Call, name: str):
    return next((k.value for k in call.keywords if k.arg == name), None)


def is_constant(node, value) -> bool:
    return isinstance(node, ast.Constant) and node.value is value


# --- trust_remote_code -----------------------------------------------------------------------------------------


def test_trust_remote_code_is_never_switched_on_in_the_code():
    problems = []
    for path in SOURCES:
        for node in ast.walk(syntax_tree(path)):
            where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', '?')}"
            if (
                isinstance(node, ast.keyword)
                and node.arg == "trust_remote_code"
                and is_constant(node.value, True)
            ):
                problems.append(f"{where}: trust_remote_code=True")
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                arguments = [*node.args.args, *node.args.kwonlyargs]
                defaults = [None] * (len(node.args.args) - len(node.args.defaults)) + node.args.defaults
                defaults += node.args.kw_defaults
                for argument, default in zip(arguments, defaults, strict=True):
                    if argument.arg == "trust_remote_code" and not is_constant(default, False):
                        problems.append(
                            f"{where}: parameter trust_remote_code defaults to {ast.unparse(default)}"
                        )
            if isinstance(node, ast.AnnAssign) and ast.unparse(node.target) == "trust_remote_code":
                default = keyword(node.value, "default") if isinstance(node.value, ast.Call) else node.value
                if not is_constant(default, False):
                    problems.append(f"{where}: field trust_remote_code defaults to {ast.unparse(node.value)}")
    assert not problems, problems


def test_no_shipped_config_turns_trust_remote_code_on():
    on = []
    for path in sorted((ROOT / "recipes").rglob("*.yaml")):
        text = path.read_text()
        if "trust_remote_code" in text and yaml.safe_load(text) and _any_true(yaml.safe_load(text)):
            on.append(str(path.relative_to(ROOT)))
    assert not on, on


def _any_true(value) -> bool:
    if isinstance(value, dict):
        return any((k == "trust_remote_code" and v is True) or _any_true(v) for k, v in value.items())
    return isinstance(value, list) and any(_any_true(v) for v in value)


def test_library_argument_classes_default_to_no_remote_code():
    for cls in (ModelArguments, SFTConfig, DPOConfig, RewardConfig, GRPOConfig, RLOOConfig):
        fields = {f.name: f for f in dataclasses.fields(cls)}
        assert fields["trust_remote_code"].default is False, cls.__name__


def _lineage(trust_remote_code: bool) -> dict:
    return build_lineage(
        recipe="text/sft",
        config={"model": ModelArguments(trust_remote_code=trust_remote_code)},
        inputs=[],
        data_report=None,
        metrics={"eval_loss": 1.0},
    )


def test_trust_remote_code_is_recorded_in_the_lineage():
    assert _lineage(True)["config"]["model"]["trust_remote_code"] is True
    assert _lineage(False)["config"]["model"]["trust_remote_code"] is False


def test_trust_remote_code_is_stated_on_the_model_card():
    card = str(render_model_card(_lineage(True), title="t", description="d", usage="u"))
    assert "trust_remote_code" in card


# --- nothing unpickled from user paths --------------------------------------------------------------------------


def test_every_torch_load_is_weights_only():
    unsafe = [
        f"{p}:{line}"
        for p, line, call in calls("torch.load")
        if not is_constant(keyword(call, "weights_only"), True)
    ]
    assert not unsafe, f"torch.load without weights_only=True: {unsafe}"


def test_no_pickle_or_unsafe_yaml_in_the_code():
    problems = []
    for path in SOURCES:
        for node in ast.walk(syntax_tree(path)):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            for name in names:
                if name.split(".")[0] in {
                    "pickle",
                    "cPickle",
                    "dill",
                    "cloudpickle",
                    "joblib",
                    "shelve",
                    "marshal",
                }:
                    problems.append(f"{path.relative_to(ROOT)}:{node.lineno}: imports {name}")
    for name in ("yaml.load", "yaml.load_all", "yaml.unsafe_load", "yaml.full_load", "read_pickle"):
        problems += [f"{p}:{line}: {name}" for p, line, _ in calls(name)]
    problems += [
        f"{p}:{line}: np.load(allow_pickle=True)"
        for p, line, call in calls("np.load")
        if not is_constant(keyword(call, "allow_pickle"), False) and keyword(call, "allow_pickle")
    ]
    assert not problems, problems


class _Payload:
    """A pickle that, when loaded without weights_only, writes a marker file (a stand-in for running code)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",)


def _plant_pickle(path: Path, marker: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"weight": torch.zeros(1), "trap": _Payload(marker)}, path)


def test_pickled_weights_in_a_model_directory_are_never_executed(tmp_path):
    model_dir, marker = tmp_path / "model", tmp_path / "pwned"
    model_dir.mkdir()
    LlamaConfig(
        vocab_size=16,
        hidden_size=8,
        intermediate_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
    ).save_pretrained(model_dir)
    _plant_pickle(model_dir / "pytorch_model.bin", marker)
    with pytest.raises(RecipeInputError):
        get_causal_lm(model_name_or_path=str(model_dir), preset=None, vocab_size=16)
    with pytest.raises(Exception):  # noqa: B017 - any refusal will do, as long as nothing ran
        AutoModelForCausalLM.from_pretrained(model_dir)  # what evaluate.py does (no use_safetensors)
    assert not marker.exists()


def test_accelerate_checkpoint_loading_refuses_pickled_code(tmp_path):
    """The custom diffusion loops resume with `accelerator.load_state`, which reads optimizer/scheduler/RNG files
    through `accelerate.utils.load` (weights_only=True by default)."""
    marker = tmp_path / "pwned"
    _plant_pickle(tmp_path / "checkpoint" / "optimizer.bin", marker)
    with pytest.raises(Exception, match="[Ww]eights only load failed|Unsupported global"):
        accelerate_load(tmp_path / "checkpoint" / "optimizer.bin", map_location="cpu")
    assert not marker.exists()


def test_the_ppo_rng_state_round_trips_with_weights_only(tmp_path):
    """PPO's RNG state dict loads with weights_only=True under
    transformers' numpy allowlist, and a planted payload in its place is refused."""
    rng = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": None,
    }
    torch.save(rng, tmp_path / "rng_state_0.pth")
    with safe_globals():
        loaded = torch.load(tmp_path / "rng_state_0.pth", weights_only=True)
    random.setstate(loaded["python"])
    np.random.set_state(loaded["numpy"])
    torch.set_rng_state(loaded["torch"])
    assert loaded["numpy"][0] == "MT19937" and np.array_equal(loaded["numpy"][1], rng["numpy"][1])
    marker = tmp_path / "pwned"
    _plant_pickle(tmp_path / "evil.pth", marker)
    with safe_globals(), pytest.raises(Exception, match="Weights only load failed"):
        torch.load(tmp_path / "evil.pth", weights_only=True)
    assert not marker.exists()


# --- a tiny run with planted tokens ----------------------------------------------------------------------------


def _tiny_args() -> list[str]:
    args = [str(a) for a in TINY_PRETRAIN]
    for key, value in {
        "--max_steps": "2",
        "--eval_steps": "2",
        "--save_steps": "2",
        "--max_documents": "40",
        "--logging_steps": "1",
    }.items():
        args[args.index(key) + 1] = value
    return args


@pytest.fixture(scope="module")
def planted_run(tmp_path_factory):
    """pretrain.py as a user launches it (own process, run_main), with a token both in the environment and in
    `--hub_token`, verbose logging, and a push that is refused because the Hub is offline."""
    work = tmp_path_factory.mktemp("planted")
    out = work / "out"
    env = {
        **os.environ,
        "HF_TOKEN": PLANTED_ENV,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_VERBOSITY": "info",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(ROOT / "src"),
    }
    command = [
        *(sys.executable, str(ROOT / "recipes/text/pretrain.py")),
        *_tiny_args(),
        *("--hub_token", PLANTED, "--push_to_hub", "true"),
        *("--hub_model_id", "someone/tiny", "--log_level", "info", "--output_dir", str(out)),
    ]
    result = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, timeout=600)
    logs = result.stdout + result.stderr
    assert result.returncode == 2 and "HF_HUB_OFFLINE=1 is set" in logs, logs[-3000:]
    assert (out / "lineage.json").is_file(), logs[-3000:]
    return out, logs


def test_planted_tokens_are_not_in_logs_lineage_or_card(planted_run):
    out, logs = planted_run
    assert len(logs) > 1000  # the run did log (info level), so the check below means something
    for text, where in [(logs, "stdout/stderr")] + [
        ((out / name).read_text(), name)
        for name in ("lineage.json", "README.md", "metrics.json", "log_history.json", "data_report.json")
    ]:
        assert PLANTED not in text and PLANTED_ENV not in text, f"token in {where}"
    lineage = json.loads((out / "lineage.json").read_text())
    assert lineage["config"]["training"]["hub_token"] == "<HUB_TOKEN>"  # it went through, masked


def test_planted_tokens_are_in_no_output_file_nor_in_what_push_uploads(planted_run, tmp_path):
    out, _ = planted_run
    exported = offline_export(out, tmp_path / "export")
    files = [p for p in out.rglob("*") if p.is_file()] + exported
    leaking = [
        str(p) for p in files if PLANTED.encode() in p.read_bytes() or PLANTED_ENV.encode() in p.read_bytes()
    ]
    assert not leaking, leaking


def test_weights_are_written_as_safetensors_only(planted_run):
    out, _ = planted_run

    weights = [p for p in out.rglob("*") if p.suffix in (".safetensors", ".bin", ".pt", ".pth", ".ckpt")]
    model_files = [p for p in weights if p.name.startswith(("model", "pytorch_model", "adapter_model"))]
    assert model_files and all(p.suffix == ".safetensors" for p in model_files), model_files
    assert any(p.parent.name.startswith("checkpoint-") for p in model_files)  # checkpoints too
    AutoModelForCausalLM.from_pretrained(out, use_safetensors=True)


def test_the_published_stage_holds_no_pickle_files(planted_run):
    out, _ = planted_run
    published = [
        p
        for p in out.rglob("*")
        if p.is_file() and not any(part.startswith(("checkpoint-", ".")) for part in p.relative_to(out).parts)
    ]
    pickles = [p.name for p in published if p.suffix in (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")]
    assert not pickles, pickles


def test_lifecycle_logs_do_not_show_a_token_given_as_an_override(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "check_stage_configs", lambda lifecycle, stages: None)
    lifecycle = tmp_path / "lifecycle.yaml"
    lifecycle.write_text(
        yaml.safe_dump(
            {
                "run_dir": str(tmp_path / "run"),
                "stages": [
                    {
                        "name": "pretrain",
                        "recipe": "text/pretrain.py",
                        "config": "recipes/text/configs/pretrain_tiny.yaml",
                        "overrides": {"hub_token": PLANTED, "max_steps": 2},
                    }
                ],
            }
        )
    )
    printed = io.StringIO()
    try:
        runner.run_lifecycle_file(lifecycle, dry_run=True, out=printed)
    except RecipeInputError as err:  # refusing the override is a fix too, if the message hides the value
        assert PLANTED not in str(err)
        return
    assert PLANTED not in printed.getvalue()
