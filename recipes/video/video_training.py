"""What the text-to-video recipe (train_video_diffusion.py) trains, here to be read and changed: the training step
(`training_step`) and its losses, DDPM-style denoising for the unet3d, animatediff and cogvideox backbones
(`denoising_loss`) and flow matching for wan (`flow_matching_loss`, `noise_levels`). Sampling and the evaluation
are in video_sampling.py. `hfrecipes copy video/train_video_diffusion.py DIR` brings both files along; edits to them
change what the copied recipe trains and measures.

The plumbing stays in the library: the loop (Accelerate, EMA, checkpoints and exact resume:
`hfrecipes.diffusion.loop`), the backbones, VAEs, text encoders and pipelines (`hfrecipes.video`). Noise, timesteps,
noise levels and caption dropout are drawn from the loop's generator through `rows`, so a resumed run and a
data-parallel one draw what a single uninterrupted run draws.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from hfrecipes.diffusion.noise import drop_captions, rows
from hfrecipes.video.backbones import DDPM_BACKBONES
from hfrecipes.video.components import VideoComponents


def denoising_loss(
    predict: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    scheduler: Any,
    clean: torch.Tensor,
    generator: torch.Generator,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """MSE between the model's output on a noised `clean` batch and the scheduler's target: the noise
    (epsilon), the velocity (v_prediction) or `clean` itself (sample). Noise and timesteps are drawn from
    `generator` (CPU), so a resumed run replays them; timesteps uniformly, or by `weights`
    (`hfrecipes.diffusion.schedulers.timestep_weights`: timestep_bias_*)."""
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
    if kind == "epsilon":
        target = noise
    elif kind == "v_prediction":
        target = scheduler.get_velocity(clean, noise, steps)
    else:
        target = clean
    prediction = predict(noisy, steps)[:, : clean.shape[1]]
    return F.mse_loss(prediction.float(), target.float())


def noise_levels(count: int, generator: torch.Generator, sampling: str, shift: float) -> torch.Tensor:
    """Noise levels s in (0, 1): logit-normal (SD3) or uniform, then shifted like the sampler's sigmas
    (s' = shift s / (1 + (shift - 1) s))."""
    if sampling == "logit_normal":
        levels = torch.sigmoid(rows(lambda n: torch.randn(n, generator=generator), count, generator))
    else:
        levels = rows(lambda n: torch.rand(n, generator=generator), count, generator)
    return shift * levels / (1 + (shift - 1) * levels)


def flow_matching_loss(
    predict: Any,
    clean: torch.Tensor,
    generator: torch.Generator,
    *,
    sampling: str = "logit_normal",
    shift: float = 1.0,
    num_train_timesteps: int = 1000,
) -> torch.Tensor:
    """MSE between `predict(noisy, timestep)` and the velocity noise - clean, on x_s = (1 - s) clean + s noise
    with timestep = s * num_train_timesteps (what FlowMatchEulerDiscreteScheduler steps with). Noise and levels
    come from `generator` (CPU), so a resumed run replays them."""
    noise = rows(lambda n: torch.randn((n, *clean.shape[1:]), generator=generator), clean.shape[0], generator)
    noise = noise.to(clean.device, clean.dtype)
    levels = noise_levels(clean.shape[0], generator, sampling, shift).to(clean.device, clean.dtype)
    view = levels.view(-1, *([1] * (clean.dim() - 1)))
    noisy = (1 - view) * clean + view * noise
    prediction = predict(noisy, levels * num_train_timesteps)
    return F.mse_loss(prediction.float(), (noise - clean).float())


def training_step(
    components: VideoComponents,
    modules: dict[str, nn.Module],
    batch: dict[str, Any],
    generator: torch.Generator,
    dropout: float = 0.0,
) -> torch.Tensor:
    """The loss of one batch ({"pixels": N x C x F x H x W, "caption"}), which the loop backpropagates and logs:
    the clips in the denoiser's space (VAE latents or pixels), their captions dropped to "" with probability
    `dropout` (classifier-free guidance) and encoded as the pipeline encodes them, then `denoising_loss` (DDPM
    backbones, with the timestep_bias_* weights) or `flow_matching_loss` (wan), looked up here at every call."""
    pixels = batch["pixels"]
    components.frozen_to(pixels.device)
    clean = components.to_model_space(pixels, generator)
    embeds = components.embed(modules, drop_captions(batch["caption"], dropout, generator), clean.device)
    denoiser = components.denoiser_call(modules)
    if components.kind in DDPM_BACKBONES:
        return denoising_loss(
            lambda x, t: denoiser(x, t, encoder_hidden_states=embeds).sample,
            components.noise_scheduler,
            clean,
            generator,
            components.timestep_weights,
        )
    return flow_matching_loss(
        lambda x, t: denoiser(x, t, embeds, return_dict=False)[0],
        clean,
        generator,
        sampling=components.args.timestep_sampling,
        shift=components.args.flow_shift,
    )
