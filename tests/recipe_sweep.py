"""Every recipe, run as a user would from an empty directory with its shipped tiny config (issue 19).

Before its inputs exist, a recipe either trains or stops with one line that names the missing stage directory and
the command that makes it. With its inputs in place and Hub tokens planted (`--hub_token` and `HF_TOKEN`), it
trains at its smallest size and publishes with `push_to_hub` and `hub_private_repo` to a recording `HfApi`: the
repository is created private, the upload is one commit without pickles, and no byte under the directory (outputs,
checkpoints, logs) nor anything printed holds a token.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from hfrecipes.core import hub
from hfrecipes.core.config import run_main

from .conftest import ROOT, SHAKESPEARE, load_recipe
from .test_publishing import RecordingApi

PLANTED = "hf_PLANTEDsweepArg0123456789abcdefABCDEF"
PLANTED_ENV = "hf_PLANTEDsweepEnv0123456789abcdefABCDEF"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
TRAINER_SMALL = ["--max_steps", "2", "--save_steps", "1", "--logging_steps", "1", "--warmup_steps", "0"]
CHAT_DATA = "builtin:chat-mix?arithmetic_rows=60&safety_rows=20&digits=1&seed=7&ops=add,sub"
PREFERENCES = "builtin:preferences?n=120&safety_fraction=0.3&digits=1&seed=0&ops=add,sub"


@dataclass
class Case:
    recipe: str
    config: str
    # stage directories the config reads -> the fixture that stands in for them
    needs: dict[str, str] = field(default_factory=dict)
    small: list[str] = field(
        default_factory=list
    )  # the smallest size that still trains and saves a checkpoint
    always: list[str] = field(default_factory=list)  # what a user adds to the shipped config in any case
    publishes: bool = (
        True  # takes push_to_hub / hub_private_repo / hub_token (else the token is only in HF_TOKEN)
    )


CASES = [
    Case("text/prepare_data.py", "text/configs/prepare_tiny.yaml"),
    Case("text/train_tokenizer.py", "text/configs/tokenizer_tiny.yaml", small=["--max_documents", "200"]),
    Case(
        "text/pretrain.py",
        "text/configs/pretrain_tiny.yaml",
        small=[
            *TRAINER_SMALL,
            *("--max_documents", "60", "--vocab_size", "512", "--block_size", "64"),
            *("--eval_steps", "2", "--sample_max_new_tokens", "4"),
        ],
    ),
    Case(
        "text/sft.py",
        "text/configs/sft_tiny.yaml",
        small=[
            *TRAINER_SMALL,
            *("--dataset_name", "builtin:arithmetic?n=200&digits=1&seed=0"),
            *("--eval_steps", "2", "--eval_max_samples", "4"),
            *("--forgetting_text", "builtin:python-stdlib?domains=documentation&max_files=2"),
        ],
    ),
    Case(
        "text/reward.py",
        "text/configs/reward_tiny.yaml",
        needs={"runs/sft_chat_tiny": "policy"},
        small=[*TRAINER_SMALL, "--dataset_name", PREFERENCES, "--eval_steps", "2"],
    ),
    Case(
        "text/dpo.py",
        "text/configs/dpo_tiny.yaml",
        needs={"runs/sft_chat_tiny": "policy", "runs/reward_tiny": "reward_model"},
        small=[*TRAINER_SMALL, "--dataset_name", PREFERENCES, "--eval_steps", "2", "--eval_max_samples", "4"],
    ),
    Case(
        "text/grpo.py",
        "text/configs/grpo_tiny.yaml",
        needs={"runs/sft_chat_tiny": "policy"},
        small=[
            *TRAINER_SMALL,
            *("--dataset_name", CHAT_DATA, "--per_device_train_batch_size", "8"),
            *("--num_generations", "4", "--eval_max_samples", "4"),
        ],
    ),
    Case(
        "text/ppo.py",
        "text/configs/ppo_tiny.yaml",
        needs={"runs/sft_chat_tiny": "policy", "runs/reward_tiny": "reward_model"},
        small=[
            *("--dataset_name", CHAT_DATA, "--num_updates", "2", "--batch_size", "8"),
            *("--mini_batch_size", "4", "--save_steps", "1", "--eval_max_samples", "4"),
        ],
    ),
    Case(
        "text/distill.py",
        "text/configs/distill_tiny.yaml",
        needs={"runs/pretrain_shakespeare": "pretrained"},
        small=[
            *TRAINER_SMALL,
            *("--dataset_name", f"builtin:tinyshakespeare?path={SHAKESPEARE}"),
            *("--max_train_documents", "20", "--eval_max_documents", "20", "--compare_with_scratch", "false"),
        ],
    ),
    Case("text/rag.py", "text/configs/rag_tiny.yaml", small=[*TRAINER_SMALL, "--eval_max_samples", "4"]),
    Case(
        "text/train_embedder.py",
        "text/configs/embedder_tiny.yaml",
        small=["--max_steps", "1", "--save_steps", "1", "--logging_steps", "1", "--warmup_steps", "0"],
    ),
    Case(
        "text/evaluate.py",
        "text/configs/evaluate_tiny.yaml",
        needs={"runs/sft_chat_tiny": "policy"},
        small=["--max_samples", "4", "--heldout_text_rows", "4"],
        always=["--models", "runs/sft_chat_tiny"],
        publishes=False,  # an evaluation has no model to push
    ),
    Case(
        "text/quantize.py",
        "text/configs/quantize_tiny.yaml",
        needs={"runs/pretrain_shakespeare": "pretrained"},
        small=[
            *("--dataset_name", f"builtin:tinyshakespeare?path={SHAKESPEARE}", "--eval_max_documents", "20"),
            *("--speed_prompts", "1", "--speed_repeats", "1", "--speed_max_new_tokens", "4"),
        ],
    ),
    Case(
        "text/forgetting_study.py",
        "text/configs/sft_forgetting_study.yaml",
        needs={"runs/pretrain_tiny": "pretrained"},
        small=[
            *TRAINER_SMALL,
            *("--eval_steps", "2", "--eval_max_samples", "4"),
            *("--dataset_name", "builtin:arithmetic?n=200&digits=1&seed=0"),
            *("--hub_token", PLANTED),  # passed on to each SFT run it starts
        ],
        publishes=False,  # a study of three SFT runs: a table, not a model
    ),
    Case(
        "multimodal/train_clip.py",
        "multimodal/configs/clip_shapes_tiny.yaml",
        small=[
            *TRAINER_SMALL,
            *("--dataset_name", "builtin:shapes?n=200&size=32", "--eval_steps", "2"),
            *("--per_device_train_batch_size", "16", "--per_device_eval_batch_size", "16"),
        ],
    ),
    Case(
        "audio/train_tts.py",
        "audio/configs/tts_espeak_tiny.yaml",
        small=[
            *TRAINER_SMALL,
            *("--dataset_name", "builtin:espeak?n=24&speakers=2&style=phrases&seed=0"),
            *("--eval_fraction", "0.2", "--eval_max_samples", "2", "--num_eval_samples", "1"),
            *("--intelligibility_steps", "4", "--per_device_train_batch_size", "4"),
            *("--eval_steps", "2", "--eval_maxlenratio", "2"),
        ],
    ),
    Case(
        "image/train_diffusion.py",
        "image/configs/diffusion_digits_tiny.yaml",
        small=[
            *TRAINER_SMALL,
            *("--dataset_name", "builtin:digits?size=16&n=100", "--eval_steps", "0"),
            *("--per_device_train_batch_size", "8", "--num_inference_steps", "2"),
            *("--eval_samples_per_prompt", "1", "--num_eval_prompts", "2"),
        ],
    ),
    Case(
        "video/train_video_diffusion.py",
        "video/configs/video_shapes_tiny.yaml",
        small=[
            *TRAINER_SMALL,
            "--dataset_name",
            "builtin:moving-shapes?n=24&size=16&frames=6&colors=red,green&shapes=square&background=black",
            *("--eval_steps", "0", "--per_device_train_batch_size", "4"),
            *("--num_eval_prompts", "2", "--eval_samples_per_prompt", "1"),
            *("--num_inference_steps", "2", "--eval_before_training", "false"),
        ],
    ),
]
CASES_BY_RECIPE = {case.recipe: case for case in CASES}


def run_in(workdir: Path, case: Case, *extra: str, monkeypatch: pytest.MonkeyPatch) -> int:
    """Run the recipe in-process from `workdir` as `python recipes/<recipe> --config <shipped config> ...` would,
    through `run_main` (bad input: one line, exit 2); returns the exit status."""
    monkeypatch.chdir(workdir)
    # `datasets.map(num_proc=...)` rebinds os.environ to a copy: put the original object back afterwards, so the
    # variables set here are undone where they were set.
    monkeypatch.setattr(os, "environ", os.environ)
    module = load_recipe(case.recipe)
    argv = [
        str(ROOT / "recipes" / case.recipe),
        "--config",
        str(ROOT / "recipes" / case.config),
        *case.always,
    ]
    monkeypatch.setattr(sys, "argv", [*argv, *map(str, extra)])
    try:
        run_main(module.main)
    except SystemExit as stop:
        return int(stop.code or 0)
    return 0


def check_stops_before_its_inputs_exist(case: Case, tmp_path: Path, monkeypatch, capsys) -> None:
    code = run_in(tmp_path, case, monkeypatch=monkeypatch)
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("hfrecipes: error:")]
    assert code == 2 and len(errors) == 1 and "Traceback" not in err, err[-2000:]
    missing = next(iter(case.needs))
    assert f"{missing} does not exist" in errors[0], errors[0]
    assert "Run `accelerate launch recipes/" in errors[0] and "--config recipes/" in errors[0], errors[0]
    assert "huggingface.co" not in err and "Repo id" not in err  # never treated as a Hub id
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def check_trains_and_keeps_tokens_out(
    case: Case, tmp_path: Path, monkeypatch, capsys, stand_ins: dict[str, Path]
) -> None:
    for directory, fixture in case.needs.items():
        shutil.copytree(
            stand_ins[fixture], tmp_path / directory, ignore=shutil.ignore_patterns("checkpoint-*")
        )
    RecordingApi.calls = []
    monkeypatch.setattr(hub, "HfApi", RecordingApi)
    monkeypatch.setenv("HF_TOKEN", PLANTED_ENV)
    publish = ["--push_to_hub", "true", "--hub_private_repo", "true", "--hub_token", PLANTED]
    if case.publishes:  # the push goes to the recorder; everything else stays offline (HF_HUB_OFFLINE=1)
        monkeypatch.setattr(hub, "hub_offline", lambda: False)
    output_dir = tmp_path / "runs" / "swept"
    extra = [*case.small, "--output_dir", output_dir, *(publish if case.publishes else [])]
    code = run_in(tmp_path, case, *extra, monkeypatch=monkeypatch)
    printed = capsys.readouterr()
    assert code == 0, printed.err[-3000:]
    assert (output_dir / "lineage.json").is_file()
    creates = [c for c in RecordingApi.calls if c[0] == "create_repo"]
    commits = [c for c in RecordingApi.calls if c[0] in ("create_commit", "upload_folder")]
    if case.publishes:  # one private repository, one commit, the token of --hub_token, no pickle
        assert [(c[2], c[4]) for c in creates] == [(True, PLANTED)], creates
        assert [c[0] for c in commits] == ["create_commit"], commits
        files = commits[0][2]
        assert "README.md" in files and not [f for f in files if f.endswith(PICKLE_SUFFIXES)], files
    else:
        assert not creates and not commits
    leaks = [
        str(p.relative_to(tmp_path))
        for p in tmp_path.rglob("*")
        if p.is_file() and (PLANTED.encode() in (data := p.read_bytes()) or PLANTED_ENV.encode() in data)
    ]
    assert not leaks, leaks
    assert PLANTED not in printed.out + printed.err and PLANTED_ENV not in printed.out + printed.err
