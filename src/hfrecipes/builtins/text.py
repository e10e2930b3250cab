"""Built-in corpora generated on the machine itself, so every recipe runs offline on a fresh install."""

from __future__ import annotations

import ast
import os
import sysconfig
from pathlib import Path

import datasets

from hfrecipes.core.errors import RecipeInputError

TINYSHAKESPEARE_ENV = "HFRECIPES_TINYSHAKESPEARE"


def python_stdlib(
    max_files: int | str | None = None, domains: str = "code,documentation,license", first_file: int | str = 0
) -> datasets.Dataset:
    """The running Python's standard library as documents tagged by domain.

    - `code`: each top-level module's source;
    - `documentation`: each module's docstring followed by its public functions' and classes' docstrings;
    - `license`: the interpreter's LICENSE.txt.
    Files are read in sorted order, so the corpus is the same on every run of the same Python.
    """
    wanted = {d.strip() for d in domains.split(",") if d.strip()}
    unknown = wanted - {"code", "documentation", "license"}
    if unknown:
        raise RecipeInputError(
            f"builtin:python-stdlib has no domains {sorted(unknown)}; use code, documentation, license."
        )
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(stdlib.glob("*.py"))
    # first_file/max_files carve disjoint slices (e.g. replay data vs held-out text for the forgetting check).
    files = files[int(first_file) :]
    if max_files is not None:
        files = files[: int(max_files)]
    rows: list[dict[str, str]] = []
    for file in files:
        source = file.read_text(encoding="utf-8", errors="replace")
        if "code" in wanted:
            rows.append({"text": source, "domain": "code", "source_file": file.name})
        if "documentation" in wanted and (doc := _module_documentation(source, file.stem)):
            rows.append({"text": doc, "domain": "documentation", "source_file": file.name})
    license_file = stdlib / "LICENSE.txt"
    if "license" in wanted and license_file.exists():
        rows.append(
            {
                "text": license_file.read_text(encoding="utf-8", errors="replace"),
                "domain": "license",
                "source_file": "LICENSE.txt",
            }
        )
    return datasets.Dataset.from_list(rows)


def _module_documentation(source: str, module: str) -> str:
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return ""
    parts = []
    if module_doc := ast.get_docstring(tree):
        parts.append(f"Module {module}\n\n{module_doc}")
    for node in tree.body:
        public = isinstance(node, ast.FunctionDef | ast.ClassDef) and not node.name.startswith("_")
        if public and (doc := ast.get_docstring(node)):
            kind = "class" if isinstance(node, ast.ClassDef) else "function"
            parts.append(f"{module}.{node.name} ({kind})\n\n{doc}")
    return "\n\n".join(parts)


def tinyshakespeare(path: str | None = None) -> datasets.Dataset:
    """Karpathy's Tiny Shakespeare, read from a file the user has (the package does not ship the text).

    One row per speech (blank-line separated paragraph), in file order, so a `tail` split takes the end
    of the play text the way nanoGPT's 90/10 split does.
    """
    path = path or os.environ.get(TINYSHAKESPEARE_ENV)
    if not path:
        raise RecipeInputError(
            "builtin:tinyshakespeare needs the text file: use `builtin:tinyshakespeare?path=/path/to/input.txt` "
            f"or set {TINYSHAKESPEARE_ENV}. The file is Karpathy's char-rnn tinyshakespeare input.txt."
        )
    file = Path(path).expanduser()
    if not file.is_file():
        raise RecipeInputError(
            f"builtin:tinyshakespeare: file {file} does not exist. Pass path=<the input.txt you have>."
        )
    paragraphs = file.read_text(encoding="utf-8").split("\n\n")
    return datasets.Dataset.from_dict({"text": paragraphs, "domain": ["drama"] * len(paragraphs)})
