"""Prose paragraphs of the running Python's own documentation, read lazily and in a fixed order: the
clean "technical" domain of `builtin:noisy-web` (hfrecipes.builtins.noisy_web).
"""

from __future__ import annotations

import ast
import re
import sysconfig
from collections.abc import Iterator
from pathlib import Path
from pydoc_data.topics import topics

_WORD_WITH_LETTER = re.compile(r"\S*[^\W\d_]\S*")
_PUNCTUATION_MARK = re.compile(r"[^\w\s]|_")
_DOCUMENTED_NODES = (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)


class PythonDocParagraphs:
    """Paragraphs of the running Python's documentation in a fixed order: the language reference
    (`pydoc_data.topics`, instant) first, then docstrings of the top-level stdlib modules, parsed with `ast`
    only as far as a caller needs (parsing all of them takes seconds)."""

    def __init__(self) -> None:
        self.paragraphs: list[str] = []
        self._seen_shingles: set[tuple[str, ...]] = set()
        self._sources = self._documents()

    @staticmethod
    def _documents() -> Iterator[str]:
        for key in sorted(topics):
            yield topics[key]
        stdlib = Path(sysconfig.get_paths()["stdlib"])
        for file in sorted(stdlib.glob("*.py")):
            try:
                tree = ast.parse(file.read_text(encoding="utf-8", errors="replace"))
            except SyntaxError:
                continue
            # Module, classes, functions and methods; not the inside of function bodies, which rarely hold
            # docstrings and would make the walk several times slower.
            nodes: list[ast.AST] = [tree]
            while nodes:
                node = nodes.pop(0)
                if doc := ast.get_docstring(node):
                    title = "module" if isinstance(node, ast.Module) else node.name
                    yield f"{file.stem}: {title}\n\n{doc}"
                if isinstance(node, ast.Module | ast.ClassDef):
                    nodes.extend(n for n in node.body if isinstance(n, _DOCUMENTED_NODES))

    def __iter__(self) -> Iterator[str]:
        """The paragraphs from the first, reading (and parsing) more sources only when a caller gets that
        far: every caller sees the same sequence, whatever earlier callers read."""
        index = 0
        while True:
            while index == len(self.paragraphs):
                document = next(self._sources, None)
                if document is None:
                    return
                self.paragraphs.extend(p.strip("\n") for p in document.split("\n\n") if self._keep(p))
            yield self.paragraphs[index]
            index += 1

    def _keep(self, paragraph: str) -> bool:
        return self._is_prose(paragraph) and self._is_new(paragraph)

    @staticmethod
    def _is_prose(paragraph: str) -> bool:
        """Documentation prose, not code: no doctest or indented code lines, and at least 80% of tokens
        (words plus punctuation marks, as spaCy splits them) contain a letter, so Gopher's alphabetic-word
        rule keeps the documents built from it."""
        if any(line.startswith((">>>", "   ", "\t")) for line in paragraph.split("\n")):
            return False
        words = len(paragraph.split())
        alphabetic = len(_WORD_WITH_LETTER.findall(paragraph))
        return alphabetic >= 0.8 * (words + len(_PUNCTUATION_MARK.findall(paragraph)))

    def _is_new(self, paragraph: str) -> bool:
        """Keep paragraphs of 5+ words that mostly say something new: the documentation repeats itself
        (the same note under two topics, "Return self==value." on many classes), and such repeats would be
        duplicates nobody planted."""
        words = paragraph.lower().split()
        shingles = set(zip(*(words[k:] for k in range(5)), strict=False))
        if not shingles:
            return False
        repeated = len(shingles & self._seen_shingles) / len(shingles)
        self._seen_shingles |= shingles
        return repeated <= 0.2


PYTHON_DOC_PARAGRAPHS = PythonDocParagraphs()
