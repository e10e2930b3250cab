"""Atomic writes: a reader sees either the old file/directory or the complete new one, never half of it."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hfrecipes.core.errors import RecipeInputError


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` (UTF-8) to `path` through a synced temporary file renamed over it, readable by all (0644)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; outputs are meant to be shared and uploaded
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, data: Any) -> None:
    """Write `data` as indented UTF-8 JSON (unknown types as `str`), atomically like `atomic_write_text`."""
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


# Written last when a stage publishes its outputs: its presence means the directory is complete.
COMPLETION_MARKER = "lineage.json"


def staging_path(output_dir: str | Path) -> Path:
    """Where a stage's outputs are staged before publishing: `.<name>.staging` beside `output_dir`."""
    output_dir = Path(output_dir)
    return output_dir.parent / f".{output_dir.name}.staging"


def check_output_dir(output_dir: str | Path) -> Path:
    """Refuse an `output_dir` that publishing would damage: an existing file, the filesystem root, or the
    directory the command runs from (or one above it), whose README.md and other files would be replaced."""
    path = Path(output_dir).expanduser()
    if not str(output_dir).strip():
        raise RecipeInputError("output_dir is empty; set it to a new directory such as runs/my_stage.")
    if path.exists() and not path.is_dir():
        raise RecipeInputError(
            f"output_dir {path} is an existing file, not a directory; choose another path."
        )
    resolved, cwd = path.resolve(), Path.cwd().resolve()
    if not resolved.name or resolved == cwd or resolved in cwd.parents:
        what = "the filesystem root" if not resolved.name else "the current directory or one above it"
        raise RecipeInputError(
            f"output_dir {str(output_dir)!r} is {what}; stage outputs replace files of the same name there. "
            "Use a directory of its own, e.g. runs/my_stage."
        )
    return path


def staging_dir(output_dir: str | Path) -> Path:
    """A fresh, empty directory beside `output_dir` (same filesystem, so publishing is a rename). Its name is
    fixed so that every process of a distributed run writes its share (e.g. gathered FSDP weights) there."""
    check_output_dir(output_dir)
    staging = staging_path(output_dir)
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    return staging


def publish_staged(staging: Path, output_dir: str | Path) -> None:
    """Move every staged entry into `output_dir`, the completion marker last.

    Checkpoints may already live in `output_dir` (that is what resume reads), so the directory itself cannot
    be swapped. Instead the old marker is removed first, each entry goes in with an atomic rename, and the
    marker goes in last: a directory without it is never mistaken for a finished stage.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / COMPLETION_MARKER).unlink(missing_ok=True)
    for entry in sorted(staging.iterdir(), key=lambda p: p.name == COMPLETION_MARKER):
        target = output_dir / entry.name
        if target.is_symlink() or target.is_file():
            if entry.is_dir():  # a directory cannot be renamed over a file or a link
                target.unlink()
        elif target.is_dir():
            shutil.rmtree(target)
        os.replace(entry, target)
    shutil.rmtree(staging, ignore_errors=True)


@contextmanager
def fresh_staging(output_dir: str | Path) -> Iterator[Path]:
    """A fresh staging directory beside `output_dir` (single process), deleted if the block fails."""
    staging = staging_dir(output_dir)
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


@contextmanager
def staged_output(output_dir: str | Path) -> Iterator[Path]:
    """Single-process form: yield a staging directory, publish it on success, delete it on failure."""
    with fresh_staging(output_dir) as staging:
        yield staging
        publish_staged(staging, output_dir)


# The data files hfrecipes.data.sources reads, by suffix, and the `datasets` builder that reads each.
FILE_BUILDERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv", ".txt": "text"}


def looks_like_path(spec: str) -> bool:
    """A local path rather than a Hub id: relative or absolute markers, a data-file suffix, or deeper than
    `owner/name`."""
    return (
        spec.startswith((".", "/", "~")) or Path(spec).suffix.lower() in FILE_BUILDERS or spec.count("/") > 1
    )
