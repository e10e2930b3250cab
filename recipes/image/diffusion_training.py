"""What the image diffusion recipe (train_diffusion.py) computes, here to be read and changed: the training step and
its loss (`training_step`, `denoising_loss`), sampling with classifier-free guidance (`sample`, `sample_images`)
and the evaluation the loop runs every `eval_steps` (`evaluate`). `hfrecipes copy image/train_diffusion.py DIR`
brings this file along; edits to it change what the copied recipe trains and measures.

The plumbing stays in the library: the loop (Accelerate, EMA, checkpoints and exact resume:
`hfrecipes.diffusion.loop`), the models, VAE, text encoder and pipelines (`hfrecipes.image.components`).
Noise, timesteps and caption dropout are drawn from the loop's generator through `rows`, so a resumed run and a
data-parallel one draw what a single uninterrupted run draws.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from hfrecipes.diffusion.grids import save_image_grid
from hfrecipes.diffusion.noise import drop_captions, rows
from hfrecipes.diffusion.runs import validation_losses
from hfrecipes.image.components import ImageComponents


def denoising_loss(
    predict: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    scheduler: Any,
    clean: torch.Tensor,
    generator: torch.Generator,
) -> torch.Tensor:
    """MSE between the model's output on a noised `clean` batch and the scheduler's target: the noise
    (epsilon), the velocity (v_prediction) or `clean` itself (sample). Noise and timesteps (uniform) are drawn
    from `generator` (CPU), so a resumed run replays them. `predict(noisy, t)` may return extra channels (learned
    variance in IF-style UNets): only the first `clean.shape[1]` are trained."""
    count, high = clean.shape[0], scheduler.config.num_train_timesteps
    noise = rows(lambda n: torch.randn((n, *clean.shape[1:]), generator=generator), count, generator)
    noise = noise.to(clean.device, clean.dtype)
    steps = rows(lambda n: torch.randint(0, high, (n,), generator=generator), count, generator)
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


def training_step(
    components: ImageComponents,
    modules: dict[str, nn.Module],
    batch: dict[str, Any],
    generator: torch.Generator,
    dropout: float = 0.0,
) -> torch.Tensor:
    """The loss of one batch ({"pixels", "caption"}), which the loop backpropagates and logs: the batch in the
    UNet's space (VAE latents or pixels), its captions dropped to "" with probability `dropout` (classifier-free
    guidance) and encoded, then `denoising_loss` (looked up here at every call)."""
    clean = batch["pixels"]
    components.frozen_to(clean.device)
    clean = components.to_model_space(clean, generator)
    unet = modules["unet"]
    if not components.conditional:
        return denoising_loss(lambda x, t: unet(x, t).sample, components.noise_scheduler, clean, generator)
    embeds = components.embed(modules, drop_captions(batch["caption"], dropout, generator), clean.device)
    return denoising_loss(
        lambda x, t: unet(x, t, encoder_hidden_states=embeds).sample,
        components.noise_scheduler,
        clean,
        generator,
    )


@torch.no_grad()
def sample_images(
    unet: nn.Module,
    scheduler: Any,
    *,
    num_images: int,
    shape: tuple[int, ...],
    decode: Callable[[torch.Tensor], torch.Tensor],
    prompt_embeds: torch.Tensor | None = None,
    negative_embeds: torch.Tensor | None = None,
    guidance_scale: float = 1.0,
    num_inference_steps: int = 50,
    seed: int = 0,
    batch_size: int = 64,
) -> torch.Tensor:
    """Images in [-1, 1] (N x C x H x W): noise of `shape` (the UNet's input) from `seed`, the scheduler's steps,
    then `decode` (the VAE for latents). With `prompt_embeds` (N x L x D) and guidance_scale > 1,
    classifier-free guidance uncond + g (cond - uncond) against `negative_embeds` (1 x L x D, the empty prompt's)."""
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
        outputs.append(decode(x))
    return torch.cat(outputs)


@torch.no_grad()
def sample(
    components: ImageComponents, modules: dict[str, nn.Module], prompts: Sequence[str], seed: int
) -> torch.Tensor:
    """One image per prompt ("" for unconditional models) with the sampling scheduler and guidance scale of the
    run's arguments, in pixels."""
    unet = modules["unet"]
    device = next(unet.parameters()).device
    components.frozen_to(device)
    embeds = negative = None
    if components.conditional:
        parts = [components.embed(modules, prompts[i : i + 256], device) for i in range(0, len(prompts), 256)]
        embeds, negative = torch.cat(parts), components.embed(modules, [""], device)
    args = components.args
    return sample_images(
        unet,
        components.scheduler(),
        num_images=len(prompts),
        shape=components.model_input_shape(),
        decode=components.to_pixels,
        prompt_embeds=embeds,
        negative_embeds=negative,
        guidance_scale=args.guidance_scale if components.conditional else 1.0,
        num_inference_steps=args.num_inference_steps,
        seed=seed,
    )


def evaluate(
    step: int,
    modules: dict[str, nn.Module],
    *,
    components: ImageComponents,
    plan: Any,
    validation_set: Any,
    evaluator: Any,
    samples_dir: Path,
    seed: int,
) -> dict[str, float]:
    """What the loop measures at `step` (with EMA weights): samples for the plan's prompts (saved as a grid, one
    row per prompt), the held-out denoising losses with fixed noise (and with mismatched captions), prompt
    adherence and Fréchet distance (`evaluator`), and the CLIP score when a CLIP model is at hand."""
    images = sample(components, modules, plan.prompts, seed=seed)
    save_image_grid(
        images,
        samples_dir / f"step-{step:06d}.png",
        row_labels=plan.row_labels or None,
        rows=len(plan.row_labels) or components.args.num_eval_prompts,
    )
    loss = partial(training_step, components)
    metrics = validation_losses(loss, modules, validation_set, seed, conditional=components.conditional)
    if evaluator is not None:
        metrics.update(evaluator(images, plan.targets))
    device = next(modules["unet"].parameters()).device
    metrics.update(components.clip_metrics(images, plan.prompts, device))
    return metrics
