"""Instruction data for supervised fine-tuning, generated on the machine itself so SFT recipes run offline.

Two `builtin:` sources, each deterministic given `seed`, in TRL's conversational shape (`chat_messages`: an
optional system turn, the user turn, the assistant reply) plus `prompt` (the user text), `category` and
`domain` (`builtin:safety`, in the same shape, is in `hfrecipes.builtins.safety`):

- `builtin:arithmetic`: "What is 12 + 7?" with the exact result in `answer`, so accuracy and reward
  functions check replies with `extract_number`;
- `builtin:python-qa`: questions about the running Python's standard library (what a function does, which
  module defines a name, a function's signature) answered from the objects themselves; `split_key` groups
  every question about one object so a whole function can be held out;

`self_instruct` grows a new instruction set from Alpaca-format seed tasks with a local causal LM, the way
Stanford Alpaca did (few-shot prompts of random seed tasks, sampled continuations, parse, dedup, filter).

Options of the builtins arrive as strings from `builtin:name?k=v&k=v`, so every option is converted and
checked here, and a bad one stops with a RecipeInputError naming the option and the accepted values.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import random
import re
import sysconfig
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import datasets

from hfrecipes.builtins.options import choices_option, int_option
from hfrecipes.core.errors import RecipeInputError

Message = dict[str, str]


def chat_messages(prompt: str, reply: str, system_prompt: str | None) -> list[Message]:
    """One exchange in TRL's conversational shape: an optional system turn, the user turn and the reply."""
    system = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return [*system, {"role": "user", "content": prompt}, {"role": "assistant", "content": reply}]


# --- builtin:arithmetic ---------------------------------------------------------------------------------

ARITHMETIC_OPS: dict[str, Callable[[int, int], int]] = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
}

# Several phrasings per operation, so a model learns the operation and not one sentence. `{a}` is always
# the first operand of `a op b`; "subtract {b} from {a}" words the operands in the other order on purpose.
ARITHMETIC_TEMPLATES: dict[str, tuple[str, ...]] = {
    "add": (
        "What is {a} + {b}?",
        "Compute {a} plus {b}.",
        "Calculate {a} + {b}.",
        "What is the sum of {a} and {b}?",
        "Add {a} and {b}.",
        "What do you get when you add {a} and {b}?",
        "What does {a} plus {b} come to?",
        "Add {b} to {a}.",
        "{a} + {b} = ?",
        "Please calculate the sum {a} + {b}.",
        "There are {a} birds on a roof and {b} more land. How many birds are there now?",
        "A box holds {a} pens and I put in {b} more. How many pens are in the box?",
        "What total do {a} and {b} make together?",
        "If you increase {a} by {b}, what number do you get?",
    ),
    "sub": (
        "What is {a} - {b}?",
        "Compute {a} minus {b}.",
        "Calculate {a} - {b}.",
        "What is {b} subtracted from {a}?",
        "What do you get when you subtract {b} from {a}?",
        "What is the difference {a} - {b}?",
        "What does {a} minus {b} come to?",
        "{a} - {b} = ?",
        "Please calculate {a} - {b}.",
        "There are {a} birds on a roof and {b} fly away. How many birds are left?",
        "A box holds {a} pens and I take out {b}. How many pens remain in the box?",
        "Subtract {b} from {a}.",
        "If you decrease {a} by {b}, what number do you get?",
        "I had {a} sweets and gave away {b}. How many sweets do I have left?",
    ),
    "mul": (
        "What is {a} * {b}?",
        "Compute {a} times {b}.",
        "Calculate {a} × {b}.",
        "What is the product of {a} and {b}?",
        "Multiply {a} by {b}.",
        "What do you get when you multiply {a} by {b}?",
    ),
}

# "varied" phrasing composes a question frame with a wording of the expression and adds short stories over many
# objects (FLAN-style template diversity). A model trained on the fixed sentences alone memorises them: the
# main job's SFT answered 0.43 of the fixed wordings and 0.17 of unseen ones. The parts avoid every wording of
# `builtin:heldout-eval` (tests/test_heldout_eval.py checks it).
_EXPRESSIONS: dict[str, tuple[str, ...]] = {
    "add": ("{a} + {b}", "{a}+{b}", "{a} plus {b}", "the sum of {a} and {b}", "{a} and {b} added together"),
    "sub": (
        "{a} - {b}",
        "{a}-{b}",
        "{a} minus {b}",
        "{a} take away {b}",
        "the difference between {a} and {b}",
    ),
    "mul": ("{a} * {b}", "{a} times {b}", "the product of {a} and {b}"),
}
_FRAMES = (  # no "What is {e}?": held-out unanswerables ask "What is 6 minus the number on my door?"
    "What's {e}?",
    "Compute {e}.",
    "Calculate {e}.",
    "Evaluate {e}.",
    "Solve {e}.",
    "Can you compute {e}?",
    "Please compute {e}.",
    "Do you know what {e} is?",
    "Could you say what {e} is?",
    "Answer this: {e}",
    "Maths question: what is {e}?",
    "I need {e}.",
    "What number is {e}?",
    "Quick one, {e}?",
    "Help me with {e}.",
)
_STORIES: dict[str, tuple[str, ...]] = {
    "add": (
        "{who} has {a} {things} and gets {b} more. How many {things} does {who} have now?",
        "{who} found {a} {things} on Monday and {b} on Tuesday. How many {things} is that in all?",
        "There were {a} {things} in the bag, then {who} added {b}. How many {things} are in the bag?",
    ),
    "sub": (
        "{who} has {a} {things} and loses {b}. How many {things} does {who} have now?",
        "{who} had {a} {things} and gave {b} to a friend. How many {things} are left?",
        "There were {a} {things} in the bag, then {who} removed {b}. How many {things} are in the bag?",
    ),
    "mul": ("{who} buys {a} packs of {b} {things}. How many {things} is that?",),
}
_STORY_SLOTS = {
    "who": ("Sam", "Priya", "Tom", "Mei", "Omar", "Lena", "Ines", "Kofi"),
    "things": (
        "marbles",
        "stamps",
        "books",
        "cards",
        "shells",
        "eggs",
        "cups",
        "pencils",
        "stickers",
        "boats",
    ),
}
VARIED_ARITHMETIC_TEMPLATES: dict[str, tuple[str, ...]] = {
    op: ARITHMETIC_TEMPLATES[op]
    + tuple(frame.format(e=expression) for frame in _FRAMES for expression in _EXPRESSIONS[op])
    + tuple(
        story.replace("{who}", who).replace("{things}", things)
        for story in _STORIES[op]
        for who in _STORY_SLOTS["who"]
        for things in _STORY_SLOTS["things"]
    )
    for op in ARITHMETIC_OPS
}
ARITHMETIC_PHRASINGS = ("fixed", "varied")
ARITHMETIC_STYLES = ("short", "plain", "worked")
_SYMBOLS = {"add": "+", "sub": "-", "mul": "*"}


def arithmetic(
    n: int | str = 2000,
    seed: int | str = 0,
    ops: str = "add,sub,mul",
    digits: int | str = 2,
    min_digits: int | str = 1,
    style: str = "short",
    system_prompt: str | None = None,
    phrasing: str = "fixed",
) -> datasets.Dataset:
    """`n` two-operand problems over the chosen `ops` (add, sub, mul). Each operand has between `min_digits`
    and `digits` digits (the digit count is drawn first, so short and long operands are equally common).
    `style` "short" replies "The answer is 42.", "plain" replies "42"; `answer` is the exact integer
    (negative for some subtractions) as a string. `phrasing` "fixed" draws from a few hand-written wordings
    per op, "varied" from hundreds of composed ones (frames x expressions, stories over many objects).
    Columns: messages, prompt, answer, category (the op), domain ("arithmetic")."""
    n = int_option("arithmetic", "n", n, 1)
    seed = int_option("arithmetic", "seed", seed, 0)
    chosen_ops = choices_option("arithmetic", "ops", ops, tuple(ARITHMETIC_OPS))
    digits = int_option("arithmetic", "digits", digits, 1)
    min_digits = int_option("arithmetic", "min_digits", min_digits, 1)
    if min_digits > digits:
        raise RecipeInputError(
            f"builtin:arithmetic: min_digits ({min_digits}) must not exceed digits ({digits})."
        )
    if style not in ARITHMETIC_STYLES:
        raise RecipeInputError(f"builtin:arithmetic: style must be short, plain or worked, got {style!r}.")
    if phrasing not in ARITHMETIC_PHRASINGS:
        raise RecipeInputError(f"builtin:arithmetic: phrasing must be fixed or varied, got {phrasing!r}.")
    templates = VARIED_ARITHMETIC_TEMPLATES if phrasing == "varied" else ARITHMETIC_TEMPLATES
    rng = random.Random(seed)

    def operand() -> int:
        width = rng.randint(min_digits, digits)
        return rng.randint(0 if width == 1 else 10 ** (width - 1), 10**width - 1)

    rows = []
    for _ in range(n):
        op = rng.choice(chosen_ops)
        a, b = operand(), operand()
        prompt = rng.choice(templates[op]).format(a=a, b=b)
        answer = str(ARITHMETIC_OPS[op](a, b))
        reply = {
            "short": f"The answer is {answer}.",
            "plain": answer,
            "worked": f"{a} {_SYMBOLS[op]} {b} = {answer}. The answer is {answer}.",
        }[style]
        rows.append(
            {
                "messages": chat_messages(prompt, reply, system_prompt),
                "prompt": prompt,
                "answer": answer,
                "category": op,
                "domain": "arithmetic",
            }
        )
    return datasets.Dataset.from_list(rows)


# A number not glued to a preceding word or number ("3-5" is a range, "x-5" a name), with thousands commas.
_NUMBER = re.compile(r"(?:(?<![\w.])-)?(?<![\d.])(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?![\d])")


def extract_number(reply: str) -> str | None:
    """The last number in `reply`, normalised so it compares equal to an `answer` string: commas dropped
    ("1,234" -> "1234"), a leading minus kept ("-5"; the Unicode minus too), leading zeros dropped and a
    zero fraction dropped ("42.0" -> "42"). None when the reply has no number."""
    matches = _NUMBER.findall(reply.replace("\u2212", "-"))
    if not matches:
        return None
    number = matches[-1].replace(",", "")
    sign = "-" if number.startswith("-") else ""
    whole, _, fraction = number.lstrip("-").partition(".")
    fraction = fraction.rstrip("0")
    value = str(int(whole)) + (f".{fraction}" if fraction else "")
    return value if value == "0" else sign + value


# --- builtin:python-qa ----------------------------------------------------------------------------------

PYTHON_QA_KINDS = ("doc", "module", "signature")

# Modules whose import does something (opens a browser, prints, starts a GUI, installs a readline completer,
# swaps in setuptools' distutils) or that are test suites; anything starting with "_" is skipped as private.
UNSAFE_TO_IMPORT = frozenset(
    {
        "antigravity",
        "this",
        "idlelib",
        "tkinter",
        "turtle",
        "turtledemo",
        "test",
        "lib2to3",
        "distutils",
        "rlcompleter",
        "site",
        "sitecustomize",
        "usercustomize",
    }
)

_QA_TEMPLATES: dict[str, tuple[str, ...]] = {
    "doc_function": (
        "What does `{name}` do?",
        "Briefly, what is `{name}` for?",
        "Explain in one sentence what `{name}` does.",
    ),
    "doc_class": (
        "What is `{name}`?",
        "What is the class `{name}` for?",
        "Describe `{name}` in one sentence.",
    ),
    "module": (
        "Which module defines `{name}`?",
        "In which standard library module is `{name}` defined?",
        "Which module of the Python standard library does `{name}` come from?",
    ),
    "signature": (
        "What is the signature of `{name}`?",
        "What arguments does `{name}` take?",
        "Give the call signature of `{name}`.",
    ),
}

_SENTENCE_END = re.compile(r"(?<=[.!?])\s")
# A signature whose default values print as memory addresses differs from run to run.
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
_MAX_SIGNATURE_CHARS = 200


def _stdlib_module_names() -> list[str]:
    """Top-level pure-Python modules and packages of the running interpreter, sorted."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    names = {file.stem for file in stdlib.glob("*.py")}
    names |= {folder.name for folder in stdlib.iterdir() if (folder / "__init__.py").is_file()}
    return sorted(
        name
        for name in names
        if not name.startswith("_") and name not in UNSAFE_TO_IMPORT and name.isidentifier()
    )


def _first_sentence(doc: str | None) -> str | None:
    """The first sentence of a docstring's first paragraph; None for summaries that say nothing (a bare
    signature line as C functions have, a fragment, or a whole page)."""
    if not doc:
        return None
    paragraph = " ".join(inspect.cleandoc(doc).split("\n\n", 1)[0].split())
    sentence = _SENTENCE_END.split(paragraph, 1)[0]
    informative = (
        sentence[:1].isalpha()
        and sentence[-1:] in ".!?"
        and len(sentence.split()) >= 3
        and len(sentence) <= 300
        and "(" not in sentence.split()[0]
    )
    return sentence if informative else None


def _signature(function: Any) -> str | None:
    try:
        text = str(inspect.signature(function))
    except (TypeError, ValueError):
        return None
    return None if _ADDRESS.search(text) or len(text) > _MAX_SIGNATURE_CHARS else text


@dataclass(frozen=True)
class PythonFact:
    """What the questions about one public function or class of a stdlib module are built from."""

    module: str
    name: str
    is_function: bool
    doc: str  # the first docstring sentence, "" when it says nothing
    signature: str  # functions only, "" when it cannot be printed the same way every run
    unique_name: bool  # no other module defines this bare name, so "which module defines it?" has one answer

    @property
    def qualified_name(self) -> str:
        return f"{self.module}.{self.name}"


@cache
def python_facts() -> tuple[PythonFact, ...]:
    """One fact per public function or class that a stdlib module defines itself (`__module__` is the
    module), in a fixed order. Cached: the answer is a property of the interpreter."""
    found: list[tuple[str, str, Any]] = []
    for module_name in _stdlib_module_names():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # deprecated modules warn on import; the facts stay true
            try:
                module = importlib.import_module(module_name)
            except Exception:  # a module needing an absent C library (curses, ...) just has no questions
                continue
        # vars(), not getattr(): a module-level __getattr__ may warn or compute on access.
        for name, value in sorted(vars(module).items()):
            defined_here = getattr(value, "__module__", None) == module_name
            if (
                defined_here
                and not name.startswith("_")
                and (inspect.isfunction(value) or inspect.isclass(value))
            ):
                found.append((module_name, name, value))
    definers = Counter(name for _, name, _ in found)
    return tuple(
        PythonFact(
            module=module_name,
            name=name,
            is_function=inspect.isfunction(value),
            doc=_first_sentence(value.__doc__) or "",
            signature=(_signature(value) or "") if inspect.isfunction(value) else "",
            unique_name=definers[name] == 1,
        )
        for module_name, name, value in found
    )


def split_key(qualified_name: str) -> int:
    """0-9 from a hash of the name, stable across processes and machines (unlike `hash`)."""
    return int(hashlib.sha1(qualified_name.encode("utf-8")).hexdigest()[:8], 16) % 10


def _python_question(fact: PythonFact, kind: str, rng: random.Random) -> tuple[str, str, str]:
    """(prompt, reply, answer) for one fact."""
    qualified = fact.qualified_name
    if kind == "doc":
        template = rng.choice(_QA_TEMPLATES["doc_function" if fact.is_function else "doc_class"])
        return template.format(name=qualified), fact.doc, fact.doc
    if kind == "module":
        prompt = rng.choice(_QA_TEMPLATES["module"]).format(name=fact.name)
        return prompt, f"`{fact.name}` is defined in the `{fact.module}` module.", fact.module
    prompt = rng.choice(_QA_TEMPLATES["signature"]).format(name=qualified)
    return prompt, f"`{qualified}{fact.signature}`", fact.signature


_HAS_KIND: dict[str, Callable[[PythonFact], bool]] = {
    "doc": lambda fact: bool(fact.doc),
    "module": lambda fact: fact.unique_name,
    "signature": lambda fact: bool(fact.signature),
}


def python_qa(
    n: int | str | None = None,
    seed: int | str = 0,
    kinds: str = "doc,module,signature",
    system_prompt: str | None = None,
) -> datasets.Dataset:
    """Questions about the running Python's standard library, answered from the objects themselves:

    - doc: "What does `json.dumps` do?" -> the first sentence of its docstring;
    - module: "Which module defines `OrderedDict`?" -> "collections" in `answer` (only names that one
      module defines);
    - signature: "What is the signature of `textwrap.wrap`?" -> `answer` is `str(inspect.signature(...))`
      (functions whose defaults print without memory addresses).

    All questions of the chosen `kinds` are shuffled with `seed` and the first `n` kept (default: all; the
    number available depends on the Python version). Columns: messages, prompt, answer, category (the
    kind), domain ("python"), qualified_name, split_key (0-9, the same for every question about one
    object: `split_key == 0` holds out about a tenth of the functions and classes entirely).
    """
    seed = int_option("python-qa", "seed", seed, 0)
    chosen_kinds = choices_option("python-qa", "kinds", kinds, PYTHON_QA_KINDS)
    questions = [(fact, kind) for fact in python_facts() for kind in chosen_kinds if _HAS_KIND[kind](fact)]
    rng = random.Random(seed)
    rng.shuffle(questions)
    if n is not None:
        n = int_option("python-qa", "n", n, 1)
        if n > len(questions):
            raise RecipeInputError(
                f"builtin:python-qa: n={n} but this Python yields {len(questions)} questions of kinds "
                f"{','.join(chosen_kinds)}; lower n or leave it out to take them all."
            )
        questions = questions[:n]
    rows = []
    for fact, kind in questions:
        prompt, reply, answer = _python_question(fact, kind, rng)
        rows.append(
            {
                "messages": chat_messages(prompt, reply, system_prompt),
                "prompt": prompt,
                "answer": answer,
                "category": kind,
                "domain": "python",
                "qualified_name": fact.qualified_name,
                "split_key": split_key(fact.qualified_name),
            }
        )
    return datasets.Dataset.from_list(rows)


# --- self-instruct --------------------------------------------------------------------------------------
