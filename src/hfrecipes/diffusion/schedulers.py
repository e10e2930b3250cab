"""Noise schedulers: sampling schedulers by short name (`SCHEDULERS`: ddpm, ddim, euler, ...), the training
scheduler for epsilon / v / sample prediction (`training_scheduler`) and biased timestep sampling
(`timestep_weights`)."""

from __future__ import annotations

from typing import Any

import diffusers
import torch
from diffusers import DDPMScheduler

from hfrecipes.core.errors import RecipeInputError

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
    """`name` if it is one of SCHEDULERS, else a RecipeInputError naming the setting (`what`) and the choices."""
    if name not in SCHEDULERS:
        raise RecipeInputError(f"Unknown {what} {name!r}. Available: {', '.join(SCHEDULERS)}.")
    return name


def make_scheduler(name: str, config: Any | None = None, **kwargs: Any):
    """A diffusers scheduler by short name, from another scheduler's config (same betas) or from kwargs."""
    cls = getattr(diffusers, SCHEDULERS[check_scheduler_name(name)])
    return cls.from_config(config, **kwargs) if config is not None else cls(**kwargs)


def training_scheduler(num_train_timesteps: int, beta_schedule: str, prediction_type: str):
    """The DDPMScheduler that noises training batches (its config gives the sampling schedulers the same betas)."""
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
