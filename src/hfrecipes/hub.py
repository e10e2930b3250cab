"""Lineage records, model cards and Hub pushes: what makes every output directory self-describing."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import json
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

from huggingface_hub import DatasetCard, DatasetCardData, ModelCard, ModelCardData

from hfrecipes.data.report import steps_markdown_table
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
) -> dict[str, Any]:
    return {
        "recipe": recipe,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "config": to_jsonable(config),
        "versions": library_versions(),
        "git_revision": git_revision(),
        "inputs": [i for i in inputs if i],
        "data_report": data_report,
        "metrics": metrics,
        **(extra or {}),
    }


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
) -> ModelCard:
    """A Hub model card from the lineage record: metadata header, what was done, metrics, data cleaning."""
    hub_datasets = [
        d
        for d in (datasets or [])
        if d and not d.startswith("builtin:") and "/" in d and not Path(d).exists()
    ]
    card_data = ModelCardData(
        license="apache-2.0",
        library_name="transformers",
        pipeline_tag=pipeline_tag,
        tags=["hfrecipes", lineage["recipe"].replace("/", "-"), *(tags or [])],
        base_model=base_model if base_model and not Path(base_model).exists() else None,
        datasets=hub_datasets or None,
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

## Lineage

Inputs:
{inputs}

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


def push_output_dir(
    output_dir: str | Path, repo_id: str, *, private: bool = False, token: str | None = None
) -> str:
    """Upload a finished stage directory (model card included); checkpoints stay local."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    commit = api.upload_folder(
        folder_path=str(output_dir),
        repo_id=repo_id,
        ignore_patterns=["checkpoint-*", "checkpoint-*/**", ".*"],
    )
    return str(commit)
