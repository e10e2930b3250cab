"""Prepare training data: load sources, clean, filter, dedup, balance domains, validate the format, report.

    python recipes/text/prepare_data.py --config recipes/text/configs/prepare_tiny.yaml [--key value ...]

Writes a `datasets` dataset (`Dataset.save_to_disk`) into `output_dir` with `data_report.json`,
`data_report.md` + `data_report.png` (removals per step, domain shares), `lineage.json` and a dataset card.
The next stage takes the directory as its `dataset_name` (e.g. pretrain.py --dataset_name runs/prepared_tiny).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from hfrecipes.core.args import PublishArguments
from hfrecipes.core.config import RecipeParser, run_main
from hfrecipes.core.data_report import DataReport
from hfrecipes.core.errors import RecipeInputError
from hfrecipes.core.io import atomic_write_text
from hfrecipes.core.reports import data_report_markdown, plot_data_report
from hfrecipes.core.stages import start_stage
from hfrecipes.data import SourceSpec, load_sources, parse_pipeline, run_pipeline
from hfrecipes.data.formats import validate_format

logger = logging.getLogger(__name__)


@dataclass
class PrepareArguments:
    sources: list[str] = field(
        default_factory=list,
        metadata={
            "help": "Sources: builtin:/path/Hub id strings or mappings {name, domain, text_column, split, config, max_rows}."
        },
    )
    pipeline: list[str] | None = field(
        default=None, metadata={"help": "Steps (see hfrecipes.data.registered_steps())."}
    )
    format: str = field(
        default="lm",
        metadata={"help": "What the next recipe needs: lm, sft, preference, prompt, classification."},
    )
    text_file_unit: str = field(
        default="paragraph", metadata={"help": "One row of a .txt file: line, paragraph or document."}
    )
    output_dir: str = field(
        default="runs/prepared", metadata={"help": "Where the prepared dataset is written."}
    )
    num_proc: int | None = field(default=None, metadata={"help": "Processes for datasets.map."})
    backend: str = field(
        default="datasets",
        metadata={
            "help": "datasets (one machine, num_proc) or datatrove (its executors; whole-dataset steps such as mixing "
            "then run on datasets)."
        },
    )
    datatrove_executor: str = field(
        default="local", metadata={"help": "local, slurm or ray (backend: datatrove)."}
    )
    datatrove_tasks: int = field(default=4, metadata={"help": "datatrove tasks (input shards)."})
    datatrove_workers: int = field(
        default=2, metadata={"help": "datatrove tasks run at once (local executor)."}
    )


def parse_args(argv: list[str] | None = None) -> tuple:
    """The run's settings: the --config YAML file, then any --key value overrides."""
    return RecipeParser((PrepareArguments, PublishArguments)).parse_args_and_config(argv)


def main() -> None:
    # --- args: parse and validate everything before loading any data ---------------------------------------
    args, publish_args = parse_args()
    steps = parse_pipeline(args.pipeline)
    if args.backend not in ("datasets", "datatrove"):
        raise RecipeInputError(f"backend must be 'datasets' or 'datatrove', not {args.backend!r}.")
    specs = [SourceSpec.parse(s) for s in ([args.sources] if isinstance(args.sources, str) else args.sources)]
    stage = start_stage(
        "text/prepare_data", args, publish_args, inputs={"data": [spec.name for spec in specs]}
    )
    report = DataReport(source=", ".join(spec.name for spec in specs))

    # --- data: load, clean, balance, validate ---------------------------------------------------------------
    dataset = load_sources(
        args.sources, report, text_only=args.format == "lm", text_file_unit=args.text_file_unit
    )
    if args.backend == "datatrove":
        dataset, steps = run_datatrove_prefix(dataset, steps, report, args)
    dataset = run_pipeline(dataset, steps, report, num_proc=args.num_proc)
    validate_format(dataset, args.format)
    report.summary.update(rows=len(dataset), columns=dataset.column_names)

    # --- save (atomically) with reports, lineage and card ---------------------------------------------------
    output_dir = Path(args.output_dir)
    with stage.staging() as staging:
        dataset.save_to_disk(str(staging))
        report.save(staging / "data_report.json")
        report_dict = {
            **report.to_dict(),
            "recipe": "text/prepare_data",
            "sources": [spec.name for spec in specs],
        }
        plot_data_report(report_dict, staging / "data_report.png")
        atomic_write_text(staging / "data_report.md", data_report_markdown(report_dict))
        metrics = {
            "rows_in": sum(s.rows_in for s in report.steps if s.step.startswith("load:")),
            "rows_out": len(dataset),
        }
        stage.finish(
            staging,
            config={"prepare": args, "publish": publish_args},
            report=report_dict,
            metrics=metrics,
            card={"title": output_dir.name},
            card_kind="dataset",
        )
    print(
        f"Prepared {len(dataset):,} rows ({metrics['rows_in']:,} loaded) into {output_dir}; report: {output_dir / 'data_report.md'}"
    )


def run_datatrove_prefix(dataset, steps, report, args):
    """Run the leading steps datatrove supports on its executor; return the data and the remaining steps."""
    import shutil

    from hfrecipes.data.datatrove_backend import datatrove_prefix_length, run_with_datatrove

    count = datatrove_prefix_length(steps, dataset.column_names)
    if count == 0:
        return dataset, steps
    work_dir = Path(args.output_dir).parent / f".{Path(args.output_dir).name}.datatrove"
    shutil.rmtree(work_dir, ignore_errors=True)  # datatrove skips tasks it finds completed in its work dir
    dataset = run_with_datatrove(
        dataset,
        steps[:count],
        work_dir,
        tasks=args.datatrove_tasks,
        workers=args.datatrove_workers,
        executor=args.datatrove_executor,
        report=report,
    )
    shutil.rmtree(work_dir, ignore_errors=True)
    return dataset, steps[count:]


if __name__ == "__main__":
    run_main(main)
