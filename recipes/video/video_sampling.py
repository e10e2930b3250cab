"""How the text-to-video recipe (train_video_diffusion.py) samples and evaluates, here to be read and changed:
DDPM-style sampling for the unet3d, animatediff and cogvideox backbones (`sample_ddpm`), flow-matching sampling as
WanPipeline does it (`sample_clips`), clips for prompts in pixels (`sample`) and the evaluation the loop runs every
`eval_steps` (`evaluate`). The training step and its losses are in video_training.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn
from video_training import training_step

from hfrecipes.diffusion.runs import validation_losses
from hfrecipes.video.backbones import DDPM_BACKBONES
from hfrecipes.video.components import VideoComponents
from hfrecipes.video.evaluation import direction_edits
from hfrecipes.video.grids import save_clip_grid


@torch.no_grad()
def sample_ddpm(
    denoiser: nn.Module,
    scheduler: Any,
    *,
    shape: tuple[int, ...],
    prompt_embeds: torch.Tensor,
    negative_embeds: torch.Tensor,
    guidance_scale: float,
    num_inference_steps: int,
    seed: int = 0,
    batch_size: int = 32,
) -> torch.Tensor:
    """Model-space samples (N x C x F x H x W, clamped to [-1, 1]) with a DDPM-family scheduler: noise from `seed`
    scaled by `init_noise_sigma`, the scheduler's steps, classifier-free guidance uncond + g (cond - uncond)
    against `negative_embeds` (1 x L x D, the empty prompt's). `denoiser` is called as the pipeline calls it."""
    device = next(denoiser.parameters()).device
    dtype = next(denoiser.parameters()).dtype
    generator = torch.Generator().manual_seed(seed)
    guided = guidance_scale > 1.0
    outputs = []
    for start in range(0, len(prompt_embeds), batch_size):
        cond = prompt_embeds[start : start + batch_size].to(device, dtype)
        count = len(cond)
        scheduler.set_timesteps(num_inference_steps, device=device)
        x = torch.randn((count, *shape), generator=generator).to(device, dtype) * scheduler.init_noise_sigma
        if guided:
            cond = torch.cat([negative_embeds.to(device, dtype).expand_as(cond), cond])
        for t in scheduler.timesteps:
            model_input = scheduler.scale_model_input(torch.cat([x, x]) if guided else x, t)
            out = denoiser(model_input, t, encoder_hidden_states=cond).sample[:, : shape[0]]
            if guided:
                uncond, text = out.chunk(2)
                out = uncond + guidance_scale * (text - uncond)
            x = scheduler.step(out, t, x, generator=generator).prev_sample
        outputs.append(x.float().clamp(-1, 1).cpu())
    return torch.cat(outputs)


@torch.no_grad()
def sample_clips(
    transformer: nn.Module,
    scheduler: Any,
    *,
    shape: tuple[int, ...],
    prompt_embeds: torch.Tensor,
    negative_embeds: torch.Tensor,
    guidance_scale: float,
    num_inference_steps: int,
    seed: int = 0,
    batch_size: int = 32,
) -> torch.Tensor:
    """Model-space samples (N x C x F x H x W) the way WanPipeline makes them: noise from `seed`, the scheduler's
    steps, classifier-free guidance uncond + g (cond - uncond) against `negative_embeds` (1 x L x D)."""
    device, dtype = next(transformer.parameters()).device, next(transformer.parameters()).dtype
    generator = torch.Generator().manual_seed(seed)
    guided = guidance_scale > 1.0
    outputs = []
    for start in range(0, len(prompt_embeds), batch_size):
        cond = prompt_embeds[start : start + batch_size].to(device, dtype)
        count = len(cond)
        scheduler.set_timesteps(num_inference_steps, device=device)
        x = torch.randn((count, *shape), generator=generator).to(device, torch.float32)
        if guided:
            cond = torch.cat([negative_embeds.to(device, dtype).expand_as(cond), cond])
        for t in scheduler.timesteps:
            model_input = torch.cat([x, x]) if guided else x
            timesteps = t.expand(len(model_input))
            out = transformer(model_input.to(dtype), timesteps, cond, return_dict=False)[0].float()
            if guided:
                uncond, text = out.chunk(2)
                out = uncond + guidance_scale * (text - uncond)
            x = scheduler.step(out, t, x, return_dict=False)[0]
        outputs.append(x.cpu())
    return torch.cat(outputs)


@torch.no_grad()
def sample(
    components: VideoComponents, modules: dict[str, nn.Module], prompts: Sequence[str], seed: int
) -> torch.Tensor:
    """Clips for `prompts` in pixels (N x 3 x F x H x W in [-1, 1]), made the way the saved pipeline makes them."""
    denoiser = components.denoiser_call(modules)
    device = next(denoiser.parameters()).device
    components.frozen_to(device)
    parts = [components.embed(modules, prompts[i : i + 128], device) for i in range(0, len(prompts), 128)]
    embeds, negative = torch.cat(parts), components.embed(modules, [""], device)
    args = components.args
    sampler = sample_ddpm if components.kind in DDPM_BACKBONES else sample_clips
    samples = sampler(
        denoiser,
        components.scheduler(),
        shape=components.model_input_shape(),
        prompt_embeds=embeds,
        negative_embeds=negative,
        guidance_scale=args.guidance_scale,
        num_inference_steps=args.num_inference_steps,
        seed=seed,
    )
    return torch.cat([components.to_pixels(samples[i : i + 8]) for i in range(0, len(samples), 8)])


def evaluate(
    step: int,
    modules: dict[str, nn.Module],
    *,
    components: VideoComponents,
    plan: Any,
    validation_set: Any,
    evaluator: Any,
    samples_dir: Path,
    seed: int,
) -> dict[str, float]:
    """What the loop measures at `step` (with EMA weights): clips for the plan's prompts (saved as a GIF grid, one
    row per prompt), the held-out denoising losses with fixed noise (with mismatched captions, and with the
    direction words swapped when captions name them), and motion accuracy, temporal consistency and per-frame
    adherence (`evaluator`)."""
    clips = sample(components, modules, plan.prompts, seed=seed)
    save_clip_grid(
        clips,
        samples_dir / f"step-{step:06d}.gif",
        rows=len(plan.row_labels),
        row_labels=plan.row_labels,
        fps=components.args.gif_fps,
    )
    metrics = validation_losses(
        partial(training_step, components),
        modules,
        validation_set,
        seed,
        limit=128,
        batch_size=32,
        edited_captions=direction_edits(validation_set.captions),
    )
    if evaluator is not None:
        metrics.update(evaluator(clips, plan.targets, plan.motion))
    return metrics
