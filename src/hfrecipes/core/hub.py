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

from huggingface_hub import (
    CommitOperationAdd,
    DatasetCard,
    DatasetCardData,
    EvalResult,
    HfApi,
    ModelCard,
    ModelCardData,
    scan_cache_dir,
)
from huggingface_hub.errors import OfflineModeIsEnabled
from huggingface_hub.utils import filter_repo_objects, get_token

from hfrecipes.core.catalogue import stage_producer
from hfrecipes.core.data_report import steps_markdown_table
from hfrecipes.core.efficiency_text import efficiency_markdown
from hfrecipes.core.errors import RecipeInputError
from hfrecipes.core.io import COMPLETION_MARKER, atomic_write_json, atomic_write_text, looks_like_path

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
    """Python's version and each installed tracked library's, for lineage records."""
    versions = {"python": platform.python_version()}
    for name in TRACKED_LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def git_revision() -> str | None:
    """The commit of the checkout hfrecipes runs from, or None outside a git checkout."""
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
    """The lineage record; `efficiency` is `hfrecipes.core.efficiency.efficiency_record(...)` of the training run."""
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


MODEL_INDEX_METRICS = (
    "eval_nats_per_char",
    "eval_perplexity",
    "task_accuracy",
    "refusal_rate",
    "over_refusal_rate",
    "accuracy",
    "rm_reward",
    "win_rate_vs_start",
    "sampled_win_rate_vs_start",
    "heldout_nats_per_char",
)


def eval_results(
    lineage: dict[str, Any], pipeline_tag: str | None, datasets: list[str] | None
) -> list | None:
    """The card's model-index: the stage's main metrics on its held-out data, as Hub EvalResult entries."""
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


def _model_loading_section(record: dict[str, Any] | None) -> str:
    if not record:
        return ""
    quantization = record.get("quantization")
    loaded = ", ".join(
        f"{key} `{value}`" for key, value in record.items() if key != "quantization" and value is not None
    )
    bits = (
        f"; weights quantised to {quantization['bits']} bits with bitsandbytes"
        + (
            f" ({quantization['quant_type']}, nested {quantization['nested']})"
            if quantization.get("quant_type")
            else ""
        )
        if quantization
        else "; no quantisation"
    )
    return f"## Model loading\n\nThe starting model was loaded with {loaded}{bits}.\n\n"


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
    computed = lineage.get("card") or {}
    if base_model and not Path(base_model).exists():
        computed.setdefault("base_model", base_model)
    if computed.get("library_name"):  # a PEFT adapter loads with peft, whatever its base
        library_name = computed["library_name"]
        tags = [*(tags or []), "lora"]
    card_data = ModelCardData(
        license=computed.get("license"),
        library_name=library_name,
        pipeline_tag=pipeline_tag,
        tags=["hfrecipes", lineage["recipe"].replace("/", "-"), *(tags or [])],
        base_model=computed.get("base_model"),
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

{_efficiency_section(lineage.get("efficiency"))}{_model_loading_section(lineage.get("model_loading"))}{_remote_code_section(lineage.get("config"))}## Lineage

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
    license_ = (lineage.get("card") or {}).get("license")
    card_data = DatasetCardData(license=license_, tags=["hfrecipes", "prepared-data"], pretty_name=title)
    content = f"""---
{card_data.to_yaml()}
---

# {title}

Prepared by the `{lineage["recipe"]}` recipe of hfrecipes on {lineage["created"]}
({lineage["metrics"].get("rows_out", 0):,} rows). Unless a license is set above, the license is that of the
sources.

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


# Pickles can run code when loaded: a published stage never carries one (weights are safetensors, the config is
# in lineage.json). Checkpoints stay local: they are what resume reads.
PICKLE_PATTERNS = ("*.bin", "*.pt", "*.pth", "*.pkl", "*.pickle", "*.ckpt", "*.joblib")
UPLOAD_IGNORE = [
    "checkpoint-*",
    "checkpoint-*/**",
    ".*",
    "**/.*",
    *PICKLE_PATTERNS,
    *(f"**/{p}" for p in PICKLE_PATTERNS),
]


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
    missing = [key for key in ("tags",) if not metadata.get(key)]
    if missing:
        raise RecipeInputError(f"The model card in {output_dir} lacks metadata {missing}.")
    return card


def upload_files(output_dir: Path) -> list[Path]:
    """Exactly the files `push` uploads: the stage output without checkpoints and hidden files."""
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


def hub_offline() -> bool:
    """Whether HF_HUB_OFFLINE=1 forbids reaching the Hub (pushes and input checks say so instead of trying)."""
    return os.environ.get("HF_HUB_OFFLINE") == "1"


OFFLINE_PUSH = "HF_HUB_OFFLINE=1 is set: pushing needs the network. Unset it, or use --offline-export."


def push_output_dir(
    output_dir: str | Path,
    repo_id: str | None,
    *,
    private: bool | None = None,
    token: str | None = None,
) -> str:
    """Upload a finished stage directory (model card included) as one commit, as Trainer does: `repo_id` None
    means `<the token's user>/<output dir name>`, `private` is applied when the repository is created, and
    checkpoints and pickles stay local. A prepared dataset goes to a dataset repository. Without a token or
    network this stops with one message, and a single commit means nothing is half-uploaded. Returns the commit
    URL."""
    output_dir = Path(output_dir)
    check_stage_output(output_dir)
    token = token or get_token()
    if not token:
        raise RecipeInputError(
            "No Hugging Face token: run `hf auth login` or set HF_TOKEN, then push again "
            "(or use --offline-export DIR to see what would be uploaded)."
        )
    if hub_offline():
        raise RecipeInputError(OFFLINE_PUSH)
    files = upload_files(output_dir)
    repo_type = (_stage_lineage(str(output_dir)) or {}).get("card", {}).get("repo_type", "model")
    api = HfApi(token=token)
    target = repo_id or output_dir.resolve().name
    try:
        repo_id = api.create_repo(target, private=private, exist_ok=True, repo_type=repo_type).repo_id
        commit = api.create_commit(
            repo_id,
            repo_type=repo_type,
            operations=[
                CommitOperationAdd(path_in_repo=f.relative_to(output_dir).as_posix(), path_or_fileobj=str(f))
                for f in files
            ],
            commit_message=f"Upload {output_dir.name} with hfrecipes",
        )
    except OfflineModeIsEnabled as err:  # offline since huggingface_hub was imported
        raise RecipeInputError(OFFLINE_PUSH) from err
    except Exception as err:  # noqa: BLE001 - network/auth errors from several libraries; one clear message
        raise RecipeInputError(
            f"Could not push {output_dir} to {target}: {type(err).__name__}: {str(err)[:300]}. Nothing was "
            "committed (uploads are a single commit). Check the network and the token's write access."
        ) from err
    return str(getattr(commit, "commit_url", commit))


# --- inputs and card metadata ---------------------------------------------------------------------------------

# Inputs whose model the stage continues from: the card's `base_model` is the Hub model at the root of them.
BASE_INPUT_KINDS = ("model", "pipeline", "student")


def _stage_lineage(reference: str) -> dict[str, Any] | None:
    marker = Path(reference) / COMPLETION_MARKER
    if not marker.is_file():
        return None
    try:
        return json.loads(marker.read_text())
    except (OSError, ValueError):
        return None


def _hub_license(repo_id: str) -> str | None:
    """The license on a Hub model's card, when the Hub can be asked (never offline; a short timeout)."""
    if hub_offline():
        return None
    try:
        card = HfApi().model_info(repo_id, timeout=10).card_data
    except Exception:  # noqa: BLE001 - unreachable or unknown: the card simply has no license
        return None
    return getattr(card, "license", None) if card is not None else None


def card_metadata(lineage: dict[str, Any], staging: Path, *, license: str | None = None) -> dict[str, Any]:
    """What the card says about provenance, derived the way Trainer and TRL do: `base_model` is the Hub model at
    the root of a chain of local stages; `license` is the `license` argument, else the base model's; a PEFT
    adapter is tagged `library_name: peft`."""
    base_model, inherited = None, None
    for entry in lineage.get("inputs", []):
        if entry["kind"] not in BASE_INPUT_KINDS:
            continue
        parent = _stage_lineage(entry["reference"])
        if parent is not None:
            base_model = (parent.get("card") or {}).get("base_model")
            inherited = (parent.get("card") or {}).get("license")
        elif not Path(entry["reference"]).exists():
            base_model = entry["reference"]
        break
    metadata: dict[str, Any] = {}
    if base_model:
        metadata["base_model"] = base_model
    chosen = license or inherited or (_hub_license(base_model) if base_model else None)
    if chosen:
        metadata["license"] = chosen
    if (staging / "adapter_config.json").is_file():
        metadata["library_name"] = "peft"
    return metadata


def _looks_local(reference: str) -> bool:
    """A path (see `looks_like_path`), or a stage directory by the project's conventions (`runs/...`, or under
    an existing directory) even when it has the `owner/name` shape of a Hub id."""
    parts = Path(reference).parts
    return (
        looks_like_path(reference)
        or "\\" in reference
        or parts[0] in ("runs", "outputs")
        or (len(parts) > 1 and Path(parts[0]).is_dir())
    )


def _in_hub_cache(repo_id: str, repo_type: str) -> bool:
    try:
        return any(r.repo_id == repo_id and r.repo_type == repo_type for r in scan_cache_dir().repos)
    except Exception:  # noqa: BLE001 - no cache directory yet
        return False


def check_input_reference(kind: str, reference: str) -> None:
    """Refuse, before any work, an input that cannot be had: a missing local path or stage directory (naming
    the command that makes a shipped stage), or a Hub id that is neither cached nor reachable."""
    reference = str(reference)
    if reference.startswith("builtin:") or Path(reference).expanduser().exists():
        return
    if producer := stage_producer(reference):
        raise RecipeInputError(
            f"{reference} does not exist: it is made by another stage. Run `{producer}` first "
            f"(or point the {kind} input at another directory)."
        )
    if _looks_local(reference):
        raise RecipeInputError(
            f"The {kind} input {reference} does not exist (relative paths start from {Path.cwd()}). "
            "Run the stage that makes it first, or fix the path."
        )
    repo_type = "dataset" if kind == "data" or kind.endswith(("_data", "_text")) else "model"
    if _in_hub_cache(reference, repo_type):
        return
    if hub_offline():
        raise RecipeInputError(
            f"The {kind} input {reference!r} is not a local path and is not in the Hub cache, and HF_HUB_OFFLINE=1 "
            "forbids downloading it: unset HF_HUB_OFFLINE (with network), or give a local path."
        )
    try:
        HfApi().repo_info(reference, repo_type=repo_type, timeout=10)
    except Exception as err:  # noqa: BLE001 - unreachable, unknown, gated: one line either way
        reason = " ".join(str(err).split())[:200]
        raise RecipeInputError(
            f"The {kind} input {reference!r} is not a local path and the Hub cannot give it "
            f"({type(err).__name__}: {reason}). Check the id and your login (`hf auth login`) or network; "
            "offline, set HF_HUB_OFFLINE=1 and use a cached or local copy."
        ) from err
