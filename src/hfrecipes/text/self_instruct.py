"""Self-instruct (Wang et al., 2023): grow an instruction dataset from seed tasks with a causal LM, filtered and deduplicated."""

from __future__ import annotations

import json
import logging
import random
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import datasets
import torch

from hfrecipes.core.data_report import DataReport
from hfrecipes.core.errors import RecipeInputError
from hfrecipes.data.converters import alpaca_to_messages
from hfrecipes.data.registry import parse_pipeline
from hfrecipes.data.sources import check_jsonl
from hfrecipes.data.steps import run_pipeline
from hfrecipes.data.text import dedup_key
from hfrecipes.text.models import get_causal_lm
from hfrecipes.text.tokenization import load_tokenizer

NO_INPUT = "<noinput>"  # how Alpaca writes an empty input in prompts

logger = logging.getLogger(__name__)
Continuation = tuple[str, bool]


SELF_INSTRUCT_FEATURES = datasets.Features(
    {
        "instruction": datasets.Value("string"),
        "input": datasets.Value("string"),
        "output": datasets.Value("string"),
        "messages": datasets.List({"role": datasets.Value("string"), "content": datasets.Value("string")}),
    }
)


_TASK = re.compile(r"(?P<instruction>.*?)\nInput:(?P<input>.*?)\nOutput:(?P<output>.*)", re.DOTALL)


def read_seed_tasks(path: str | Path) -> list[dict[str, str]]:
    """Alpaca `seed_tasks.jsonl` as [{instruction, input, output}] (the first instance of each task).
    Raises with file:line at the first line that is not a task."""
    file = Path(path)
    if not file.is_file():
        raise RecipeInputError(f"Seed task file {file} does not exist; give an Alpaca seed_tasks.jsonl.")
    check_jsonl(file)
    tasks = []
    with open(file, encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            record = json.loads(line)
            instruction = record.get("instruction")
            instances = record.get("instances")
            problem = None
            if not isinstance(instruction, str) or not instruction.strip():
                problem = "`instruction` must be a non-empty string"
            elif not isinstance(instances, list) or not instances or not isinstance(instances[0], dict):
                problem = "`instances` must be a non-empty list of {input, output} objects"
            elif not isinstance(instances[0].get("input", ""), str):
                problem = "`instances[0].input` must be a string"
            elif not isinstance(instances[0].get("output"), str) or not instances[0]["output"].strip():
                problem = "`instances[0].output` must be a non-empty string"
            if problem:
                raise RecipeInputError(
                    f"{file}:{line_number}: {problem}. Each line is an Alpaca seed task: "
                    '{"instruction": ..., "instances": [{"input": ..., "output": ...}]}.'
                )
            first = instances[0]
            tasks.append(
                {
                    "instruction": instruction.strip(),
                    "input": first.get("input", "").strip(),
                    "output": first["output"].strip(),
                }
            )
    if not tasks:
        raise RecipeInputError(f"Seed task file {file} has no tasks.")
    return tasks


def _one_paragraph(text: str) -> str:
    """Blank lines end a block in the prompt format, so fields keep single line breaks only."""
    return re.sub(r"\n\s*\n+", "\n", text.strip())


def few_shot_prompt(tasks: Sequence[dict[str, str]]) -> str:
    """Alpaca-style blocks of the example tasks, ending with "Instruction:" for the model to continue."""
    blocks = [
        f"Instruction: {_one_paragraph(task['instruction'])}\n"
        f"Input: {_one_paragraph(task['input']) or NO_INPUT}\n"
        f"Output: {_one_paragraph(task['output'])}\n\n"
        for task in tasks
    ]
    return "".join(blocks) + "Instruction:"


def parse_task(continuation: str, finished: bool) -> dict[str, str] | None:
    """The task a continuation of `few_shot_prompt` describes, or None when it is unparseable, has an empty
    instruction or output, or was cut off by the token limit before its block ended."""
    block, next_block, _ = continuation.partition("\nInstruction:")
    match = _TASK.fullmatch(block)
    if match is None:
        return None
    output, blank_line, _ = match["output"].partition("\n\n")
    if not (next_block or blank_line or finished):
        return None
    instruction = match["instruction"].strip()
    task_input = match["input"].strip()
    task = {
        "instruction": instruction,
        "input": "" if task_input == NO_INPUT else task_input,
        "output": output.strip(),
    }
    if not task["instruction"] or not task["output"] or "\n\n" in instruction:
        return None
    return task


def sample_continuations(
    model: Any, tokenizer: Any, prompts: list[str], *, temperature: float, top_p: float, max_new_tokens: int
) -> list[Continuation]:
    """Nucleus-sample one continuation per prompt (top-k off, as Alpaca's API sampling). Uses torch's
    global RNG: the caller seeds it."""
    inputs = tokenizer(prompts, return_tensors="pt", padding=True).to(model.device)
    with torch.no_grad():
        generated = model.generate(
            **inputs,
            do_sample=True,
            temperature=temperature,
            top_p=top_p,
            top_k=0,
            max_new_tokens=max_new_tokens,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
    new_tokens = generated[:, inputs["input_ids"].shape[1] :]
    continuations = []
    for row in new_tokens.tolist():
        finished = tokenizer.eos_token_id in row
        if finished:
            row = row[: row.index(tokenizer.eos_token_id)]
        continuations.append((tokenizer.decode(row, skip_special_tokens=True), finished))
    return continuations


def self_instruct(
    seed_tasks: str | Path,
    model_name_or_path: str,
    num_instructions: int,
    *,
    seed: int = 0,
    temperature: float = 0.9,
    top_p: float = 0.95,
    max_new_tokens: int = 128,
    num_prompt_examples: int = 3,
    pipeline: list | None = None,
    batch_size: int = 8,
    max_attempts: int | None = None,
    report: DataReport | None = None,
) -> datasets.Dataset:
    """Up to `num_instructions` new tasks written by a local causal LM prompted with Alpaca seed tasks.

    Stanford Alpaca's recipe on a local model: each prompt shows `num_prompt_examples` random seed tasks as
    "Instruction/Input/Output" blocks and ends with "Instruction:"; `batch_size` prompts are sampled at a
    time; a continuation is kept when it parses into a complete task whose instruction (compared with
    `dedup_key`, so case and spacing do not matter) is neither a seed task's nor one already kept. Sampling
    stops at `num_instructions` tasks or after `max_attempts` continuations (default 4 x
    num_instructions); fewer tasks than asked is logged, not an error. Then `pipeline` (the YAML step list
    of `hfrecipes.data`) runs over the rows. Counts of each drop reason go to `report` (step
    "self_instruct"). The same seed, model and arguments give the same rows; torch's global RNG is left as
    it was. Returns instruction, input, output and `messages` (alpaca_to_messages).
    """
    max_attempts = 4 * num_instructions if max_attempts is None else max_attempts
    for name, value in (
        ("num_instructions", num_instructions),
        ("max_new_tokens", max_new_tokens),
        ("num_prompt_examples", num_prompt_examples),
        ("batch_size", batch_size),
        ("max_attempts", max_attempts),
    ):
        if not isinstance(value, int) or value < 1:
            raise RecipeInputError(f"self_instruct: {name} must be a positive integer, got {value!r}.")
    if not temperature > 0:
        raise RecipeInputError(f"self_instruct: temperature must be > 0, got {temperature}.")
    if not 0 < top_p <= 1:
        raise RecipeInputError(f"self_instruct: top_p must be in (0, 1], got {top_p}.")
    seeds = read_seed_tasks(seed_tasks)
    steps = parse_pipeline(pipeline)  # before loading the model, so a bad pipeline fails at once
    report = report if report is not None else DataReport(source=f"self_instruct:{seed_tasks}")

    tokenizer = load_tokenizer(model_name_or_path)
    tokenizer.padding_side = "left"  # continuations start right after every prompt
    model = get_causal_lm(model_name_or_path=model_name_or_path, preset=None, vocab_size=len(tokenizer)).model
    model.to("cuda" if torch.cuda.is_available() else "cpu").eval()

    seen = {dedup_key(task["instruction"]) for task in seeds}
    seed_keys = frozenset(seen)
    rng = random.Random(seed)
    kept: list[dict[str, str]] = []
    drops: Counter[str] = Counter()
    dropped_examples: list[str] = []
    attempts = 0
    rng_devices = [torch.cuda.current_device()] if model.device.type == "cuda" else []
    with torch.random.fork_rng(devices=rng_devices):
        torch.manual_seed(seed)
        while len(kept) < num_instructions and attempts < max_attempts:
            count = min(batch_size, max_attempts - attempts)
            prompts = [
                few_shot_prompt(rng.sample(seeds, min(num_prompt_examples, len(seeds)))) for _ in range(count)
            ]
            attempts += count
            continuations = sample_continuations(
                model,
                tokenizer,
                prompts,
                temperature=temperature,
                top_p=top_p,
                max_new_tokens=max_new_tokens,
            )
            for text, finished in continuations:
                task = parse_task(text, finished)
                key = dedup_key(task["instruction"]) if task else ""
                if task is None or key in seen:
                    reason = (
                        "unparseable" if task is None else "seed_task" if key in seed_keys else "duplicate"
                    )
                    drops[reason] += 1
                    if len(dropped_examples) < 3:
                        dropped_examples.append(f"{reason}: {text[:280]}")
                elif len(kept) < num_instructions:
                    seen.add(key)
                    kept.append(task)
                else:
                    drops["surplus"] += 1  # the last batch overshot num_instructions
    if len(kept) < num_instructions:
        logger.warning(
            "self_instruct: %d of %d instructions after %d attempts (%s)",
            len(kept),
            num_instructions,
            attempts,
            dict(drops),
        )
    report.add(
        "self_instruct",
        rows_in=attempts,
        rows_out=len(kept),
        examples=dropped_examples,
        details={"model": str(model_name_or_path), "seed_tasks": len(seeds), "dropped": dict(drops)},
    )
    rows = [{**task, **alpaca_to_messages(task)} for task in kept]
    # from_dict, not from_list: from_list cannot build an empty dataset with typed columns.
    columns = {column: [row[column] for row in rows] for column in SELF_INSTRUCT_FEATURES}
    dataset = datasets.Dataset.from_dict(columns, features=SELF_INSTRUCT_FEATURES)
    if steps and len(dataset):
        dataset = run_pipeline(dataset, steps, report)
    return dataset


# (generated text, whether generation ended by itself with EOS rather than at max_new_tokens)
