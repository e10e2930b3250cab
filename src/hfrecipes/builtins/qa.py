"""`builtin:stdlib-qa`: a retrieval QA set derived from the running Python's standard library, plus the
`chunk` pipeline step that cuts documents into retrieval passages.

The corpus is one reference document per module of a fixed list (`STDLIB_QA_MODULES`): a paragraph per public
pure-Python function, written from the function object itself::

    `textwrap.wrap(text, width=70, **kwargs)` is a function of the `textwrap` module (3 parameters).
    Wrap a single paragraph of text, returning a list of wrapped lines.

The questions have short exact answers that the paragraph states:

- module: "Which module provides the function `wrap`?" -> "textwrap" (names only one listed module defines);
- count: "How many parameters does `textwrap.wrap` take?" -> "3";
- first: "What is the first parameter of `textwrap.wrap`?" -> "text";
- default: "What is the default value of `width` in `textwrap.wrap`?" -> "70".

Every question carries `evidence` (the opening of its paragraph: a passage that contains it holds the answer)
and `split`: "train" or "heldout", fixed per function by a hash of its qualified name, so every question about
a held-out function is held out together; its paragraph stays in the corpus. Pure-Python signatures and
docstrings only, read in sorted order: the same set on every machine with the same Python minor version.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import random
import re
import warnings
from collections import Counter
from dataclasses import dataclass
from functools import cache
from typing import Any

import datasets

from hfrecipes.core.errors import RecipeInputError

# Pure-Python modules with many small public functions, importable everywhere (no C library beyond the
# interpreter's own). ntpath is left out: it defines the same names as posixpath.
STDLIB_QA_MODULES = (
    "ast",
    "base64",
    "calendar",
    "codecs",
    "colorsys",
    "copy",
    "dataclasses",
    "difflib",
    "dis",
    "email.utils",
    "filecmp",
    "fnmatch",
    "functools",
    "getpass",
    "gettext",
    "glob",
    "gzip",
    "heapq",
    "html",
    "http.cookiejar",
    "inspect",
    "ipaddress",
    "json",
    "linecache",
    "locale",
    "mimetypes",
    "os",
    "pkgutil",
    "platform",
    "posixpath",
    "pprint",
    "quopri",
    "re",
    "shlex",
    "shutil",
    "statistics",
    "string",
    "subprocess",
    "tarfile",
    "tempfile",
    "textwrap",
    "tokenize",
    "traceback",
    "types",
    "typing",
    "urllib.parse",
    "uuid",
    "warnings",
    "webbrowser",
    "zipfile",
)
QA_KINDS = ("module", "count", "first", "default")
UNKNOWN_ANSWER = "unknown"

QUESTION_TEMPLATES: dict[str, tuple[str, ...]] = {
    "module": (
        "Which module provides the function `{name}`?",
        "In which standard library module is `{name}` defined?",
        "Which module do I import to use `{name}`?",
    ),
    "count": (
        "How many parameters does `{qualified}` take?",
        "How many arguments does `{qualified}` accept?",
        "What is the number of parameters of `{qualified}`?",
    ),
    "first": (
        "What is the first parameter of `{qualified}`?",
        "What is the name of the first argument of `{qualified}`?",
        "Which parameter comes first in `{qualified}`?",
    ),
    "default": (
        "What is the default value of `{parameter}` in `{qualified}`?",
        "What does `{parameter}` of `{qualified}` default to?",
        "If `{parameter}` is not given to `{qualified}`, what value does it take?",
    ),
}

_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
# A default that is a path (e.g. platform.architecture's sys.executable) differs from machine to machine.
_MACHINE_PATH = re.compile(r"""=b?['"](/|[A-Za-z]:\\)""")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s")
_MAX_SIGNATURE_CHARS = 120
_MAX_DEFAULT_CHARS = 16
_MAX_DOC_WORDS = 24


@dataclass(frozen=True)
class FunctionFact:
    """What a paragraph and its questions say about one public pure-Python function."""

    module: str
    name: str
    signature: str
    parameters: tuple[str, ...]
    default: tuple[str, str] | None  # (parameter, repr of its default): the first short, stable one
    doc: str
    unique_name: bool

    @property
    def qualified_name(self) -> str:
        return f"{self.module}.{self.name}"

    @property
    def evidence(self) -> str:
        """The paragraph's opening: unique to this function, and the sentence that holds every answer."""
        return f"`{self.qualified_name}{self.signature}` is a function of the `{self.module}` module"

    def paragraph(self, with_doc: bool = True) -> str:
        count = len(self.parameters)
        # "(3 parameters)": the count tokenizes as the bare answer "3" does (" 3" after a space would not).
        text = f"{self.evidence} ({count} parameter{'' if count == 1 else 's'})."
        return f"{text} {self.doc}" if self.doc and with_doc else text


def _doc_sentence(doc: str | None) -> str:
    if not doc:
        return ""
    paragraph = " ".join(inspect.cleandoc(doc).split("\n\n", 1)[0].split())
    sentence = _SENTENCE_END.split(paragraph, 1)[0]
    words = sentence.split()
    if len(words) < 3 or not sentence[:1].isalpha():
        return ""
    return " ".join(words[:_MAX_DOC_WORDS]) + ("" if len(words) <= _MAX_DOC_WORDS else " ...")


def _first_default(signature: inspect.Signature) -> tuple[str, str] | None:
    for parameter in signature.parameters.values():
        if parameter.default is inspect.Parameter.empty:
            continue
        text = repr(parameter.default)
        if len(text) <= _MAX_DEFAULT_CHARS and not text.startswith("<") and "\\" not in text:
            return parameter.name, text
    return None


@cache
def stdlib_functions(modules: tuple[str, ...] = STDLIB_QA_MODULES) -> tuple[FunctionFact, ...]:
    """One fact per public function defined in (not imported into) each module, sorted by module and name.
    `unique_name` is judged over all of STDLIB_QA_MODULES, so a subset asks the same module questions."""
    everything = _functions(STDLIB_QA_MODULES)
    definers = Counter(name for _, name, _, _ in everything)
    chosen = set(modules)
    return tuple(
        FunctionFact(
            module=module_name,
            name=name,
            signature=str(signature),
            parameters=tuple(signature.parameters),
            default=_first_default(signature),
            doc=_doc_sentence(value.__doc__),
            unique_name=definers[name] == 1,
        )
        for module_name, name, signature, value in _functions(tuple(sorted(chosen)))
    )


@cache
def _functions(modules: tuple[str, ...]) -> list[tuple[str, str, inspect.Signature, Any]]:
    found: list[tuple[str, str, inspect.Signature, Any]] = []
    for module_name in sorted(set(modules)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module = importlib.import_module(module_name)
        for name, value in sorted(vars(module).items()):
            if name.startswith("_") or not inspect.isfunction(value) or value.__module__ != module_name:
                continue
            try:
                signature = inspect.signature(value)
            except (TypeError, ValueError):
                continue
            text = str(signature)
            if _ADDRESS.search(text) or _MACHINE_PATH.search(text) or len(text) > _MAX_SIGNATURE_CHARS:
                continue
            found.append((module_name, name, signature, value))
    return found


def heldout_split(qualified_name: str, heldout_percent: int) -> str:
    """The split of a function: about `heldout_percent` % are "heldout", by a hash stable across machines."""
    bucket = int(hashlib.sha1(qualified_name.encode("utf-8")).hexdigest()[:8], 16) % 100
    return "heldout" if bucket < heldout_percent else "train"


def _answer(fact: FunctionFact, kind: str) -> str | None:
    """The answer of one kind of question about `fact`, or None when the fact has no such answer."""
    if kind == "module":
        return fact.module if fact.unique_name else None
    if kind == "count":
        return str(len(fact.parameters))
    if kind == "first":
        return fact.parameters[0] if fact.parameters else None
    return fact.default[1] if fact.default else None


def _option_int(name: str, value: Any, low: int, high: int | None = None) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise RecipeInputError(f"builtin:stdlib-qa: {name} must be an integer, got {value!r}.") from None
    if number < low or (high is not None and number > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise RecipeInputError(f"builtin:stdlib-qa: {name} must be {bound}, got {number}.")
    return number


def _chosen_modules(modules: str | None, max_modules: Any) -> tuple[str, ...]:
    chosen = STDLIB_QA_MODULES
    if modules:
        chosen = tuple(dict.fromkeys(m.strip() for m in str(modules).split(",") if m.strip()))
        unknown = [m for m in chosen if m not in STDLIB_QA_MODULES]
        if unknown or not chosen:
            raise RecipeInputError(
                f"builtin:stdlib-qa: modules must be a comma list of {', '.join(STDLIB_QA_MODULES)}; "
                f"{', '.join(unknown) or 'none'} given."
            )
    if max_modules is not None:
        chosen = chosen[: _option_int("max_modules", max_modules, 1)]
    return tuple(sorted(chosen))


def stdlib_qa(
    part: str = "questions",
    modules: str | None = None,
    max_modules: int | str | None = None,
    kinds: str = ",".join(QA_KINDS),
    heldout_percent: int | str = 20,
    seed: int | str = 0,
    docs: int | str = 1,
) -> datasets.Dataset:
    """`part=corpus`: one document per module (columns text, doc_id, title, domain). `part=questions`: the
    questions in a seeded order with columns question, answer, kind, evidence, qualified_name, split
    ("train"/"heldout") and `messages` (the closed-book conversation, so SFT recipes can read it too).
    Both parts take the same `modules` (comma list) / `max_modules` (the first N of STDLIB_QA_MODULES).
    `docs=0` leaves the docstring sentence out of the paragraphs: shorter passages for tiny generators."""
    chosen = _chosen_modules(modules, max_modules)
    facts = stdlib_functions(chosen)
    if part == "corpus":
        rows = []
        for module in chosen:
            with_doc = bool(_option_int("docs", docs, 0, 1))
            paragraphs = [fact.paragraph(with_doc) for fact in facts if fact.module == module]
            if paragraphs:
                header = f"Reference of the Python `{module}` module: its public functions."
                rows.append(
                    {
                        "text": "\n\n".join([header, *paragraphs]),
                        "doc_id": module,
                        "title": module,
                        "domain": "python-docs",
                    }
                )
        return datasets.Dataset.from_list(rows)
    if part != "questions":
        raise RecipeInputError(f"builtin:stdlib-qa: part must be corpus or questions, got {part!r}.")
    wanted = [k.strip() for k in str(kinds).split(",") if k.strip()]
    if not wanted or any(k not in QA_KINDS for k in wanted):
        raise RecipeInputError(f"builtin:stdlib-qa: kinds must be a comma list of {', '.join(QA_KINDS)}.")
    percent = _option_int("heldout_percent", heldout_percent, 0, 100)
    rng = random.Random(_option_int("seed", seed, 0))
    rows = []
    for fact in facts:
        for kind in wanted:
            if (answer := _answer(fact, kind)) is None:
                continue
            template = rng.choice(QUESTION_TEMPLATES[kind])
            question = template.format(
                name=fact.name,
                qualified=fact.qualified_name,
                parameter=fact.default[0] if fact.default else "",
            )
            rows.append(
                {
                    "question": question,
                    "answer": answer,
                    "kind": kind,
                    "evidence": fact.evidence,
                    "qualified_name": fact.qualified_name,
                    "split": heldout_split(fact.qualified_name, percent),
                    "messages": [
                        {"role": "user", "content": question},
                        {"role": "assistant", "content": answer},
                    ],
                }
            )
    rng.shuffle(rows)
    return datasets.Dataset.from_list(rows)
