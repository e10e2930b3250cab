"""Run a YAML cleaning pipeline on datatrove's executors, for corpora larger than one machine's `datasets` run.

The list of steps that `run_pipeline` applies with `datasets.map` becomes a chain of datatrove executor runs
("stages") that read and write JSONL shards, so the same recipe scales out on Slurm or Ray:

- steps that datatrove implements run as its own block with the step's parameters: gopher_quality ->
  `GopherQualityFilter`, gopher_repetition -> `GopherRepetitionFilter`, c4_quality -> `C4QualityFilter`
  (which, like ours, rewrites the text), fineweb_quality -> `FineWebQualityFilter`;
- exact_dedup runs as datatrove's 3-stage exact dedup (`ExactDedupSignature` / `ExactFindDedups` /
  `ExactDedupFilter`) on our dedup key (case and whitespace folded), keeping the first occurrence;
- near_dedup runs as datatrove's 4-stage MinHash dedup (`MinhashDedupSignature` / `Buckets` / `Cluster` /
  `Filter`) with the step's shingle size, bands, rows per band, seed and text normalisation. Shingles are
  hashed with SHA-1 (datatrove's xxhash mode fails with xxhash 4, which refuses str); with
  `hash_function: sha1` on the step both backends hash identically and differ only in word splitting (spaCy
  there, whitespace here) and in which member of a cluster of 3+ survives. `threshold` has no datatrove
  equivalent (every band collision links two documents) and is refused;
- every other filter or transform runs inside a generic block calling the step's `setup`/`keep`/`transform`;
- steps that need the whole dataset at once and have no datatrove form (label conflicts, domain mixing,
  format conversion, decontamination, media steps) are refused before any work.

Executors: "local" (`LocalPipelineExecutor`, tested), "slurm" (`SlurmPipelineExecutor`; pass at least
`executor_kwargs={"time": "04:00:00", "partition": "cpu"}`) and "ray" (`RayPipelineExecutor`, needs `ray`).
On a cluster the work folder must be on a filesystem every node sees. Each stage is one executor run; the
next starts when every task of the previous one has written its completion marker.

Documents without text cannot travel through datatrove: its readers skip them (and its writers omit an empty
`text`). A step that empties a document before a dedup stage therefore loses that row at the next reader
where the `datasets` path would keep it until a filter drops it; the report records such rows as
`datatrove_skipped_empty`.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets

from hfrecipes.core.data_report import DataReport
from hfrecipes.core.errors import RecipeInputError
from hfrecipes.data.near_dedup import NearDedup
from hfrecipes.data.steps import FilterStep, Step, TransformStep, default_columns, row_text
from hfrecipes.data.text import ExactDedup, dedup_key
from hfrecipes.data.web_quality import C4Quality, FineWebQuality, GopherQuality, GopherRepetition

try:
    import orjson
    from datatrove.data import Document, DocumentsPipeline
    from datatrove.executor.base import PipelineExecutor
    from datatrove.pipeline.base import PipelineStep
    from datatrove.pipeline.dedup.exact_dedup import (
        ExactDedupConfig,
        ExactDedupFilter,
        ExactDedupSignature,
        ExactFindDedups,
    )
    from datatrove.pipeline.dedup.minhash import (
        MinhashConfig,
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )
    from datatrove.pipeline.filters import (
        C4QualityFilter,
        FineWebQualityFilter,
        GopherQualityFilter,
        GopherRepetitionFilter,
    )
    from datatrove.pipeline.filters.base_filter import BaseFilter
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter
    from datatrove.utils.hashing import HashConfig
    from datatrove.utils.text import TextNormConfig
    from datatrove.utils.typeshelper import StatHints
except ImportError as err:  # datatrove is the optional `scale` extra
    raise ImportError(
        f"The datatrove backend needs datatrove, orjson and spacy: pip install 'hfrecipes[scale]' ({err})."
    ) from err

EXECUTORS = ("local", "slurm", "ray")
TEXT = "text"
# Metadata key holding the input shard of a row: exact dedup gives earlier shards priority, so the first
# occurrence in row order survives as in the `datasets` path (datatrove breaks ties within a shard only).
SHARD_KEY = "_hfrecipes_shard"
# datatrove stores an exact-dedup priority as uint16 and reserves 0.
MAX_SHARDS = 65534
OUT_OF_SCOPE = "out_of_scope"
CHANGED = "changed"
# datatrove's offline-safe shingle hash: its xxhash mode passes str to xxhash 4, which only takes bytes.
SHA1_64 = HashConfig(precision=64, hash_fc="sha1")
STAGE_POLL_SECONDS = 30


# --------------------------------------------------------------------------------------------------------------
# Blocks wrapping our steps


class _ScopedFilter(BaseFilter):
    """A filter limited to rows of some domains (the step's `domains`); others pass and are counted as
    out of scope, so the report's rows in/out cover in-scope rows only, as in the `datasets` path."""

    def __init__(self, name: str, domains: list[str] | None):
        self.name = name
        super().__init__()
        self.domains = frozenset(domains) if domains else None

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        if self.domains is not None and doc.metadata.get("domain") not in self.domains:
            self.stat_update(OUT_OF_SCOPE)
            return True
        return self.judge(doc)

    def judge(self, doc: Document) -> bool | tuple[bool, str]:
        raise NotImplementedError


def _fields(doc: Document) -> dict[str, Any]:
    return {**doc.metadata, TEXT: doc.text}


class StepFilter(_ScopedFilter):
    """Runs one of our `FilterStep`s as a datatrove filter: the same `keep` decision on the same text."""

    type = "🔻 - FILTER"

    def __init__(self, step: FilterStep, columns: list[str]):
        super().__init__(f"hfrecipes {step.name}", step.domains)
        self.step = step
        self.columns = columns

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        self.step.setup()
        yield from super().run(data, rank, world_size)

    def judge(self, doc: Document) -> bool | tuple[bool, str]:
        text = doc.text if self.columns == [TEXT] else row_text(_fields(doc), self.columns)
        return bool(self.step.keep(text)) or (False, self.step.name)


class ScopedNativeFilter(_ScopedFilter):
    """A datatrove filter applied only to the step's `domains`."""

    type = "🔻 - FILTER"

    def __init__(self, inner: BaseFilter, domains: list[str]):
        super().__init__(f"{inner.name} (domains {', '.join(domains)})", domains)
        self.inner = inner

    def judge(self, doc: Document) -> bool | tuple[bool, str]:
        return self.inner.filter(doc)


class StepTransform(PipelineStep):
    """Runs one of our `TransformStep`s on every document: the text and any string metadata columns it reads."""

    type = "✂️ - TRANSFORM"

    def __init__(self, step: TransformStep, columns: list[str]):
        self.name = f"hfrecipes {step.name}"
        super().__init__()
        self.step = step
        self.columns = columns
        self.domains = frozenset(step.domains) if step.domains else None

    def rewrite(self, doc: Document) -> bool:
        changed = False
        for column in self.columns:
            old = doc.text if column == TEXT else doc.metadata.get(column)
            if not isinstance(old, str):
                continue
            new = self.step.transform(old)
            changed |= new != old
            if column == TEXT:
                doc.text = new
            else:
                doc.metadata[column] = new
        return changed

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        self.step.setup()
        for doc in data:
            with self.track_time():
                self.stat_update(StatHints.total)
                if self.domains is not None and doc.metadata.get("domain") not in self.domains:
                    self.stat_update(OUT_OF_SCOPE)
                elif self.rewrite(doc):
                    self.stat_update(CHANGED)
            yield doc


@dataclass(frozen=True)
class DedupContent:
    """What exact dedup hashes: our `dedup_key` of the step's columns (case and whitespace folded)."""

    columns: tuple[str, ...]

    def __call__(self, doc: Document) -> str:
        text = doc.text if self.columns == (TEXT,) else row_text(_fields(doc), self.columns)
        return dedup_key(text)


def shard_priority(doc: Document) -> int:
    """Earlier input shards win exact-dedup ties (datatrove keeps the highest priority, then the lowest index
    within a shard), so the first occurrence in row order survives."""
    return MAX_SHARDS + 1 - int(doc.metadata.get(SHARD_KEY, MAX_SHARDS))


# --------------------------------------------------------------------------------------------------------------
# Planning: our steps -> datatrove stages


@dataclass
class BlockRole:
    """Why the backend reads a block's stats: `read` (documents in), `write` (documents out), `count` (the
    block that decides `step`'s rows in/out), `detail` (a dedup stage whose counters go to `step`'s details)."""

    kind: str
    step: Step | None = None


@dataclass
class DatatroveStage:
    """One executor run. `pipeline`: datatrove blocks, run in order by every task; `roles`: one per block;
    `tasks`: fixed by the blocks (MinHash buckets: one task per band; clustering and dedup finding: one), or
    None for per-document stages, which take the run's task count. Per-document stages read `source` and
    write `destination` (JSONL shards, one per task)."""

    name: str
    pipeline: list[PipelineStep]
    roles: list[BlockRole]
    tasks: int | None = None
    source: str | None = None
    destination: str | None = None


def _step_columns(step: Step, column_names: list[str]) -> list[str]:
    columns = step.columns or default_columns(column_names)
    missing = [c for c in columns if c not in column_names]
    if missing:
        raise RecipeInputError(
            f"Step {step.name!r} reads columns {missing} that the data lacks ({column_names})."
        )
    return columns


def _text_only(step: Step, column_names: list[str]) -> None:
    """datatrove's own blocks judge `Document.text` alone."""
    if _step_columns(step, column_names) != [TEXT]:
        raise RecipeInputError(
            f"Step {step.name!r} runs as datatrove's own block on the datatrove backend, which reads only the "
            f"`text` column; it is configured with columns={step.columns}. Remove `columns`, or use the "
            "datasets backend."
        )


def _native_filter(step: Step) -> BaseFilter | None:
    """datatrove's block for `step` with the step's parameters (our field names are datatrove's)."""
    params = {
        f.name: getattr(step, f.name)
        for f in dataclasses.fields(step)
        if f.name not in ("columns", "domains")
    }
    if isinstance(step, GopherQuality):
        return GopherQualityFilter(**params)
    if isinstance(step, GopherRepetition):
        pairs = {
            name: tuple((int(n), float(frac)) for n, frac in params[name])
            for name in ("top_n_grams", "dup_n_grams")
        }
        return GopherRepetitionFilter(**{**params, **pairs})
    if isinstance(step, FineWebQuality):
        stop_chars = None if step.stop_chars is None else tuple(step.stop_chars)  # str.endswith needs a tuple
        return FineWebQualityFilter(**{**params, "stop_chars": stop_chars})
    if isinstance(step, C4Quality):
        return C4QualityFilter(**params)
    return None


def _document_block(step: Step, column_names: list[str]) -> PipelineStep:
    if step.domains and "domain" not in column_names:
        raise RecipeInputError(
            f"Step {step.name!r} is limited to domains {step.domains} but the rows have no `domain` column."
        )
    native = _native_filter(step)
    if native is not None:
        _text_only(step, column_names)
        return ScopedNativeFilter(native, step.domains) if step.domains else native
    if isinstance(step, FilterStep):
        return StepFilter(step, _step_columns(step, column_names))
    if isinstance(step, TransformStep):
        return StepTransform(step, _step_columns(step, column_names))
    raise RecipeInputError(
        f"Step {step.name!r} is not supported on the datatrove backend: it works on the whole dataset at once "
        "and datatrove has no equivalent block. Run it on the datasets backend (run_pipeline), before or after "
        "the datatrove run, or remove it from the pipeline."
    )


def _check_dedup(step: Step, column_names: list[str]) -> None:
    if step.domains:
        raise RecipeInputError(
            f"Step {step.name!r} with `domains` is not supported on the datatrove backend (its dedup stages see "
            "every document). Remove `domains`, or use the datasets backend."
        )
    if isinstance(step, NearDedup):
        _text_only(step, column_names)
        if step.threshold is not None:
            raise RecipeInputError(
                f"near_dedup: `threshold` ({step.threshold}) has no equivalent in datatrove's MinHash dedup, which "
                "links every pair that collides in a band. Remove `threshold` for the datatrove backend (tune "
                "`bands`/`rows_per_band` instead), or use the datasets backend."
            )
    else:
        _step_columns(step, column_names)


def minhash_config(step: NearDedup) -> MinhashConfig:
    """datatrove's MinHash settings equal to the step's (SHA-1 shingles: see the module docstring)."""
    return MinhashConfig(
        n_grams=step.shingle_size,
        num_buckets=step.bands,
        hashes_per_bucket=step.rows_per_band,
        seed=step.seed,
        norm_config=TextNormConfig(
            lowercase=step.lowercase,
            remove_punctuation=step.remove_punctuation,
            norm_numbers=step.normalize_numbers,
            norm_unicode_diacritics=step.strip_diacritics,
        ),
        hash_config=SHA1_64,
    )


def exact_dedup_config(step: ExactDedup, column_names: list[str]) -> ExactDedupConfig:
    """datatrove's exact-dedup settings for an `exact_dedup` step: our dedup key of its columns, SHA-1 64-bit
    hashes, and the first occurrence (by shard) kept."""
    return ExactDedupConfig(
        content_getter=DedupContent(tuple(_step_columns(step, column_names))),
        document_priority=shard_priority,
        hash_config=SHA1_64,
    )


def _reader(folder: str) -> JsonlReader:
    return JsonlReader(folder, add_file_path=False)


def _writer(folder: str) -> JsonlWriter:
    return JsonlWriter(folder, output_filename="${rank}.jsonl", compression=None)


def build_datatrove_pipeline(
    steps: list[Step],
    input_folder: str | Path,
    output_folder: str | Path,
    work_folder: str | Path,
    column_names: list[str] | None = None,
) -> list[DatatroveStage]:
    """The datatrove stages that apply `steps` to the JSONL documents in `input_folder` (`text`, `id`, other
    fields as metadata) and write the kept documents to `output_folder`; dedup signatures and intermediate
    shards go under `work_folder`. Without dedup steps this is one stage: reader -> blocks -> writer. Each
    dedup step ends the current stage (its signatures need every earlier step's output) and adds its own
    stages; its final filter block starts the next per-document stage. `column_names`: the fields documents
    carry (default `text` only), for steps that read other columns or are limited to domains."""
    column_names = list(column_names or [TEXT])
    work = Path(work_folder)
    stages: list[DatatroveStage] = []
    source = str(input_folder)
    segment: list[tuple[PipelineStep, Step]] = []

    def close_segment(destination: str) -> None:
        nonlocal source, segment
        stages.append(
            DatatroveStage(
                name=f"{len(stages):02d}_documents",
                pipeline=[_reader(source), *(block for block, _ in segment), _writer(destination)],
                roles=[
                    BlockRole("read"),
                    *(BlockRole("count", step) for _, step in segment),
                    BlockRole("write"),
                ],
                source=source,
                destination=destination,
            )
        )
        source, segment = destination, []

    for position, step in enumerate(steps):
        if not isinstance(step, ExactDedup | NearDedup):
            segment.append((_document_block(step, column_names), step))
            continue
        _check_dedup(step, column_names)
        prefix = f"{position:02d}_{step.name}"
        if segment:
            close_segment(str(work / f"{prefix}_input"))
        folder = work / prefix
        signatures, buckets, remove, duplicates = (
            str(folder / name) for name in ("signatures", "buckets", "remove", "duplicates")
        )
        if isinstance(step, NearDedup):
            config = minhash_config(step)
            dedup_stages = [
                ([_reader(source), MinhashDedupSignature(signatures, config=config)], None),
                (
                    [MinhashDedupBuckets(signatures, buckets, config=config)],
                    config.num_buckets,
                ),
                ([MinhashDedupCluster(buckets, remove, config=config)], 1),
            ]
            final_filter: PipelineStep = MinhashDedupFilter(remove)
        else:
            config = exact_dedup_config(step, column_names)
            dedup_stages = [
                ([_reader(source), ExactDedupSignature(signatures, config=config)], None),
                ([ExactFindDedups(signatures, duplicates, config=config)], 1),
            ]
            final_filter = ExactDedupFilter(duplicates, config=config)
        for pipeline, tasks in dedup_stages:
            roles = [
                BlockRole("read") if isinstance(block, JsonlReader) else BlockRole("detail", step)
                for block in pipeline
            ]
            name = f"{len(stages):02d}_{step.name}_{type(pipeline[-1]).__name__}"
            stages.append(
                DatatroveStage(name, pipeline, roles, tasks=tasks, source=source if tasks is None else None)
            )
        segment.append((final_filter, step))
    close_segment(str(output_folder))
    return stages


# --------------------------------------------------------------------------------------------------------------
# Execution


def make_executor(
    stage: DatatroveStage,
    executor: str,
    tasks: int,
    workers: int,
    logging_dir: str | Path,
    executor_kwargs: dict[str, Any] | None = None,
) -> PipelineExecutor:
    """The datatrove executor for one stage. `executor_kwargs` go to the executor's constructor (Slurm:
    `time`, `partition`, `cpus_per_task`, `mem_per_cpu_gb`, `venv_path`, ...; Ray: `cpus_per_task`, ...)."""
    common = {
        "pipeline": stage.pipeline,
        "tasks": stage.tasks or tasks,
        "workers": min(workers, stage.tasks or tasks),
        "logging_dir": str(logging_dir),
        **(executor_kwargs or {}),
    }
    if executor == "local":
        from datatrove.executor import LocalPipelineExecutor

        return LocalPipelineExecutor(**common)
    if executor == "slurm":
        from datatrove.executor import SlurmPipelineExecutor

        missing = [key for key in ("time", "partition") if key not in common]
        if missing:
            raise RecipeInputError(
                f"executor='slurm' needs executor_kwargs with {missing} (e.g. {{'time': '04:00:00', "
                "'partition': 'cpu'}), passed to datatrove's SlurmPipelineExecutor."
            )
        return SlurmPipelineExecutor(**{"job_name": stage.name, **common})
    if executor == "ray":
        from datatrove.executor import RayPipelineExecutor

        return RayPipelineExecutor(**common)
    raise RecipeInputError(f"executor must be one of {', '.join(EXECUTORS)}, got {executor!r}.")


def _run_to_completion(runner: PipelineExecutor) -> None:
    """Local and Ray runs return when done; a Slurm run returns once its jobs are queued, so wait for every
    task's completion marker (datatrove's own test for a finished dependency)."""
    runner.run()
    while runner.get_incomplete_ranks(skip_completed=True):
        time.sleep(STAGE_POLL_SECONDS)


@dataclass
class BlockStats:
    """One block's counters and seconds, summed over the stage's tasks."""

    counts: Counter = field(default_factory=Counter)
    seconds: float = 0.0


def read_stage_stats(logging_dir: str | Path, blocks: int) -> list[BlockStats]:
    """Sum the per-task stats files datatrove writes (`stats/<rank>.json`: one entry per block) so the
    result does not depend on which executor merged them."""
    totals = [BlockStats() for _ in range(blocks)]
    for path in sorted((Path(logging_dir) / "stats").glob("*.json")):
        for total, block in zip(totals, json.loads(path.read_text()), strict=True):
            total.seconds += float(block.get("time_stats", {}).get("total", 0.0))
            for key, value in block.get("stats", {}).items():
                count = value.get("total", 0) if isinstance(value, dict) else value
                if isinstance(count, int | float):
                    total.counts[key] += count
    return totals


def _documents_read(stats: BlockStats) -> int:
    return int(stats.counts["documents"])


def write_input_shards(dataset: datasets.Dataset, folder: Path, shards: int) -> None:
    """`dataset` as `shards` JSONL files of contiguous rows: `id` is the row index, `text` the text, every
    other column (and the shard number) goes to metadata, so wrapped steps can read it."""
    if TEXT not in dataset.column_names:
        raise RecipeInputError(
            f"The datatrove backend processes a `text` column (web-scale text corpora); this dataset has "
            f"{dataset.column_names}. Rename the text column to `text`, or use the datasets backend."
        )
    folder.mkdir(parents=True, exist_ok=True)
    others = [c for c in dataset.column_names if c != TEXT]
    bounds = [round(len(dataset) * k / shards) for k in range(shards + 1)]
    for shard, (start, stop) in enumerate(zip(bounds, bounds[1:], strict=False)):
        with open(folder / f"{shard:05d}.jsonl", "wb") as handle:
            rows = dataset.select(range(start, stop)).iter(batch_size=1000)
            index = start
            for batch in rows:
                for position, text in enumerate(batch[TEXT]):
                    metadata = {c: batch[c][position] for c in others}
                    metadata[SHARD_KEY] = shard
                    try:
                        line = orjson.dumps({"id": str(index), TEXT: text, "metadata": metadata})
                    except TypeError as err:
                        raise RecipeInputError(
                            f"Row {index} has a value JSON cannot hold ({err}); the datatrove backend carries "
                            "columns as JSON metadata. Drop non-text columns (images, audio, bytes) first."
                        ) from err
                    handle.write(line + b"\n")
                    index += 1


def read_output_documents(folder: str | Path) -> Iterator[dict[str, Any]]:
    """Every document datatrove wrote as JSONL shards in `folder`, shard by shard in name order."""
    for path in sorted(Path(folder).glob("*.jsonl")):
        with open(path, "rb") as handle:
            for line in handle:
                if line.strip():
                    yield orjson.loads(line)


def _rebuild(dataset: datasets.Dataset, folder: str | Path, rewritten: list[str]) -> datasets.Dataset:
    """The kept rows, in their original order, with their original columns and types; the columns that
    steps rewrite (`text`, and string columns of transform steps) come from datatrove's output."""
    documents = sorted(read_output_documents(folder), key=lambda d: int(d["id"]))
    kept = dataset.select([int(d["id"]) for d in documents])
    for column in rewritten:
        values = [d.get(TEXT, "") if column == TEXT else d.get("metadata", {}).get(column) for d in documents]
        if values != list(kept[column]):
            feature = dataset.features[column]
            kept = kept.remove_columns(column).add_column(column, values, feature=feature)
    return kept.select_columns(dataset.column_names)


def _rewritten_columns(steps: list[Step], column_names: list[str]) -> list[str]:
    rewritten = {TEXT}
    for step in steps:
        if isinstance(step, TransformStep):
            rewritten.update(_step_columns(step, column_names))
    return [c for c in column_names if c in rewritten]


def _record_stage(
    stage: DatatroveStage,
    stats: list[BlockStats],
    report: DataReport,
    details: dict[int, dict[str, Any]],
    expected: dict[str, int],
) -> None:
    """Add the stage's steps to the report; stop like `run_pipeline` when a step removed every row."""
    for role, block, block_stats in zip(stage.roles, stage.pipeline, stats, strict=True):
        counts = block_stats.counts
        if role.kind == "read" and stage.source in expected:
            read, wanted = _documents_read(block_stats), expected.pop(stage.source)
            if read < wanted:
                report.add(
                    "datatrove_skipped_empty",
                    rows_in=wanted,
                    rows_out=read,
                    details={"note": "datatrove's readers skip documents without text."},
                )
        elif role.kind == "write" and stage.destination is not None:
            expected[stage.destination] = int(counts[StatHints.total])
        elif role.kind == "detail":
            step_details = details.setdefault(id(role.step), {"seconds": 0.0, "datatrove_stats": {}})
            step_details["seconds"] += block_stats.seconds
            step_details["datatrove_stats"][block.name] = {k: v for k, v in counts.items() if k != "doc_len"}
        elif role.kind == "count":
            step = role.step
            step_details = details.pop(id(step), {"seconds": 0.0, "datatrove_stats": {}})
            step_details["seconds"] = round(step_details["seconds"] + block_stats.seconds, 3)
            rows_in = int(counts[StatHints.total] - counts[OUT_OF_SCOPE])
            if isinstance(block, StepTransform):
                rows_out = rows_in
                step_details["rows_changed"] = int(counts[CHANGED])
            else:
                rows_out = rows_in - int(counts[StatHints.dropped])
                reasons = {
                    k.removeprefix("dropped_"): v for k, v in counts.items() if k.startswith("dropped_")
                }
                if reasons:
                    step_details["dropped_reasons"] = reasons
            report.add(
                step.name,
                rows_in=rows_in,
                rows_out=rows_out,
                details={
                    "params": step.params(),
                    "backend": "datatrove",
                    "datatrove_block": block.name,
                    **step_details,
                },
            )
            if counts[StatHints.total] and counts[StatHints.total] == counts[StatHints.dropped]:
                raise RecipeInputError(
                    f"Step {step.name!r} removed every remaining row ({rows_in} -> 0) on the datatrove backend. "
                    f"Loosen its parameters ({step.params()}) or remove it from the pipeline."
                )


def run_with_datatrove(
    dataset: datasets.Dataset,
    steps: list[Step],
    work_dir: str | Path,
    tasks: int = 2,
    workers: int = 2,
    executor: str = "local",
    report: DataReport | None = None,
    executor_kwargs: dict[str, Any] | None = None,
) -> datasets.Dataset:
    """Apply `steps` to `dataset` with datatrove and return the kept rows, in their original order and with
    all their columns, as `run_pipeline` would. The dataset is written as `tasks` JSONL shards under
    `work_dir` (which must be empty: datatrove skips tasks whose completion markers it finds there), every
    stage runs on `executor` with `tasks` tasks, `workers` at a time, and the per-step rows in/out that
    datatrove's stats record are added to `report`. Step timings are in each record's `details.seconds`
    (block seconds summed over tasks). With `workers` > 1 the local executor starts its processes with
    forkserver, which imports the main module again: call this under `if __name__ == "__main__":`. Each
    worker process loads spaCy (datatrove's word splitter) once, a few seconds. On Slurm this polls until
    every task of a stage has finished; a task that fails leaves it waiting, so watch the Slurm logs."""
    if not isinstance(tasks, int) or not 1 <= tasks <= MAX_SHARDS:
        raise RecipeInputError(f"tasks must be an integer between 1 and {MAX_SHARDS}, got {tasks!r}.")
    if not isinstance(workers, int) or workers < 1:
        raise RecipeInputError(f"workers must be an integer >= 1, got {workers!r}.")
    if executor not in EXECUTORS:
        raise RecipeInputError(f"executor must be one of {', '.join(EXECUTORS)}, got {executor!r}.")
    work = Path(work_dir)
    if work.exists() and any(work.iterdir()):
        raise RecipeInputError(
            f"work_dir {str(work)!r} is not empty; datatrove would skip the tasks it finds completed there and "
            "mix in an earlier run's output. Give a new or empty folder."
        )
    report = report if report is not None else DataReport()
    output = work / "output"
    stages = build_datatrove_pipeline(steps, work / "input", output, work / "work", dataset.column_names)
    write_input_shards(dataset, work / "input", tasks)
    expected = {str(work / "input"): len(dataset)}
    details: dict[int, dict[str, Any]] = {}
    for stage in stages:
        logging_dir = work / "logs" / stage.name
        _run_to_completion(make_executor(stage, executor, tasks, workers, logging_dir, executor_kwargs))
        _record_stage(stage, read_stage_stats(logging_dir, len(stage.pipeline)), report, details, expected)
    return _rebuild(dataset, output, _rewritten_columns(steps, dataset.column_names))


__all__ = [
    "DatatroveStage",
    "ScopedNativeFilter",
    "StepFilter",
    "StepTransform",
    "build_datatrove_pipeline",
    "make_executor",
    "minhash_config",
    "read_stage_stats",
    "run_with_datatrove",
]


def datatrove_prefix_length(steps: list[Step], column_names: list[str]) -> int:
    """How many leading steps datatrove can run; recipes run the rest (mixing, label conflicts, ...) on
    `datasets` afterwards, so one YAML pipeline works on either backend."""
    for count in range(1, len(steps) + 1):
        try:
            build_datatrove_pipeline(steps[:count], "in", "out", "work", column_names=column_names)
        except RecipeInputError:
            return count - 1
    return len(steps)
