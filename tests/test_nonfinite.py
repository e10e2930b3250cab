"""Numerical faults: a NaN/inf gradient stops a run before the optimizer applies it, naming the step and the last
complete checkpoint (kept intact, and the same command then resumes from it); HFRECIPES_NONFINITE=skip skips
such steps instead. Faults are injected by poisoning the loss of one training step."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from safetensors.torch import load_file

from hfrecipes.core.errors import NonFiniteError, RecipeInputError
from hfrecipes.core.guards import NonFiniteGuard
from hfrecipes.core.training import CausalLMTrainer

from .conftest import TINY_PRETRAIN, load_recipe, run_recipe
from .test_diffusion import TINY_DIGITS


def linear_with_grads(value: float) -> torch.nn.Linear:
    layer = torch.nn.Linear(2, 2)
    layer(torch.ones(1, 2)).sum().backward()
    layer.bias.grad.fill_(value)
    return layer


def test_guard_stops_on_nan_or_inf_naming_the_step_and_checkpoint():
    guard = NonFiniteGuard(lambda: "out/checkpoint-4")
    assert guard.check(5, linear_with_grads(1.0).named_parameters()) is True
    for bad in (float("nan"), float("inf")):
        with pytest.raises(
            NonFiniteError, match=r"step 7: non-finite gradients in 1 of 2 .*first: bias.*checkpoint-4"
        ):
            guard.check(7, linear_with_grads(bad).named_parameters(), loss=torch.tensor(bad))


def test_guard_skip_policy_drops_the_gradients_and_gives_up_after_too_many(monkeypatch):
    monkeypatch.setenv("HFRECIPES_NONFINITE", "skip")
    monkeypatch.setenv("HFRECIPES_NONFINITE_MAX_SKIPS", "2")
    guard = NonFiniteGuard()
    layer = linear_with_grads(float("nan"))
    assert guard.check(3, layer.named_parameters()) is False
    assert layer.weight.grad is None and layer.bias.grad is None  # the optimizer leaves the weights alone
    assert guard.check(4, linear_with_grads(1.0).named_parameters()) is True  # a good step resets the count
    assert guard.check(5, linear_with_grads(float("nan")).named_parameters()) is False
    assert guard.check(6, linear_with_grads(float("nan")).named_parameters()) is False
    with pytest.raises(NonFiniteError, match="step 7.*3 steps in a row"):
        guard.check(7, linear_with_grads(float("nan")).named_parameters())
    assert guard.skipped_steps == [3, 5, 6]
    monkeypatch.setenv("HFRECIPES_NONFINITE", "ignore")
    with pytest.raises(RecipeInputError, match="stop, skip"):
        NonFiniteGuard()


def poison_step(monkeypatch, owner, name: str, bad_calls: set[int]) -> None:
    """Make the loss NaN on the given (1-based) training calls of `owner.name` (a method of a class, or a loss
    function of a module)."""
    original, calls = getattr(owner, name), {"n": 0}

    def poisoned(*args, **kwargs):
        out = original(*args, **kwargs)
        if torch.is_grad_enabled():
            calls["n"] += 1
            if calls["n"] in bad_calls:
                return (out[0] * float("nan"), *out[1:]) if isinstance(out, tuple) else out * float("nan")
        return out

    monkeypatch.setattr(owner, name, poisoned)


PRETRAIN_SHORT = [
    *TINY_PRETRAIN,
    *("--max_steps", "6", "--save_steps", "2", "--eval_steps", "6", "--logging_steps", "1"),
]


def test_pretrain_stops_at_the_poisoned_step_keeps_the_checkpoint_and_resumes(tmp_path, monkeypatch):
    out = tmp_path / "out"
    with monkeypatch.context() as patch:
        poison_step(patch, CausalLMTrainer, "compute_loss", {3})
        with pytest.raises(NonFiniteError, match=r"step 3: .*checkpoint-2 and is unchanged"):
            run_recipe("text/pretrain.py", *PRETRAIN_SHORT, "--output_dir", out)
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2"]
    assert not (out / "lineage.json").exists()  # no final output from a failed run
    weights = load_file(out / "checkpoint-2" / "model.safetensors")
    assert all(torch.isfinite(w).all() for w in weights.values())
    run_recipe("text/pretrain.py", *PRETRAIN_SHORT, "--output_dir", out)  # the same command, fault gone
    lineage = json.loads((out / "lineage.json").read_text())
    assert lineage["resumed_from"].endswith("checkpoint-2") and lineage["metrics"]["global_step"] == 6


def test_pretrain_skip_policy_skips_the_bad_step_and_finishes(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("HFRECIPES_NONFINITE", "skip")
    poison_step(monkeypatch, CausalLMTrainer, "compute_loss", {3})
    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING, logger="hfrecipes.core.guards"):
        run_recipe("text/pretrain.py", *PRETRAIN_SHORT, "--output_dir", out)
    assert "Step 3 skipped: non-finite gradients" in caplog.text
    weights = load_file(out / "model.safetensors")
    assert all(torch.isfinite(w).all() for w in weights.values())
    assert json.loads((out / "lineage.json").read_text())["metrics"]["global_step"] == 6


def test_diffusion_stops_at_the_poisoned_step_and_keeps_the_checkpoint(tmp_path, monkeypatch):
    out = tmp_path / "out"
    short = [*TINY_DIGITS, "--max_steps", "4", "--save_steps", "2", "--eval_before_training", "false"]
    # The loss lives beside the recipe (what `hfrecipes copy` brings along), looked up at every step.
    poison_step(
        monkeypatch, load_recipe("image/train_diffusion.py").diffusion_training, "denoising_loss", {3}
    )
    with pytest.raises(
        NonFiniteError, match=r"step 3: non-finite gradients .*unet\..*checkpoint-2 and is unchanged"
    ):
        run_recipe("image/train_diffusion.py", *short, "--output_dir", out)
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2"]
    assert (out / "checkpoint-2" / "training_state.json").is_file() and not (out / "lineage.json").exists()
