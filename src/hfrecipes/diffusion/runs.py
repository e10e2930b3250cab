"""What a finished diffusion run reports: held-out denoising losses (`validation_losses`), its metrics
(`run_metrics`), its output files (`write_run_files`) and the fingerprint the resume check compares
(`fingerprint_of`)."""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hfrecipes.core.efficiency import with_unit
from hfrecipes.core.io import atomic_write_json
from hfrecipes.core.reports import plot_loss_curves
from hfrecipes.diffusion.components import DiffusionComponents
from hfrecipes.diffusion.loop import LoopResult


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
    result: LoopResult,
    components: DiffusionComponents,
    *,
    unit: str,
    extra: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(metrics, untrained evaluation, final evaluation) of a finished DiffusionLoop run: steps, `<unit>_seen`
    and `<unit>_per_second`, parameter counts of the components' trainable modules, first / last training loss, the
    final evaluation's measures and the step-0 ones as `untrained_*`. Also names `result.efficiency`'s count in
    `unit` (for lineage["efficiency"])."""
    modules = components.trainable()
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
