"""`DiffusionComponents`: the one interface of a diffusion recipe's model side, which the image
(`hfrecipes.image.components.ImageComponents`) and video (`hfrecipes.video.components.VideoComponents`)
components implement. The loop (`hfrecipes.diffusion.loop.DiffusionLoop`, `hfrecipes.diffusion.runs`) and the
training / sampling modules beside the recipes are written against it, not against either modality.

The life of a run: `plan` (input checks and the pretrained parts, before any data is read), `captions` of the
prepared data, `build` (text encoder, denoiser, noise scheduler), then training through `trainable` /
`ema_modules` / `fingerprint`, each step moving the batch to the model's space (`to_model_space`) and encoding its
prompts (`embed`), sampling in `model_input_shape` with the `scheduler()` and decoding with `to_pixels`, and at the
end `save` and the model card (`card`, from `describe`, `card_description`, `usage`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn


class DiffusionComponents(Protocol):
    """The model side of a diffusion recipe: VAE, text encoder and tokenizer, denoiser, noise scheduler and the
    saved pipeline, built from the recipe's data and model arguments (`data`, `args`)."""

    data: Any
    args: Any
    # which pipeline / backbone: "if", "stable-diffusion", "ddpm"; "unet3d", "cogvideox", "wan", ...
    kind: str
    vae: Any
    text_encoder: Any
    tokenizer: Any
    train_text_encoder: bool
    noise_scheduler: Any  # the training scheduler of DDPM-style noise (epsilon / v / sample targets)

    @property
    def required_columns(self) -> list[str]:
        """Dataset columns the run needs beyond the image / video column."""
        ...

    @property
    def pipeline_class_name(self) -> str:
        """The diffusers pipeline class the output folder loads as."""
        ...

    def captions(self, dataset: Any) -> list[str] | None:
        """One caption per row of a prepared dataset (None for an unconditional model)."""
        ...

    def build(self, texts: Sequence[str], seed: int) -> None:
        """Build what `plan` did not load: text encoder and tokenizer (from `texts`), denoiser, noise scheduler."""
        ...

    def trainable(self) -> dict[str, nn.Module]:
        """The modules the loop trains, by name; the denoiser is "unet"."""
        ...

    def ema_modules(self) -> list[str]:
        """Names of the trainable modules whose EMA weights the loop keeps (none when training LoRA adapters)."""
        ...

    def fingerprint(self) -> dict[str, Any]:
        """A JSON-able description of the model; resuming a checkpoint made with another one is refused."""
        ...

    def frozen_to(self, device: Any) -> None:
        """Move the frozen parts (VAE, a frozen text encoder) to `device`, once."""
        ...

    def embed(self, modules: dict[str, nn.Module], prompts: Sequence[str], device: Any) -> torch.Tensor:
        """Prompt embeddings as the saved pipeline computes them (with the trained text encoder in `modules`)."""
        ...

    def to_model_space(self, pixels: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Pixels in [-1, 1] as the denoiser sees them: scaled VAE latents, or the pixels themselves."""
        ...

    def to_pixels(self, samples: torch.Tensor) -> torch.Tensor:
        """Model-space samples decoded to pixels in [-1, 1], on the CPU."""
        ...

    def model_input_shape(self) -> tuple[int, ...]:
        """The shape of one denoiser input (channels first, no batch dimension)."""
        ...

    def scheduler(self) -> Any:
        """The sampling scheduler, the one the saved pipeline gets."""
        ...

    def save(self, directory: Path) -> None:
        """Write the pipeline (or the LoRA weights for the base pipeline) to `directory`."""
        ...

    def card(
        self, metrics: dict[str, Any], steps: int, output_dir: Path, prompts: Sequence[str]
    ) -> dict[str, Any]:
        """The model card's fields (title, description, usage, tags, pipeline tag...) for `Stage.finish`."""
        ...

    def describe(self) -> str:
        """A one-line description of the model for the card's title."""
        ...

    def card_description(self, metrics: dict[str, Any], dataset: str, steps: int) -> str:
        """The model card's body: what was trained, how it was evaluated, the metrics table."""
        ...

    def usage(self, output_dir: str, prompts: Sequence[str]) -> str:
        """Python code that loads the output and generates with it."""
        ...


def diffusion_card(
    components: DiffusionComponents,
    metrics: dict[str, Any],
    steps: int,
    output_dir: Path,
    prompts: Sequence[str],
    *,
    task_tag: str,
    pipeline_tag: str,
) -> dict[str, Any]:
    """The model card's fields of a diffusion run (`Stage.finish`'s `card`), from the components' own
    `describe`, `card_description` and `usage`; `task_tag` and `pipeline_tag` say what the pipeline makes."""
    dataset = components.data.dataset_name
    return {
        "title": f"{output_dir.name}: {components.describe()}",
        "description": components.card_description(metrics, dataset, steps),
        "usage": components.usage(str(output_dir), prompts),
        "tags": ["diffusers", task_tag, components.pipeline_class_name],
        "base_model": components.args.pretrained_pipeline,
        "datasets": [dataset],
        "library_name": "diffusers",
        "pipeline_tag": pipeline_tag,
    }
