"""THE stage life cycle, one for every recipe: `start_stage` before any data is read, `Stage.finish` (or
`Stage.finish_trainer`) once the outputs are in a staging directory.

Start: log format, seed, the inputs checked (a missing stage directory names the command that makes it), the
`report_to` backends checked, the push request and the Hub token taken out of the arguments (so no file the run
writes, Trainer's `training_args.bin` included, can hold the token), and the distributed-state check.

Finish: pickles removed, the tokenizer, loss curve, samples, log history, data report, lineage and model card
written, the directory published atomically (lineage.json last) and optionally pushed, with `private` honoured.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import PreTrainedTokenizerBase, Trainer, TrainingArguments, set_seed

from hfrecipes.core.data_report import DataReport
from hfrecipes.core.efficiency import trainer_efficiency
from hfrecipes.core.hub import (
    PICKLE_PATTERNS,
    build_lineage,
    card_metadata,
    check_input_reference,
    describe_input,
    push_output_dir,
    render_dataset_card,
    render_model_card,
    write_stage_files,
)
from hfrecipes.core.io import (
    atomic_write_json,
    check_output_dir,
    fresh_staging,
    publish_staged,
    staging_dir,
    staging_path,
)
from hfrecipes.core.reports import plot_loss_curves
from hfrecipes.core.training import check_distributed_state, check_report_to

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PushRequest:
    """Where a finished stage goes on the Hub. `repo_id` None means `<the token's user>/<output dir name>`, as
    Trainer does. The token lives here, in memory only, never in the arguments that get saved."""

    repo_id: str | None
    private: bool | None
    token: str | None = field(default=None, repr=False)


@dataclass
class Stage:
    """A started stage: what it is, where it writes, what it read, and where it will be pushed."""

    recipe: str
    output_dir: Path
    inputs: dict[str, str | list[str] | None]
    push: PushRequest | None
    license: str | None = None

    def staging(self) -> AbstractContextManager[Path]:
        """A fresh staging directory beside the output directory (single process); removed if the block fails."""
        return fresh_staging(self.output_dir)

    def shared_staging(self, is_main_process: bool, main_process_first: Callable) -> Path:
        """The staging directory every rank of a distributed run saves into: the main process empties it first,
        the others wait for that and share the same path (FSDP / ZeRO-3 gather their shards there)."""
        with main_process_first():
            return staging_dir(self.output_dir) if is_main_process else staging_path(self.output_dir)

    def finish_trainer(self, trainer: Trainer, **outputs: Any) -> dict[str, Any] | None:
        """Save a Trainer's model on every rank into the shared staging directory, then finish the stage on the
        main process (keyword arguments as `finish`). Returns the lineage there, None elsewhere. The efficiency
        record comes from the trainer when `hfrecipes.core.efficiency.track_efficiency` was attached."""
        staging = self.shared_staging(
            trainer.is_world_process_zero(),
            lambda: trainer.args.main_process_first(desc="staging"),
        )
        trainer.save_model(str(staging))
        if not trainer.is_world_process_zero():
            return None
        outputs.setdefault("efficiency", trainer_efficiency(trainer))
        outputs.setdefault("log_history", trainer.state.log_history)
        return self.finish(staging, **outputs)

    def finish(
        self,
        staging: Path,
        *,
        config: dict[str, Any],
        metrics: dict[str, Any],
        card: dict[str, Any] | str,
        report: DataReport | dict | None = None,
        tokenizer: PreTrainedTokenizerBase | None = None,
        log_history: list[dict[str, Any]] | None = None,
        samples: Any = None,
        loss_title: str = "loss",
        extra: dict[str, Any] | None = None,
        more_inputs: dict[str, str | None] | None = None,
        save_more: Callable[[Path], None] | None = None,
        efficiency: dict[str, Any] | None = None,
        card_kind: str = "model",
    ) -> dict[str, Any]:
        """Main process: the model (or dataset, or tokenizer) is already in `staging`. Add the tokenizer, loss
        curve, samples, log history, data report, lineage and card (`card` = render_model_card's keyword
        arguments, or the card's whole text; `save_more(staging)` writes recipe-specific files), remove pickles, publish atomically
        (lineage.json last) and push when asked."""
        if tokenizer is not None:
            tokenizer.save_pretrained(staging)
        if save_more is not None:
            save_more(staging)
        if log_history is not None:
            plot_loss_curves(log_history, staging / "loss_curve.png", title=loss_title)
            atomic_write_json(staging / "log_history.json", log_history)
        if samples is not None:
            atomic_write_json(staging / "samples.json", samples)
        if isinstance(report, DataReport):
            report.save(staging / "data_report.json")
            report = report.to_dict()
        remove_pickles(staging)
        inputs = {**self.inputs, **(more_inputs or {})}
        lineage = build_lineage(
            recipe=self.recipe,
            config=config,
            inputs=[
                describe_input(kind, reference)
                for kind, value in inputs.items()
                for reference in (value if isinstance(value, list) else [value])
            ],
            data_report=report,
            metrics=metrics,
            extra=extra,
            efficiency=efficiency,
        )
        lineage["card"] = card_metadata(lineage, staging, license=self.license)
        lineage["card"]["repo_type"] = "dataset" if card_kind == "dataset" else "model"
        if isinstance(card, str):  # a card written by the recipe itself (an evaluation's table)
            rendered = card
        elif card_kind == "dataset":
            rendered = render_dataset_card(lineage, **card)
        else:
            rendered = render_model_card(lineage, **card)
        write_stage_files(staging, lineage, rendered)
        publish_staged(staging, self.output_dir)
        if self.push is not None:
            push_output_dir(
                self.output_dir, self.push.repo_id, private=self.push.private, token=self.push.token
            )
        return lineage


def remove_pickles(directory: Path) -> None:
    """Pickled files (Trainer's `training_args.bin`, `*.pt`, `*.pkl`) never belong in a published stage: the
    full configuration is in lineage.json, and weights are safetensors."""
    for pattern in PICKLE_PATTERNS:
        for path in directory.rglob(pattern):
            if path.is_file():
                path.unlink()


def _configs_with(name: str, configs: tuple[Any, ...]) -> list[Any]:
    return [c for c in configs if c is not None and hasattr(c, name)]


def _first(name: str, configs: tuple[Any, ...], default: Any = None) -> Any:
    found = _configs_with(name, configs)
    return getattr(found[0], name) if found else default


def take_push_request(*configs: Any) -> PushRequest | None:
    """Take the publishing fields out of the arguments: Trainer must not push by itself (it would contact the
    Hub at start-up and upload every checkpoint; the finished, carded directory is uploaded once) and the token
    must not stay where Trainer pickles it. The token of `--hub_token` (else HF_TOKEN / the login) is kept in
    the returned request only."""
    token = next((t for c in _configs_with("hub_token", configs) if (t := c.hub_token)), None)
    for config in _configs_with("hub_token", configs):
        config.hub_token = None
    wanted = any(getattr(c, "push_to_hub", False) for c in configs if c is not None)
    for config in _configs_with("push_to_hub", configs):
        config.push_to_hub = False
    if not wanted:
        return None
    return PushRequest(
        repo_id=_first("hub_model_id", configs),
        private=_first("hub_private_repo", configs),
        token=token,
    )


def start_stage(
    recipe: str,
    *configs: Any,
    inputs: dict[str, str | list[str] | None] | None = None,
) -> Stage:
    """Start a stage, before any data is read. `configs` are the recipe's parsed argument dataclasses; `seed`,
    `output_dir`, `report_to`, the publishing fields (`push_to_hub`, `hub_model_id`, `hub_private_repo`,
    `hub_token`, `license`) are read wherever they are. `inputs` maps a kind ("data", "model", ...) to the
    references the stage reads: each must exist locally or be a reachable Hub id, else one clear error names
    what is missing and the command that makes it."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    output_dir = check_output_dir(_first("output_dir", configs))
    inputs = {kind: value for kind, value in (inputs or {}).items() if value}
    for kind, value in inputs.items():
        for reference in value if isinstance(value, list) else [value]:
            check_input_reference(kind, reference)
    check_report_to(_first("report_to", configs))
    push = take_push_request(*configs)
    for config in configs:
        if isinstance(config, TrainingArguments):
            check_distributed_state(config)
    set_seed(_first("seed", configs, 42))
    return Stage(
        recipe=recipe,
        output_dir=Path(output_dir),
        inputs=inputs,
        push=push,
        license=_first("license", configs),
    )


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
