"""Lineage records, model cards and Hub pushes: what makes every output directory self-describing."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from huggingface_hub import DatasetCard, DatasetCardData, ModelCard, ModelCardData

from hfrecipes.data.report import steps_markdown_table
from hfrecipes.errors import RecipeInputError
from hfrecipes.io import COMPLETION_MARKER, atomic_write_json, atomic_write_text

TRACKED_LIBRARIES = (
    "hfrecipes",
    "torch",
    "transformers",
    "tokenizers",
    "datasets",
    "accelerate",
    "trl",
    "peft",
    "diffusers",
    "evaluate",
    "huggingface_hub",
)


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in TRACKED_LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def git_revision() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def to_jsonable(obj: Any) -> Any:
    """Dataclasses (TrainingArguments included) and nested containers as plain JSON values."""
    if hasattr(obj, "to_dict") and callable(obj.to_dict):
        return to_jsonable(obj.to_dict())
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, str | int | float | bool) or obj is None:
        return obj
    return str(obj)


def describe_input(kind: str, reference: str | None) -> dict[str, Any] | None:
    """An input of this stage: a previous stage's directory is identified by the hash of its lineage.json."""
    if not reference:
        return None
    entry: dict[str, Any] = {"kind": kind, "reference": reference}
    lineage = Path(reference) / COMPLETION_MARKER
    if lineage.is_file():
        entry["lineage_sha256"] = hashlib.sha256(lineage.read_bytes()).hexdigest()
        entry["recipe"] = json.loads(lineage.read_text()).get("recipe")
    return entry


def build_lineage(
    *,
    recipe: str,
    config: dict[str, Any],
    inputs: list[dict | None],
    data_report: dict | None,
    metrics: dict[str, Any],
    extra: dict[str, Any] | None = None,
    efficiency: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The lineage record; `efficiency` is `hfrecipes.efficiency.efficiency_record(...)` of the training run."""
    return {
        "recipe": recipe,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "config": to_jsonable(config),
        "versions": library_versions(),
        "git_revision": git_revision(),
        "inputs": [i for i in inputs if i],
        "data_report": data_report,
        "metrics": metrics,
        **({"efficiency": to_jsonable(efficiency)} if efficiency else {}),
        **(extra or {}),
        **_pipeline_entry(),
    }


def _pipeline_entry() -> dict[str, Any]:
    """Set by `hfrecipes run`: which pipeline stage this is and the hash that makes it up to date."""
    stage_hash = os.environ.get("HFRECIPES_STAGE_HASH")
    if not stage_hash:
        return {}
    return {"pipeline": {"stage": os.environ.get("HFRECIPES_STAGE_NAME"), "hash": stage_hash}}


def _metrics_table(metrics: dict[str, Any]) -> str:
    rows = ["| metric | value |", "|---|---:|"]
    for key, value in metrics.items():
        shown = f"{value:.4g}" if isinstance(value, float) else str(value)
        rows.append(f"| {key} | {shown} |")
    return "\n".join(rows)


def _data_table(data_report: dict | None) -> str:
    if not data_report:
        return "No data report was recorded."
    parts = []
    if upstream := data_report.get("upstream"):
        parts.append(
            f"Prepared from raw data by `{upstream.get('recipe', 'text/prepare_data')}` "
            f"(sources: {', '.join(f'`{s}`' for s in upstream.get('sources', [])) or upstream.get('source')}):\n\n"
            + steps_markdown_table(upstream.get("steps", []))
        )
        if domains := upstream.get("summary", {}).get("domains"):
            parts.append(
                "Domain shares after mixing (rows): "
                + ", ".join(
                    f"{d} {v['row_share_after']:.1%}" for d, v in domains.items() if "row_share_after" in v
                )
            )
    parts.append(
        f"Source of this stage: `{data_report.get('source', '')}`\n\n"
        + steps_markdown_table(data_report.get("steps", []))
    )
    return "\n\n".join(parts)


MODEL_INDEX_METRICS = (
    "eval_nats_per_char", "eval_perplexity", "task_accuracy", "refusal_rate", "over_refusal_rate",
    "accuracy", "rm_reward", "win_rate_vs_start", "sampled_win_rate_vs_start", "heldout_nats_per_char",
)  # fmt: skip


def eval_results(
    lineage: dict[str, Any], pipeline_tag: str | None, datasets: list[str] | None
) -> list | None:
    """The card's model-index: the stage's main metrics on its held-out data, as Hub EvalResult entries."""
    from huggingface_hub import EvalResult

    dataset = (datasets or ["held-out data"])[0] or "held-out data"
    results = [
        EvalResult(
            task_type=pipeline_tag or "text-generation",
            dataset_type=dataset,
            dataset_name=f"{dataset} (held out)",
            metric_type=name,
            metric_value=float(value),
        )
        for name, value in lineage["metrics"].items()
        if name in MODEL_INDEX_METRICS and isinstance(value, int | float)
    ]
    return results or None


def lineage_chain(lineage: dict[str, Any], depth: int = 0) -> str:
    """Each input stage, its own inputs, ... down to the raw data, with the data steps' rows in -> out."""
    lines = []
    for entry in lineage.get("inputs", []):
        marker = Path(entry["reference"]) / COMPLETION_MARKER
        parent = json.loads(marker.read_text()) if marker.is_file() and depth < 12 else None
        what = f"{'  ' * depth}- {entry['kind']}: `{entry['reference']}`"
        if parent is None:
            lines.append(what + " (raw source)")
            continue
        report = parent.get("data_report") or {}
        steps = report.get("steps") or []
        cleaning = ", ".join(
            f"{s['step']} {s['rows_in']}→{s['rows_out']}"
            for s in steps
            if s.get("rows_in") != s.get("rows_out")
        )
        lines.append(
            what + f" ← recipe `{parent.get('recipe')}`" + (f"; data steps: {cleaning}" if cleaning else "")
        )
        deeper = lineage_chain(parent, depth + 1)
        if deeper:
            lines.append(deeper)
    return (
        "\n".join(lines) if lines or depth else "- none: this stage read raw data only (see Data preparation)"
    )


def _efficiency_section(record: dict[str, Any] | None) -> str:
    if not record:
        return ""
    from hfrecipes.efficiency import efficiency_markdown

    return f"## Efficiency\n\n{efficiency_markdown(record)}\n\n"


def _ran_remote_code(value: Any) -> bool:
    if isinstance(value, dict):
        return value.get("trust_remote_code") is True or any(_ran_remote_code(v) for v in value.values())
    if isinstance(value, list):
        return any(_ran_remote_code(v) for v in value)
    return False


def _remote_code_section(config: Any) -> str:
    if not _ran_remote_code(config):
        return ""
    return (
        "## Security\n\nThis stage ran with `trust_remote_code=True`: custom code from the Hub was executed "
        "while it was built.\n\n"
    )


def render_model_card(
    lineage: dict[str, Any],
    *,
    title: str,
    description: str,
    usage: str,
    tags: list[str] | None = None,
    base_model: str | None = None,
    datasets: list[str] | None = None,
    pipeline_tag: str | None = "text-generation",
    library_name: str = "transformers",
) -> ModelCard:
    """A Hub model card from the lineage record: metadata header, what was done, metrics, data cleaning.
    `library_name` is the library that loads the output (the Hub's code snippet and filters): "transformers",
    or "diffusers" for pipeline folders and LoRA weights."""
    hub_datasets = [
        d
        for d in (datasets or [])
        if d and not d.startswith("builtin:") and "/" in d and not Path(d).exists()
    ]
    card_data = ModelCardData(
        license="apache-2.0",
        library_name=library_name,
        pipeline_tag=pipeline_tag,
        tags=["hfrecipes", lineage["recipe"].replace("/", "-"), *(tags or [])],
        base_model=base_model if base_model and not Path(base_model).exists() else None,
        datasets=hub_datasets or None,
        model_name=title.split(":")[0].strip() or "model",
        eval_results=eval_results(lineage, pipeline_tag, datasets),
    )
    inputs = (
        "\n".join(
            f"- {i['kind']}: `{i['reference']}`"
            + (f" (lineage sha256 `{i['lineage_sha256'][:12]}`)" if "lineage_sha256" in i else "")
            for i in lineage["inputs"]
        )
        or "- none (trained from scratch on the data below)"
    )
    versions = ", ".join(f"{k} {v}" for k, v in lineage["versions"].items())
    content = f"""---
{card_data.to_yaml()}
---

# {title}

{description}

Produced by the `{lineage["recipe"]}` recipe of [hfrecipes](https://github.com/hfrecipes/hfrecipes) on {lineage["created"]}.

## Usage

```python
{usage.strip()}
```

## Metrics

{_metrics_table(lineage["metrics"])}

{_efficiency_section(lineage.get("efficiency"))}{_remote_code_section(lineage.get("config"))}## Lineage

Inputs:
{inputs}

Back to the raw data:
{lineage_chain(lineage)}

### Data preparation

{_data_table(lineage.get("data_report"))}

## Training configuration

The full resolved configuration is in `lineage.json` (key `config`). Library versions: {versions}.
Git revision: `{lineage.get("git_revision")}`.
"""
    return ModelCard(content)


def render_dataset_card(lineage: dict[str, Any], title: str) -> DatasetCard:
    """A Hub dataset card for a prepared dataset: sources, cleaning table, domain shares."""
    report = lineage["data_report"]
    card_data = DatasetCardData(license="other", tags=["hfrecipes", "prepared-data"], pretty_name=title)
    content = f"""---
{card_data.to_yaml()}
---

# {title}

Prepared by the `{lineage["recipe"]}` recipe of hfrecipes on {lineage["created"]}
({lineage["metrics"].get("rows_out", 0):,} rows). The license is that of the sources.

```python
from datasets import load_from_disk

dataset = load_from_disk("{title}")
```

## Data preparation

{_data_table({"upstream": report, "steps": [], "source": report.get("source")})}

The full resolved configuration is in `lineage.json`; `data_report.md` has removed examples per step.
"""
    return DatasetCard(content)


def write_stage_files(directory: Path, lineage: dict[str, Any], card: ModelCard) -> None:
    """metrics.json, README.md, then lineage.json (the completion marker) into a staging directory."""
    atomic_write_json(directory / "metrics.json", lineage["metrics"])
    atomic_write_text(directory / "README.md", str(card))
    atomic_write_json(directory / COMPLETION_MARKER, lineage)


UPLOAD_IGNORE = ["checkpoint-*", "checkpoint-*/**", ".*", "**/.*"]


def check_stage_output(output_dir: str | Path) -> ModelCard:
    """A finished stage (lineage.json present) with a model card whose metadata parses; returns the card."""
    output_dir = Path(output_dir)
    if not (output_dir / COMPLETION_MARKER).is_file():
        raise RecipeInputError(
            f"{output_dir} is not a finished stage output (no {COMPLETION_MARKER}); run the recipe to the end first."
        )
    if not (output_dir / "README.md").is_file():
        raise RecipeInputError(f"{output_dir} has no README.md model card to upload with it.")
    card = ModelCard.load(output_dir / "README.md")
    metadata = card.data.to_dict()
    missing = [key for key in ("license", "tags") if not metadata.get(key)]
    if missing:
        raise RecipeInputError(f"The model card in {output_dir} lacks metadata {missing}.")
    return card


def upload_files(output_dir: Path) -> list[Path]:
    """Exactly the files `push` uploads: the stage output without checkpoints and hidden files."""
    from huggingface_hub.utils import filter_repo_objects

    files = sorted(str(p.relative_to(output_dir)) for p in output_dir.rglob("*") if p.is_file())
    return [output_dir / f for f in filter_repo_objects(files, ignore_patterns=UPLOAD_IGNORE)]


def offline_export(output_dir: str | Path, export_dir: str | Path) -> list[Path]:
    """Write the folder `push` would upload (uploads have no dry run), into a new or empty directory."""
    output_dir, export_dir = Path(output_dir), Path(export_dir)
    check_stage_output(output_dir)
    if export_dir.exists() and any(export_dir.iterdir()):
        raise RecipeInputError(
            f"--offline-export directory {export_dir} is not empty; give a new or empty one."
        )
    staging = export_dir.parent / f".{export_dir.name}.export"
    shutil.rmtree(staging, ignore_errors=True)
    for file in upload_files(output_dir):
        target = staging / file.relative_to(output_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(file, target)
    if export_dir.exists():
        export_dir.rmdir()
    os.replace(staging, export_dir)
    return sorted(p for p in export_dir.rglob("*") if p.is_file())


def push_output_dir(
    output_dir: str | Path, repo_id: str, *, private: bool = False, token: str | None = None
) -> str:
    """Upload a finished stage directory (model card included) in one commit; checkpoints stay local. Without a
    token or network this stops with one message, and a single commit means nothing is half-uploaded."""
    from huggingface_hub import HfApi
    from huggingface_hub.utils import get_token

    check_stage_output(output_dir)
    token = token or get_token()
    if not token:
        raise RecipeInputError(
            "No Hugging Face token: run `hf auth login` or set HF_TOKEN, then push again "
            "(or use --offline-export DIR to see what would be uploaded)."
        )
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        raise RecipeInputError(
            "HF_HUB_OFFLINE=1 is set: pushing needs the network. Unset it, or use --offline-export."
        )
    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        commit = api.upload_folder(
            folder_path=str(output_dir), repo_id=repo_id, ignore_patterns=UPLOAD_IGNORE
        )
    except Exception as err:  # noqa: BLE001 - network/auth errors from several libraries; one clear message
        raise RecipeInputError(
            f"Could not push {output_dir} to {repo_id}: {type(err).__name__}: {str(err)[:300]}. Nothing was "
            "committed (uploads are a single commit). Check the network and the token's write access."
        ) from err
    return str(commit)
