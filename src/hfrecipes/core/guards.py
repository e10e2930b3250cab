"""Numerical-fault guard: a NaN or inf in the gradients (a non-finite loss always gives them) stops the run before
the optimizer applies them, with a message naming the step and the last complete checkpoint, which is left
untouched. `HFRECIPES_NONFINITE=skip` skips such steps instead (their gradients are dropped, the step counter
and learning-rate schedule move on); more than `HFRECIPES_NONFINITE_MAX_SKIPS` (default 10) in a row still stop
the run, since by then the weights themselves have diverged.

Gradients are checked after the data-parallel reduction, so every rank sees the same verdict. Engines that keep
gradients outside the parameters (DeepSpeed ZeRO) are not checked here: DeepSpeed skips overflowing steps itself.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable

import torch
from transformers import TrainerCallback

from hfrecipes.core.errors import NonFiniteError, RecipeInputError
from hfrecipes.core.training import last_complete_checkpoint

logger = logging.getLogger(__name__)

POLICIES = ("stop", "skip")


def nonfinite_policy() -> tuple[str, int]:
    """(policy, max skips in a row) from HFRECIPES_NONFINITE and HFRECIPES_NONFINITE_MAX_SKIPS, checked."""
    policy = os.environ.get("HFRECIPES_NONFINITE", "stop").strip().lower() or "stop"
    if policy not in POLICIES:
        raise RecipeInputError(f"HFRECIPES_NONFINITE={policy!r}: use one of {', '.join(POLICIES)}.")
    try:
        max_skips = int(os.environ.get("HFRECIPES_NONFINITE_MAX_SKIPS", "10"))
    except ValueError as err:
        raise RecipeInputError("HFRECIPES_NONFINITE_MAX_SKIPS must be an integer.") from err
    return policy, max_skips


class NonFiniteGuard:
    """`check(step, named_parameters)` before each optimizer step: True to apply it, False when it was skipped
    (gradients set to None, so the optimizer leaves those weights as they are); raises `NonFiniteError` to stop."""

    def __init__(self, last_checkpoint: Callable[[], str | None] = lambda: None):
        self.policy, self.max_skips = nonfinite_policy()
        self.last_checkpoint = last_checkpoint
        self.skipped_steps: list[int] = []
        self._in_a_row = 0

    def check(self, step: int, named_parameters: Iterable[tuple[str, torch.nn.Parameter]], loss=None) -> bool:
        """The verdict rests on the (reduced, so rank-independent) gradients; `loss` only goes into the message."""
        with_grads = [(n, p) for n, p in named_parameters if p.grad is not None]
        if not with_grads:
            return True
        # Sharded engines (FSDP2) hold DTensor gradients: each rank checks its shard, then the ranks agree.
        local = [
            p.grad.detach().to_local() if hasattr(p.grad, "to_local") else p.grad.detach()
            for _, p in with_grads
        ]
        bad = (~torch.isfinite(torch.stack(torch._foreach_norm(local)).float())).float()
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(bad, op=torch.distributed.ReduceOp.MAX)
        names = [n for (n, _), b in zip(with_grads, bad.tolist(), strict=True) if b]
        if not names:
            self._in_a_row = 0
            return True
        what = (
            f"non-finite gradients in {len(names)} of {len(with_grads)} parameter tensors (first: {names[0]})"
        )
        if loss is not None:
            what += f"; loss {float(torch.as_tensor(loss).float().mean()):.4g}"
        self._in_a_row += 1
        if self.policy == "skip" and self._in_a_row <= self.max_skips:
            for _, p in with_grads:
                p.grad = None
            self.skipped_steps.append(step)
            logger.warning("Step %d skipped: %s (HFRECIPES_NONFINITE=skip).", step, what)
            return False
        checkpoint = self.last_checkpoint()
        reason = (
            f"{self._in_a_row} steps in a row were non-finite (HFRECIPES_NONFINITE_MAX_SKIPS={self.max_skips})"
            if self.policy == "skip"
            else "the optimizer did not apply them"
        )
        raise NonFiniteError(
            f"Training stopped at step {step}: {what}; {reason}. The last complete checkpoint is "
            f"{checkpoint or 'none (no checkpoint was saved yet)'} and is unchanged: rerunning the same command "
            "resumes from it. Lower the learning rate, raise warmup, clip gradients (max_grad_norm) or check this "
            "step's batch; HFRECIPES_NONFINITE=skip skips such steps instead."
        )


class NonFiniteCallback(TrainerCallback):
    """The guard in a `transformers.Trainer`: runs after gradient reduction and clipping, before optimizer.step."""

    def __init__(self, trainer, guard: NonFiniteGuard | None = None):
        self.trainer = trainer
        self.guard = guard or NonFiniteGuard(lambda: last_complete_checkpoint(trainer.args.output_dir))

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        self.guard.check(state.global_step + 1, self.trainer.model.named_parameters())


def guard_nonfinite(trainer) -> NonFiniteCallback:
    """Attach the guard to a Trainer before `train()`."""
    callback = NonFiniteCallback(trainer)
    trainer.add_callback(callback)
    return callback
