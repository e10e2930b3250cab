"""Converters to TRL's column conventions, as functions and as pipeline steps.

`convert(dataset, kind)` brings alpaca, HH-RLHF transcripts, prompt/completion and preference data to
`messages` (SFT), prompt/chosen/rejected (preferences) or `prompt` (online RL), and checks the result with the
same rules as `validate_format` (hfrecipes.data.formats). Conversions always produce conversational data
(lists of {role, content}), so a chat template applies downstream the same way whatever the source was. The
steps `to_messages`, `to_preference`, `rename_columns` and `extract_answer` do the same inside a pipeline.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import datasets

from hfrecipes.core.data_report import DataReport
from hfrecipes.core.errors import RecipeInputError
from hfrecipes.data.formats import (
    CONVERTIBLE,
    FORMAT_DESCRIPTIONS,
    FORMATS,
    SOURCE_FORMATS,
    Message,
    detect_format,
    problems_message,
    scan_rows,
    snippet,
)
from hfrecipes.data.steps import Step, batch_rows

_TURN_MARKER = re.compile(r"(?:^|\n\n)(Human|Assistant):")
_MARKER_ROLES = {"Human": "user", "Assistant": "assistant"}
# (source, target) pairs that need no conversion.
_ALREADY = {("messages", "sft"), ("preference", "preference"), ("prompt", "prompt")}
# A row that fails conversion still needs values of the output's type (Arrow infers one type per column);
# it is dropped or reported before anyone sees it.
_PLACEHOLDER = [{"role": "", "content": ""}]


def transcript_to_messages(text: str) -> list[Message]:
    """Messages from a "\\n\\nHuman: ...\\n\\nAssistant: ..." transcript (Anthropic HH-RLHF), multi-turn.

    Turns must start with Human and alternate. A trailing empty "Assistant:" (a prompt awaiting its reply)
    is dropped, so HH prompts convert to a conversation ending with the user turn."""
    if not isinstance(text, str):
        raise RecipeInputError(f"A transcript must be a string, got {type(text).__name__}.")
    body = text.strip()
    markers = list(_TURN_MARKER.finditer(body))
    if not markers:
        raise RecipeInputError(f"No 'Human:'/'Assistant:' turns in transcript {snippet(body)}.")
    if body[: markers[0].start()].strip():
        raise RecipeInputError(f"Text before the first 'Human:' turn in transcript {snippet(body)}.")
    messages: list[Message] = []
    for position, marker in enumerate(markers):
        end = markers[position + 1].start() if position + 1 < len(markers) else len(body)
        role = _MARKER_ROLES[marker.group(1)]
        expected = "user" if position % 2 == 0 else "assistant"
        if role != expected:
            raise RecipeInputError(
                f"Transcript roles out of order at turn {position + 1}: expected "
                f"{'Human' if expected == 'user' else 'Assistant'}, got {marker.group(1)} in "
                f"{snippet(body[max(0, marker.start() - 40) :])}."
            )
        messages.append({"role": role, "content": body[marker.end() : end].strip()})
    if messages[-1]["role"] == "assistant" and not messages[-1]["content"]:
        messages.pop()
    return messages


def _with_system(messages: list[Message], system_prompt: str | None) -> list[Message]:
    if system_prompt and not (messages and messages[0].get("role") == "system"):
        return [{"role": "system", "content": system_prompt}, *messages]
    return messages


def alpaca_to_messages(row: dict[str, Any], system_prompt: str | None = None) -> dict[str, list[Message]]:
    """{"messages": [...]} from instruction/input/output: the user turn is "instruction\\n\\ninput" (just
    the instruction when input is empty), the assistant turn is the output."""
    instruction, extra_input, output = (_text_field(row, key) for key in ("instruction", "input", "output"))
    user = f"{instruction}\n\n{extra_input}" if extra_input else instruction
    messages = [
        {"role": "user", "content": user},
        {"role": "assistant", "content": output},
    ]
    return {"messages": _with_system(messages, system_prompt)}


def _text_field(row: dict[str, Any], key: str) -> str:
    """A text column of a row, stripped; missing or null is empty, anything else but a string is an error."""
    value = row.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise RecipeInputError(
            f"`{key}` must be a string, got {type(value).__name__} {snippet(repr(value), 40)}."
        )
    return value.strip()


def _as_messages(value: Any, role: str, column: str) -> list[Message]:
    """A string becomes one turn of `role`; a list is taken as messages already (each must be a mapping)."""
    if isinstance(value, str):
        return [{"role": role, "content": value}]
    if isinstance(value, list):
        for position, message in enumerate(value):
            if not isinstance(message, dict):
                raise RecipeInputError(
                    f"{column}[{position}] is not a {{role, content}} message: {snippet(repr(message))}."
                )
        return [dict(message) for message in value]
    raise RecipeInputError(f"`{column}` must be a string or a list of messages, got {type(value).__name__}.")


def prompt_completion_to_messages(row: dict[str, Any]) -> dict[str, list[Message]]:
    """{"messages": prompt turns + completion turns}; string prompts/completions become user/assistant turns."""
    return {
        "messages": _as_messages(row.get("prompt"), "user", "prompt")
        + _as_messages(row.get("completion"), "assistant", "completion")
    }


def _full_conversation(value: Any, column: str) -> list[Message]:
    if isinstance(value, str):
        return transcript_to_messages(value)
    return _as_messages(value, "assistant", column)


def hh_to_preference(row: dict[str, Any]) -> dict[str, list[Message]]:
    """TRL's conversational preference row from two full conversations (`chosen`, `rejected`: HH-RLHF
    transcripts or message lists) that differ only in the final assistant turn: `prompt` is the shared
    prefix, `chosen`/`rejected` are the final assistant turns as one-message lists."""
    conversations = {name: _full_conversation(row.get(name), name) for name in ("chosen", "rejected")}
    for name, conversation in conversations.items():
        if not conversation or conversation[-1].get("role") != "assistant":
            raise RecipeInputError(
                f"`{name}` does not end with an assistant turn: {snippet(str(row.get(name)))}."
            )
    chosen, rejected = conversations["chosen"], conversations["rejected"]
    if chosen[:-1] != rejected[:-1]:
        turn = next(
            (i for i, (a, b) in enumerate(zip(chosen[:-1], rejected[:-1], strict=False)) if a != b),
            min(len(chosen), len(rejected)) - 1,
        )
        raise RecipeInputError(
            f"`chosen` and `rejected` do not share the conversation before their final assistant turn "
            f"(they differ at turn {turn + 1}: {snippet(str(chosen[turn].get('content')), 60)} vs "
            f"{snippet(str(rejected[turn].get('content')), 60)})."
        )
    if not chosen[:-1]:
        raise RecipeInputError("`chosen` and `rejected` have no prompt before their final assistant turn.")
    return {"prompt": chosen[:-1], "chosen": [chosen[-1]], "rejected": [rejected[-1]]}


# The whole conversation a row of each source format holds (preferences: prompt + chosen reply).
_CONVERSATIONS: dict[str, Callable[[dict[str, Any]], list[Message]]] = {
    "messages": lambda row: _as_messages(row["messages"], "assistant", "messages"),
    "alpaca": lambda row: alpaca_to_messages(row)["messages"],
    "transcript": lambda row: transcript_to_messages(row["text"]),
    "prompt_completion": lambda row: prompt_completion_to_messages(row)["messages"],
    "hh": lambda row: _full_conversation(row["chosen"], "chosen"),
    "preference": lambda row: (
        _as_messages(row["prompt"], "user", "prompt") + _as_messages(row["chosen"], "assistant", "chosen")
    ),
    "prompt": lambda row: _as_messages(row["prompt"], "user", "prompt"),
}


def _convert_row(
    source: str, target: str, row: dict[str, Any], system_prompt: str | None, with_answer: bool
) -> dict[str, Any]:
    """One converted row whose every message is a {role: str, content: str} mapping (so the output columns have
    one Arrow type whatever the input held), or a RecipeInputError saying what in the row prevents it."""
    converted = _convert_row_values(source, target, row, system_prompt, with_answer)
    for column, value in converted.items():
        if column == "answer":
            if not isinstance(value, str):
                raise RecipeInputError(
                    f"The final reply is {type(value).__name__}, not text, so it cannot be the `answer`."
                )
            continue
        for position, message in enumerate(value):
            problem = _message_shape_problem(message, f"{column}[{position}]")
            if problem:
                raise RecipeInputError(problem)
    return converted


def _message_shape_problem(message: Any, where: str) -> str | None:
    if not isinstance(message, dict):
        return f"{where} is not a {{role, content}} message: {snippet(repr(message))}"
    role, content = message.get("role"), message.get("content")
    if not isinstance(role, str):
        return f"{where} has no text `role`: {snippet(repr(message))}"
    if not isinstance(content, str) and not (
        role == "assistant" and content is None and message.get("tool_calls")
    ):
        return f"{where} content is {type(content).__name__}, not text: {snippet(repr(message))}"
    return None


def _convert_row_values(
    source: str, target: str, row: dict[str, Any], system_prompt: str | None, with_answer: bool
) -> dict[str, Any]:
    if target == "preference":
        if source == "hh":
            pair = hh_to_preference(row)
        else:
            pair = {
                "prompt": _as_messages(row["prompt"], "user", "prompt"),
                **{name: _as_messages(row[name], "assistant", name) for name in ("chosen", "rejected")},
            }
        return {**pair, "prompt": _with_system(pair["prompt"], system_prompt)}
    conversation = _with_system(_CONVERSATIONS[source](row), system_prompt)
    if target == "sft":
        return {"messages": conversation}
    reply_at = len(conversation)
    while reply_at and conversation[reply_at - 1].get("role") == "assistant":
        reply_at -= 1
    if reply_at == 0:
        raise RecipeInputError("The conversation has no user turn to use as a prompt.")
    if not with_answer:
        return {"prompt": conversation[:reply_at]}
    answer = (conversation[-1].get("content") or "") if reply_at < len(conversation) else ""
    return {"prompt": conversation[:reply_at], "answer": answer}


def convert(
    dataset: datasets.Dataset,
    to: str,
    from_format: str = "auto",
    num_proc: int | None = None,
    *,
    system_prompt: str | None = None,
    on_error: str = "raise",
    report: DataReport | None = None,
) -> datasets.Dataset:
    """Convert to `to` ("sft" -> messages, "preference" -> prompt/chosen/rejected, "prompt" -> prompt for
    online RL) with `datasets.map`, then check the result with the same rules as `validate_format`.

    The source format is detected from the columns unless `from_format` names one of SOURCE_FORMATS. The
    source columns are replaced by the target's; other columns stay. `system_prompt` opens every
    conversation that has no system turn. "prompt" conversions keep the final assistant reply as `answer`
    (the column reward functions read) unless the dataset has an `answer` column already. Rows that cannot
    be converted or fail the check stop the conversion with one error counting them (`on_error="raise"`),
    or are dropped and counted in the report (`on_error="drop"`)."""
    return _convert(dataset, to, from_format, num_proc, system_prompt, on_error, report, "convert")


def _convert(
    dataset: datasets.Dataset,
    to: str,
    from_format: str,
    num_proc: int | None,
    system_prompt: str | None,
    on_error: str,
    report: DataReport | None,
    step_name: str,
) -> datasets.Dataset:
    if to not in CONVERTIBLE:
        raise RecipeInputError(
            f"convert makes {sorted(CONVERTIBLE)} data, not {to!r}. "
            "For 'lm' or 'classification' rename the columns to FORMATS[kind] (dataset.rename_column)."
        )
    _check_on_error(on_error)
    source = _resolve_source(dataset, from_format)
    if source not in CONVERTIBLE[to]:
        raise RecipeInputError(
            f"No converter from {FORMAT_DESCRIPTIONS[source]} to {to!r} data; {to!r} can be made from "
            f"{', '.join(CONVERTIBLE[to])}."
        )
    problems: list[tuple[int, str, str]] = []
    converted = dataset
    # Data already in the target format is only checked, unless a system prompt has to be added.
    if (source, to) not in _ALREADY or system_prompt:
        with_answer = to == "prompt" and source != "prompt" and "answer" not in dataset.column_names
        converted = _map_conversion(dataset, source, to, system_prompt, with_answer, num_proc)
        problems = [(i, "cannot convert", error) for i, error in enumerate(converted["_error"]) if error]
        converted = converted.remove_columns("_error")
    failed = {index for index, _, _ in problems}
    problems += [p for p in scan_rows(converted, to) if p[0] not in failed]
    problems.sort()
    counts = Counter(category for _, category, _ in problems)
    if problems and on_error == "raise":
        raise RecipeInputError(
            problems_message(problems, len(dataset), f"cannot be converted from {source} to {to!r} data")
            + " Fix them, or pass on_error='drop' to drop them and count them in the data report."
        )
    if problems:
        bad = {index for index, _, _ in problems}
        converted = converted.select([i for i in range(len(converted)) if i not in bad])
        if len(converted) == 0:
            raise RecipeInputError(problems_message(problems, len(dataset), f"failed; none is {to!r} data"))
    if report is not None:
        report.add(
            step_name,
            rows_in=len(dataset),
            rows_out=len(converted),
            examples=[f"row {i}: {detail}"[:300] for i, _, detail in problems[:3]],
            details={"from_format": source, "to": to, "problems": dict(counts)},
        )
    return converted


def _check_on_error(on_error: str) -> None:
    if on_error not in ("raise", "drop"):
        raise RecipeInputError(f"on_error must be 'raise' or 'drop', got {on_error!r}.")


def _resolve_source(dataset: datasets.Dataset, from_format: str) -> str:
    if from_format == "auto":
        source = detect_format(dataset)
        if source is None:
            known = "; ".join(f"{name}: {'/'.join(cols)}" for name, cols in SOURCE_FORMATS.items())
            raise RecipeInputError(
                f"Cannot tell the data format from the columns {dataset.column_names}. Known formats: {known}."
            )
        return source
    if from_format not in SOURCE_FORMATS:
        raise RecipeInputError(
            f"Unknown from_format {from_format!r}; known: auto, {', '.join(SOURCE_FORMATS)}."
        )
    missing = [c for c in SOURCE_FORMATS[from_format] if c not in dataset.column_names]
    if missing:
        raise RecipeInputError(
            f"from_format={from_format!r} needs column(s) {missing}; the dataset has {dataset.column_names}."
        )
    return from_format


def _map_conversion(
    dataset: datasets.Dataset,
    source: str,
    to: str,
    system_prompt: str | None,
    with_answer: bool,
    num_proc: int | None,
) -> datasets.Dataset:
    placeholder: dict[str, Any] = {column: _PLACEHOLDER for column in FORMATS[to]}
    if with_answer:
        placeholder["answer"] = ""

    def convert_batch(batch: dict[str, list]) -> dict[str, list]:
        rows = batch_rows(batch)
        out: dict[str, list] = {column: [] for column in [*placeholder, "_error"]}
        for row in rows:
            try:
                values, error = _convert_row(source, to, row, system_prompt, with_answer), ""
            except RecipeInputError as err:
                values, error = placeholder, str(err)
            except (TypeError, AttributeError, KeyError, IndexError, ValueError) as err:
                # A shape no converter foresaw (a number where text belongs, ...): count the row, do not crash.
                values, error = placeholder, f"unexpected value shape ({type(err).__name__}: {err})"
            for column in placeholder:
                out[column].append(values[column])
            out["_error"].append(error)
        return out

    optional = ("input",) if source == "alpaca" else ()
    consumed = [c for c in (*SOURCE_FORMATS[source], *optional) if c in dataset.column_names]
    try:
        return dataset.map(
            convert_batch, batched=True, num_proc=num_proc, remove_columns=consumed, desc=f"{source} -> {to}"
        )
    except RecipeInputError:
        raise
    except Exception as err:  # noqa: BLE001 - pyarrow refuses converted rows of clashing shapes in many ways
        raise RecipeInputError(
            f"The rows converted from {source} to {to!r} do not share one shape ({type(err).__name__}: "
            f"{str(err)[:200]}); give every message the same keys with text values, then convert again."
        ) from err


@dataclass
class _ConvertStep(Step):
    """Shared parameters of the conversion steps: `from_format` ("auto" or one of SOURCE_FORMATS),
    `system_prompt` (opens conversations without one), `on_error` ("raise" or "drop" bad rows)."""

    target: ClassVar[str] = ""
    from_format: str = "auto"
    system_prompt: str | None = None
    on_error: str = "raise"

    def __post_init__(self) -> None:
        if self.from_format != "auto" and self.from_format not in CONVERTIBLE[self.target]:
            raise RecipeInputError(
                f"Step {self.name!r}: from_format must be 'auto' or one of {', '.join(CONVERTIBLE[self.target])}, "
                f"got {self.from_format!r}."
            )
        _check_on_error(self.on_error)
        if self.domains:
            # Converted rows have other columns than the rest, so they cannot be merged back.
            raise RecipeInputError(f"Step {self.name!r} converts every row; it takes no `domains`.")

    def apply(
        self, dataset: datasets.Dataset, report: DataReport, num_proc: int | None = None
    ) -> datasets.Dataset:
        return _convert(
            dataset,
            self.target,
            self.from_format,
            num_proc,
            self.system_prompt,
            self.on_error,
            report,
            self.name,
        )


@dataclass
class ToMessages(_ConvertStep):
    """Convert alpaca / transcripts / prompt-completion / preference data to `messages` for SFT."""

    name: ClassVar[str] = "to_messages"
    target: ClassVar[str] = "sft"


@dataclass
class ToPreference(_ConvertStep):
    """Convert HH-RLHF style chosen/rejected conversations to prompt/chosen/rejected for DPO/reward models."""

    name: ClassVar[str] = "to_preference"
    target: ClassVar[str] = "preference"


@dataclass
class RenameColumns(Step):
    """Rename columns to the conventions, e.g. `rename_columns: {mapping: {question: prompt}}` for GSM8K."""

    name: ClassVar[str] = "rename_columns"
    mapping: dict[str, str] = field(default_factory=dict)

    def apply(
        self, dataset: datasets.Dataset, report: DataReport, num_proc: int | None = None
    ) -> datasets.Dataset:
        missing = [c for c in self.mapping if c not in dataset.column_names]
        if missing or not self.mapping:
            raise RecipeInputError(
                f"rename_columns: columns {missing or '(none given)'} are not in the dataset "
                f"({dataset.column_names}); give mapping: {{old: new}}."
            )
        clashes = [
            new
            for old, new in self.mapping.items()
            if new in dataset.column_names and new not in self.mapping
        ]
        renamed = dataset.remove_columns(clashes).rename_columns(self.mapping)
        report.add(
            self.name,
            rows_in=len(dataset),
            rows_out=len(renamed),
            details={"mapping": self.mapping, "replaced": clashes},
        )
        return renamed


@dataclass
class ExtractAnswer(Step):
    """Write `answer` from the first regex group of a column (e.g. GSM8K's "#### 42"); rows without a match are
    dropped and counted, since a reward function cannot check them."""

    name: ClassVar[str] = "extract_answer"
    source: str = "answer"
    pattern: str = r"####\s*(-?[\d,\.]+)"

    def apply(
        self, dataset: datasets.Dataset, report: DataReport, num_proc: int | None = None
    ) -> datasets.Dataset:
        if self.source not in dataset.column_names:
            raise RecipeInputError(f"extract_answer: no column {self.source!r} in {dataset.column_names}.")
        regex = re.compile(self.pattern)
        found = [regex.search(str(v or "")) for v in dataset[self.source]]
        answers = [m.group(1).replace(",", "").strip() if m else "" for m in found]
        kept = [i for i, a in enumerate(answers) if a]
        out = dataset.remove_columns([c for c in ("answer",) if c in dataset.column_names])
        out = out.add_column("answer", answers).select(kept)
        report.add(self.name, rows_in=len(dataset), rows_out=len(out), details={"pattern": self.pattern})
        if not len(out):
            raise RecipeInputError(
                f"extract_answer: pattern {self.pattern!r} matched no row of {self.source!r}."
            )
        return out


__all__ = [
    "ExtractAnswer",
    "RenameColumns",
    "ToMessages",
    "ToPreference",
    "alpaca_to_messages",
    "convert",
    "hh_to_preference",
    "prompt_completion_to_messages",
    "transcript_to_messages",
]
