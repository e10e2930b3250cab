"""Offline evaluation of image and video generators with a classifier trained on the real data.

- *Prompt adherence*: a small CNN (`AttributeClassifier`) is trained on the **real** training images (or video
  frames) to predict the attributes prompts name (a digit's label; a shape's colour, shape, size, position).
  Generated samples are classified and compared with what their prompt asked for (`attribute_accuracy`): accuracy
  per attribute (chance = 1 / classes) and the fraction with every attribute right.
- *Fréchet distance in the classifier's feature space* (`classifier_features`, `frechet_distance`): between
  Gaussians fitted to the penultimate-layer features of real and generated images. An offline stand-in for FID
  (which uses Inception-v3 features and needs a download): comparable between runs scored by the same classifier
  only, and biased upward for small sample counts like FID.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


class AttributeClassifier(nn.Module):
    """Three conv blocks, global average pooling, a `feature_dim` embedding and one linear head per attribute."""

    def __init__(self, channels: int, heads: dict[str, int], width: int = 16, feature_dim: int = 64):
        super().__init__()
        self.heads_spec = dict(heads)

        def block(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU())

        self.body = nn.Sequential(
            block(channels, width),
            nn.MaxPool2d(2),
            block(width, 2 * width),
            nn.MaxPool2d(2),
            block(2 * width, 2 * width),
            nn.AdaptiveAvgPool2d(2),
            nn.Flatten(),
            nn.Linear(8 * width, feature_dim),
            nn.ReLU(),
        )
        self.heads = nn.ModuleDict({name: nn.Linear(feature_dim, n) for name, n in heads.items()})

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.body(pixels)

    def forward(self, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.features(pixels)
        return {name: head(features) for name, head in self.heads.items()}


def batch_slices(n: int, size: int) -> list[slice]:
    """Slices that cover range(n) in runs of `size` (the last one shorter)."""
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


def train_attribute_classifier(
    pixels: torch.Tensor,
    labels: dict[str, torch.Tensor],
    num_classes: dict[str, int],
    *,
    epochs: int = 5,
    batch_size: int = 64,
    learning_rate: float = 3e-3,
    seed: int = 0,
    min_steps: int = 150,
) -> AttributeClassifier:
    """Fit the classifier on real images (N x C x H x W in [-1, 1]) and their integer labels per attribute, for
    `epochs` (at least `min_steps` optimizer steps on small sets). Small random shifts (±1/16 of the side) make it
    robust to the blur and offsets of generated samples."""
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AttributeClassifier(pixels.shape[1], num_classes)
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=1e-4)
    epochs = max(epochs, math.ceil(min_steps / math.ceil(len(pixels) / batch_size)))
    steps = epochs * math.ceil(len(pixels) / batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=learning_rate, total_steps=steps)
    shift = max(1, pixels.shape[-1] // 16)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(pixels), generator=generator)
        for part in batch_slices(len(pixels), batch_size):
            index = order[part]
            dx, dy = (int(v) for v in torch.randint(-shift, shift + 1, (2,), generator=generator))
            batch = torch.roll(pixels[index], shifts=(dy, dx), dims=(-2, -1))
            logits = model(batch)
            loss = sum(F.cross_entropy(logits[name], labels[name][index]) for name in num_classes)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    return model.eval()


@torch.no_grad()
def predict(
    model: AttributeClassifier, pixels: torch.Tensor, batch_size: int = 256
) -> dict[str, torch.Tensor]:
    """The classifier's predicted class per attribute for each image (N x C x H x W in [-1, 1])."""
    model.eval()
    outputs: dict[str, list[torch.Tensor]] = {name: [] for name in model.heads_spec}
    for part in batch_slices(len(pixels), batch_size):
        for name, logits in model(pixels[part].float()).items():
            outputs[name].append(logits.argmax(-1))
    return {name: torch.cat(values) for name, values in outputs.items()}


@torch.no_grad()
def classifier_features(
    model: AttributeClassifier, pixels: torch.Tensor, batch_size: int = 256
) -> np.ndarray:
    """The classifier's penultimate-layer features of each image, as float64 numpy (for `frechet_distance`)."""
    model.eval()
    parts = [model.features(pixels[part].float()) for part in batch_slices(len(pixels), batch_size)]
    return torch.cat(parts).double().numpy()


def attribute_accuracy(
    model: AttributeClassifier, pixels: torch.Tensor, targets: dict[str, torch.Tensor], prefix: str
) -> dict[str, float]:
    """`<prefix>_<attribute>` accuracy per attribute and `<prefix>_all` (every attribute right)."""
    predicted = predict(model, pixels)
    hits = {name: (predicted[name] == targets[name].to(predicted[name].device)) for name in targets}
    metrics = {f"{prefix}_{name}": float(hit.float().mean()) for name, hit in hits.items()}
    if len(hits) > 1:
        metrics[f"{prefix}_all"] = float(torch.stack(list(hits.values())).all(0).float().mean())
    return metrics


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^1/2), with the trace of the matrix square root taken
    from the eigenvalues of S_a^1/2 S_b S_a^1/2 (symmetric, so no complex parts)."""
    mu_a, mu_b = features_a.mean(0), features_b.mean(0)
    cov_a, cov_b = np.cov(features_a, rowvar=False), np.cov(features_b, rowvar=False)
    values, vectors = np.linalg.eigh(cov_a)
    root_a = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T
    middle = np.linalg.eigvalsh(root_a @ cov_b @ root_a)
    trace_root = float(np.sqrt(np.clip(middle, 0, None)).sum())
    distance = float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_root)
    return max(distance, 0.0)  # rounding can leave identical sets a hair below zero
