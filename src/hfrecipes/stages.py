"""Finishing a Trainer-based stage the same way in every recipe: save into a staging directory (every rank, so
FSDP / ZeRO-3 can gather), then on the main process the tokenizer, plots, samples, data report, lineage and model
card, publish atomically (lineage.json last) and optionally push."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from transformers import PreTrainedTokenizerBase, Trainer

from hfrecipes.data import DataReport
from hfrecipes.efficiency import trainer_efficiency
from hfrecipes.hub import build_lineage, push_output_dir, render_model_card, write_stage_files
from hfrecipes.io import atomic_write_json, publish_staged
from hfrecipes.reports import plot_loss_curves
from hfrecipes.training import trainer_staging_dir


def save_trainer_stage(trainer: Trainer, output_dir: str | Path, **stage: Any) -> dict[str, Any] | None:
    """Save a Trainer's model on every rank into the shared staging directory, then publish the stage from the
    main process (see `publish_stage` for the keyword arguments). Returns the lineage there, None elsewhere.
    The efficiency record comes from the trainer when `hfrecipes.efficiency.track_efficiency` was attached."""
    staging = trainer_staging_dir(trainer, Path(output_dir))
    trainer.save_model(str(staging))
    if not trainer.is_world_process_zero():
        return None
    (staging / "training_args.bin").unlink(missing_ok=True)  # a pickle; the full config is in lineage.json
    stage.setdefault("efficiency", trainer_efficiency(trainer))
    return publish_stage(staging, output_dir, log_history=trainer.state.log_history, **stage)


def publish_stage(
    staging: Path,
    output_dir: str | Path,
    *,
    tokenizer: PreTrainedTokenizerBase,
    recipe: str,
    config: dict[str, Any],
    inputs: list[dict | None],
    report: DataReport | None,
    metrics: dict[str, Any],
    card: dict[str, Any],
    log_history: list[dict[str, Any]],
    push_repo: str | None = None,
    samples: Any = None,
    loss_title: str = "loss",
    extra: dict[str, Any] | None = None,
    save_more: Callable[[Path], None] | None = None,
    efficiency: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Main process: the model is already in `staging`; add the tokenizer, loss curve, samples, log history,
    data report, lineage and model card (`card` = render_model_card's keyword arguments; `save_more(staging)`
    writes recipe-specific files; `efficiency` = `hfrecipes.efficiency.efficiency_record(...)`), publish
    atomically (lineage.json last) and optionally push."""
    tokenizer.save_pretrained(staging)
    if save_more is not None:
        save_more(staging)
    plot_loss_curves(log_history, staging / "loss_curve.png", title=loss_title)
    if samples is not None:
        atomic_write_json(staging / "samples.json", samples)
    atomic_write_json(staging / "log_history.json", log_history)
    if report is not None:
        report.save(staging / "data_report.json")
    lineage = build_lineage(
        recipe=recipe,
        config=config,
        inputs=inputs,
        data_report=report.to_dict() if report is not None else None,
        metrics=metrics,
        extra=extra,
        efficiency=efficiency,
    )
    write_stage_files(staging, lineage, render_model_card(lineage, **card))
    publish_staged(staging, output_dir)
    if push_repo:
        push_output_dir(output_dir, push_repo)
    return lineage


def merged_adapter_writer(
    trainer: Trainer, tokenizer: PreTrainedTokenizerBase, enabled: bool
) -> Callable[[Path], None] | None:
    """`save_more` for LoRA recipes with `merge_adapter`: also write `merged/`, a standalone model. It runs after
    the adapter itself is saved, because merging folds the adapter into the base weights in place."""
    if not enabled:
        return None

    def write(staging: Path) -> None:
        trainer.model.merge_and_unload().save_pretrained(staging / "merged")
        tokenizer.save_pretrained(staging / "merged")

    return write
