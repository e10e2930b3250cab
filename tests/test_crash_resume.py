"""Crash-safe resume, by fault injection (tests/faults.py): each recipe is run as a subprocess and SIGKILLed at a
seeded-random moment after its first complete checkpoint, re-run and SIGKILLed inside a checkpoint save (after
the weights, before the completion file), then re-run to the end. Each re-run must resume from the last complete
checkpoint (never the partial one), log every step's loss once and equal to an uninterrupted run's, and end with
the same weights and metrics.

Pretraining (the Trainer path) and diffusion (the custom Accelerate loop) run by default; SFT and DPO, which take
the same Trainer path, are marked slow. HFRECIPES_FAULT_SEED=<n> draws other kill moments.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from hfrecipes.data import load_source
from hfrecipes.text.models import get_causal_lm, special_token_ids
from hfrecipes.text.tokenization import CHATML_TEMPLATE, train_tokenizer

from .conftest import ROOT
from .faults import DIFFUSION, TRAINER, Layout, crash_and_resume, recipe_command, run_to_end

SEED = int(os.environ.get("HFRECIPES_FAULT_SEED", "0"))
MAX_STEPS, SAVE_STEPS = 24, 4
# Every step logged; on CPU even where a GPU is present, since the comparisons are bit-exact.
SCHEDULE = (
    *("--max_steps", MAX_STEPS, "--save_steps", SAVE_STEPS, "--logging_steps", 1),
    *("--seed", 7, "--use_cpu", "true"),
)

PRETRAIN = (
    *("--config", ROOT / "recipes/text/configs/pretrain_tiny.yaml"),
    *("--dataset_name", "builtin:python-stdlib?max_files=40&domains=documentation"),
    *("--validation_fraction", "0.1"),
    *("--vocab_size", 300, "--block_size", 32),
    *("--per_device_train_batch_size", 4, "--per_device_eval_batch_size", 16),
    *("--warmup_steps", 2, "--eval_steps", MAX_STEPS, "--save_total_limit", 2),
    *("--sample_prompts", "def ", "--sample_max_new_tokens", 2),
)
SFT = (
    *("--config", ROOT / "recipes/text/configs/sft_tiny.yaml"),
    *("--dataset_name", "builtin:arithmetic?n=300&digits=1&seed=0", "--tokenizer_vocab_size", 300),
    *("--max_length", 64, "--per_device_train_batch_size", 8, "--per_device_eval_batch_size", 16),
    *("--warmup_steps", 2, "--eval_steps", MAX_STEPS, "--save_total_limit", 2),
    *("--forgetting_text", "", "--eval_max_samples", 4, "--eval_max_new_tokens", 4),
)
DPO = (
    *("--config", ROOT / "recipes/text/configs/dpo_tiny.yaml", "--reward_model_path", ""),
    # 54 training pairs in batches of 4: 14 steps an epoch, so the run crosses an epoch boundary.
    *("--dataset_name", "builtin:preferences?n=60&seed=1&ops=add,sub", "--max_length", 64),
    *("--per_device_train_batch_size", 4, "--per_device_eval_batch_size", 8, "--warmup_steps", 2),
    *("--eval_steps", MAX_STEPS, "--save_total_limit", 2),
    *("--eval_max_samples", 4, "--eval_max_new_tokens", 4),
)
DIFFUSION_DIGITS = (  # after --config <the digits config without its evaluation classifier>
    # 108 training digits in batches of 8: 13 steps an epoch, so the run crosses an epoch boundary.
    *("--dataset_name", "builtin:digits?size=16&n=120"),
    *("--per_device_train_batch_size", 8, "--warmup_steps", 2),
    *("--eval_steps", 0, "--checkpoints_total_limit", 2),
    *("--num_eval_prompts", 4, "--eval_samples_per_prompt", 1),
    *("--num_inference_steps", 2),
)


def check_crash_resume(
    tmp_path: Path, recipe: str, args: tuple, layout: Layout, metrics: tuple[str, ...], **options
) -> None:
    def command(output_dir: Path) -> list[str]:
        return recipe_command(recipe, *args, *SCHEDULE, "--output_dir", output_dir)

    (tmp_path / "reference").mkdir()
    reference = run_to_end(command(tmp_path / "reference" / "out"), tmp_path / "reference" / "run.log")
    assert reference.returncode == 0, reference.tail()
    report = crash_and_resume(
        command(tmp_path / "out"),
        output_dir=tmp_path / "out",
        reference_dir=tmp_path / "reference" / "out",
        layout=layout,
        max_steps=MAX_STEPS,
        save_steps=SAVE_STEPS,
        seed=f"{SEED}:{recipe}",  # other kill moments for each recipe
        metrics=metrics,
        **options,
    )
    print(f"\n{recipe} (seed {SEED}): reference {reference.seconds:.1f}s; {report.summary()}")


def test_pretraining_survives_kills_at_random_and_inside_saves(tmp_path):
    # First a run killed while it saves the tokenizer it trained (tokenizer_config.json written, tokenizer.json
    # not yet): the re-runs must train it again, not fail on the half-saved one.
    check_crash_resume(
        tmp_path,
        "text/pretrain.py",
        PRETRAIN,
        TRAINER,
        ("eval_loss", "eval_perplexity", "tokens_seen"),
        first_kill_after_write="tokenizer_config.json",
    )


def test_diffusion_loop_survives_kills_at_random_and_inside_a_save(tmp_path):
    config = yaml.safe_load((ROOT / "recipes/image/configs/diffusion_digits_tiny.yaml").read_text())
    # Without the evaluation classifier, which every run would fit again first (seconds that test nothing here).
    config["eval_attributes"] = []
    (tmp_path / "digits.yaml").write_text(yaml.safe_dump(config))
    check_crash_resume(
        tmp_path,
        "image/train_diffusion.py",
        ("--config", tmp_path / "digits.yaml", *DIFFUSION_DIGITS),
        DIFFUSION,
        ("validation_loss", "untrained_validation_loss", "train_loss_first"),
    )


@pytest.mark.slow
def test_sft_survives_kills_and_a_torn_trainer_state(tmp_path):
    # The save kill leaves half a trainer_state.json (a torn write), which must not pass for a checkpoint.
    check_crash_resume(tmp_path, "text/sft.py", SFT, TRAINER, ("eval_loss",), kill_mode="torn")


@pytest.fixture
def tiny_chat_policy(tmp_path) -> Path:
    """A random tiny chat model saved like an SFT output: the cheapest start DPO accepts."""
    rows = load_source("builtin:preferences?n=200&seed=0&ops=add,sub")
    texts = [m["content"] for r in rows for m in r["prompt"] + r["chosen"] + r["rejected"]]
    tokenizer = train_tokenizer(texts, tokenizer_type="byte-bpe", vocab_size=300, min_frequency=2)
    tokenizer.chat_template = CHATML_TEMPLATE
    built = get_causal_lm(
        model_name_or_path=None,
        preset="tiny",
        vocab_size=len(tokenizer),
        special_ids=special_token_ids(tokenizer),
    )
    path = tmp_path / "policy"
    built.model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.mark.slow
def test_dpo_survives_kills_at_random_and_inside_a_save(tmp_path, tiny_chat_policy):
    check_crash_resume(
        tmp_path,
        "text/dpo.py",
        (*DPO, "--model_name_or_path", tiny_chat_policy),
        TRAINER,
        ("logprob_margin", "eval_rewards_margins"),
    )
