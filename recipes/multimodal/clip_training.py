"""How recipes/multimodal/train_clip.py trains and evaluates, copied along by `hfrecipes copy
multimodal/train_clip.py DIR`: the loss (`contrastive_loss`, CLIP's symmetric InfoNCE with the negatives of the
global batch), the Trainer that backpropagates and logs it (`ContrastiveTrainer`), and the held-out retrieval
evaluation (`evaluate_retrieval`). The library keeps the plumbing: data, towers, the gather across ranks, the
retrieval metrics and the stage life cycle."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from transformers import Trainer

from hfrecipes.image.evaluation import clip_embeddings, retrieval_recall
from hfrecipes.multimodal.contrastive import gather_with_grad
from hfrecipes.multimodal.vision_text import tokenize


def contrastive_loss(
    image_embeds: torch.Tensor, text_embeds: torch.Tensor, logit_scale: torch.Tensor
) -> torch.Tensor:
    """CLIP's symmetric InfoNCE loss (`CLIPModel`'s, on its normalised embeddings) with the negatives of the
    global batch: under data parallelism each rank scores its own pairs against every rank's pairs (gathered with
    their gradients), so N processes with batch B optimise exactly what one process with batch N·B does. Per-rank
    in-batch negatives would instead train a different, easier objective (B - 1 negatives instead of N·B - 1)."""
    all_images, offset = gather_with_grad(image_embeds)
    all_texts, _ = gather_with_grad(text_embeds)
    scale = logit_scale.exp()
    labels = torch.arange(image_embeds.shape[0], device=image_embeds.device) + offset
    image_loss = torch.nn.functional.cross_entropy(scale * image_embeds @ all_texts.T, labels)
    text_loss = torch.nn.functional.cross_entropy(scale * text_embeds @ all_images.T, labels)
    return (image_loss + text_loss) / 2


class ContrastiveTrainer(Trainer):
    """`Trainer` for `CLIPModel` whose training and evaluation loss is `contrastive_loss` (looked up at each call;
    negatives from every rank). DDP averages the ranks' gradients, and the mean of the ranks' losses is the global
    batch's loss, so no further scaling is needed. The ranks' batches must have equal sizes, which Accelerate's
    default `even_batches` ensures."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs = model(**{k: v for k, v in inputs.items() if k != "return_loss"}, return_loss=False)
        logit_scale = self.accelerator.unwrap_model(model).logit_scale
        loss = contrastive_loss(outputs.image_embeds, outputs.text_embeds, logit_scale)
        return (loss, outputs) if return_outputs else loss


def evaluate_retrieval(
    model: Any, pairs: Any, tokenizer: Any, ks: Sequence[int] = (1, 5), limit: int = 1000
) -> dict:
    """Image→text and text→image recall@k (with chance levels; identical captions count as one text) of a
    CLIPModel on the first `limit` held-out {"pixels", "caption"} rows."""
    count = min(limit, len(pairs))
    pixels = torch.stack([pairs[i]["pixels"] for i in range(count)])
    captions = [pairs[i]["caption"] for i in range(count)]
    tokens = tokenize(tokenizer, captions)
    images, texts = clip_embeddings(model, pixels, tokens["input_ids"], tokens["attention_mask"])
    return retrieval_recall(images, texts, captions, ks)
