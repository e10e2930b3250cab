"""Instruction datasets (builtin:arithmetic, builtin:python-qa, builtin:safety) and self-instruct generation."""

from __future__ import annotations

import importlib
import inspect
import json
import re
import time
from collections import Counter
from pathlib import Path

import pytest
import torch

import hfrecipes.builtins.instructions as instructions
from hfrecipes.builtins.instructions import extract_number
from hfrecipes.builtins.preferences import UNSAFE_COMPLIANCE
from hfrecipes.builtins.safety import BENIGN_EXAMPLES, BENIGN_TEMPLATES, is_refusal
from hfrecipes.core.data_report import DataReport
from hfrecipes.core.errors import RecipeInputError
from hfrecipes.data import load_source, validate_format
from hfrecipes.data.converters import alpaca_to_messages
from hfrecipes.text import self_instruct as self_instruct_module
from hfrecipes.text.self_instruct import self_instruct

BUILTIN_SPECS = [
    "builtin:arithmetic?n=200",
    "builtin:python-qa?n=200",
    "builtin:safety?n=200",
]


# --- shared behaviour of the builtins -------------------------------------------------------------------


@pytest.mark.parametrize("spec", BUILTIN_SPECS)
def test_builtins_are_valid_sft_data_and_deterministic_per_seed(spec):
    first = load_source(spec + "&seed=1")
    validate_format(first, "sft")
    assert {"messages", "prompt", "category", "domain"} <= set(first.column_names)
    assert len(first) == 200
    assert all(row["messages"][0]["content"] == row["prompt"] for row in first)
    assert first.to_list() == load_source(spec + "&seed=1").to_list()
    assert first.to_list() != load_source(spec + "&seed=2").to_list()


@pytest.mark.parametrize("spec", BUILTIN_SPECS)
def test_system_prompt_opens_every_conversation(spec):
    dataset = load_source(spec + "&system_prompt=You are terse.")
    validate_format(dataset, "sft")
    assert {tuple(m["role"] for m in row) for row in dataset["messages"]} == {("system", "user", "assistant")}
    assert {row[0]["content"] for row in dataset["messages"]} == {"You are terse."}


@pytest.mark.parametrize(
    "spec, complaint",
    [
        ("builtin:arithmetic?ops=add,div", "div"),
        ("builtin:arithmetic?ops=", "ops"),
        ("builtin:arithmetic?digits=0", "digits"),
        ("builtin:arithmetic?min_digits=3&digits=2", "min_digits"),
        ("builtin:arithmetic?n=0", "n must be at least 1"),
        ("builtin:arithmetic?n=-5", "n must be at least 1"),
        ("builtin:arithmetic?n=ten", "n must be an integer"),
        ("builtin:arithmetic?style=verbose", "style"),
        ("builtin:arithmetic?phrasing=random", "phrasing"),
        ("builtin:preferences?compliance=rude", "compliance"),
        ("builtin:python-qa?kinds=doc,examples", "examples"),
        ("builtin:python-qa?n=0", "n must be at least 1"),
        ("builtin:python-qa?n=100000000", "lower n"),
        ("builtin:safety?n=0", "n must be at least 1"),
        ("builtin:safety?benign_fraction=1.5", "benign_fraction"),
        ("builtin:safety?benign_fraction=half", "benign_fraction"),
    ],
)
def test_bad_options_are_refused_with_the_option_named(spec, complaint):
    with pytest.raises(RecipeInputError, match=re.escape(complaint)):
        load_source(spec)


# --- builtin:arithmetic ---------------------------------------------------------------------------------


def expected_result(prompt: str, op: str) -> int:
    """The result recomputed from the English prompt: "subtract b from a" names the operands in reverse."""
    first, second = (int(x) for x in re.findall(r"\d+", prompt))
    if op == "add":
        return first + second
    if op == "mul":
        return first * second
    return second - first if " from " in prompt else first - second


def test_arithmetic_answers_are_correct_and_extractable():
    dataset = load_source("builtin:arithmetic?n=400&digits=3&seed=5")
    assert set(dataset["category"]) == {"add", "sub", "mul"}
    assert len(set(dataset["prompt"])) > 350  # many templates and operands, few repeats
    negative = 0
    for row in dataset:
        result = expected_result(row["prompt"], row["category"])
        assert row["answer"] == str(result)
        assert row["messages"][-1]["content"] == f"The answer is {result}."
        assert extract_number(row["messages"][-1]["content"]) == row["answer"]
        negative += result < 0
    assert negative > 0  # subtraction is not rigged to stay positive


def test_arithmetic_ops_digits_and_style_options():
    dataset = load_source("builtin:arithmetic?n=150&ops=mul&digits=3&min_digits=3&style=plain")
    assert set(dataset["category"]) == {"mul"}
    for row in dataset:
        operands = [int(x) for x in re.findall(r"\d+", row["prompt"])]
        assert all(100 <= x <= 999 for x in operands), row["prompt"]
        assert row["messages"][-1]["content"] == row["answer"] == str(operands[0] * operands[1])

    one_digit = load_source("builtin:arithmetic?n=150&ops=add,sub&digits=1")
    assert set(one_digit["category"]) == {"add", "sub"}
    assert max(int(x) for p in one_digit["prompt"] for x in re.findall(r"\d+", p)) <= 9


def test_worked_replies_restate_the_sum_and_varied_phrasing_has_many_wordings():
    fixed = load_source("builtin:arithmetic?n=400&ops=add,sub&digits=1&seed=3")
    varied = load_source("builtin:arithmetic?n=400&ops=add,sub&digits=1&seed=3&phrasing=varied&style=worked")

    def wording(prompt):
        return re.sub(r"\d+", "#", prompt)

    assert len({wording(p) for p in varied["prompt"]}) > 4 * len({wording(p) for p in fixed["prompt"]})
    for row in varied:
        a, op, b, result, answer = re.fullmatch(
            r"(\d) ([-+]) (\d) = (-?\d+)\. The answer is (-?\d+)\.", row["messages"][-1]["content"]
        ).groups()
        assert result == answer == row["answer"] == str(int(a) + int(b) if op == "+" else int(a) - int(b))
        assert extract_number(row["messages"][-1]["content"]) == row["answer"]
        assert a in row["prompt"] and b in row["prompt"]
    pairs = load_source(
        "builtin:preferences?n=300&safety_fraction=0&ops=add,sub&phrasing=varied&style=worked"
    )
    wrong = [p for p in pairs if p["rejection"] == "wrong_answer"]
    assert wrong
    for pair in wrong:  # the same equation, a wrong result in both places
        chosen, rejected = pair["chosen"][0]["content"], pair["rejected"][0]["content"]
        assert chosen.split(" = ")[0] == rejected.split(" = ")[0]
        assert extract_number(rejected) != pair["answer"] == extract_number(chosen)
        assert re.search(r"= (-?\d+)\.", rejected).group(1) == extract_number(rejected)


@pytest.mark.parametrize(
    "reply, number",
    [
        ("The answer is 42.", "42"),
        ("42", "42"),
        ("The answer is -5.", "-5"),
        ("That comes to 1,234 in total.", "1234"),
        ("Result: -1,234,567", "-1234567"),
        ("12 - 5 = 7", "7"),
        ("First I thought 12, but it is 13.", "13"),
        ("1,2,3", "3"),
        ("It is 42.0", "42"),
        ("It is 2.50", "2.5"),
        ("Pages 3-5", "5"),
        ("The answer is \u22127", "-7"),
        ("I do not know.", None),
        ("", None),
    ],
)
def test_extract_number(reply, number):
    assert extract_number(reply) == number


# --- builtin:python-qa ----------------------------------------------------------------------------------


def backticked(prompt: str) -> str:
    return re.search(r"`([^`]+)`", prompt).group(1)


def resolve(qualified_name: str):
    module, name = qualified_name.rsplit(".", 1)
    return getattr(importlib.import_module(module), name)


def test_python_qa_answers_are_true_of_the_running_python():
    dataset = load_source("builtin:python-qa?n=600&seed=3")
    by_kind = Counter(dataset["category"])
    assert set(by_kind) == {"doc", "module", "signature"} and min(by_kind.values()) > 50
    for row in dataset:
        name, answer = backticked(row["prompt"]), row["answer"]
        if row["category"] == "module":
            assert "." not in name
            assert getattr(importlib.import_module(answer), name).__module__ == answer
        elif row["category"] == "signature":
            assert answer == str(inspect.signature(resolve(name)))
            assert row["messages"][-1]["content"] == f"`{name}{answer}`"
        else:
            doc = " ".join(inspect.cleandoc(resolve(name).__doc__).split())
            assert doc.startswith(answer) and answer.endswith((".", "!", "?"))
        assert not name.split(".")[0].startswith("_")


def test_python_qa_known_facts_and_exclusions():
    dataset = load_source("builtin:python-qa")
    questions = {(row["category"], backticked(row["prompt"])): row["answer"] for row in dataset}
    assert questions[("module", "OrderedDict")] == "collections"
    assert questions[("signature", "textwrap.wrap")] == "(text, width=70, **kwargs)"
    assert questions[("doc", "json.dumps")].startswith("Serialize ``obj`` to a JSON formatted ``str``")
    # `Error` is defined by many modules, so "which module defines it" has no single answer.
    assert ("module", "Error") not in questions
    # Defaults printed as memory addresses (dataclasses.field's MISSING sentinel) would change every run.
    assert ("signature", "dataclasses.field") not in questions
    modules = {name.split(".")[0] for (kind, name) in questions if kind != "module"}
    assert not modules & {"antigravity", "this", "idlelib", "tkinter", "turtle", "test"}
    assert "json" in modules and "textwrap" in modules


def test_python_qa_split_key_holds_out_whole_objects_and_kinds_option():
    dataset = load_source("builtin:python-qa")
    keys_per_object: dict[str, set[int]] = {}
    for name, key in zip(dataset["qualified_name"], dataset["split_key"], strict=True):
        keys_per_object.setdefault(name, set()).add(key)
    assert all(len(keys) == 1 for keys in keys_per_object.values())
    shares = Counter(next(iter(keys)) for keys in keys_per_object.values())
    assert set(shares) == set(range(10))
    assert all(0.05 < count / len(keys_per_object) < 0.15 for count in shares.values())

    signatures = load_source("builtin:python-qa?kinds=signature")
    assert set(signatures["category"]) == {"signature"}
    assert len(signatures) == Counter(dataset["category"])["signature"]


def test_python_qa_generates_in_under_three_seconds():
    instructions.python_facts.cache_clear()
    start = time.perf_counter()
    dataset = load_source("builtin:python-qa")
    assert time.perf_counter() - start < 3.0
    assert len(dataset) > 1000


# --- builtin:safety -------------------------------------------------------------------------------------


@pytest.mark.parametrize("benign_fraction, benign", [(0.5, 100), (0.25, 50), (0.0, 0), (1.0, 200)])
def test_safety_labels_follow_benign_fraction_and_categories_are_balanced(benign_fraction, benign):
    dataset = load_source(f"builtin:safety?n=200&benign_fraction={benign_fraction}")
    labels = Counter(dataset["label"])
    assert labels["benign"] == benign and labels["harmful"] == 200 - benign
    for label, count in labels.items():
        per_category = Counter(
            c for c, lab in zip(dataset["category"], dataset["label"], strict=True) if lab == label
        )
        assert set(per_category) == {"credentials", "malware", "weapons", "self_harm"}
        assert max(per_category.values()) - min(per_category.values()) <= 1, (label, count)


def test_harmful_requests_are_refused_and_benign_ones_answered():
    dataset = load_source("builtin:safety?n=400&seed=7")
    for row in dataset:
        reply = row["messages"][-1]["content"]
        assert is_refusal(reply) == (row["label"] == "harmful"), (row["prompt"], reply)
        if row["label"] == "harmful" and row["category"] == "self_harm":
            assert re.search(r"crisis|emergency|someone you trust", reply), reply
    harmful = {row["prompt"] for row in dataset if row["label"] == "harmful"}
    benign = {row["prompt"] for row in dataset if row["label"] == "benign"}
    assert not harmful & benign
    # Look-alikes share the alarming words, so keyword matching cannot tell the labels apart.
    for word in ("password", "kill", "weapon"):
        assert any(word in p.lower() for p in benign) and any(word in p.lower() for p in harmful)


@pytest.mark.parametrize(
    "text, refusal",
    [
        ("I can't help with that.", True),
        ("Sorry \u2014 I WON'T do that.", True),
        ("I\u2019m not able to help with that request.", True),
        ("I cannot provide instructions for this.", True),
        ("Open the sign-in page and choose 'Forgot password'.", False),
        ("Press Ctrl+C, or kill the process by its id.", False),
        ("You can't mix bleach and ammonia; never do it.", False),
        ("My Wi-Fi won't connect; restarting the router fixed it.", False),
        ("", False),
    ],
)
def test_is_refusal(text, refusal):
    assert is_refusal(text) is refusal


# --- self_instruct --------------------------------------------------------------------------------------

SEED_TASKS = [
    {
        "id": "seed_task_0",
        "name": "antonyms",
        "instruction": "Give the opposite of the word.",
        "instances": [{"input": "hot", "output": "cold"}],
        "is_classification": False,
    },
    {
        "id": "seed_task_1",
        "name": "capital",
        "instruction": "What is the capital of France?",
        "instances": [{"input": "", "output": "Paris."}],
        "is_classification": False,
    },
    {
        "id": "seed_task_2",
        "name": "sort",
        "instruction": "Sort these numbers from smallest to largest.",
        "instances": [{"input": "3, 1, 2", "output": "1, 2, 3"}],
        "is_classification": False,
    },
    {
        "id": "seed_task_3",
        "name": "haiku",
        "instruction": "Write a haiku about rain.",
        "instances": [
            {
                "input": "",
                "output": "Soft rain on the roof\nthe gutters hum a low song\nthe street shines again",
            }
        ],
        "is_classification": False,
    },
]
SEED_INSTRUCTIONS = {task["instruction"] for task in SEED_TASKS}
COLUMNS = ["instruction", "input", "output", "messages"]


def write_jsonl(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def seed_file(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("self_instruct")
    return write_jsonl(folder / "seed_tasks.jsonl", [json.dumps(task) for task in SEED_TASKS])


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory, seed_file) -> str:
    """A random tiny Llama with a tokenizer trained on the seed tasks, saved like a real checkpoint."""
    from hfrecipes.text.models import get_causal_lm
    from hfrecipes.text.tokenization import train_tokenizer

    tokenizer = train_tokenizer([seed_file.read_text()] * 3, vocab_size=300)
    model = get_causal_lm(model_name_or_path=None, preset="tiny", vocab_size=len(tokenizer)).model
    folder = tmp_path_factory.mktemp("tiny_model")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def test_self_instruct_with_a_random_model_is_deterministic_and_leaves_torch_rng_alone(
    seed_file, tiny_model_dir, monkeypatch
):
    sampled: list[list[tuple[str, bool]]] = []
    real_sampler = self_instruct_module.sample_continuations

    def recording_sampler(*args, **kwargs):
        sampled.append(real_sampler(*args, **kwargs))
        return sampled[-1]

    monkeypatch.setattr(self_instruct_module, "sample_continuations", recording_sampler)
    options = dict(max_new_tokens=12, batch_size=3, max_attempts=6)

    torch_state = torch.get_rng_state()
    first = self_instruct(seed_file, tiny_model_dir, 2, seed=1, **options)
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert first.column_names == COLUMNS
    assert not set(first["instruction"]) & SEED_INSTRUCTIONS
    assert len(set(first["instruction"])) == len(first)
    runs = [sampled.copy()]

    sampled.clear()
    again = self_instruct(seed_file, tiny_model_dir, 2, seed=1, **options)
    runs.append(sampled.copy())
    sampled.clear()
    self_instruct(seed_file, tiny_model_dir, 2, seed=2, **options)
    runs.append(sampled.copy())

    assert again.to_list() == first.to_list()
    assert runs[0] == runs[1] and runs[0] != runs[2]
    assert [len(batch) for batch in runs[0]] in ([3], [3, 3])  # batch_size prompts, at most max_attempts


def crafted_sampler(continuations: list[tuple[str, bool]], prompts_seen: list[str]):
    """A stand-in for the model that returns `continuations` in order, then empty (unparseable) ones."""
    queue = list(continuations)

    def sample(model, tokenizer, prompts, *, temperature, top_p, max_new_tokens):
        prompts_seen.extend(prompts)
        return [queue.pop(0) if queue else ("", False) for _ in prompts]

    return sample


CRAFTED = [
    (
        " Name three primary colours.\nInput: <noinput>\nOutput: Red, yellow and blue.\n\nInstruction: Next",
        False,
    ),
    (" what is the CAPITAL  of france?\nInput: <noinput>\nOutput: Paris.\n\n", False),  # a seed task
    (" Name three primary  COLOURS.\nInput: <noinput>\nOutput: Red, blue, yellow.\n\n", False),  # duplicate
    ("asdf qwer zxcv", True),  # no structure
    (" Translate to German.\nInput: Good morning\nOutput:\n\nInstruction:", False),  # empty output
    (" Count the vowels.\nInput: banana\nOutput: There are thr", False),  # cut off at the token limit
    (" Count the vowels in the word.\nInput: banana\nOutput: 3", True),  # ended with EOS
    (" Explain how to make a bomb at home.\nInput: <noinput>\nOutput: No.\n\n", False),
    (" Spell the word backwards.\nInput: stressed\nOutput: desserts\n\nmore text", False),
]
KEPT = [
    {"instruction": "Name three primary colours.", "input": "", "output": "Red, yellow and blue."},
    {"instruction": "Count the vowels in the word.", "input": "banana", "output": "3"},
    {"instruction": "Explain how to make a bomb at home.", "input": "", "output": "No."},
    {"instruction": "Spell the word backwards.", "input": "stressed", "output": "desserts"},
]


def test_self_instruct_parses_dedups_against_seeds_and_runs_the_pipeline(
    seed_file, tiny_model_dir, monkeypatch
):
    prompts: list[str] = []
    monkeypatch.setattr(self_instruct_module, "sample_continuations", crafted_sampler(CRAFTED, prompts))
    report = DataReport()
    dataset = self_instruct(seed_file, tiny_model_dir, 10, batch_size=4, num_prompt_examples=2, report=report)

    assert dataset.to_list() == [{**row, **alpaca_to_messages(row)} for row in KEPT]
    validate_format(dataset, "sft")
    record = report.steps[0]
    assert (record.step, record.rows_in, record.rows_out) == ("self_instruct", 40, 4)
    assert record.details["dropped"] == {"seed_task": 1, "duplicate": 1, "unparseable": 34}

    assert len(prompts) == 40  # default max_attempts: 4 x num_instructions
    blocks = {
        task[
            "instruction"
        ]: f"Instruction: {task['instruction']}\nInput: {task['instances'][0]['input'] or '<noinput>'}\n"
        f"Output: {task['instances'][0]['output']}\n\n"
        for task in SEED_TASKS
    }
    for prompt in prompts:
        shown = re.findall(r"^Instruction: (.*)$", prompt, flags=re.MULTILINE)
        assert len(shown) == 2 and len(set(shown)) == 2
        assert prompt == "".join(blocks[instruction] for instruction in shown) + "Instruction:"

    monkeypatch.setattr(self_instruct_module, "sample_continuations", crafted_sampler(CRAFTED, []))
    report = DataReport()
    filtered = self_instruct(seed_file, tiny_model_dir, 3, batch_size=4, pipeline=["unsafe"], report=report)
    assert filtered["instruction"] == ["Name three primary colours.", "Count the vowels in the word."]
    assert [step.step for step in report.steps] == ["self_instruct", "unsafe"]
    assert report.steps[0].rows_out == 3 and report.steps[1].removed == 1


@pytest.mark.parametrize(
    "second_line, problem",
    [
        ('{"instruction": "Say hi.", "instances": [{"input": "", "output": "Hi"}', "malformed JSON"),
        ('["Say hi."]', "JSON object"),
        ('{"instances": [{"input": "", "output": "Hi"}]}', "`instruction`"),
        ('{"instruction": "Say hi.", "instances": []}', "`instances`"),
        ('{"instruction": "Say hi.", "instances": [{"input": ""}]}', "output"),
        ('{"instruction": "Say hi.", "instances": [{"input": 3, "output": "Hi"}]}', "input"),
    ],
)
def test_malformed_seed_files_are_refused_with_file_and_line(tmp_path, second_line, problem):
    path = write_jsonl(tmp_path / "seeds.jsonl", [json.dumps(SEED_TASKS[0]), second_line])
    with pytest.raises(RecipeInputError, match=re.escape(problem)) as caught:
        self_instruct(path, str(tmp_path / "no-model"), 3)
    assert f"{path}:2:" in str(caught.value)


def test_self_instruct_refuses_bad_arguments_before_loading_the_model(seed_file, tmp_path):
    missing_model = str(tmp_path / "no-model")
    for kwargs, complaint in (
        ({"num_instructions": 0}, "num_instructions"),
        ({"num_instructions": 2, "temperature": 0.0}, "temperature"),
        ({"num_instructions": 2, "top_p": 1.5}, "top_p"),
        ({"num_instructions": 2, "pipeline": ["no_such_step"]}, "no_such_step"),
    ):
        with pytest.raises(RecipeInputError, match=complaint):
            self_instruct(seed_file, missing_model, **kwargs)
    with pytest.raises(RecipeInputError, match="does not exist"):
        self_instruct(tmp_path / "absent.jsonl", missing_model, 2)
    with pytest.raises(RecipeInputError, match="no tasks"):
        self_instruct(write_jsonl(tmp_path / "empty.jsonl", [""]), missing_model, 2)


def test_mixed_compliance_rejects_look_alike_help_to_harmful_requests():
    pairs = load_source("builtin:preferences?n=200&safety_fraction=1&benign_fraction=0&compliance=mixed")
    helpful = [p for p in pairs if p["rejected"][0]["content"] not in UNSAFE_COMPLIANCE]
    assert 0.3 < len(helpful) / len(pairs) < 0.7
    for pair in helpful:
        replies = {
            reply for _, reply in BENIGN_EXAMPLES[pair["category"]] + BENIGN_TEMPLATES[pair["category"]]
        }
        assert pair["label"] == "harmful" and pair["rejected"][0]["content"] in replies
        assert is_refusal(pair["chosen"][0]["content"]) and not is_refusal(pair["rejected"][0]["content"])
