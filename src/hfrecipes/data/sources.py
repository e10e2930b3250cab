"""Load a data source into a `datasets.Dataset`.

A source is one of
- `builtin:<name>` (optionally `builtin:<name>?key=value&key=value`): a generator shipped in the package,
  so every recipe runs offline on a fresh machine (see `hfrecipes.builtins.text`);
- a local file (jsonl/json/parquet/csv/txt) or a directory of such files;
- a Hugging Face Hub dataset id (`org/name`), loaded with `datasets.load_dataset`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from urllib.parse import parse_qsl

import datasets

from hfrecipes.builtins import BUILTINS
from hfrecipes.core.errors import RecipeInputError
from hfrecipes.core.io import FILE_BUILDERS, looks_like_path

BUILTIN_PREFIX = "builtin:"
# Arrow cannot build a schema much deeper than this ("Recursion level in ArrowSchema struct exceeded");
# check_jsonl checks it first to name the file and line.
MAX_JSON_DEPTH = 32


def list_builtins() -> list[str]:
    """The names accepted after `builtin:`."""
    return sorted(BUILTINS)


def parse_source(spec: str) -> tuple[str, dict[str, str]]:
    """Split `builtin:name?k=v&k=v` into ("builtin:name", {k: v}); other specs have no options."""
    if spec.startswith(BUILTIN_PREFIX) and "?" in spec:
        base, query = spec.split("?", 1)
        return base, dict(parse_qsl(query, keep_blank_values=True, strict_parsing=False))
    return spec, {}


def load_source(
    spec: str,
    *,
    split: str = "train",
    hub_config: str | None = None,
    options: dict | None = None,
    text_file_unit: str = "paragraph",
    problems: list[tuple[str, str]] | None = None,
) -> datasets.Dataset:
    """Return the source as a Dataset, or raise RecipeInputError saying what is wrong and how to fix it.

    `text_file_unit` decides what one row of a .txt file is: "line", "paragraph" (blank-line separated,
    the natural document unit of prose and plays) or "document" (the whole file). Files of a directory
    that cannot be read are listed in `problems` (path, reason) instead of stopping the run.
    """
    if not spec or not str(spec).strip():
        raise RecipeInputError(
            "No data source given: set `dataset_name` to a builtin:<name>, a local path or a Hub id."
        )
    spec = str(spec).strip()
    base, query_options = parse_source(spec)
    options = {**query_options, **(options or {})}

    if base.startswith(BUILTIN_PREFIX):
        dataset = _load_builtin(base[len(BUILTIN_PREFIX) :], options)
    elif os.path.exists(base):
        dataset = load_local(Path(base), text_file_unit=text_file_unit, split=split, problems=problems)
    elif looks_like_path(base):
        raise RecipeInputError(
            f"Data source {base!r} does not exist. Check the path (relative paths start from {os.getcwd()})."
        )
    else:
        dataset = _load_hub(base, split=split, hub_config=hub_config)

    if len(dataset) == 0:
        raise RecipeInputError(
            f"Data source {spec!r} is empty (0 rows). Point `dataset_name` at data with rows in it."
        )
    return dataset


def _load_builtin(name: str, options: dict) -> datasets.Dataset:
    if name not in BUILTINS:
        raise RecipeInputError(
            f"Unknown built-in dataset 'builtin:{name}'. Available: {', '.join('builtin:' + n for n in list_builtins())}."
        )
    try:
        return BUILTINS[name](**options)
    except RecipeInputError:
        raise
    except TypeError as err:
        raise RecipeInputError(
            f"builtin:{name} does not accept these options {sorted(options)}: {err}"
        ) from err
    except (ValueError, OverflowError, OSError) as err:  # int("abc"), a negative seed, an unreadable path=...
        raise RecipeInputError(
            f"builtin:{name}: bad option value in {_shorten(options)} ({type(err).__name__}: {err}). "
            "Options are written `builtin:name?key=value`; numbers must be plain integers or decimals."
        ) from err


def _load_hub(repo_id: str, *, split: str, hub_config: str | None) -> datasets.Dataset:
    try:
        return datasets.load_dataset(repo_id, hub_config, split=split)
    except Exception as err:  # the Hub client raises many types; all mean "cannot get it"
        raise RecipeInputError(
            f"Could not load {repo_id!r} from the Hugging Face Hub ({type(err).__name__}: {err}). "
            "Offline? Use a local path or a builtin: source instead."
        ) from err


SAVED_DATASET_MARKERS = ("dataset_info.json", "dataset_dict.json", "state.json")


def is_saved_dataset(path: Path) -> bool:
    """A directory written by `Dataset.save_to_disk` (e.g. by recipes/text/prepare_data.py)."""
    return path.is_dir() and any((path / marker).is_file() for marker in SAVED_DATASET_MARKERS)


def load_local(
    path: Path,
    *,
    text_file_unit: str = "paragraph",
    split: str = "train",
    problems: list[tuple[str, str]] | None = None,
) -> datasets.Dataset:
    """Load a saved dataset directory, one file, or every supported file in a directory.

    In a directory of files, a file that cannot be read is skipped and appended to `problems` as
    (path, reason) so the caller reports it; only when no file can be read is it an error.
    """
    if is_saved_dataset(path):
        try:
            loaded = datasets.load_from_disk(str(path))
        except Exception as err:  # noqa: BLE001 - a damaged save raises json/pyarrow/OS errors of many types
            raise RecipeInputError(
                f"{path} looks like a saved dataset but cannot be loaded ({_cause(err)}). "
                "Write it again (e.g. rerun prepare_data.py), or point at the raw files instead."
            ) from err
        if isinstance(loaded, datasets.DatasetDict):
            if split not in loaded:
                raise RecipeInputError(
                    f"Saved dataset {path} has splits {list(loaded)}, not {split!r}; set `dataset_split`."
                )
            loaded = loaded[split]
        return loaded
    if not path.is_dir():
        return _load_files([path], text_file_unit)
    files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
    data_files = [p for p in files if p.suffix.lower() in FILE_BUILDERS]
    if not data_files:
        raise RecipeInputError(f"Directory {path} has no data files ({', '.join(FILE_BUILDERS)}).")
    builders = {FILE_BUILDERS[p.suffix.lower()] for p in data_files}
    if len(builders) > 1:
        raise RecipeInputError(
            f"{path} mixes file formats {sorted({p.suffix for p in data_files})}; keep one format per source."
        )
    parts, failures = [], []
    for file in data_files:
        try:
            parts.append(_load_files([file], text_file_unit))
        except RecipeInputError as err:
            failures.append((str(file), str(err)))
    if problems is not None:
        problems.extend(failures)
    if not parts:
        raise RecipeInputError(
            f"None of the {len(data_files)} files in {path} could be read; first problem: {failures[0][1]}"
        )
    try:
        return datasets.concatenate_datasets(parts)
    except ValueError as err:
        raise RecipeInputError(f"Files in {path} do not share one set of columns: {err}") from err


def _load_files(files: list[Path], text_file_unit: str) -> datasets.Dataset:
    suffixes = {p.suffix.lower() for p in files}
    unknown = suffixes - set(FILE_BUILDERS)
    if unknown:
        raise RecipeInputError(
            f"Unsupported file type {sorted(unknown)}; use one of {', '.join(FILE_BUILDERS)}."
        )
    builder = FILE_BUILDERS[suffixes.pop()]
    if builder == "text":
        return _load_text_files(files, text_file_unit)
    for file in files:
        if file.suffix.lower() == ".jsonl":
            records, with_fields = check_jsonl(file)
            if not with_fields:
                what = "only empty objects {}" if records else "no JSON records (only blank lines)"
                raise RecipeInputError(f"{file} has {what}; every line must be one JSON object with fields.")
    try:
        return datasets.load_dataset(builder, data_files=[str(f) for f in files], split="train")
    except Exception as err:  # noqa: BLE001 - pyarrow/pandas/json raise many types: "this file cannot be read"
        raise RecipeInputError(
            f"Could not read {', '.join(map(str, files))} as {builder}: {_cause(err).rstrip('.')}. "
            + _READ_HINTS[files[0].suffix.lower()]
        ) from err


_READ_HINTS = {
    ".jsonl": "Every line must be one JSON object, with the same type for a field on every line.",
    ".json": "A .json file must hold one list of objects (or one object of columns) in UTF-8; nesting is limited "
    f"to {MAX_JSON_DEPTH} levels.",
    ".csv": "A .csv file needs a header row, the same number of fields on every line and UTF-8 text.",
    ".parquet": "The file is not a readable Parquet file; write it again (e.g. pandas.DataFrame.to_parquet).",
}


def _cause(err: BaseException) -> str:
    """The most specific message in an exception chain: `datasets` wraps the real pyarrow/pandas/json error
    ("An error occurred while generating the dataset") in its own, and that wrapper says nothing useful."""
    chain, seen = [], set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen and len(chain) < 8:
        seen.add(id(current))
        chain.append(current)
        current = current.__cause__ or current.__context__
    useful = [e for e in chain if type(e).__name__ != "DatasetGenerationError" and str(e).strip()]
    chosen = useful[0] if useful else err
    if isinstance(chosen, UnicodeDecodeError):
        return f"not valid UTF-8 ({chosen.reason} at byte {chosen.start}); re-encode the file as UTF-8"
    if isinstance(chosen, RecursionError):
        return "the data is nested too deeply"
    return _shorten(f"{type(chosen).__name__}: {chosen}")


def _shorten(value: object, limit: int = 300) -> str:
    text = str(value)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text) - limit} more characters)"


def check_jsonl(path: Path) -> tuple[int, int]:
    """Raise with file and line number at the first line that is not a JSON object Arrow can hold; return
    (records, records with at least one field)."""
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed by the `with` below
    except OSError as err:
        raise RecipeInputError(f"Cannot open {path}: {err.strerror or err}.") from err
    records = with_fields = 0
    with handle:
        for line_number, raw in enumerate(handle, start=1):
            if line_number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raise RecipeInputError(
                    f"{path}:1: the file starts with a UTF-8 byte-order mark (BOM). Save it as UTF-8 without BOM "
                    "(e.g. `sed -i '1s/^\\xEF\\xBB\\xBF//' FILE`)."
                )
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise RecipeInputError(
                    f"{path}:{line_number}: not valid UTF-8 ({err.reason}). Re-encode the file as UTF-8."
                ) from err
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise RecipeInputError(
                    f"{path}:{line_number}: malformed JSON line ({err.msg} at column {err.colno}). "
                    "Fix or delete that line; every line must be one JSON object."
                ) from err
            except RecursionError as err:
                raise RecipeInputError(
                    f"{path}:{line_number}: the JSON is nested too deeply to read (more than {MAX_JSON_DEPTH} "
                    "levels are not supported). Flatten that record or delete the line."
                ) from err
            if not isinstance(record, dict):
                raise RecipeInputError(
                    f"{path}:{line_number}: expected a JSON object per line, got {type(record).__name__}."
                )
            if _depth(record) > MAX_JSON_DEPTH:
                raise RecipeInputError(
                    f"{path}:{line_number}: the record is nested more than {MAX_JSON_DEPTH} levels deep, more "
                    "than Arrow can store. Flatten that record or delete the line."
                )
            records += 1
            with_fields += bool(record)
    return records, with_fields


def _depth(value: object) -> int:
    """Nesting depth of a JSON value, without recursion (a hostile line must not exhaust the stack)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        deepest = max(deepest, level)
        if level > MAX_JSON_DEPTH:
            break
        if isinstance(item, dict):
            stack.extend((child, level + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, level + 1) for child in item)
    return deepest


def _load_text_files(files: list[Path], unit: str) -> datasets.Dataset:
    if unit not in {"line", "paragraph", "document"}:
        raise RecipeInputError(f"text_file_unit must be line, paragraph or document, not {unit!r}.")
    rows: list[dict[str, str]] = []
    for file in files:
        try:
            text = file.read_text(encoding="utf-8", errors="replace")
        except OSError as err:
            raise RecipeInputError(f"Cannot read {file}: {err.strerror or err}.") from err
        if unit == "document":
            pieces = [text]
        elif unit == "line":
            pieces = text.splitlines()
        else:
            pieces = text.split("\n\n")
        rows.extend({"text": piece, "source_file": file.name} for piece in pieces)
    return datasets.Dataset.from_list(rows)
