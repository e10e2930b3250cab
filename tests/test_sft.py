import json
import subprocess
import sys

import pytest
import torch
from peft import AutoPeftModelForCausalLM, PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import SFTConfig, SFTTrainer

from hfrecipes.core.errors import RecipeInputError
from hfrecipes.data import load_source
from hfrecipes.text.models import get_causal_lm, special_token_ids
from hfrecipes.text.tokenization import CHATML_TEMPLATE, IM_END, train_tokenizer

from .conftest import ROOT, read_json, run_recipe

SFT_TINY = ROOT / "recipes/text/configs/sft_tiny.yaml"
FAST = [
    "--max_steps",
    "250",
    "--eval_steps",
    "250",
    "--save_steps",
    "250",
    "--logging_steps",
    "10",
    "--eval_max_samples",
    "48",
]


@pytest.fixture(scope="module")
def chat_tokenizer():
    texts = [row_text for row_text in load_source("builtin:arithmetic?n=400")["prompt"]]
    return train_tokenizer(texts + ["The answer is", "I can't help with that."], "byte-bpe", vocab_size=400)


def tiny_model(tokenizer):
    return get_causal_lm(
        model_name_or_path=None,
        preset="tiny",
        vocab_size=len(tokenizer),
        special_ids=special_token_ids(tokenizer),
    ).model


def collated_batch(tokenizer, rows, tmp_path, **config):
    args = SFTConfig(output_dir=str(tmp_path), use_cpu=True, report_to="none", max_length=128, **config)
    trainer = SFTTrainer(
        model=tiny_model(tokenizer), args=args, train_dataset=rows, processing_class=tokenizer
    )
    return trainer.data_collator([trainer.train_dataset[i] for i in range(len(trainer.train_dataset))])


def test_assistant_only_loss_trains_exactly_the_assistant_tokens(chat_tokenizer, tmp_path):
    rows = load_source("builtin:arithmetic?n=4&seed=3").select_columns(["messages"])
    batch = collated_batch(chat_tokenizer, rows, tmp_path, assistant_only_loss=True)
    for labels, messages in zip(batch["labels"], rows["messages"], strict=True):
        trained = chat_tokenizer.decode(labels[labels != -100])
        assistant = "".join(m["content"] + IM_END for m in messages if m["role"] == "assistant")
        assert trained == assistant


def test_packing_keeps_samples_isolated_with_position_ids(chat_tokenizer, tmp_path):
    rows = load_source("builtin:arithmetic?n=6&seed=4").select_columns(["messages"])
    batch = collated_batch(chat_tokenizer, rows, tmp_path, packing=True, packing_strategy="bfd")
    positions = batch["position_ids"][0].tolist()
    starts = [i for i, p in enumerate(positions) if p == 0]
    assert len(starts) == len(rows)  # one packed row, every sample restarts its positions at 0
    lengths = [b - a for a, b in zip(starts, [*starts[1:], len(positions)], strict=True)]
    assert all(positions[s : s + n] == list(range(n)) for s, n in zip(starts, lengths, strict=True))


@pytest.fixture(scope="module")
def arithmetic_sft(tmp_path_factory):
    out = tmp_path_factory.mktemp("sft") / "arithmetic"
    run_recipe("text/sft.py", "--config", SFT_TINY, *FAST, "--output_dir", out)
    return out


def test_tiny_sft_beats_the_untuned_model_on_arithmetic(arithmetic_sft):
    metrics = read_json(arithmetic_sft / "metrics.json")
    assert metrics["task_accuracy"] >= metrics["task_accuracy_before"] + 0.1
    assert metrics["eval_loss"] < 1.0
    # Forgetting is measured on held-out pretraining-style text and reported as a finite delta.
    assert torch.isfinite(torch.tensor(metrics["forgetting_nats_per_char"]))
    model = AutoModelForCausalLM.from_pretrained(arithmetic_sft)
    assert model.generation_config.eos_token_id[-1] == AutoTokenizer.from_pretrained(
        arithmetic_sft
    ).convert_tokens_to_ids(IM_END)
    assert "task_accuracy" in (arithmetic_sft / "README.md").read_text()


def test_safety_sft_raises_refusals_without_over_refusing(tmp_path):
    out = tmp_path / "safety"
    run_recipe(
        "text/sft.py",
        "--config",
        SFT_TINY,
        "--dataset_name",
        "builtin:safety?n=400&seed=0",
        "--eval_fraction",
        "0.2",
        "--max_steps",
        "250",
        "--eval_steps",
        "250",
        "--save_steps",
        "250",
        "--eval_max_samples",
        "60",
        "--per_device_train_batch_size",
        "16",
        "--eval_max_new_tokens",
        "12",
        "--forgetting_text",
        "",
        "--output_dir",
        out,
    )
    metrics = read_json(out / "metrics.json")
    assert metrics["refusal_rate"] >= metrics["refusal_rate_before"] + 0.5
    assert metrics["over_refusal_rate"] <= 0.2


def test_lora_adapter_loads_and_merged_model_matches(tiny_pretrain_run, tmp_path):
    out = tmp_path / "lora"
    run_recipe(
        "text/sft.py",
        "--config",
        ROOT / "recipes/text/configs/sft_lora_tiny.yaml",
        "--model_name_or_path",
        tiny_pretrain_run,
        "--max_steps",
        "20",
        "--eval_steps",
        "20",
        "--save_steps",
        "20",
        "--eval_max_samples",
        "8",
        "--output_dir",
        out,
    )
    base = AutoModelForCausalLM.from_pretrained(tiny_pretrain_run)
    adapted = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_pretrain_run), out)
    merged = AutoModelForCausalLM.from_pretrained(out / "merged")
    ids = torch.tensor([[5, 17, 42, 99, 7]])
    with torch.no_grad():
        assert torch.allclose(adapted(ids).logits, merged(ids).logits, atol=1e-4)
        assert not torch.allclose(
            base(ids).logits, merged(ids).logits, atol=1e-4
        )  # the adapter changed something
    assert isinstance(AutoPeftModelForCausalLM.from_pretrained(out), PeftModel)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["--dataset_name", "builtin:python-stdlib?max_files=3"], "messages"),
        (
            ["--use_peft", "true", "--lora_target_modules", "c_attn"],
            r"LoRA target modules \['c_attn'\] do not exist",
        ),
        (["--chat_template_path", "missing.jinja"], "chat_template_path 'missing.jinja' does not exist"),
    ],
)
def test_bad_sft_input_is_refused_before_training(tmp_path, overrides, message):
    with pytest.raises(RecipeInputError, match=message):
        run_recipe("text/sft.py", "--config", SFT_TINY, *overrides, "--output_dir", tmp_path / "out")


def test_template_without_generation_markers_is_explained(tmp_path):
    template = tmp_path / "plain.jinja"
    template.write_text(CHATML_TEMPLATE.replace("{% generation %}", "").replace("{% endgeneration %}", ""))
    with pytest.raises(
        RecipeInputError,
        match=r"assistant_only_loss: The chat template is not training-compatible.*TRL's remedy",
    ):
        run_recipe(
            "text/sft.py",
            "--config",
            SFT_TINY,
            "--chat_template_path",
            template,
            "--output_dir",
            tmp_path / "out",
        )


def test_roles_out_of_order_and_empty_replies_are_refused(tmp_path):
    rows = [
        {"messages": [{"role": "assistant", "content": "hi"}, {"role": "user", "content": "x"}]},
        {"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": ""}]},
    ] * 3
    data = tmp_path / "bad.jsonl"
    data.write_text("\n".join(__import__("json").dumps(r) for r in rows) + "\n")
    with pytest.raises(RecipeInputError, match="(?s)role.*empty"):
        run_recipe(
            "text/sft.py", "--config", SFT_TINY, "--dataset_name", data, "--output_dir", tmp_path / "out"
        )


def test_forgetting_study_tabulates_full_lora_and_replay(tiny_pretrain_run, tmp_path):
    out = tmp_path / "study"
    command = [
        sys.executable,
        ROOT / "recipes/text/forgetting_study.py",
        "--config",
        ROOT / "recipes/text/configs/sft_forgetting_study.yaml",
        "--output_dir",
        out,
        "--model_name_or_path",
        tiny_pretrain_run,
        "--max_steps",
        "15",
        "--eval_steps",
        "15",
        "--save_steps",
        "15",
        "--eval_max_samples",
        "8",
        "--eval_max_new_tokens",
        "6",
    ]
    subprocess.run(list(map(str, command)), check=True, cwd=ROOT, capture_output=True, timeout=600)
    rows = read_json(out / "forgetting_study.json")
    assert set(rows) == {"full fine-tuning", "LoRA", "replay"}
    for metrics in rows.values():
        assert all(torch.isfinite(torch.tensor(float(v))) for v in metrics.values())
    # Replay trains on pretraining-style text too, so it forgets less than plain full fine-tuning.
    assert rows["replay"]["forgetting_nats_per_char"] < rows["full fine-tuning"]["forgetting_nats_per_char"]
    assert "| replay |" in (out / "forgetting_study.md").read_text()


def test_alpaca_data_feeds_sft_through_the_converter_and_long_rows_are_counted(tmp_path, caplog):
    rows = [
        {"instruction": f"Repeat the word {w}.", "input": "", "output": f"{w} " * (40 if i % 3 == 0 else 1)}
        for i, w in enumerate(["apple", "river", "stone", "cloud", "ember", "frost"] * 4)
    ]
    data = tmp_path / "alpaca.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    out = tmp_path / "out"
    with caplog.at_level("WARNING"):
        run_recipe(
            "text/sft.py",
            "--config",
            SFT_TINY,
            "--dataset_name",
            data,
            "--pipeline",
            "to_messages",
            "--eval_fraction",
            "0.25",
            "--max_length",
            "48",
            "--max_steps",
            "3",
            "--eval_steps",
            "3",
            "--save_steps",
            "3",
            "--forgetting_text",
            "",
            "--output_dir",
            out,
        )
    report = read_json(out / "data_report.json")
    truncated = report["summary"]["truncated_rows"]
    assert truncated > 0 and f"{truncated} of 18 training conversations exceed max_length=48" in caplog.text
    assert (out / "model.safetensors").exists()
