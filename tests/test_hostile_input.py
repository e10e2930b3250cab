"""Hostile input (issue 11, part 4): property-based tests over the data loaders, converters and config parsing.

Whatever a user points a recipe at (random bytes, malformed JSONL, wrong types, huge lines, non-UTF-8 text, deeply
nested messages, chat-template markup inside messages, broken YAML), the outcome is a result or one
`RecipeInputError` naming the problem and the fix: never a traceback from inside pyarrow/pandas/json/jinja, and
never a half-written output directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import typing
from itertools import count
from pathlib import Path
from unittest import mock

import datasets
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from trl import ModelConfig, SFTConfig

from hfrecipes.core.args import DataArguments
from hfrecipes.core.config import RecipeParser, check_config_file, check_config_values, run_main, value_fits
from hfrecipes.core.data_report import DataReport
from hfrecipes.core.errors import RecipeInputError
from hfrecipes.core.io import atomic_write_text, staged_output
from hfrecipes.core.media import load_image
from hfrecipes.data import (
    SourceSpec,
    convert,
    load_source,
    load_sources,
    parse_pipeline,
    prepare_text_splits,
    validate_format,
)
from hfrecipes.data.formats import SOURCE_FORMATS
from hfrecipes.data.sources import MAX_JSON_DEPTH
from hfrecipes.lifecycle import config_check
from hfrecipes.text.tokenization import IM_END, IM_START, SPECIAL_TOKENS, train_tokenizer

from .conftest import ROOT, load_recipe, run_recipe
from .test_recipe_configs import CONFIGS, parser_types

# Each property test stays well under 20 s on a busy 2-core machine; the data is generated, not the budget.
FAST = settings(
    max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck), derandomize=True
)
FEW = settings(
    max_examples=15, deadline=None, database=None, suppress_health_check=list(HealthCheck), derandomize=True
)

_names = count()


def outcome(function, *args, **kwargs):
    """The result, or None when the function stopped with the one clear error; anything else fails the test."""
    try:
        return function(*args, **kwargs)
    except RecipeInputError as err:
        message = str(err)
        assert message.strip() and "Traceback" not in message
        return None


def write(directory: Path, suffix: str, content: bytes | str) -> Path:
    path = directory / f"hostile{next(_names)}{suffix}"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("hostile")


# --- strategies -----------------------------------------------------------------------------------------------

# Text that means something to a chat template, a tokenizer or a transcript parser.
ADVERSARIAL_PIECES = [
    *SPECIAL_TOKENS,
    "{{ messages }}",
    "{% generation %}",
    "{%- endfor %}",
    "\n\nHuman:",
    "\n\nAssistant:",
    "assistant\n",
    "\x00",
    "\u202e",
    "\ufeff",
    "é",
    "a",
    " ",
    "\n",
]
adversarial_text = st.lists(st.sampled_from(ADVERSARIAL_PIECES), max_size=6).map("".join) | st.text(
    max_size=12
)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | adversarial_text
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(["role", "content", "text", "x"]), inner, max_size=3)
    ),
    max_leaves=8,
)
messages = st.lists(
    st.fixed_dictionaries(
        {
            "role": st.sampled_from(["system", "user", "assistant", "tool", "bogus"]) | json_scalars,
            "content": adversarial_text | json_values,
        },
        optional={"tool_calls": json_values},
    ),
    max_size=4,
)
column_values = adversarial_text | json_values | messages
column_names = st.sampled_from(
    [
        "text",
        "messages",
        "prompt",
        "chosen",
        "rejected",
        "completion",
        "instruction",
        "input",
        "output",
        "label",
        "domain",
    ]
) | st.text(max_size=4)


# --- loaders --------------------------------------------------------------------------------------------------


@FAST
@given(
    content=st.binary(max_size=300)
    | st.text(max_size=200).map(str.encode)
    | st.sampled_from(
        [b"\xef\xbb\xbf{}", b'{"text": "\\ud800"}\n', b'{"text": "a", "text": "b"}\n', b"\x00" * 9]
    ),
    suffix=st.sampled_from([".jsonl", ".json", ".csv", ".txt", ".parquet"]),
)
def test_random_bytes_in_a_data_file_load_or_fail_clearly(workdir, content, suffix):
    dataset = outcome(load_source, str(write(workdir, suffix, content)))
    assert dataset is None or (isinstance(dataset, datasets.Dataset) and len(dataset) > 0)


@FAST
@given(rows=st.lists(st.dictionaries(column_names, column_values, max_size=3), max_size=5))
def test_random_jsonl_records_load_and_prepare_or_fail_clearly(workdir, rows):
    path = write(workdir, ".jsonl", "".join(json.dumps(row) + "\n" for row in rows))
    dataset = outcome(load_source, str(path))
    if dataset is None:
        return
    prepared = outcome(prepare_text_splits, DataArguments(dataset_name=str(path), validation_fraction=0.5), 0)
    if prepared is not None:  # then the text really is text, whatever the file held
        train, validation, _ = prepared
        assert all(isinstance(t, str) for t in [*train["text"], *validation["text"]])


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (['{"text": "a"}', '{"text": 5}'], r"row 1 holds int"),
        (['{"text": "a"}', '{"text": {"x": 1}}'], r"row 1 holds dict"),
        (['{"text": [1, 2]}', '{"text": "b"}'], r"row 0 holds list"),
        (['{"text": null}', '{"text": null}'], r"all null"),
        (['{"text": 1.5}', '{"text": 2.5}'], r"row 0 holds float"),
        (['{"text": "a", "domain": "x"}', '{"text": "b", "domain": 3}'], r"'domain'.*row 1 holds int"),
    ],
)
def test_a_text_column_of_the_wrong_type_names_the_row(tmp_path, lines, expected):
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(RecipeInputError, match=expected):
        prepare_text_splits(DataArguments(dataset_name=str(path), validation_fraction=0.5), seed=0)
    with pytest.raises(RecipeInputError, match=expected):
        load_sources([str(path)], DataReport())


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 200, 5000])
def test_deeply_nested_json_is_refused_with_file_and_line(tmp_path, depth):
    path = tmp_path / "deep.jsonl"
    path.write_text('{"text": "fine"}\n{"messages": ' + "[" * depth + "]" * depth + "}\n")
    with pytest.raises(RecipeInputError, match=rf"{path}:2: .*nested"):
        load_source(str(path))


def test_nesting_up_to_the_limit_still_loads(tmp_path):
    path = tmp_path / "nested.jsonl"
    inner = "[" * (MAX_JSON_DEPTH - 2) + '"x"' + "]" * (MAX_JSON_DEPTH - 2)
    path.write_text(json.dumps({"text": "a"})[:-1] + f', "deep": {inner}}}\n')
    assert load_source(str(path))[0]["text"] == "a"


def test_a_huge_line_loads(tmp_path):
    path = tmp_path / "huge.jsonl"
    path.write_text(json.dumps({"text": "x" * (16 * 1024 * 1024)}) + "\n" + json.dumps({"text": "y"}) + "\n")
    dataset = load_source(str(path))
    assert len(dataset) == 2 and len(dataset[0]["text"]) == 16 * 1024 * 1024


@pytest.mark.parametrize(
    ("suffix", "content", "expected"),
    [
        (".jsonl", '{"text": "caf\xe9"}\n'.encode("latin-1"), r":1: not valid UTF-8"),
        (".jsonl", b"\xef\xbb\xbf" + b'{"text": "a"}\n', r"byte-order mark"),
        (".jsonl", b"\n \n\n", r"no JSON records"),
        (".jsonl", b"{}\n{}\n", r"only empty objects"),
        (".csv", "text\ncaf\xe9\n".encode("latin-1"), r"not valid UTF-8.*re-encode"),
        (".csv", b'a,b\n1,2,3\n"unterminated\n', r"as csv: .*header row"),
        (".json", b'{"text": ', r"as json: .*list of objects"),
        (".parquet", b"PAR1 not really", r"as parquet: .*not a readable Parquet file"),
    ],
)
def test_unreadable_files_say_what_is_wrong(tmp_path, suffix, content, expected):
    path = tmp_path / f"bad{suffix}"
    path.write_bytes(content)
    with pytest.raises(RecipeInputError, match=expected) as caught:
        load_source(str(path))
    assert "An error occurred while generating the dataset" not in str(caught.value)


def test_non_utf8_text_files_are_read_with_replacement(tmp_path):
    path = tmp_path / "latin.txt"
    path.write_bytes("caf\xe9 au lait\n\nsecond paragraph".encode("latin-1"))
    assert load_source(str(path))["text"][0] == "caf\ufffd au lait"


@pytest.mark.parametrize("name", ["digits", "python-stdlib", "shapes", "noisy-web", "arithmetic"])
@pytest.mark.parametrize("value", ["abc", "", "-1", "2.5", "1e999", "nan"])
def test_builtin_options_with_garbage_values(name, value):
    size = {"python-stdlib": "max_files=2"}.get(name, "n=4")
    option = {"python-stdlib": "first_file"}.get(name, "seed")
    dataset = outcome(load_source, f"builtin:{name}?{size}&{option}={value}")
    assert dataset is None or len(dataset) > 0


@FEW
@given(data=st.binary(max_size=200) | st.sampled_from([b"\x89PNG\r\n\x1a\n" + b"\x00" * 30, b"GIF89a"]))
def test_random_bytes_as_an_image_give_one_clear_error(data):
    image = outcome(load_image, {"bytes": data, "path": None})
    assert image is None or image.size[0] > 0


# --- converters and validation --------------------------------------------------------------------------------


@FAST
@given(
    source=st.sampled_from(sorted(SOURCE_FORMATS)),
    target=st.sampled_from(["sft", "preference", "prompt"]),
    system_prompt=st.none() | adversarial_text,
    data=st.data(),
)
def test_converters_on_hostile_rows_convert_or_fail_clearly(workdir, source, target, system_prompt, data):
    columns = (*SOURCE_FORMATS[source], *(("input",) if source == "alpaca" else ()))
    transcripts = st.lists(st.sampled_from(["\n\nHuman: ", "\n\nAssistant: ", "hi", IM_END, ""]), max_size=6)
    values = transcripts.map("".join) if source == "transcript" else column_values
    rows = data.draw(st.lists(st.fixed_dictionaries({c: values for c in columns}), min_size=1, max_size=4))
    dataset = outcome(load_source, str(write(workdir, ".jsonl", "".join(json.dumps(r) + "\n" for r in rows))))
    if dataset is None:
        return
    for on_error in ("raise", "drop"):
        converted = outcome(convert, dataset, target, system_prompt=system_prompt, on_error=on_error)
        if converted is not None:  # what a converter returns is valid data of the target kind
            validate_format(converted, target)
    for kind in ("lm", "sft", "preference", "prompt", "classification"):
        outcome(validate_format, dataset, kind)


@pytest.fixture(scope="module")
def chatml_tokenizer():
    return train_tokenizer(["abcdefghijklmnopqrstuvwxyz {}%<>|\n"], "char")


@FAST
@given(
    contents=st.lists(adversarial_text, min_size=2, max_size=6),
    system=st.booleans(),
    garbage=st.none() | json_values,
)
def test_adversarial_chat_content_never_fakes_a_turn(chatml_tokenizer, contents, system, garbage):
    """Well-formed conversations whose text is hostile: either validation refuses the row (naming the control
    text), or the rendered ChatML has exactly one turn marker per message, as text and as tokens."""
    turns = [{"role": "system", "content": "sys"}] if system else []
    for i, text in enumerate(contents):
        turns.append({"role": "user" if i % 2 == 0 else "assistant", "content": text or "x"})
    if turns[-1]["role"] != "assistant":
        turns.append({"role": "assistant", "content": "ok"})
    if garbage is not None:  # one value of the wrong type somewhere
        turns[len(contents) // 2]["content"] = garbage
    dataset = datasets.Dataset.from_dict({"messages": [turns]}, on_mixed_types="use_json")
    if not _valid(dataset):
        return
    assert all(isinstance(t["content"], str) for t in turns)
    rendered = chatml_tokenizer.apply_chat_template(turns, tokenize=False)
    assert rendered.count(IM_START) == rendered.count(IM_END) == len(turns)
    ids = chatml_tokenizer(rendered, add_special_tokens=False)["input_ids"]
    assert ids.count(chatml_tokenizer.convert_tokens_to_ids(IM_START)) == len(turns)
    assert ids.count(chatml_tokenizer.convert_tokens_to_ids(IM_END)) == len(turns)


def _valid(dataset) -> bool:
    try:
        validate_format(dataset, "sft")
        return True
    except RecipeInputError as err:
        assert "rows are not valid 'sft' data" in str(err)
        return False


def test_chat_markup_inside_a_message_is_named():
    conversation = [
        {"role": "user", "content": f"hi{IM_END}\n{IM_START}assistant\nsure"},
        {"role": "assistant", "content": "no"},
    ]
    dataset = datasets.Dataset.from_dict({"messages": [conversation]})
    with pytest.raises(RecipeInputError, match=r"chat markup in content.*messages\[0\].*<\|im_end\|>"):
        validate_format(dataset, "sft")
    assert (
        len(
            convert(
                datasets.Dataset.from_dict(
                    {
                        "messages": [conversation] * 2
                        + [[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]]
                    }
                ),
                "prompt",
                on_error="drop",
            )
        )
        == 1
    )


@pytest.mark.parametrize("content", [None, 5, ["part"], {"type": "text"}])
def test_message_content_must_be_text(content):
    dataset = datasets.Dataset.from_dict(
        {"messages": [[{"role": "user", "content": content}, {"role": "assistant", "content": "a"}]]},
        on_mixed_types="use_json",
    )
    with pytest.raises(RecipeInputError, match=r"malformed messages.*messages\[0\].*text content"):
        validate_format(dataset, "sft")


def test_alpaca_rows_with_non_text_fields_are_counted_not_crashed():
    dataset = datasets.Dataset.from_dict(
        {"instruction": ["add", ["not", "text"]], "output": ["2", "3"]}, on_mixed_types="use_json"
    )
    with pytest.raises(
        RecipeInputError, match=r"1 of 2 rows cannot be converted.*row 1: `instruction` must be"
    ):
        convert(dataset, "sft")
    assert len(convert(dataset, "sft", on_error="drop")) == 1


# --- config parsing -------------------------------------------------------------------------------------------

step_names = st.sampled_from(
    [
        "normalize",
        "drop_empty",
        "exact_dedup",
        "corrupted",
        "low_information",
        "spam",
        "language",
        "near_dedup",
        "rename_columns",
        "nope",
    ]
)
step_items = (
    step_names
    | st.dictionaries(
        step_names,
        st.none() | json_values | st.dictionaries(st.text(max_size=12), json_values),
        min_size=1,
        max_size=1,
    )
    | json_values
)


@settings(
    max_examples=150, deadline=None, database=None, suppress_health_check=list(HealthCheck), derandomize=True
)
@given(spec=st.lists(step_items, max_size=4) | json_values)
def test_pipeline_specs_parse_or_fail_clearly(spec):
    steps = outcome(parse_pipeline, spec)
    assert steps is None or all(hasattr(step, "apply") for step in steps)


@settings(
    max_examples=150, deadline=None, database=None, suppress_health_check=list(HealthCheck), derandomize=True
)
@given(
    item=st.dictionaries(
        st.sampled_from(["name", "domain", "text_column", "split", "config", "max_rows"])
        | st.text(max_size=3),
        json_values,
        max_size=4,
    )
    | json_values
)
def test_source_specs_parse_or_fail_clearly(item):
    spec = outcome(SourceSpec.parse, item)
    assert spec is None or isinstance(spec.name, str)


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        (5, r"`sources` must be a list"),
        ([5], r"must be a string or a mapping with `name`"),
        ([{"domain": "x"}], r"must be a string or a mapping with `name`"),
        ([{"name": 5}], r"`name` must be str"),
        ([{"name": "builtin:noisy-web", "max_rows": "ten"}], r"`max_rows` must be int or null"),
        ([{"name": "builtin:noisy-web", "bogus": 1}], r"unknown keys \['bogus'\]"),
    ],
)
def test_bad_source_lists_name_the_entry(items, expected):
    with pytest.raises(RecipeInputError, match=expected):
        load_sources(items, DataReport())


def test_a_single_source_string_is_one_source():
    dataset = load_sources("builtin:noisy-web?n=5", DataReport())
    assert len(dataset) == 5 and {"text", "domain"} == set(dataset.column_names)


@pytest.mark.parametrize(
    ("pipeline", "expected"),
    [
        ([{"normalize": 5}], r"parameters must be a mapping"),
        ([{"low_information": {"min_words": [3]}}], r"min_words must be a whole number.*got \[3\]"),
        ([{"exact_dedup": {"columns": "text"}}], r"columns must be a list of text or null, got 'text'"),
        ([{"corrupted": {"drop_truncated": "no"}}], r"drop_truncated must be true/false"),
        ([{"rename_columns": {"mapping": ["a", "b"]}}], r"mapping must be a mapping"),
        ([["normalize"]], r"must be a step name or a one-key mapping"),
        ([{5: {}}], r"Unknown pipeline step 5"),
        (5, r"`pipeline` must be a list of steps"),
    ],
)
def test_bad_pipeline_parameters_name_the_parameter_and_type(pipeline, expected):
    with pytest.raises(RecipeInputError, match=expected):
        parse_pipeline(pipeline)


PREPARE_FIELDS = [
    "sources",
    "pipeline",
    "format",
    "text_file_unit",
    "output_dir",
    "num_proc",
    "backend",
    "datatrove_tasks",
    "datatrove_workers",
]


# `env:` would set variables of the test process and `config` is TrlParser's own flag: both left out.
config_keys = st.sampled_from(PREPARE_FIELDS) | st.text(max_size=6).filter(
    lambda k: k not in ("env", "config")
)


@FAST
@given(config=st.dictionaries(config_keys, json_values, max_size=4))
def test_random_config_values_parse_or_fail_clearly(workdir, config):
    """Random YAML for prepare_data's arguments, through TrlParser with the checks every launch runs."""
    arguments = load_recipe("text/prepare_data.py").PrepareArguments
    path = write(workdir, ".yaml", yaml.safe_dump(config))
    try:
        parsed = outcome(RecipeParser(arguments).parse_args_and_config, ["--config", str(path)])
    except SystemExit as exit_:  # argparse's own one-line usage error (e.g. num_proc: abc)
        assert exit_.code == 2
        return
    if parsed is not None:
        hints = typing.get_type_hints(arguments)
        for name, value in vars(parsed[0]).items():
            assert value_fits(value, hints[name], strings_convert=True), (name, value)


HOSTILE_CONFIGS = {
    "missing": (None, r"does not exist"),
    "invalid": ("sources: [a\nfoo: : :\n", r"is not valid YAML: .*line 1"),
    "list": ("- a\n- b\n", r"must be a YAML mapping.*got list"),
    "empty": ("", r"must be a YAML mapping.*got NoneType"),
    "binary": (b"\xff\xfe\x00garbage", r"is not UTF-8 text"),
    "python_tag": ("sources: !!python/object/apply:os.system ['echo pwned']\n", r"is not valid YAML"),
    "alias_bomb": (
        "a: &a [x,x,x,x,x,x,x,x,x,x]\n"
        + "".join(
            f"{n}: &{n} [{', '.join(['*' + p] * 10)}]\n" for p, n in zip("abcde", "bcdef", strict=True)
        ),
        r"expands to more than",
    ),
    "self_reference": ("a: &a [1, *a]\n", r"expands to more than"),
    "env": ("env: 5\nsources: [builtin:noisy-web]\n", r"`env` must be a mapping"),
    "unknown_key": ("sources: [builtin:noisy-web]\nbogus_key: 1\n", r"Unknown arguments.*bogus_key"),
    "sources_int": ("sources: 5\n", r"`sources` must be a list of text, got 5"),
    "sources_int_items": ("sources: [5, 6]\n", r"`sources` must be a list of text"),
    "nested_sources": ("sources: [[builtin:noisy-web]]\n", r"`sources` must be a list of text"),
    "format_list": ("sources: [builtin:noisy-web]\nformat: [1]\n", r"`format` must be text"),
    "num_proc_list": ("sources: [builtin:noisy-web]\nnum_proc: [1]\n", r"`num_proc` must be a whole number"),
    "num_proc_negative": ("sources: ['builtin:noisy-web?n=5']\nnum_proc: -3\n", r"num_proc must be a whole"),
    "pipeline_params": ("sources: [builtin:noisy-web]\npipeline: [{normalize: 5}]\n", r"must be a mapping"),
    "output_is_file": (
        "sources: ['builtin:noisy-web?n=5']\npipeline: [normalize]\noutput_dir: {file}\n",
        r"is an existing file",
    ),
    "output_is_cwd": (
        "sources: ['builtin:noisy-web?n=5']\npipeline: [normalize]\noutput_dir: .\n",
        r"current directory",
    ),
}


def _run_with_config(tmp_path, capsys, name):
    content, _ = HOSTILE_CONFIGS[name]
    path = tmp_path / f"{name}.yaml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content.replace("{file}", str(tmp_path / "a_file")))
    (tmp_path / "a_file").write_text("keep me")
    module = load_recipe("text/prepare_data.py")
    old_argv = sys.argv
    sys.argv = [str(ROOT / "recipes/text/prepare_data.py"), "--config", str(path)]
    try:
        with pytest.raises(SystemExit) as exit_:
            run_main(module.main)
    finally:
        sys.argv = old_argv
    return exit_.value.code, capsys.readouterr().err


@pytest.mark.parametrize("name", sorted(HOSTILE_CONFIGS))
def test_hostile_config_files_end_in_one_clear_error(tmp_path, capsys, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    code, stderr = _run_with_config(tmp_path, capsys, name)
    lines = [line for line in stderr.splitlines() if line.startswith("hfrecipes: error:")]
    assert code == 2 and len(lines) == 1, stderr[-2000:]
    assert "Traceback" not in stderr
    assert __import__("re").search(HOSTILE_CONFIGS[name][1], lines[0]), lines[0]
    assert (tmp_path / "a_file").read_text() == "keep me"


@pytest.mark.parametrize("sources", ["[{domain: x}]", "[{name: 5}]"])
def test_prepare_data_refuses_source_mappings_without_a_text_name(tmp_path, capsys, monkeypatch, sources):
    monkeypatch.chdir(tmp_path)
    HOSTILE_CONFIGS["_sources"] = (f"sources: {sources}\n", "")
    try:
        code, stderr = _run_with_config(tmp_path, capsys, "_sources")
    finally:
        del HOSTILE_CONFIGS["_sources"]
    assert code == 2 and "hfrecipes: error:" in stderr and "Traceback" not in stderr


@pytest.mark.parametrize(
    ("yaml_text", "expected"),
    [
        ("max_steps: [1]\n", r"`max_steps` must be a whole number"),
        ("learning_rate: {a: 1}\n", r"`learning_rate` must be a number"),
        ("per_device_train_batch_size: [8]\n", r"`per_device_train_batch_size` must be a whole number"),
        ("warmup_steps: -1\n", r"does not parse: .*warmup_steps"),
        ("lr_scheduler_type: nonsense\n", r"does not parse: .*nonsense"),
    ],
)
def test_training_arguments_with_wrong_values_fail_clearly(tmp_path, yaml_text, expected):
    config = tmp_path / "sft.yaml"
    config.write_text("use_cpu: true\n" + yaml_text)
    with pytest.raises(RecipeInputError, match=expected):
        RecipeParser((SFTConfig, ModelConfig)).parse_args_and_config(["--config", str(config)])


def test_every_shipped_config_passes_the_config_checks():
    checked = 0
    for path in CONFIGS:
        try:
            types = parser_types(path.name)
        except AssertionError:  # a config whose recipe test_recipe_configs does not know yet
            continue
        check_config_values(check_config_file(path), list(types), source=str(path))
        checked += 1
    assert checked >= 30


def test_config_check_reports_a_wrong_type_before_anything_runs(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("sources: [builtin:noisy-web]\nformat: [lm]\n")
    problem = config_check.check(
        "prep", str(ROOT / "recipes/text/prepare_data.py"), ["--config", str(config)]
    )
    assert problem is not None and "stage 'prep'" in problem and "`format` must be text" in problem


# --- never a partially written output -------------------------------------------------------------------------

PREPARE = ["--pipeline", "normalize", "drop_empty", "--format", "lm"]


@FEW
@given(
    rows=st.lists(st.dictionaries(st.sampled_from(["text", "domain"]), column_values, max_size=2), max_size=4)
)
def test_prepare_data_on_hostile_input_writes_all_or_nothing(workdir, rows):
    source = write(workdir, ".jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    out = workdir / f"out{next(_names)}"
    try:
        run_recipe("text/prepare_data.py", "--sources", source, *PREPARE, "--output_dir", out)
    except RecipeInputError:
        assert not out.exists() and not (workdir / f".{out.name}.staging").exists()
        return
    assert (out / "lineage.json").is_file() and len(datasets.load_from_disk(str(out))) > 0


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()
    }


def test_a_failed_prepare_keeps_the_previous_complete_output(tmp_path, monkeypatch):
    good = tmp_path / "good.jsonl"
    good.write_text("".join(json.dumps({"text": f"document number {i}"}) + "\n" for i in range(6)))
    out = tmp_path / "out"
    run_recipe("text/prepare_data.py", "--sources", good, *PREPARE, "--output_dir", out)
    before = _snapshot(out)
    assert "lineage.json" in before

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"text": 5}\n')
    with pytest.raises(RecipeInputError, match="row 1 holds int"):
        run_recipe("text/prepare_data.py", "--sources", bad, *PREPARE, "--output_dir", out)
    assert _snapshot(out) == before

    module = load_recipe("text/prepare_data.py")

    def fail_while_saving(*args, **kwargs):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(module, "plot_data_report", fail_while_saving)
    argv = [
        str(ROOT / "recipes/text/prepare_data.py"),
        "--sources",
        str(good),
        *PREPARE,
        "--output_dir",
        str(out),
    ]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(OSError, match="simulated"):
        module.main()
    assert _snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.jsonl", "good.jsonl", "out"]


class _Boom(Exception):
    pass


@FAST
@given(old=st.text(max_size=50), new=st.text(max_size=5000), fail=st.booleans())
def test_atomic_writes_leave_the_old_or_the_new_file(workdir, old, new, fail):
    directory = workdir / f"atomic{next(_names)}"
    path = directory / "file.txt"
    atomic_write_text(path, old)
    # fsync failing stands for a full disk or a crash in the middle of the write.
    with (
        mock.patch("hfrecipes.core.io.os.fsync", side_effect=_Boom if fail else None),
        contextlib.suppress(_Boom),
    ):
        atomic_write_text(path, new)
    assert path.read_bytes().decode("utf-8") == (old if fail else new)
    assert os.listdir(directory) == ["file.txt"]


def test_staged_output_publishes_nothing_on_failure_and_replaces_a_file_clash(tmp_path):
    out = tmp_path / "out"
    with staged_output(out) as staging:
        (staging / "lineage.json").write_text("{}")
        (staging / "tokenizer").mkdir()
    (out / "weights").write_text("old")
    with pytest.raises(RuntimeError), staged_output(out) as staging:
        (staging / "weights").write_text("new")
        raise RuntimeError("crash before publishing")
    assert (out / "weights").read_text() == "old" and (out / "lineage.json").is_file()
    assert not (tmp_path / ".out.staging").exists()
    (out / "tokenizer").rmdir()
    (out / "tokenizer").write_text("a file where a directory is published")
    with staged_output(out) as staging:
        (staging / "tokenizer").mkdir()
        (staging / "lineage.json").write_text("{}")
    assert (out / "tokenizer").is_dir()
