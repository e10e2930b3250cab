"""Offline evaluation of image generators and image–text models.

- *Prompt adherence* and *Fréchet distance* of generated images (`ImageEvaluator`), with the classifier trained on
  the real images that `hfrecipes.diffusion.evaluation` provides (shared with the video recipe). The
  classifier's own accuracy on held-out real images is reported beside it, since it bounds what the measurement
  can show. `prompt_plan` says which prompts the evaluation generates and what each should show.
- *Retrieval recall@k* for image–text embeddings (CLIP): image→text and text→image, counting identical
  captions as one (any image with the query's caption is a hit).
- *CLIP score*: 100 x cosine similarity of a CLIP model's image and text embeddings (clipped at 0), averaged;
  `ClipScorer` scores generated images against their prompts with a trained CLIPModel (the CLIP recipe's output),
  with the same score of real images as the reference.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional as F
from transformers import AutoTokenizer, CLIPImageProcessor, CLIPModel

from hfrecipes.core.errors import RecipeInputError
from hfrecipes.diffusion.evaluation import (
    attribute_accuracy,
    batch_slices,
    classifier_features,
    frechet_distance,
    train_attribute_classifier,
)
from hfrecipes.multimodal.vision_text import CLIP_MEAN, CLIP_STD, tokenize


def retrieval_recall(
    image_embeds: torch.Tensor,
    text_embeds: torch.Tensor,
    captions: Sequence[str],
    ks: Sequence[int] = (1, 5),
) -> dict[str, float]:
    """Recall@k for pairs (image i, caption i). Identical captions are one text in the gallery, and a text query
    is answered correctly by any image with that caption; chance levels are returned beside the recalls."""
    unique = sorted(set(captions))
    index = {c: i for i, c in enumerate(unique)}
    first = {c: captions.index(c) for c in unique}
    image_embeds = F.normalize(image_embeds.float(), dim=-1)
    gallery = F.normalize(text_embeds.float()[[first[c] for c in unique]], dim=-1)
    truth = torch.tensor([index[c] for c in captions])
    similarity = image_embeds @ gallery.T  # images x unique captions
    metrics: dict[str, float] = {}
    relevant = truth[None, :] == torch.arange(len(unique))[:, None]  # captions x images
    for k in ks:
        k_text, k_image = min(k, len(unique)), min(k, len(captions))
        top_texts = similarity.topk(k_text, dim=1).indices
        metrics[f"image_to_text_recall@{k}"] = float((top_texts == truth[:, None]).any(1).float().mean())
        top_images = similarity.T.topk(k_image, dim=1).indices
        metrics[f"text_to_image_recall@{k}"] = float(relevant.gather(1, top_images).any(1).float().mean())
        metrics[f"image_to_text_chance@{k}"] = k_text / len(unique)
        per_caption = relevant.sum(1).double()
        miss = torch.tensor(
            [
                math.comb(len(captions) - int(r), k_image) / math.comb(len(captions), k_image)
                for r in per_caption
            ]
        )
        metrics[f"text_to_image_chance@{k}"] = float(1 - miss.mean())
    metrics["retrieval_images"], metrics["retrieval_unique_captions"] = len(captions), len(unique)
    return metrics


@torch.no_grad()
def clip_embeddings(
    model: Any,
    pixel_values: torch.Tensor,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    batch_size: int = 256,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Projected image and text embeddings of a CLIPModel, in batches."""
    model.eval()
    device = next(model.parameters()).device
    images, texts = [], []
    for part in batch_slices(len(pixel_values), batch_size):
        images.append(_embedding(model.get_image_features(pixel_values=pixel_values[part].to(device))))
    for part in batch_slices(len(input_ids), batch_size):
        texts.append(
            _embedding(
                model.get_text_features(
                    input_ids=input_ids[part].to(device), attention_mask=attention_mask[part].to(device)
                )
            )
        )
    return torch.cat(images).float().cpu(), torch.cat(texts).float().cpu()


def _embedding(output: Any) -> torch.Tensor:
    """transformers 5 returns a model output (embedding in `pooler_output`) where 4.x returned a tensor."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


def clip_score(image_embeds: torch.Tensor, text_embeds: torch.Tensor) -> float:
    """100 x the cosine of paired image and text embeddings, clipped at 0, averaged over the pairs."""
    cosine = (F.normalize(image_embeds.float(), dim=-1) * F.normalize(text_embeds.float(), dim=-1)).sum(-1)
    return float((100 * cosine.clamp(min=0)).mean())


def is_clip_model_dir(path: str | None) -> bool:
    """A local directory holding a full `CLIPModel` (image and text towers), e.g. the CLIP recipe's output."""
    config = Path(path) / "config.json" if path else None
    if config is None or not config.is_file():
        return False
    try:
        return json.loads(config.read_text()).get("model_type") == "clip"
    except (OSError, ValueError):
        return False


class ClipScorer:
    """CLIP score (`clip_score`: 100 x cosine of image and prompt embeddings, clipped at 0, averaged) of images
    against their prompts, with a trained `CLIPModel` and its tokenizer and image normalisation.

    Images come as the generators give them (N x C x H x W in [-1, 1], 1 or 3 channels) and are brought to the
    image tower's input (RGB, resized bicubic with antialiasing to its size, normalised with its mean/std), so
    real images at the generator's resolution (`reference`) go through the same path and give the level a
    perfect generator would reach. When the generator's text encoder is this CLIP's text tower the score is not
    independent of the conditioning (it still goes through the separately trained image tower)."""

    def __init__(
        self, model: Any, tokenizer: Any, image_size: int, mean: Sequence[float], std: Sequence[float]
    ):
        self.model, self.tokenizer, self.image_size = model.eval(), tokenizer, image_size
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)

    @classmethod
    def load(cls, name_or_path: str) -> ClipScorer:
        """From a CLIPModel directory (the CLIP recipe's output) or Hub id; RecipeInputError if it is not one."""
        try:
            model = CLIPModel.from_pretrained(name_or_path, use_safetensors=True)
            tokenizer = AutoTokenizer.from_pretrained(name_or_path)
        except (OSError, ValueError) as err:
            raise RecipeInputError(
                f"Could not load a CLIPModel and its tokenizer from {name_or_path!r} for the CLIP score: {err}. "
                "Point clip_model_path at the CLIP recipe's output (recipes/multimodal/train_clip.py) or a Hub CLIP."
            ) from err
        size, mean, std = model.config.vision_config.image_size, CLIP_MEAN, CLIP_STD
        try:
            processor = CLIPImageProcessor.from_pretrained(name_or_path)
            mean, std = processor.image_mean, processor.image_std
        except (OSError, ValueError):
            pass  # no preprocessor_config.json: CLIP's own normalisation
        return cls(model, tokenizer, size, mean, std)

    def pixels(self, images: torch.Tensor) -> torch.Tensor:
        rgb = resize_to((images.float().cpu() + 1) / 2, self.image_size, 3)
        return (rgb.clamp(0, 1) - self.mean) / self.std

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, prompts: Sequence[str], device: Any = None) -> float:
        """The CLIP score of image i against prompt i."""
        if len(images) != len(prompts):
            raise ValueError(f"{len(images)} images for {len(prompts)} prompts.")
        if device is not None:
            self.model.to(device)
        tokens = tokenize(self.tokenizer, list(prompts))
        image_embeds, text_embeds = clip_embeddings(
            self.model, self.pixels(images), tokens["input_ids"], tokens["attention_mask"]
        )
        return clip_score(image_embeds, text_embeds)

    def reference(self, pairs: Any, limit: int = 256, device: Any = None) -> dict[str, float]:
        """`clip_score_real` on real {"pixels" in [-1, 1], "caption"} rows (what the samples are compared with)
        and `clip_score_real_shuffled` with the captions rotated by half (the level of an image that ignores its
        prompt)."""
        count = min(limit, len(pairs))
        rows = [pairs[i] for i in range(count)]
        pixels, captions = torch.stack([r["pixels"] for r in rows]), [r["caption"] for r in rows]
        return {
            "clip_score_real": self(pixels, captions, device),
            "clip_score_real_shuffled": self(pixels, captions[count // 2 :] + captions[: count // 2], device),
        }


# ------------------------------------------------------------------------------ generator evaluation


def resize_to(pixels: torch.Tensor, size: int, channels: int) -> torch.Tensor:
    """Generated images brought to the evaluator's input: `size` px (antialiased) and `channels`."""
    if pixels.shape[1] != channels:
        pixels = pixels.mean(1, keepdim=True) if channels == 1 else pixels.expand(-1, channels, -1, -1)
    if pixels.shape[-1] != size or pixels.shape[-2] != size:
        pixels = F.interpolate(pixels.float(), size=(size, size), mode="bilinear", antialias=True)
    return pixels


class ImageEvaluator:
    """Prompt adherence and Fréchet distance for generated images, from a classifier fitted on real ones.

    `train_labels` / `validation_labels` map attribute name -> integer labels of the real images; the
    classifier's accuracy on the validation images is in `reference_metrics` (`classifier_accuracy_<attr>`)."""

    def __init__(
        self,
        train_pixels: torch.Tensor,
        train_labels: dict[str, torch.Tensor],
        validation_pixels: torch.Tensor,
        validation_labels: dict[str, torch.Tensor],
        num_classes: dict[str, int],
        *,
        seed: int = 0,
        epochs: int = 5,
    ):
        self.size, self.channels = train_pixels.shape[-1], train_pixels.shape[1]
        self.num_classes = dict(num_classes)
        self.classifier = train_attribute_classifier(
            train_pixels, train_labels, num_classes, epochs=epochs, seed=seed
        )
        self.reference_metrics = attribute_accuracy(
            self.classifier, validation_pixels, validation_labels, "classifier_accuracy"
        )
        self.reference_metrics.update({f"chance_adherence_{k}": 1 / n for k, n in num_classes.items()})
        self.real_features = classifier_features(self.classifier, validation_pixels)

    def __call__(
        self, images: torch.Tensor, targets: dict[str, torch.Tensor] | None = None
    ) -> dict[str, float]:
        pixels = resize_to(images, self.size, self.channels)
        metrics = {
            "frechet_distance": frechet_distance(
                self.real_features, classifier_features(self.classifier, pixels)
            )
        }
        if targets:
            metrics.update(attribute_accuracy(self.classifier, pixels, targets, "adherence"))
        return metrics


@dataclass
class PromptPlan:
    """What the evaluation generates: one prompt per sample (rows of the grid), their targets per attribute."""

    prompts: list[str]
    row_labels: list[str]
    targets: dict[str, torch.Tensor]


def prompt_plan(
    prompts: Sequence[str], targets: Sequence[dict[str, int]] | None, samples_per_prompt: int
) -> PromptPlan:
    """A `PromptPlan`: each prompt repeated `samples_per_prompt` times, with its targets per attribute repeated
    alike."""
    repeated = [p for p in prompts for _ in range(samples_per_prompt)]
    tensors: dict[str, torch.Tensor] = {}
    if targets:
        for name in targets[0]:
            tensors[name] = torch.tensor([t[name] for t in targets for _ in range(samples_per_prompt)])
    return PromptPlan(prompts=repeated, row_labels=list(prompts), targets=tensors)


__all__ = [
    "ClipScorer",
    "ImageEvaluator",
    "PromptPlan",
    "prompt_plan",
    "resize_to",
    "clip_embeddings",
    "clip_score",
    "is_clip_model_dir",
    "retrieval_recall",
]
