"""What every Trainer-based recipe shares: device/distributed set-up, resume, clocks, sample generation."""

from __future__ import annotations

import json
import logging
import os
import re
import time
from pathlib import Path
from typing import Any

import torch
from transformers import Trainer, TrainingArguments
from transformers.integrations.integration_utils import (
    INTEGRATION_TO_CALLBACK,
    get_available_reporting_integrations,
)

from hfrecipes.core.errors import RecipeInputError

logger = logging.getLogger(__name__)

_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def cpu_only_defaults() -> dict[str, Any]:
    """Defaults to set on the parser before parsing (a config or the command line still overrides them).

    On a machine without CUDA: `use_cpu=True` is what makes a multi-process launch create a gloo process group
    (without it two processes train unsynchronised copies); and fp32 without gradient checkpointing, because TRL's
    configs default to bf16 and checkpointing, which on CPU mean autocast and recomputed activations: about twice
    the time per step for the tiny presets, and noisier small models. The GPU configs ask for bf16 explicitly."""
    if torch.cuda.is_available():
        return {"use_cpu": False, "report_to": "none"}
    return {"use_cpu": True, "report_to": "none", "bf16": False, "gradient_checkpointing": False}


def check_distributed_state(args: TrainingArguments) -> None:
    """Refuse a multi-process launch that did not produce a real distributed state."""
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched > 1 and args.world_size != launched:
        raise RecipeInputError(
            f"Launched with WORLD_SIZE={launched} but the trainer sees world_size={args.world_size}: the processes would "
            "train unsynchronised copies. On CPU keep `use_cpu: true` (the default without CUDA) and use "
            "accelerate_configs/cpu_ddp.yaml; on GPUs check the accelerate config."
        )


# The `report_to` backends the `tracking` extra installs; the others are named by their own package.
TRACKING_EXTRA = ("tensorboard", "trackio")


def check_report_to(report_to: str | list[str] | None) -> None:
    """Refuse, before any work, a `report_to` backend that is not installed (Trainer would fail at start-up
    with a traceback, or after loading the data), naming the extra or package that brings it. Availability is
    transformers' own (`get_available_reporting_integrations`)."""
    names = [report_to] if isinstance(report_to, str) else list(report_to or [])
    wanted = [name for name in names if name in INTEGRATION_TO_CALLBACK]
    if not wanted:
        return
    available = get_available_reporting_integrations()
    for name in wanted:
        if name not in available:
            fix = "pip install 'hfrecipes[tracking]'" if name in TRACKING_EXTRA else f"pip install {name}"
            raise RecipeInputError(f"report_to: {name} is not installed: {fix}, or set report_to: none.")


def last_complete_checkpoint(output_dir: str | Path) -> str | None:
    """The newest checkpoint whose save finished. Trainer writes `trainer_state.json` last, so a checkpoint
    killed mid-save has none and is skipped (and renamed aside so it is never mistaken for a good one)."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return None
    candidates = sorted(
        (
            (int(m.group(1)), p)
            for p in output_dir.iterdir()
            if p.is_dir() and (m := _CHECKPOINT.match(p.name))
        ),
        reverse=True,
    )
    for step, path in candidates:
        state = path / "trainer_state.json"
        try:
            complete = json.loads(state.read_text()).get("global_step") == step
        except (OSError, ValueError):
            complete = False
        if complete:
            return str(path)
        logger.warning("Ignoring incomplete checkpoint %s (no valid trainer_state.json)", path)
    return None


def resume_checkpoint(args: TrainingArguments) -> str | None:
    """Explicit `resume_from_checkpoint` wins; otherwise resume from the last complete checkpoint, if any."""
    if args.resume_from_checkpoint:
        if not Path(args.resume_from_checkpoint).is_dir():
            raise RecipeInputError(
                f"resume_from_checkpoint={args.resume_from_checkpoint!r} is not a directory."
            )
        return args.resume_from_checkpoint
    checkpoint = last_complete_checkpoint(args.output_dir)
    if checkpoint:
        logger.warning("Resuming from %s", checkpoint)
    return checkpoint


def parameters_checksum(model: torch.nn.Module) -> float:
    """Sum of |p| over every parameter, in float64: equal on ranks (and runs) that hold the same weights."""
    with torch.no_grad():
        return float(sum(p.detach().double().abs().sum() for p in model.parameters()))


def ranks_in_sync(model: torch.nn.Module) -> dict[str, Any]:
    """Gather every rank's parameter checksum: a DDP run whose ranks disagree did not really synchronise."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return {"world_size": 1, "ranks_in_sync": True}
    local = torch.tensor([parameters_checksum(model)], dtype=torch.float64)
    gathered = [torch.zeros_like(local) for _ in range(torch.distributed.get_world_size())]
    torch.distributed.all_gather(gathered, local)
    values = [float(t.item()) for t in gathered]
    return {"world_size": len(values), "rank_checksums": values, "ranks_in_sync": len(set(values)) == 1}


class CausalLMTrainer(Trainer):
    """Trainer that adds perplexity, nats per character and training wall-clock to every evaluation and
    logs sample generations for fixed prompts, so runs with different tokenizers compare."""

    def __init__(
        self,
        *args: Any,
        tokens_per_char: float | None = None,
        sample_prompts: list[str] | None = None,
        sample_max_new_tokens: int = 48,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.tokens_per_char = tokens_per_char
        self.sample_prompts = list(sample_prompts or [])
        self.sample_max_new_tokens = sample_max_new_tokens
        self.samples: list[dict[str, Any]] = []
        self._clock_start: float | None = None
        self._clock_paused = 0.0

    def train(self, *args: Any, **kwargs: Any):
        self._clock_start, self._clock_paused = time.perf_counter(), 0.0
        return super().train(*args, **kwargs)

    def training_seconds(self) -> float | None:
        """Seconds spent training since `train()` started, evaluation and sampling excluded."""
        if self._clock_start is None:
            return None
        return time.perf_counter() - self._clock_start - self._clock_paused

    def final_metrics(self) -> dict[str, float]:
        """Metrics of an evaluation at the last step: reused when the schedule just ran one, else run now."""
        last = next((e for e in reversed(self.state.log_history) if "eval_loss" in e), None)
        if last is not None and last.get("step") == self.state.global_step:
            return {k: v for k, v in last.items() if k.startswith("eval_")}
        return self.evaluate()

    def evaluate(self, *args: Any, **kwargs: Any) -> dict[str, float]:
        started = time.perf_counter()
        self._train_seconds_at_eval = self.training_seconds()
        try:
            return super().evaluate(*args, **kwargs)
        finally:
            self._clock_paused += time.perf_counter() - started

    def evaluation_loop(
        self, dataloader, description, prediction_loss_only=None, ignore_keys=None, metric_key_prefix="eval"
    ):
        output = super().evaluation_loop(
            dataloader, description, prediction_loss_only, ignore_keys, metric_key_prefix
        )
        prefix = metric_key_prefix
        loss = output.metrics.get(f"{prefix}_loss")
        if loss is not None:
            output.metrics[f"{prefix}_perplexity"] = float(torch.exp(torch.tensor(min(loss, 50.0))))
            if self.tokens_per_char:
                output.metrics[f"{prefix}_nats_per_char"] = loss * self.tokens_per_char
        if getattr(self, "_train_seconds_at_eval", None) is not None:
            output.metrics[f"{prefix}_train_seconds"] = self._train_seconds_at_eval
        if self.sample_prompts and self.is_world_process_zero():
            self.samples.extend(self.generate_samples())
        return output

    @torch.no_grad()
    def generate_samples(self) -> list[dict[str, Any]]:
        model, tokenizer = self.accelerator.unwrap_model(self.model), self.processing_class
        was_training = model.training
        model.eval()
        results = []
        for prompt in self.sample_prompts:
            encoded = tokenizer(prompt, return_tensors="pt", add_special_tokens=False).to(model.device)
            # Sampling (greedy decoding of a tiny model only repeats itself) with a private, seeded RNG so that
            # samples are reproducible and training's random stream, which resume restores, is untouched.
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.args.seed)
                generated = model.generate(
                    **encoded,
                    max_new_tokens=self.sample_max_new_tokens,
                    do_sample=True,
                    temperature=0.8,
                    top_k=40,
                    pad_token_id=tokenizer.pad_token_id,
                    eos_token_id=tokenizer.eos_token_id,
                )
            completion = tokenizer.decode(
                generated[0, encoded["input_ids"].shape[1] :], skip_special_tokens=True
            )
            results.append({"step": self.state.global_step, "prompt": prompt, "completion": completion})
            logger.info("sample @%d: %r -> %r", self.state.global_step, prompt, completion)
        model.train(was_training)
        return results


def tokens_seen(args: TrainingArguments, global_step: int, block_size: int) -> int:
    """Tokens trained on after `global_step` optimizer steps of full `block_size` blocks, over all processes."""
    return (
        global_step
        * args.per_device_train_batch_size
        * args.gradient_accumulation_steps
        * args.world_size
        * block_size
    )
