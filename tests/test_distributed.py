"""Data-parallel equivalence: each training recipe under `accelerate_configs/cpu_ddp.yaml` (2 processes, gloo)
against 1 process with the doubled per-device batch. The global batches are the same rows, so deterministic
recipes must give the same per-step losses and final weights up to float reduction order."""

from __future__ import annotations

import pytest

from .conftest import ROOT, TINY_PRETRAIN, read_json
from .distributed import assert_close_losses, assert_ranks_in_sync, losses, max_weight_difference, run_pair
from .test_diffusion import TINY_DIGITS


def test_pretrain_two_processes_match_one_with_the_doubled_batch(tmp_path):
    args = [
        *TINY_PRETRAIN,
        "--max_steps",
        "8",
        "--eval_steps",
        "8",
        "--save_steps",
        "8",
        "--logging_steps",
        "1",
    ]
    two, one = run_pair("text/pretrain.py", args, "--per_device_train_batch_size", 8, tmp_path)
    assert_ranks_in_sync(two)
    assert read_json(two / "metrics.json")["tokens_seen"] == read_json(one / "metrics.json")["tokens_seen"]
    assert_close_losses(
        losses(read_json(two / "log_history.json")), losses(read_json(one / "log_history.json")), 1e-4
    )
    assert max_weight_difference(two / "model.safetensors", one / "model.safetensors") < 1e-4
    eval_two, eval_one = (
        read_json(two / "metrics.json")["eval_loss"],
        read_json(one / "metrics.json")["eval_loss"],
    )
    assert eval_two == pytest.approx(eval_one, rel=1e-4)


def test_image_diffusion_two_processes_match_one_with_the_doubled_batch(tmp_path):
    # The noise generator is shared by the ranks, each slicing the global batch's draws (ShardedGenerator).
    args = [*TINY_DIGITS, "--max_steps", "6", "--save_steps", "0", "--logging_steps", "1",
            "--eval_before_training", "false", "--use_ema", "false"]  # fmt: skip
    two, one = run_pair("image/train_diffusion.py", args, "--per_device_train_batch_size", 8, tmp_path)
    assert_ranks_in_sync(two)
    history = [read_json(d / "log_history.json")["train"] for d in (two, one)]
    assert_close_losses(losses(history[0]), losses(history[1]), 1e-4)
    weights = "unet/diffusion_pytorch_model.safetensors"
    assert max_weight_difference(two / weights, one / weights) < 1e-4


# ------------------------------------------------------------------------------------------ text post-training

CONFIGS = ROOT / "recipes/text/configs"
# A handful of steps, one evaluation at the end, no checkpoint before the end, tiny before/after generation.
FEW_STEPS = ["--max_steps", "4", "--eval_steps", "4", "--save_steps", "4", "--logging_steps", "1",
             "--warmup_steps", "0"]  # fmt: skip


@pytest.mark.slow
def test_sft_two_processes_match_one_with_the_doubled_batch(tmp_path):
    # From the tiny preset with a tokenizer trained in the run: padded, assistant-only batches of different
    # lengths, so the loss is normalised by the tokens of the global batch (num_items_in_batch across ranks).
    args = ["--config", CONFIGS / "sft_tiny.yaml", "--dataset_name", "builtin:arithmetic?n=160&digits=1&seed=0",
            "--eval_fraction", "0.2", "--forgetting_text", "", "--eval_max_samples", "4",
            "--eval_max_new_tokens", "4", "--per_device_eval_batch_size", "16", *FEW_STEPS]  # fmt: skip
    two, one = run_pair("text/sft.py", args, "--per_device_train_batch_size", 8, tmp_path)
    history = [read_json(d / "log_history.json") for d in (two, one)]
    assert_close_losses(losses(history[0]), losses(history[1]), 1e-4)
    assert max_weight_difference(two / "model.safetensors", one / "model.safetensors") < 1e-4
    metrics = [read_json(d / "metrics.json") for d in (two, one)]
    assert metrics[0]["eval_loss"] == pytest.approx(metrics[1]["eval_loss"], rel=1e-4)
