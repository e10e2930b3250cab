"""`DiffusionLoop`: the training loop of the diffusion recipes, on Accelerate, over any `DiffusionComponents`.

Gradient accumulation, mixed precision, gradient clipping, EMA weights (`diffusers.training_utils.EMAModel`),
evaluations with the EMA weights, and checkpoints (`checkpoint-<step>/`, written to a temporary directory and
renamed in, `training_state.json` last) with `checkpoints_total_limit` and exact resume: batches come from a seeded
per-epoch permutation (`EpochBatches`) and noise from a generator whose state is checkpointed, so a resumed run ends
where an uninterrupted one does. What a step computes (the loss) is the recipe's: `loss_fn`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from diffusers.optimization import get_scheduler
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

from hfrecipes.core.efficiency import EfficiencyMeter, FirstStepFlops, efficiency_record
from hfrecipes.core.errors import RecipeInputError
from hfrecipes.core.guards import NonFiniteGuard
from hfrecipes.core.io import atomic_write_json
from hfrecipes.core.training import ranks_in_sync
from hfrecipes.diffusion.args import DiffusionTrainingArguments
from hfrecipes.diffusion.checkpoints import (
    STATE_FILE,
    complete_checkpoints,
    config_differences,
    load_ema,
    make_ema,
    prune_checkpoints,
    save_ema,
)
from hfrecipes.diffusion.components import DiffusionComponents
from hfrecipes.diffusion.noise import ShardedGenerator

logger = logging.getLogger(__name__)


class EpochBatches(torch.utils.data.Sampler):
    """Index batches for one process: global batch b is slice b of a permutation seeded by (seed, epoch), so
    batch b is the same whenever it is drawn, and resuming at batch b needs no replay. Drops the last partial
    global batch of each epoch."""

    def __init__(
        self, num_rows: int, batch_size: int, seed: int, start: int = 0, world: int = 1, rank: int = 0
    ):
        self.global_batch = batch_size * world
        if num_rows < self.global_batch:
            raise RecipeInputError(
                f"{num_rows} training rows are fewer than one global batch of {self.global_batch}; "
                "lower per_device_train_batch_size or use more data."
            )
        self.num_rows, self.batch_size, self.seed = num_rows, batch_size, seed
        self.start, self.rank = start, rank
        self.per_epoch = num_rows // self.global_batch

    def batch(self, index: int) -> list[int]:
        epoch, position = divmod(index, self.per_epoch)
        order = torch.randperm(
            self.num_rows, generator=torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        )
        begin = position * self.global_batch + self.rank * self.batch_size
        return order[begin : begin + self.batch_size].tolist()

    def __iter__(self) -> Iterator[list[int]]:
        index = self.start
        while True:
            yield self.batch(index)
            index += 1


@dataclass
class LoopResult:
    """What `DiffusionLoop.train` returns: the step reached, the train and eval logs, timings, the checkpoint it
    resumed from, and the distributed check and efficiency records."""

    global_step: int
    log_history: list[dict[str, Any]]
    evaluations: list[dict[str, Any]]
    train_seconds: float
    resumed_from: str | None
    samples_seen: int
    distributed: dict[str, Any] = field(default_factory=dict)
    # hfrecipes.core.efficiency record (main process)
    efficiency: dict[str, Any] = field(default_factory=dict)


class DiffusionLoop:
    """Train the `components`' trainable modules (name -> module; parameters with requires_grad are optimised)
    on `loss_fn`, keeping EMA weights of `components.ema_modules()`.

    `loss_fn(modules, batch, generator)` gets the Accelerate-prepared modules, one collated batch on the device
    and the noise generator. `evaluate(step, modules)` runs on the main process with EMA weights swapped in
    and returns metrics. `components.fingerprint()` describes the model; resuming a checkpoint with another one
    is refused.
    """

    def __init__(
        self,
        args: DiffusionTrainingArguments,
        *,
        components: DiffusionComponents,
        loss_fn: Callable[[dict[str, nn.Module], dict[str, Any], torch.Generator], torch.Tensor],
        dataset: torch.utils.data.Dataset,
        num_rows: int,
        collate_fn: Callable | None = None,
        evaluate: Callable[[int, dict[str, nn.Module]], dict[str, Any]] | None = None,
    ):
        self.args, self.loss_fn, self.evaluate_fn = args, loss_fn, evaluate
        # Like transformers.Trainer: a process that ran another stage (tests, pipelines run in-process) may hold an
        # AcceleratorState with another mixed precision; the process group (PartialState) is kept.
        AcceleratorState._reset_state(reset_partial_state=False)
        self.dataset, self.num_rows, self.collate_fn = dataset, num_rows, collate_fn
        self.fingerprint = components.fingerprint()
        self.accelerator = Accelerator(
            gradient_accumulation_steps=args.gradient_accumulation_steps,
            mixed_precision=args.mixed_precision,
            cpu=args.use_cpu,
        )
        sharded = self.accelerator.distributed_type.value
        if sharded in ("FSDP", "DEEPSPEED", "MEGATRON_LM"):  # eval and the saved pipeline need full weights
            raise RecipeInputError(
                f"The diffusion loop is data-parallel only (this launch asks for {sharded}): it evaluates and saves "
                "the model on the main process alone. Launch with accelerate_configs/ddp.yaml (or cpu_ddp.yaml)."
            )
        launched = int(os.environ.get("WORLD_SIZE", "1"))
        if launched > 1 and self.accelerator.num_processes != launched:
            raise RecipeInputError(
                f"Launched with WORLD_SIZE={launched} but Accelerate sees {self.accelerator.num_processes} process(es): "
                "the processes would train unsynchronised copies. Use accelerate_configs/cpu_ddp.yaml on CPU."
            )
        self.output_dir = Path(args.output_dir)
        self.modules = modules = components.trainable()
        ema_modules = components.ema_modules()
        self.emas = {name: make_ema(modules[name], args) for name in ema_modules} if args.use_ema else {}

    @property
    def is_main_process(self) -> bool:
        return self.accelerator.is_main_process

    def unwrapped(self) -> dict[str, nn.Module]:
        return {name: self.accelerator.unwrap_model(m) for name, m in self.prepared.items()}

    # -- checkpoints ---------------------------------------------------------------------------------
    def _resume_path(self) -> Path | None:
        if self.args.resume_from_checkpoint:
            path = Path(self.args.resume_from_checkpoint)
            if not (path / STATE_FILE).is_file():
                raise RecipeInputError(
                    f"resume_from_checkpoint={path} is not a complete checkpoint directory."
                )
            return path
        found = complete_checkpoints(self.output_dir)
        return found[-1][1] if found else None

    def _save_checkpoint(self, state: dict[str, Any]) -> None:
        step = state["global_step"]
        final = self.output_dir / f"checkpoint-{step}"
        tmp = self.output_dir / f".checkpoint-{step}.tmp"
        if self.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        self.accelerator.wait_for_everyone()
        self.accelerator.save_state(str(tmp), safe_serialization=True)
        rank = self.accelerator.process_index
        save_file({"state": self.generator.get_state()}, str(tmp / f"noise_generator_{rank}.safetensors"))
        self.accelerator.wait_for_everyone()
        if self.is_main_process:
            for name, ema in self.emas.items():
                save_ema(ema, tmp / f"ema_{name}")
            atomic_write_json(tmp / STATE_FILE, state)
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
            for path in prune_checkpoints(self.output_dir, self.args.checkpoints_total_limit):
                logger.info(
                    "Removed %s (checkpoints_total_limit=%s)", path, self.args.checkpoints_total_limit
                )
        self.accelerator.wait_for_everyone()

    def _load_checkpoint(self, path: Path) -> dict[str, Any]:
        state = json.loads((path / STATE_FILE).read_text())
        differences = config_differences(state.get("fingerprint", {}), self.fingerprint)
        if differences:
            raise RecipeInputError(
                f"Cannot resume from {path}: it was trained with another model configuration ({'; '.join(differences)}). "
                "Use the configuration it was made with, or a new output_dir to start over."
            )
        self.accelerator.load_state(str(path))
        generator_file = path / f"noise_generator_{self.accelerator.process_index}.safetensors"
        if generator_file.is_file():
            self.generator.set_state(load_file(str(generator_file))["state"])
        for name, ema in self.emas.items():
            load_ema(ema, path / f"ema_{name}")
        return state

    # -- evaluation --------------------------------------------------------------------------------
    def _evaluate(self, step: int) -> dict[str, Any] | None:
        if self.evaluate_fn is None:
            return None
        metrics = None
        if self.is_main_process:
            modules = self.unwrapped()
            for name, ema in self.emas.items():
                ema.store(modules[name].parameters())
                ema.copy_to(modules[name].parameters())
            for module in modules.values():
                module.eval()
            try:
                with torch.random.fork_rng(devices=[]):
                    metrics = {"step": step, **self.evaluate_fn(step, modules)}
            finally:
                for name, ema in self.emas.items():
                    ema.restore(modules[name].parameters())
                for module in modules.values():
                    module.train()
            logger.info(
                "eval @%d: %s", step, {k: v for k, v in metrics.items() if isinstance(v, int | float)}
            )
        self.accelerator.wait_for_everyone()
        return metrics

    def copy_ema_to_modules(self) -> None:
        modules = self.unwrapped()
        for name, ema in self.emas.items():
            ema.copy_to(modules[name].parameters())

    # -- training ----------------------------------------------------------------------------------
    def train(self) -> LoopResult:
        args, acc = self.args, self.accelerator
        named_params = [
            (f"{name}.{n}", p)
            for name, m in self.modules.items()
            for n, p in m.named_parameters()
            if p.requires_grad
        ]
        params = [p for _, p in named_params]
        if not params:
            raise RecipeInputError("Nothing to train: every parameter is frozen.")
        optimizer = torch.optim.AdamW(
            params,
            lr=args.learning_rate,
            betas=(args.adam_beta1, args.adam_beta2),
            weight_decay=args.weight_decay,
            eps=args.adam_epsilon,
        )
        try:
            lr_scheduler = get_scheduler(
                args.lr_scheduler_type,
                optimizer,
                num_warmup_steps=args.warmup_steps * acc.num_processes,
                num_training_steps=args.max_steps * acc.num_processes,
            )
        except ValueError as err:
            raise RecipeInputError(f"lr_scheduler_type {args.lr_scheduler_type!r}: {err}") from err
        names = list(self.modules)
        prepared = acc.prepare(*self.modules.values(), optimizer, lr_scheduler)
        self.prepared = dict(zip(names, prepared[: len(names)], strict=True))
        optimizer, lr_scheduler = prepared[len(names) :]
        for ema in self.emas.values():
            ema.to(acc.device)
        self.generator = ShardedGenerator(args.seed * 1009, acc.process_index, acc.num_processes)

        state: dict[str, Any] = {"global_step": 0, "log_history": [], "evaluations": [], "train_seconds": 0.0}
        resume = self._resume_path()
        if resume is not None:
            state = self._load_checkpoint(resume)
            logger.warning("Resuming from %s (step %d)", resume, state["global_step"])
        elif args.eval_before_training and (metrics := self._evaluate(0)) is not None:
            state["evaluations"].append(metrics)

        guard = NonFiniteGuard(lambda: (found := complete_checkpoints(self.output_dir)) and str(found[-1][1]))
        ga = args.gradient_accumulation_steps
        sampler = EpochBatches(
            self.num_rows,
            args.per_device_train_batch_size,
            args.seed,
            start=state["global_step"] * ga,
            world=acc.num_processes,
            rank=acc.process_index,
        )
        # A private generator for the loader's worker seed: drawing it from the global RNG would shift the dropout
        # masks of a resumed run (its loader starts after the RNG states are restored).
        loader = torch.utils.data.DataLoader(
            self.dataset,
            batch_sampler=sampler,
            collate_fn=self.collate_fn,
            num_workers=args.dataloader_num_workers,
            generator=torch.Generator().manual_seed(args.seed),
        )
        batches = iter(loader)
        for module in self.prepared.values():
            module.train()
        images_per_step = args.per_device_train_batch_size * ga * acc.num_processes
        window: list[float] = []
        meter, first_step = EfficiencyMeter(acc.device).start(), FirstStepFlops()
        # Counting FLOPs changes the counted step's rounding: a resumed run reuses the count its checkpoint holds,
        # so the only step ever counted is the first of the whole run, and resume stays bit-exact.
        first_step.flops = state.get("step_flops")
        started_at = (state["global_step"], state["train_seconds"])
        clock = time.perf_counter()
        progress = tqdm(
            total=args.max_steps,
            initial=state["global_step"],
            disable=not self.is_main_process,
            desc="diffusion training",
        )
        while state["global_step"] < args.max_steps:
            first_step.begin()  # FLOPs measured on the run's first step
            for _ in range(ga):
                batch = _to_device(next(batches), acc.device)
                with acc.accumulate(*self.prepared.values()):
                    with acc.autocast():
                        loss = self.loss_fn(self.prepared, batch, self.generator)
                    acc.backward(loss)
                    if acc.sync_gradients:
                        guard.check(state["global_step"] + 1, named_params, loss.detach())
                        if args.max_grad_norm > 0:
                            acc.clip_grad_norm_(params, args.max_grad_norm)
                    optimizer.step()
                    lr_scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                window.append(float(acc.gather(loss.detach().float().reshape(1)).mean()))
            first_step.end()
            state["step_flops"] = first_step.flops
            state["global_step"] += 1
            step = state["global_step"]
            progress.update(1)
            modules = self.unwrapped()
            for name, ema in self.emas.items():
                ema.step(modules[name].parameters())
            if step % max(args.logging_steps, 1) == 0 or step == args.max_steps:
                elapsed = state["train_seconds"] + time.perf_counter() - clock
                entry = {
                    "step": step,
                    "loss": sum(window) / len(window),
                    "learning_rate": lr_scheduler.get_last_lr()[0],
                    "images_per_second": step * images_per_step / max(elapsed, 1e-9),
                }
                state["log_history"].append(entry)
                progress.set_postfix(loss=f"{entry['loss']:.4f}")
                window = []
            due_eval = args.eval_steps and step % args.eval_steps == 0
            due_save = args.save_steps and step % args.save_steps == 0
            if due_eval or due_save or step == args.max_steps:
                state["train_seconds"] += time.perf_counter() - clock
                if due_eval or step == args.max_steps:
                    metrics = self._evaluate(step)
                    if metrics is not None:
                        state["evaluations"].append(metrics)
                if due_save:
                    self._save_checkpoint({**state, "fingerprint": self.fingerprint})
                clock = time.perf_counter()
        progress.close()
        efficiency = self._efficiency(meter, first_step.flops, state, started_at, images_per_step)
        return LoopResult(
            distributed=ranks_in_sync(self.prepared["unet"]),
            global_step=state["global_step"],
            log_history=state["log_history"],
            evaluations=state["evaluations"],
            train_seconds=state["train_seconds"],
            resumed_from=str(resume) if resume else None,
            samples_seen=state["global_step"] * images_per_step,
            efficiency=efficiency,
        )

    def _efficiency(self, meter, step_flops, state, started_at, samples_per_step) -> dict[str, Any]:
        """`hfrecipes.core.efficiency` record of the steps run now (main process): FLOPs measured on the first one."""
        measurement = meter.stop()
        if not self.is_main_process:
            return {}
        world, steps = self.accelerator.num_processes, state["global_step"] - started_at[0]
        precision = self.args.mixed_precision
        return efficiency_record(
            measurement,
            unit="samples",
            count=steps * samples_per_step,
            train_flops=step_flops * steps * world if step_flops else None,
            flops_method="measured: FlopCounterMode on the run's first training step (forward and backward as run; "
            "frozen encoders forward only) × steps",
            train_seconds=state["train_seconds"] - started_at[1],
            steps=steps,
            world_size=world,
            precision="fp32" if precision == "no" else precision,
            device=self.accelerator.device,
        )


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    return batch


# --------------------------------------------------------------------------------------- pipelines
