import math
import shutil
import subprocess
import sys

import pytest
from huggingface_hub import ModelCard
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, pipeline

from hfrecipes.core.errors import RecipeInputError

from .conftest import ROOT, SHAKESPEARE, TINY_PRETRAIN, read_json, run_recipe


def test_tiny_pretraining_learns_and_saves_the_output_contract(tiny_pretrain_run):
    out = tiny_pretrain_run
    metrics = read_json(out / "metrics.json")
    lineage = read_json(out / "lineage.json")
    vocab = lineage["config"]["tokenizer"]["vocab_size"]
    # Random init predicts ~uniformly (ln V nats/token); 60 tiny steps must beat that by a clear margin
    # (measured: 6.24 -> 5.2, i.e. perplexity 512 -> ~180).
    assert metrics["eval_loss"] < math.log(vocab) - 0.75
    first_train_loss = next(e["loss"] for e in read_json(out / "log_history.json") if "loss" in e)
    assert metrics["eval_loss"] < first_train_loss - 0.5
    assert 0 < metrics["eval_nats_per_char"] < metrics["eval_loss"]
    assert metrics["global_step"] == 60 and metrics["tokens_seen"] == 60 * 16 * 64

    generator = pipeline("text-generation", model=str(out), device="cpu")
    text = generator("def ", max_new_tokens=10, do_sample=False)[0]["generated_text"]
    assert text.startswith("def ") and len(text) > 4

    assert (
        lineage["recipe"] == "text/pretrain" and lineage["data_report"]["source"] == "builtin:python-stdlib"
    )
    assert lineage["config"]["training"]["max_steps"] == 60 and "transformers" in lineage["versions"]
    card = ModelCard.load(out / "README.md")
    assert "hfrecipes" in card.data.tags and card.data.license == "apache-2.0"
    assert (
        "builtin:python-stdlib" in card.text
        and "eval_nats_per_char" in card.text
        and "tokenize_pack_train" in card.text
    )
    assert (out / "loss_curve.png").stat().st_size > 1000 and (out / "data_report.json").exists()
    assert read_json(out / "samples.json")[0]["prompt"] == "def "
    efficiency = lineage["efficiency"]  # throughput, 6·N·D FLOPs, MFU vs the matmul peak, energy
    assert efficiency["tokens"] == 60 * 16 * 64 and efficiency["steps"] == 60 and 0 < efficiency["mfu"] < 1
    assert efficiency["energy_kwh"] > 0 and efficiency["co2e_kg"] > 0 and "## Efficiency" in card.text


def test_resume_continues_from_the_last_complete_checkpoint(tiny_pretrain_run, tmp_path):
    """A run stopped after checkpoint-30 (with a half-written checkpoint-60) ends where the full run ended."""
    interrupted = tmp_path / "interrupted"
    interrupted.mkdir()
    shutil.copytree(tiny_pretrain_run / "checkpoint-30", interrupted / "checkpoint-30")
    shutil.copytree(tiny_pretrain_run / "tokenizer", interrupted / "tokenizer")
    partial = interrupted / "checkpoint-60"
    partial.mkdir()
    (partial / "model.safetensors").write_bytes(b"truncated")

    run_recipe("text/pretrain.py", *TINY_PRETRAIN, "--output_dir", interrupted)

    lineage = read_json(interrupted / "lineage.json")
    assert lineage["resumed_from"].endswith("checkpoint-30")
    assert lineage["metrics"]["global_step"] == 60
    full = load_file(tiny_pretrain_run / "model.safetensors")
    resumed = load_file(interrupted / "model.safetensors")
    assert max((full[k] - resumed[k]).abs().max().item() for k in full) < 1e-4
    assert (
        abs(lineage["metrics"]["eval_loss"] - read_json(tiny_pretrain_run / "metrics.json")["eval_loss"])
        < 1e-3
    )


def test_continued_pretraining_from_a_previous_stage(tiny_pretrain_run, tmp_path):
    out = tmp_path / "continued"
    run_recipe(
        "text/pretrain.py",
        *TINY_PRETRAIN,
        "--model_name_or_path",
        tiny_pretrain_run,
        "--max_steps",
        "10",
        "--eval_steps",
        "10",
        "--output_dir",
        out,
    )
    lineage = read_json(out / "lineage.json")
    parent = next(i for i in lineage["inputs"] if i["kind"] == "model")
    assert (
        parent["reference"] == str(tiny_pretrain_run)
        and parent["recipe"] == "text/pretrain"
        and len(parent["lineage_sha256"]) == 64
    )
    # Starting from trained weights: already far below a random model's loss after 10 more steps.
    assert lineage["metrics"]["eval_loss"] < read_json(tiny_pretrain_run / "metrics.json")["eval_loss"] + 0.2
    assert AutoModelForCausalLM.from_pretrained(out).num_parameters() == lineage["metrics"]["parameters"]


def test_character_level_tokenizer_on_shakespeare(tmp_path):
    out = tmp_path / "char"
    run_recipe(
        "text/pretrain.py",
        *TINY_PRETRAIN,
        "--dataset_name",
        f"builtin:tinyshakespeare?path={SHAKESPEARE}",
        "--tokenizer_type",
        "char",
        "--split_mode",
        "tail",
        "--max_documents",
        "400",
        "--max_steps",
        "20",
        "--eval_steps",
        "20",
        "--sample_prompts",
        "ROMEO:",
        "--output_dir",
        out,
    )
    metrics = read_json(out / "metrics.json")
    # Char-level: one token per character (plus EOS per document), so nats/char is close to nats/token.
    assert metrics["tokenizer_tokens_per_char"] == pytest.approx(1.0, abs=0.02)
    assert metrics["eval_nats_per_char"] == pytest.approx(metrics["eval_loss"], rel=0.05)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["--block_size", "4096"], "block_size=4096 exceeds the model's context of 512"),
        (["--model_preset", "giant"], "Unknown model preset 'giant'"),
        (["--dataset_name", "builtin:unknown"], "Unknown built-in dataset"),
        (["--dataset_name", "/nonexistent/data.jsonl"], "does not exist"),
        (["--text_column", "body"], "Text column 'body' not found"),
        (["--max_documents", "3", "--block_size", "512"], "fewer than one block of 512"),
    ],
)
def test_bad_input_stops_before_training(tmp_path, overrides, message):
    with pytest.raises(RecipeInputError, match=message):
        run_recipe("text/pretrain.py", *TINY_PRETRAIN, *overrides, "--output_dir", tmp_path / "out")
    assert not (tmp_path / "out" / "lineage.json").exists()


def test_malformed_jsonl_from_the_command_line_is_one_clear_line(tmp_path):
    data = tmp_path / "corpus.jsonl"
    data.write_text('{"text": "ok"}\n{"text": "ok too"}\nnot json\n')
    result = subprocess.run(
        [
            sys.executable,
            ROOT / "recipes/text/pretrain.py",
            *TINY_PRETRAIN,
            "--dataset_name",
            data,
            "--output_dir",
            tmp_path / "out",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert result.returncode == 2
    assert f"hfrecipes: error: {data}:3: malformed JSON line" in result.stderr
    assert "Traceback" not in result.stderr
