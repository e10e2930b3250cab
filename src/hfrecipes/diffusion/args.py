"""`DiffusionTrainingArguments`: the diffusion loop's settings, shared by the image and video diffusion recipes and
named like `transformers.TrainingArguments` where they mean the same (max_steps, per_device_train_batch_size, bf16,
use_cpu, save_steps, ...)."""

from __future__ import annotations

from dataclasses import dataclass, field

from hfrecipes.core.errors import RecipeInputError


@dataclass
class DiffusionTrainingArguments:
    """The diffusion loop's settings: optimizer and schedule, precision, EMA, logging, evaluation, checkpoints."""

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
