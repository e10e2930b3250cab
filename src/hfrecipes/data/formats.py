"""TRL's column conventions for each kind of data, how a dataset's source format is recognised, and the check
that a dataset fits a recipe kind.

Every SFT/DPO/RL recipe calls `validate_format(dataset, kind)` before building a model, so a dataset in
another common shape stops at once with one message naming the missing columns and the converter to use,
and rows that would silently train on nonsense (roles out of order, an empty reply, chosen == rejected)
are counted and pointed at by row index.

Source formats that `detect_format` recognises from the columns, in this order:

- `messages`: a list of {role, content} per row (already SFT data);
- `preference`: prompt / chosen / rejected (already preference data, strings or message lists);
- `hh`: chosen / rejected full conversations without `prompt` (Anthropic HH-RLHF transcripts, or message
  lists in TRL's implicit-prompt format): the shared prefix is the prompt;
- `alpaca`: instruction / input / output;
- `prompt_completion`: prompt / completion;
- `transcript`: `text` holding "\\n\\nHuman: ... \\n\\nAssistant: ..." turns;
- `text` and `prompt`: plain text and prompt-only data (nothing to convert to a conversation).

The converters that bring these formats to the conventions live in hfrecipes.data.converters.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import datasets

from hfrecipes.core.errors import RecipeInputError

ROLES = ("system", "user", "assistant", "tool")
# Text that the chat template and tokenizer treat as structure: inside a message it would open or close turns.
# The special tokens of the tokenizers hfrecipes trains (hfrecipes.text.tokenization): ChatML turn markers.
BOS, EOS, PAD, UNK = "<|begin_of_text|>", "<|endoftext|>", "<|pad|>", "<|unk|>"
IM_START, IM_END = "<|im_start|>", "<|im_end|>"
SPECIAL_TOKENS = [EOS, BOS, PAD, IM_START, IM_END]
CHAT_CONTROL_TOKENS = tuple(SPECIAL_TOKENS)

FORMATS: dict[str, tuple[str, ...]] = {
    "lm": ("text",),
    "sft": ("messages",),
    "preference": ("prompt", "chosen", "rejected"),
    "prompt": ("prompt",),
    "classification": ("text", "label"),
}

SOURCE_FORMATS: dict[str, tuple[str, ...]] = {
    "messages": ("messages",),
    "preference": ("prompt", "chosen", "rejected"),
    "hh": ("chosen", "rejected"),
    "alpaca": ("instruction", "output"),
    "prompt_completion": ("prompt", "completion"),
    "transcript": ("text",),
    "text": ("text",),
    "prompt": ("prompt",),
}

FORMAT_DESCRIPTIONS = {
    "messages": "conversations in `messages`",
    "preference": "preference data (prompt/chosen/rejected)",
    "hh": "HH-RLHF style preference conversations (chosen/rejected without prompt)",
    "alpaca": "instruction/input/output (alpaca)",
    "prompt_completion": "prompt/completion",
    "transcript": "'Human:'/'Assistant:' transcripts in `text`",
    "text": "plain text in `text`",
    "prompt": "prompts only",
}

# Which source formats each target can be made from.
CONVERTIBLE: dict[str, tuple[str, ...]] = {
    "sft": ("messages", "preference", "hh", "alpaca", "prompt_completion", "transcript"),
    "preference": ("preference", "hh"),
    "prompt": ("messages", "preference", "hh", "alpaca", "prompt_completion", "transcript", "prompt"),
}
_STEP_FOR = {"sft": "to_messages", "preference": "to_preference"}

# Which role may follow which (None: the start). System turns only open a conversation; tool results
# answer an assistant's call and are followed by more tool results or the assistant's next turn.
_NEXT_ROLES: dict[str | None, set[str]] = {
    None: {"system", "user"},
    "system": {"user"},
    "user": {"assistant"},
    "assistant": {"user", "tool"},
    "tool": {"tool", "assistant"},
}

_MAX_SHOWN = 5

Message = dict[str, Any]
Problem = tuple[str, str]  # (category, detail)


def snippet(text: str, limit: int = 80) -> str:
    """The start of a text, quoted, for error messages that point at a value."""
    return repr(text[:limit] + ("..." if len(text) > limit else ""))


def _looks_like_transcripts(values: list[Any]) -> bool:
    sample = [v for v in values if isinstance(v, str) and v.strip()][:10]
    return bool(sample) and all(v.lstrip().startswith("Human:") and "\n\nAssistant:" in v for v in sample)


def detect_format(dataset: datasets.Dataset) -> str | None:
    """The source format by its columns (the first 10 rows tell transcripts from plain text); None if unknown."""
    columns = set(dataset.column_names)
    for name, required in SOURCE_FORMATS.items():
        if not columns.issuperset(required):
            continue
        if name == "transcript" and not _looks_like_transcripts(
            dataset.select(range(min(10, len(dataset))))["text"]
        ):
            continue
        return name
    return None


def _has_content(message: Message) -> bool:
    content = message.get("content")
    return bool(content.strip() if isinstance(content, str) else content) or bool(message.get("tool_calls"))


def _messages_problem(messages: Any, column: str, after: str | None = None) -> Problem | None:
    """Structure, role order and non-empty replies of one message list, continuing after role `after`."""
    if not isinstance(messages, list) or not messages:
        return "malformed messages", f"`{column}` is not a non-empty list of messages"
    previous = after
    for position, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        content = message.get("content") if isinstance(message, dict) else None
        tool_call_only = role == "assistant" and content is None and bool(message.get("tool_calls"))
        if not isinstance(role, str) or not (isinstance(content, str) or tool_call_only):
            return (
                "malformed messages",
                f"{column}[{position}] is not a {{role, content}} message with text content: "
                f"{snippet(repr(message))}",
            )
        if role not in ROLES:
            return (
                "unknown role",
                f"{column}[{position}] has role {snippet(role, 30)}; roles are {', '.join(ROLES)}",
            )
        markup = _chat_markup(content)
        if markup:
            return (
                "chat markup in content",
                f"{column}[{position}] contains the chat-template control text {markup!r}, which would fake a "
                "turn boundary once rendered and tokenized; remove it from the text or drop the row",
            )
        if role not in _NEXT_ROLES[previous]:
            return (
                "roles out of order",
                f"{column}[{position}] is a {role!r} turn after {previous or 'the start'!r} "
                f"(expected {' or '.join(sorted(_NEXT_ROLES[previous]))})",
            )
        if role == "assistant" and not _has_content(message):
            return "empty assistant turn", f"{column}[{position}] is an assistant turn with no content"
        previous = role
    return None


def _chat_markup(content: Any) -> str | None:
    """The first chat-template control token (ChatML turn markers, BOS/EOS/PAD) inside a message's text."""
    if not isinstance(content, str) or "<|" not in content:
        return None
    found = [(content.find(marker), marker) for marker in CHAT_CONTROL_TOKENS if marker in content]
    return min(found)[1] if found else None


def _text_problem(value: Any, column: str, markup: bool = False) -> Problem | None:
    if not isinstance(value, str):
        return "not text", f"`{column}` is {type(value).__name__}, not a string"
    if not value.strip():
        return "empty text", f"`{column}` is empty"
    return _markup_problem(value, column) if markup else None


def _markup_problem(value: str, column: str) -> Problem | None:
    found = _chat_markup(value)
    if found is None:
        return None
    return (
        "chat markup in content",
        f"`{column}` contains the chat-template control text {found!r}; remove it from the text or drop the row",
    )


def _sft_problem(row: dict[str, Any]) -> Problem | None:
    problem = _messages_problem(row["messages"], "messages")
    if problem is None and not any(m["role"] == "assistant" for m in row["messages"]):
        return "no assistant turn", "`messages` has no assistant turn to learn from"
    return problem


def _prompt_problem(row: dict[str, Any]) -> Problem | None:
    prompt = row["prompt"]
    if isinstance(prompt, str):
        return _text_problem(prompt, "prompt", markup=True)
    problem = _messages_problem(prompt, "prompt")
    if problem is None and prompt[-1]["role"] not in ("user", "tool"):
        return (
            "prompt ends with a reply",
            f"`prompt` ends with a {prompt[-1]['role']!r} turn, not a user turn",
        )
    return problem


def _preference_problem(row: dict[str, Any]) -> Problem | None:
    prompt, chosen, rejected = row["prompt"], row["chosen"], row["rejected"]
    if all(isinstance(v, str) for v in (prompt, chosen, rejected)):
        problem = (
            _markup_problem(prompt, "prompt")
            or _text_problem(chosen, "chosen", markup=True)
            or _text_problem(rejected, "rejected", markup=True)
        )
    elif all(isinstance(v, list) for v in (prompt, chosen, rejected)):
        problem = _prompt_problem(row)
        if problem is None:
            last = prompt[-1]["role"]
            problem = _messages_problem(chosen, "chosen", after=last) or _messages_problem(
                rejected, "rejected", after=last
            )
    else:
        kinds = "/".join(type(v).__name__ for v in (prompt, chosen, rejected))
        return (
            "malformed preference",
            f"prompt/chosen/rejected must be all strings or all message lists, got {kinds}",
        )
    if problem is None and chosen == rejected:
        return "chosen equals rejected", "`chosen` and `rejected` are the same reply"
    return problem


def _classification_problem(row: dict[str, Any]) -> Problem | None:
    if row["label"] is None:
        return "missing label", "`label` is empty"
    return _text_problem(row["text"], "text")


_ROW_CHECKS = {
    "lm": lambda row: _text_problem(row["text"], "text"),
    "sft": _sft_problem,
    "preference": _preference_problem,
    "prompt": _prompt_problem,
    "classification": _classification_problem,
}


def scan_rows(dataset: datasets.Dataset, kind: str) -> list[tuple[int, str, str]]:
    """(row index, category, detail) for every row that is not valid `kind` data."""
    check = _ROW_CHECKS[kind]
    columns = list(FORMATS[kind])
    problems, index = [], 0
    for batch in dataset.select_columns(columns).iter(batch_size=1000):
        for values in zip(*(batch[c] for c in columns), strict=True):
            problem = check(dict(zip(columns, values, strict=True)))
            if problem is not None:
                problems.append((index, *problem))
            index += 1
    return problems


def problems_message(problems: list[tuple[int, str, str]], total: int, what: str) -> str:
    """One sentence counting the problems by category, with the first few rows pointed at."""
    counts = Counter(category for _, category, _ in problems)
    summary = ", ".join(f"{category}: {count}" for category, count in counts.most_common())
    shown = "; ".join(f"row {index}: {detail.rstrip('.')}" for index, _, detail in problems[:_MAX_SHOWN])
    more = f"; and {len(problems) - _MAX_SHOWN} more" if len(problems) > _MAX_SHOWN else ""
    return f"{len(problems)} of {total} rows {what} ({summary}). {shown}{more}."


def converter_hint(dataset: datasets.Dataset, kind: str) -> str:
    """How to get `kind` data from this dataset: the converter call (and pipeline step), or what to build."""
    source = detect_format(dataset)
    if source is not None and source in CONVERTIBLE.get(kind, ()):
        step = f" or the `{_STEP_FOR[kind]}` pipeline step" if kind in _STEP_FOR else ""
        return f"It has {FORMAT_DESCRIPTIONS[source]}: use convert(dataset, {kind!r}){step}."
    found = (
        f"It has {FORMAT_DESCRIPTIONS[source]}, which" if source else "Its columns match no known format and"
    )
    return (
        f"{found} no converter turns into {kind!r} data: build the column(s) {list(FORMATS[kind])} "
        "(dataset.rename_column, or tokenizer.apply_chat_template to render conversations as `text`)."
    )


def validate_format(dataset: datasets.Dataset, kind: str) -> None:
    """Stop with one RecipeInputError unless every row is valid `kind` data (FORMATS[kind] columns, then
    per-row structure: roles, order, non-empty replies, chosen != rejected)."""
    if not isinstance(kind, str) or kind not in FORMATS:
        raise RecipeInputError(f"Unknown data kind {kind!r}; kinds: {', '.join(FORMATS)}.")
    missing = [c for c in FORMATS[kind] if c not in dataset.column_names]
    if missing:
        raise RecipeInputError(
            f"{kind!r} data needs column(s) {missing}; the dataset has {dataset.column_names}. "
            + converter_hint(dataset, kind)
        )
    problems = scan_rows(dataset, kind)
    if problems:
        raise RecipeInputError(
            problems_message(problems, len(dataset), f"are not valid {kind!r} data")
            + " Fix or drop these rows (convert(..., on_error='drop') drops rows that fail conversion)."
        )


__all__ = [
    "CONVERTIBLE",
    "FORMATS",
    "FORMAT_DESCRIPTIONS",
    "ROLES",
    "SOURCE_FORMATS",
    "converter_hint",
    "detect_format",
    "problems_message",
    "scan_rows",
    "snippet",
    "validate_format",
]
