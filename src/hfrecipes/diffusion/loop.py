"""Diffusion training machinery shared by the image (and video) recipes, on Accelerate.

- `DiffusionTrainingArguments`: the loop's knobs, named like `transformers.TrainingArguments` where they mean
  the same (max_steps, per_device_train_batch_size, bf16, use_cpu, save_steps, ...).
- UNet presets (`UNET_PRESETS`), noise schedulers by name (`SCHEDULERS`: ddpm, ddim, euler, ...), the training
  target for epsilon / v / sample prediction (`denoising_loss`), caption dropout for classifier-free guidance
  (`drop_captions`), prompt encoding as the pipelines do it (`encode_prompts`).
- `DiffusionLoop`: the training loop: gradient accumulation, mixed precision, gradient clipping, EMA weights
  (`diffusers.training_utils.EMAModel`), evaluations with the EMA weights, and checkpoints
  (`checkpoint-<step>/`, written to a temporary directory and renamed in, `training_state.json` last) with
  `checkpoints_total_limit` and exact resume: batches come from a seeded per-epoch permutation and noise from
  a generator whose state is checkpointed, so a resumed run ends where an uninterrupted one does.
- Sampling (`sample_images`, any scheduler, classifier-free guidance), sample-grid PNGs (`save_image_grid`),
  pipeline assembly (`assemble_pipeline`: DDPMPipeline, IFPipeline or StableDiffusionPipeline) and LoRA
  weights saving (`save_lora`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import nn
from torch.nn import functional as F

from hfrecipes.core.errors import RecipeInputError
from hfrecipes.core.io import atomic_write_json

logger = logging.getLogger(__name__)


@dataclass
class DiffusionTrainingArguments:
    output_dir: str = field(
        default="runs/diffusion", metadata={"help": "Where the pipeline and checkpoints go."}
    )
    seed: int = field(default=42, metadata={"help": "Seed of weights, batch order, noise and samples."})
    max_steps: int = field(default=1000, metadata={"help": "Optimizer steps."})
    per_device_train_batch_size: int = field(
        default=64, metadata={"help": "Images per process per micro-batch."}
    )
    gradient_accumulation_steps: int = field(
        default=1, metadata={"help": "Micro-batches per optimizer step."}
    )
    learning_rate: float = field(default=1e-3, metadata={"help": "Peak learning rate (AdamW)."})
    lr_scheduler_type: str = field(
        default="cosine",
        metadata={"help": "diffusers.optimization name: constant, constant_with_warmup, linear, cosine..."},
    )
    warmup_steps: int = field(default=0, metadata={"help": "Linear warm-up steps."})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay."})
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-8
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient clipping norm (0: off)."})
    bf16: bool = field(default=False, metadata={"help": "bf16 mixed precision (CPU and recent GPUs)."})
    fp16: bool = field(default=False, metadata={"help": "fp16 mixed precision (GPUs)."})
    use_cpu: bool = field(default=False, metadata={"help": "Train on CPU even when a GPU is present."})
    use_ema: bool = field(default=True, metadata={"help": "Keep EMA weights; evaluate and save them."})
    ema_max_decay: float = field(default=0.9999, metadata={"help": "EMA decay ceiling."})
    ema_power: float = field(default=0.75, metadata={"help": "EMA warm-up: decay = 1 - (1 + step)^-power."})
    logging_steps: int = field(default=10, metadata={"help": "Log the mean loss every N steps."})
    eval_steps: int = field(
        default=0, metadata={"help": "Evaluate (and write a sample grid) every N steps; 0: at the end."}
    )
    eval_before_training: bool = field(default=True, metadata={"help": "Evaluate the untrained model first."})
    save_steps: int = field(
        default=500, metadata={"help": "Write checkpoint-<step>/ every N steps (0: never)."}
    )
    checkpoints_total_limit: int | None = field(default=2, metadata={"help": "Keep at most N checkpoints."})
    resume_from_checkpoint: str | None = field(
        default=None, metadata={"help": "A checkpoint dir; default: the last complete one in output_dir."}
    )
    dataloader_num_workers: int = field(default=0, metadata={"help": "DataLoader worker processes."})

    def __post_init__(self) -> None:
        if self.bf16 and self.fp16:
            raise RecipeInputError("Set at most one of bf16 and fp16.")
        if self.max_steps < 1 or self.per_device_train_batch_size < 1 or self.gradient_accumulation_steps < 1:
            raise RecipeInputError(
                "max_steps, per_device_train_batch_size and gradient_accumulation_steps must be >= 1."
            )
        if self.checkpoints_total_limit is not None and self.checkpoints_total_limit < 1:
            raise RecipeInputError("checkpoints_total_limit must be >= 1, or null to keep every checkpoint.")

    @property
    def mixed_precision(self) -> str:
        return "bf16" if self.bf16 else "fp16" if self.fp16 else "no"


# ------------------------------------------------------------------------------------------- UNets

# Pixel-space presets are for 16-64 px images; "sd" is Stable Diffusion 1.x's UNet (latent 64 x 64 x 4).
UNET_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(
        block_out_channels=(32, 64, 64), layers_per_block=1, norm_num_groups=8, attention_head_dim=8
    ),
    "small": dict(
        block_out_channels=(64, 128, 128, 256), layers_per_block=2, norm_num_groups=32, attention_head_dim=32
    ),
    "sd": dict(
        block_out_channels=(320, 640, 1280, 1280),
        layers_per_block=2,
        norm_num_groups=32,
        attention_head_dim=8,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    ),
}
# What a conditional preset's attention blocks become in an unconditional UNet2DModel.
_UNCONDITIONAL_BLOCKS = {"CrossAttnDownBlock2D": "AttnDownBlock2D", "CrossAttnUpBlock2D": "AttnUpBlock2D"}


def downsampling_factor(unet_config: dict[str, Any]) -> int:
    return 2 ** (len(unet_config["block_out_channels"]) - 1)


def unet_config(
    preset: str,
    *,
    conditional: bool,
    sample_size: int,
    in_channels: int,
    out_channels: int,
    cross_attention_dim: int | None = None,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A UNet2DModel (unconditional) or UNet2DConditionModel config from a preset. Conditional UNets attend
    to the prompt at every resolution but the highest, and also add an attention-pooled prompt embedding to
    the timestep embedding (`addition_embed_type: text`), which carries global facts (which digit, which
    colour) cheaply. Refuses sizes the UNet cannot halve `len(block_out_channels) - 1` times."""
    if preset not in UNET_PRESETS:
        raise RecipeInputError(f"Unknown unet_preset {preset!r}. Available: {', '.join(UNET_PRESETS)}.")
    preset_config = dict(UNET_PRESETS[preset])
    if not conditional:
        for key in ("down_block_types", "up_block_types"):
            if key in preset_config:
                preset_config[key] = tuple(_UNCONDITIONAL_BLOCKS.get(b, b) for b in preset_config[key])
    config = {**preset_config, **(overrides or {})}
    levels = len(config["block_out_channels"])
    if conditional:
        config.setdefault("down_block_types", ("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (levels - 1))
        config.setdefault("up_block_types", ("CrossAttnUpBlock2D",) * (levels - 1) + ("UpBlock2D",))
        config.setdefault("cross_attention_dim", cross_attention_dim)
        config.setdefault("addition_embed_type", "text")
        config.setdefault("addition_embed_type_num_heads", min(64, max(1, (cross_attention_dim or 64) // 16)))
    else:
        config.setdefault("down_block_types", ("DownBlock2D",) * (levels - 1) + ("AttnDownBlock2D",))
        config.setdefault("up_block_types", ("AttnUpBlock2D",) + ("UpBlock2D",) * (levels - 1))
        config.pop("cross_attention_dim", None)
    factor = downsampling_factor(config)
    if sample_size % factor:
        raise RecipeInputError(
            f"Image size {sample_size} (latent size for latent models) is not divisible by the UNet's down-sampling "
            f"factor {factor} ({levels} levels of block_out_channels): use a multiple of {factor}, e.g. "
            f"{max(factor, sample_size // factor * factor)}, or fewer levels in unet_overrides."
        )
    return {**config, "sample_size": sample_size, "in_channels": in_channels, "out_channels": out_channels}


def build_unet(config: dict[str, Any], conditional: bool) -> nn.Module:
    from diffusers import UNet2DConditionModel, UNet2DModel

    cls = UNet2DConditionModel if conditional else UNet2DModel
    try:
        return cls(**config)
    except (TypeError, ValueError) as err:
        raise RecipeInputError(f"Cannot build a {cls.__name__} from {config}: {err}") from err


# ---------------------------------------------------------------------------------------- schedulers

SCHEDULERS = {
    "ddpm": "DDPMScheduler",
    "ddim": "DDIMScheduler",
    "euler": "EulerDiscreteScheduler",
    "euler-ancestral": "EulerAncestralDiscreteScheduler",
    "dpm-solver": "DPMSolverMultistepScheduler",
    "pndm": "PNDMScheduler",
}
PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")


def check_scheduler_name(name: str, what: str = "scheduler") -> str:
    if name not in SCHEDULERS:
        raise RecipeInputError(f"Unknown {what} {name!r}. Available: {', '.join(SCHEDULERS)}.")
    return name


def make_scheduler(name: str, config: Any | None = None, **kwargs: Any):
    """A diffusers scheduler by short name, from another scheduler's config (same betas) or from kwargs."""
    import diffusers

    cls = getattr(diffusers, SCHEDULERS[check_scheduler_name(name)])
    return cls.from_config(config, **kwargs) if config is not None else cls(**kwargs)


def training_scheduler(num_train_timesteps: int, beta_schedule: str, prediction_type: str):
    from diffusers import DDPMScheduler

    if prediction_type not in PREDICTION_TYPES:
        raise RecipeInputError(
            f"prediction_type must be one of {', '.join(PREDICTION_TYPES)}, got {prediction_type!r}."
        )
    try:
        return DDPMScheduler(
            num_train_timesteps=num_train_timesteps,
            beta_schedule=beta_schedule,
            prediction_type=prediction_type,
            variance_type="fixed_small",
            clip_sample=False,
        )
    except NotImplementedError as err:
        raise RecipeInputError(f"Unknown beta_schedule {beta_schedule!r}: {err}") from err


class ShardedGenerator(torch.Generator):
    """The training noise generator, seeded alike on every rank: per-sample draws (`rows`) are made for the global
    batch and each rank keeps its own slice, so N processes with batch B see exactly the noise, timesteps and
    caption dropout that one process with batch N·B sees (and data-parallel training matches it)."""

    def __new__(cls, seed: int, rank: int = 0, world: int = 1):
        return super().__new__(cls)

    def __init__(self, seed: int, rank: int = 0, world: int = 1):
        super().__init__()
        self.manual_seed(seed)
        self.rank, self.world = rank, world


def rows(draw: Callable[[int], torch.Tensor], count: int, generator: torch.Generator) -> torch.Tensor:
    """`draw(n)` gives n per-sample values from `generator`; this rank's `count` of them (see ShardedGenerator)."""
    rank, world = getattr(generator, "rank", 0), getattr(generator, "world", 1)
    return draw(count * world)[rank * count : (rank + 1) * count]


def drop_captions(captions: Sequence[str], probability: float, generator: torch.Generator) -> list[str]:
    """Caption dropout for classifier-free guidance: each caption becomes "" with `probability`; "" is what the
    pipelines encode as the unconditional prompt, so the model learns exactly the embedding they guide with."""
    if probability <= 0:
        return list(captions)
    drop = rows(lambda n: torch.rand(n, generator=generator), len(captions), generator) < probability
    return ["" if d else c for c, d in zip(captions, drop.tolist(), strict=True)]


def encode_prompts(
    text_encoder: nn.Module,
    tokenizer: Any,
    prompts: Sequence[str],
    *,
    max_length: int,
    use_attention_mask: bool,
    device: torch.device | str,
) -> torch.Tensor:
    """The prompt embeddings a pipeline would compute: padded to `max_length`, last hidden state."""
    tokens = tokenizer(list(prompts), padding="max_length", max_length=max_length, truncation=True,
                       return_tensors="pt")  # fmt: skip
    mask = tokens.attention_mask.to(device) if use_attention_mask else None
    return text_encoder(tokens.input_ids.to(device), attention_mask=mask)[0]


TIMESTEP_BIAS_STRATEGIES = ("none", "later", "earlier")


def timestep_weights(
    strategy: str, portion: float, multiplier: float, num_timesteps: int
) -> torch.Tensor | None:
    """Sampling weights over training timesteps, as diffusers' SDXL example's `--timestep_bias_strategy`: the
    latest (noisiest, "later") or earliest `portion` of them weighted by `multiplier`; None for uniform."""
    if strategy not in TIMESTEP_BIAS_STRATEGIES:
        raise RecipeInputError(
            f"timestep_bias_strategy must be one of {', '.join(TIMESTEP_BIAS_STRATEGIES)}, got {strategy!r}."
        )
    if not 0 < portion <= 1 or multiplier <= 0:
        raise RecipeInputError(
            f"timestep_bias_portion must be in (0, 1] and timestep_bias_multiplier > 0, got {portion} and {multiplier}."
        )
    if strategy == "none" or multiplier == 1:
        return None
    weights = torch.ones(num_timesteps)
    count = max(1, int(portion * num_timesteps))
    weights[slice(-count, None) if strategy == "later" else slice(0, count)] *= multiplier
    return weights / weights.sum()


def denoising_loss(
    predict: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    scheduler: Any,
    clean: torch.Tensor,
    generator: torch.Generator,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """MSE between the model's output on a noised `clean` batch and the scheduler's target: the noise
    (epsilon), the velocity (v_prediction) or `clean` itself (sample). Noise and timesteps are drawn from
    `generator` (CPU), so a resumed run replays them; timesteps uniformly, or by `weights` (`timestep_weights`).
    `predict(noisy, t)` may return extra channels (learned variance in IF-style UNets): only the first
    `clean.shape[1]` are trained."""
    count, high = clean.shape[0], scheduler.config.num_train_timesteps
    noise = rows(lambda n: torch.randn((n, *clean.shape[1:]), generator=generator), count, generator)
    noise = noise.to(clean.device, clean.dtype)
    if weights is None:
        steps = rows(lambda n: torch.randint(0, high, (n,), generator=generator), count, generator)
    else:
        steps = rows(
            lambda n: torch.multinomial(weights, n, replacement=True, generator=generator), count, generator
        )
    steps = steps.to(clean.device)
    noisy = scheduler.add_noise(clean, noise, steps)
    kind = scheduler.config.prediction_type
    target = (
        noise
        if kind == "epsilon"
        else scheduler.get_velocity(clean, noise, steps)
        if kind == "v_prediction"
        else clean
    )
    prediction = predict(noisy, steps)[:, : clean.shape[1]]
    return F.mse_loss(prediction.float(), target.float())


# ------------------------------------------------------------------------------------------- EMA


def make_ema(module: nn.Module, args: DiffusionTrainingArguments):
    from diffusers.training_utils import EMAModel

    return EMAModel(
        module.parameters(),
        decay=args.ema_max_decay,
        use_ema_warmup=True,
        inv_gamma=1.0,
        power=args.ema_power,
    )


def save_ema(ema: Any, path: Path) -> None:
    from safetensors.torch import save_file

    state = ema.state_dict()
    shadow = state.pop("shadow_params")
    save_file(
        {str(i): t.detach().contiguous().cpu() for i, t in enumerate(shadow)},
        str(path.with_suffix(".safetensors")),
    )
    path.with_suffix(".json").write_text(json.dumps(state))


def load_ema(ema: Any, path: Path) -> None:
    from safetensors.torch import load_file

    tensors = load_file(str(path.with_suffix(".safetensors")))
    state = json.loads(path.with_suffix(".json").read_text())
    device = ema.shadow_params[0].device if ema.shadow_params else "cpu"
    ema.load_state_dict({**state, "shadow_params": [tensors[str(i)].to(device) for i in range(len(tensors))]})


# ------------------------------------------------------------------------------------- checkpoints

_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
STATE_FILE = "training_state.json"


def complete_checkpoints(output_dir: str | Path) -> list[tuple[int, Path]]:
    """(step, path) of every checkpoint whose `training_state.json` says it finished, oldest first."""
    output_dir = Path(output_dir)
    found = []
    if output_dir.is_dir():
        for path in output_dir.iterdir():
            if path.is_dir() and (m := _CHECKPOINT.match(path.name)):
                try:
                    ok = json.loads((path / STATE_FILE).read_text()).get("global_step") == int(m.group(1))
                except (OSError, ValueError):
                    ok = False
                if ok:
                    found.append((int(m.group(1)), path))
                else:
                    logger.warning("Ignoring incomplete checkpoint %s", path)
    return sorted(found)


def prune_checkpoints(output_dir: str | Path, limit: int | None) -> list[Path]:
    if limit is None:
        return []
    removed = [path for _, path in complete_checkpoints(output_dir)[:-limit]]
    for path in removed:
        shutil.rmtree(path, ignore_errors=True)
    return removed


def _public(value: Any) -> Any:
    """A config without its bookkeeping keys: diffusers' `_use_default_values` is a list built from a set, so its
    order changes from one process to the next (string hashing), and `_diffusers_version` is not the model."""
    if isinstance(value, dict):
        return {k: _public(v) for k, v in value.items() if not str(k).startswith("_")}
    return value


def config_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    saved, current = (_public(json.loads(json.dumps(c, default=str))) for c in (saved, current))
    return [
        f"{k}: checkpoint {saved.get(k)!r} vs now {current.get(k)!r}"
        for k in sorted(set(saved) | set(current))
        if saved.get(k) != current.get(k)
    ]


# ------------------------------------------------------------------------------------------- data


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


# -------------------------------------------------------------------------------------------- loop


@dataclass
class LoopResult:
    global_step: int
    log_history: list[dict[str, Any]]
    evaluations: list[dict[str, Any]]
    train_seconds: float
    resumed_from: str | None
    samples_seen: int
    distributed: dict[str, Any] = field(default_factory=dict)
    efficiency: dict[str, Any] = field(default_factory=dict)  # hfrecipes.core.efficiency record (main process)


class DiffusionLoop:
    """Train `modules` (name -> module; parameters with requires_grad are optimised) on `loss_fn`.

    `loss_fn(modules, batch, generator)` gets the Accelerate-prepared modules, one collated batch on the device
    and the noise generator. `evaluate(step, modules)` runs on the main process with EMA weights swapped in
    and returns metrics. `fingerprint` describes the model; resuming a checkpoint with another one is refused.
    """

    def __init__(
        self,
        args: DiffusionTrainingArguments,
        *,
        modules: dict[str, nn.Module],
        loss_fn: Callable[[dict[str, nn.Module], dict[str, Any], torch.Generator], torch.Tensor],
        dataset: torch.utils.data.Dataset,
        num_rows: int,
        collate_fn: Callable | None = None,
        evaluate: Callable[[int, dict[str, nn.Module]], dict[str, Any]] | None = None,
        fingerprint: dict[str, Any] | None = None,
        ema_modules: Sequence[str] = (),
    ):
        from accelerate import Accelerator
        from accelerate.state import AcceleratorState

        self.args, self.loss_fn, self.evaluate_fn = args, loss_fn, evaluate
        # Like transformers.Trainer: a process that ran another stage (tests, pipelines run in-process) may hold an
        # AcceleratorState with another mixed precision; the process group (PartialState) is kept.
        AcceleratorState._reset_state(reset_partial_state=False)
        self.dataset, self.num_rows, self.collate_fn = dataset, num_rows, collate_fn
        self.fingerprint = fingerprint or {}
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
        self.modules = modules
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
        from safetensors.torch import save_file

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
        from safetensors.torch import load_file

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
        from diffusers.optimization import get_scheduler

        args, acc = self.args, self.accelerator
        named_params = [(f"{name}.{n}", p) for name, m in self.modules.items()
                        for n, p in m.named_parameters() if p.requires_grad]  # fmt: skip
        params = [p for _, p in named_params]
        if not params:
            raise RecipeInputError("Nothing to train: every parameter is frozen.")
        optimizer = torch.optim.AdamW(params, lr=args.learning_rate, betas=(args.adam_beta1, args.adam_beta2),
                                      weight_decay=args.weight_decay, eps=args.adam_epsilon)  # fmt: skip
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

        from hfrecipes.core.guards import NonFiniteGuard

        guard = NonFiniteGuard(lambda: (found := complete_checkpoints(self.output_dir)) and str(found[-1][1]))
        ga = args.gradient_accumulation_steps
        sampler = EpochBatches(self.num_rows, args.per_device_train_batch_size, args.seed,
                               start=state["global_step"] * ga, world=acc.num_processes, rank=acc.process_index)  # fmt: skip
        # A private generator for the loader's worker seed: drawing it from the global RNG would shift the dropout
        # masks of a resumed run (its loader starts after the RNG states are restored).
        loader = torch.utils.data.DataLoader(self.dataset, batch_sampler=sampler, collate_fn=self.collate_fn,
                                             num_workers=args.dataloader_num_workers,
                                             generator=torch.Generator().manual_seed(args.seed))  # fmt: skip
        batches = iter(loader)
        for module in self.prepared.values():
            module.train()
        images_per_step = args.per_device_train_batch_size * ga * acc.num_processes
        window: list[float] = []
        from hfrecipes.core.efficiency import EfficiencyMeter, FirstStepFlops

        meter, first_step = EfficiencyMeter(acc.device).start(), FirstStepFlops()
        # Counting FLOPs changes the counted step's rounding: a resumed run reuses the count its checkpoint holds,
        # so the only step ever counted is the first of the whole run, and resume stays bit-exact.
        first_step.flops = state.get("step_flops")
        started_at = (state["global_step"], state["train_seconds"])
        clock = time.perf_counter()
        from tqdm.auto import tqdm

        progress = tqdm(total=args.max_steps, initial=state["global_step"], disable=not self.is_main_process,
                        desc="diffusion training")  # fmt: skip
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
                entry = {"step": step, "loss": sum(window) / len(window), "learning_rate": lr_scheduler.get_last_lr()[0],
                         "images_per_second": step * images_per_step / max(elapsed, 1e-9)}  # fmt: skip
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
        from hfrecipes.core.training import ranks_in_sync

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
        from hfrecipes.core.efficiency import efficiency_record

        measurement = meter.stop()
        if not self.is_main_process:
            return {}
        world, steps = self.accelerator.num_processes, state["global_step"] - started_at[0]
        precision = self.args.mixed_precision
        return efficiency_record(
            measurement, unit="samples", count=steps * samples_per_step,
            train_flops=step_flops * steps * world if step_flops else None,
            flops_method="measured: FlopCounterMode on the run's first training step (forward and backward as run; "
            "frozen encoders forward only) × steps",
            train_seconds=state["train_seconds"] - started_at[1], steps=steps, world_size=world,
            precision="fp32" if precision == "no" else precision, device=self.accelerator.device,
        )  # fmt: skip


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    return batch


# ---------------------------------------------------------------------------------------- sampling


@torch.no_grad()
def sample_images(
    unet: nn.Module,
    scheduler: Any,
    *,
    num_images: int,
    shape: tuple[int, int, int],
    prompt_embeds: torch.Tensor | None = None,
    negative_embeds: torch.Tensor | None = None,
    guidance_scale: float = 1.0,
    num_inference_steps: int = 50,
    seed: int = 0,
    vae: nn.Module | None = None,
    batch_size: int = 64,
) -> torch.Tensor:
    """Images in [-1, 1] (N x C x H x W): `shape` is the UNet's input (latent shape when `vae` is given).
    With `prompt_embeds` (N x L x D) and guidance_scale > 1, classifier-free guidance against
    `negative_embeds` (1 x L x D, the empty prompt's embedding)."""
    device = next(unet.parameters()).device
    dtype = next(unet.parameters()).dtype
    generator = torch.Generator().manual_seed(seed)
    guided = prompt_embeds is not None and guidance_scale > 1.0
    outputs = []
    for start in range(0, num_images, batch_size):
        count = min(batch_size, num_images - start)
        scheduler.set_timesteps(num_inference_steps, device=device)
        x = torch.randn((count, *shape), generator=generator).to(device, dtype) * scheduler.init_noise_sigma
        cond = prompt_embeds[start : start + count].to(device, dtype) if prompt_embeds is not None else None
        if guided:
            cond = torch.cat([negative_embeds.to(device, dtype).expand_as(cond), cond])
        for t in scheduler.timesteps:
            model_input = scheduler.scale_model_input(torch.cat([x, x]) if guided else x, t)
            kwargs = {"encoder_hidden_states": cond} if cond is not None else {}
            out = unet(model_input, t, **kwargs).sample[:, : shape[0]]
            if guided:
                uncond, text = out.chunk(2)
                out = uncond + guidance_scale * (text - uncond)
            x = scheduler.step(out, t, x, generator=generator).prev_sample
        if vae is not None:
            x = decode_latents(vae, x)
        outputs.append(x.float().clamp(-1, 1).cpu())
    return torch.cat(outputs)


def encode_latents(
    vae: nn.Module, pixels: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    latents = vae.encode(pixels.to(vae.dtype)).latent_dist.sample(generator)
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    return (latents - shift) * vae.config.scaling_factor


def decode_latents(vae: nn.Module, latents: torch.Tensor) -> torch.Tensor:
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    return vae.decode(latents.to(vae.dtype) / vae.config.scaling_factor + shift).sample


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """[-1, 1] N x C x H x W -> uint8 N x H x W x C."""
    array = ((images.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    return array


def save_image_grid(
    images: torch.Tensor, path: Path, rows: int, row_labels: Sequence[str] | None = None, min_cell: int = 64
) -> Path:
    """A rows x (N / rows) PNG grid of [-1, 1] images, small images enlarged (nearest) to `min_cell` px, with
    each row's label (its prompt) on the left. Written to a temporary file and renamed in."""
    array = to_uint8(images)
    n, h, w, c = array.shape
    cols = math.ceil(n / rows)
    scale = max(1, math.ceil(min_cell / max(h, w)))
    cell_h, cell_w = h * scale, w * scale
    margin = 8 + 6 * max((len(label) for label in row_labels), default=0) if row_labels else 0
    grid = Image.new("RGB", (margin + cols * (cell_w + 2), rows * (cell_h + 2)), (255, 255, 255))
    draw = ImageDraw.Draw(grid)
    for i in range(n):
        r, col = divmod(i, cols)
        tile = Image.fromarray(array[i, :, :, 0] if c == 1 else array[i], mode="L" if c == 1 else "RGB")
        grid.paste(tile.convert("RGB").resize((cell_w, cell_h), Image.Resampling.NEAREST),
                   (margin + col * (cell_w + 2), r * (cell_h + 2)))  # fmt: skip
    for r, label in enumerate(row_labels or []):
        draw.text((4, r * (cell_h + 2) + cell_h // 2 - 5), label, fill=(0, 0, 0))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    grid.save(tmp)
    os.replace(tmp, path)
    return path


# --------------------------------------------------------------------------------------- pipelines

PIPELINE_KINDS = {
    "ddpm": "DDPMPipeline",  # unconditional, pixel space (UNet2DModel)
    "if": "IFPipeline",  # text-conditional, pixel space (UNet2DConditionModel predicting 2C channels)
    "stable-diffusion": "StableDiffusionPipeline",  # text-conditional, latent space (with a VAE)
}
PIPELINE_CLASSES_TO_KIND = {
    "DDPMPipeline": "ddpm",
    "DDIMPipeline": "ddpm",
    "IFPipeline": "if",
    "StableDiffusionPipeline": "stable-diffusion",
}


def pipeline_kind(conditional: bool, latent: bool) -> str:
    if not conditional:
        if latent:
            raise RecipeInputError(
                "Unconditional training is pixel-space only (DDPMPipeline): drop the VAE, or condition on captions."
            )
        return "ddpm"
    return "stable-diffusion" if latent else "if"


def assemble_pipeline(
    kind: str,
    *,
    unet: nn.Module,
    scheduler: Any,
    text_encoder: Any = None,
    tokenizer: Any = None,
    vae: Any = None,
):
    """The standard diffusers pipeline for these components (loadable with `DiffusionPipeline.from_pretrained`).
    IFPipeline reads `scheduler.config.variance_type`, so it gets a DDPMScheduler."""
    import diffusers

    if kind == "ddpm":
        return diffusers.DDPMPipeline(unet=unet, scheduler=scheduler)
    if kind == "if":
        if type(scheduler).__name__ != "DDPMScheduler":
            scheduler = diffusers.DDPMScheduler.from_config(scheduler.config, variance_type="fixed_small")
        return diffusers.IFPipeline(tokenizer=tokenizer, text_encoder=text_encoder, unet=unet, scheduler=scheduler,
                                    safety_checker=None, feature_extractor=None, watermarker=None,
                                    requires_safety_checker=False)  # fmt: skip
    if kind == "stable-diffusion":
        return diffusers.StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                                 scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                                 requires_safety_checker=False)  # fmt: skip
    raise RecipeInputError(f"Unknown pipeline kind {kind!r}; one of {', '.join(PIPELINE_KINDS)}.")


def load_pipeline(name_or_path: str):
    """A pipeline to fine-tune (full or LoRA), and its kind."""
    from diffusers import DiffusionPipeline

    try:
        pipe = DiffusionPipeline.from_pretrained(name_or_path, use_safetensors=True)
    except (OSError, ValueError) as err:
        raise RecipeInputError(f"Could not load a diffusers pipeline from {name_or_path!r}: {err}") from err
    kind = PIPELINE_CLASSES_TO_KIND.get(type(pipe).__name__)
    if kind is None:
        raise RecipeInputError(
            f"{name_or_path!r} is a {type(pipe).__name__}; this recipe fine-tunes {', '.join(PIPELINE_CLASSES_TO_KIND)}."
        )
    return pipe, kind


def add_lora(unet: nn.Module, rank: int, alpha: int | None, target_modules: Sequence[str]) -> int:
    """Freeze the UNet and add LoRA adapters (PEFT) to `target_modules`; returns the trainable parameter count."""
    from peft import LoraConfig

    unet.requires_grad_(False)
    config = LoraConfig(r=rank, lora_alpha=alpha or rank, init_lora_weights="gaussian",
                        target_modules=list(target_modules))  # fmt: skip
    try:
        unet.add_adapter(config)
    except ValueError as err:
        raise RecipeInputError(f"Cannot add LoRA to {list(target_modules)}: {err}") from err
    for p in unet.parameters():
        if p.requires_grad:
            p.data = p.data.float()
    return sum(p.numel() for p in unet.parameters() if p.requires_grad)


def save_lora(pipeline_class: type, denoiser: nn.Module, directory: Path, component: str = "unet") -> None:
    """`pytorch_lora_weights.safetensors`, which `pipe.load_lora_weights(directory)` loads into the base;
    `component` is the pipeline's name for the adapted denoiser (unet, transformer)."""
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict

    layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(denoiser))
    pipeline_class.save_lora_weights(
        save_directory=str(directory), **{f"{component}_lora_layers": layers}, safe_serialization=True
    )


@torch.no_grad()
def validation_losses(
    loss_fn: Callable[..., torch.Tensor],
    modules: dict[str, nn.Module],
    dataset: Any,
    seed: int,
    *,
    conditional: bool = True,
    limit: int = 256,
    batch_size: int = 64,
    edited_captions: dict[str, Callable[[str], str]] | None = None,
) -> dict[str, float]:
    """Denoising loss on held-out rows ({"pixels", "caption"}) with fixed noise and timesteps (`validation_loss`)
    and, for conditional models, the same with every caption swapped for another row's
    (`validation_loss_mismatched`): the gap measures how much the model uses its prompt. `edited_captions`
    adds one loss per entry, named by its key, with every caption passed through the function (e.g. one word
    swapped: the gap measures how much the model uses that word)."""
    count = min(limit, len(dataset))
    rows = [dataset[i] for i in range(count)]
    captions = [r["caption"] for r in rows]
    variants = {"validation_loss": captions}
    if conditional:
        variants["validation_loss_mismatched"] = captions[count // 2 :] + captions[: count // 2]
        for name, edit in (edited_captions or {}).items():
            variants[name] = [edit(c) for c in captions]
    device = next(modules["unet"].parameters()).device
    losses = {}
    for name, texts in variants.items():
        generator = torch.Generator().manual_seed(seed + 7)
        total = 0.0
        for start in range(0, count, batch_size):
            part = slice(start, min(start + batch_size, count))
            batch = {
                "pixels": torch.stack([r["pixels"] for r in rows[part]]).to(device),
                "caption": texts[part],
            }
            total += float(loss_fn(modules, batch, generator)) * len(batch["caption"])
        losses[name] = total / max(count, 1)
    return losses


def run_metrics(
    result: LoopResult, modules: dict[str, nn.Module], *, unit: str, extra: dict[str, Any] | None = None
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(metrics, untrained evaluation, final evaluation) of a finished DiffusionLoop run: steps, `<unit>_seen`
    and `<unit>_per_second`, parameter counts, first / last training loss, the final evaluation's measures and
    the step-0 ones as `untrained_*`. Also names `result.efficiency`'s count in `unit` (for lineage["efficiency"])."""
    from hfrecipes.core.efficiency import with_unit

    result.efficiency = with_unit(result.efficiency, unit)
    untrained = result.evaluations[0] if result.evaluations and result.evaluations[0]["step"] == 0 else {}
    final = result.evaluations[-1] if result.evaluations else {}
    losses = [e["loss"] for e in result.log_history]
    seconds = result.train_seconds
    metrics = {
        "global_step": result.global_step,
        f"{unit}_seen": result.samples_seen,
        "train_seconds": seconds,
        f"{unit}_per_second": result.samples_seen / seconds if seconds else None,
        "denoiser_parameters": sum(p.numel() for p in modules["unet"].parameters()),
        "trainable_parameters": sum(
            p.numel() for m in modules.values() for p in m.parameters() if p.requires_grad
        ),
        "train_loss_first": losses[0] if losses else None,
        "train_loss_last": losses[-1] if losses else None,
        **{k: v for k, v in final.items() if k != "step"},
        **{f"untrained_{k}": v for k, v in untrained.items() if k != "step"},
        **(extra or {}),
    }
    return metrics, untrained, final


def write_run_files(
    staging: Path, result: LoopResult, samples_dir: Path, *, suffix: str, loss_title: str
) -> None:
    """The per-step sample grids (`samples/step-*.<suffix>`), the last as `samples.<suffix>` and the step-0 one as
    `samples_untrained.<suffix>`, the loss curve and the train / eval log (the data report is written by
    `hfrecipes.core.stages.Stage.finish`)."""
    from hfrecipes.core.reports import plot_loss_curves

    if samples_dir.is_dir():
        shutil.copytree(samples_dir, staging / "samples")
        grids = sorted((staging / "samples").glob(f"step-*.{suffix}"))
        shutil.copy(grids[-1], staging / f"samples.{suffix}")
        if result.evaluations and result.evaluations[0]["step"] == 0:
            shutil.copy(grids[0], staging / f"samples_untrained.{suffix}")
    plot_loss_curves(result.log_history, staging / "loss_curve.png", title=loss_title)
    atomic_write_json(staging / "log_history.json", {"train": result.log_history, "eval": result.evaluations})


def fingerprint_of(**parts: Any) -> dict[str, Any]:
    """A JSON-able description of the model being trained, for the resume check."""

    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value):
            return dataclasses.asdict(value)
        if hasattr(value, "to_dict"):
            return value.to_dict()
        return value

    return json.loads(json.dumps({k: plain(v) for k, v in parts.items()}, default=str))


__all__ = [
    "PIPELINE_KINDS",
    "PREDICTION_TYPES",
    "SCHEDULERS",
    "TIMESTEP_BIAS_STRATEGIES",
    "UNET_PRESETS",
    "DiffusionLoop",
    "DiffusionTrainingArguments",
    "EpochBatches",
    "LoopResult",
    "add_lora",
    "assemble_pipeline",
    "build_unet",
    "check_scheduler_name",
    "complete_checkpoints",
    "decode_latents",
    "denoising_loss",
    "downsampling_factor",
    "drop_captions",
    "encode_latents",
    "encode_prompts",
    "fingerprint_of",
    "load_pipeline",
    "make_scheduler",
    "pipeline_kind",
    "prune_checkpoints",
    "sample_images",
    "save_image_grid",
    "run_metrics",
    "save_lora",
    "validation_losses",
    "write_run_files",
    "timestep_weights",
    "training_scheduler",
    "unet_config",
]
