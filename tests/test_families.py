"""Every post-training recipe from tiny random checkpoints of the families users fine-tune (Llama-3, Qwen2.5,
Qwen3, Gemma-3, Phi-3, Mistral), each with its real chat template: 2 steps, then the output loads with the Auto
classes and `pipeline()`, and the saved template is still the family's. PPO's family runs are in
test_ppo_scale.py."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    pipeline,
)
from trl import ModelConfig

from hfrecipes.core.errors import RecipeInputError
from hfrecipes.text.evaluation import end_of_turn_token_id, stop_token_ids
from hfrecipes.text.families import FAMILIES, build_family
from hfrecipes.text.models import model_loading
from hfrecipes.text.posttraining import prepare_chat_template

from .conftest import ROOT, run_recipe

# Templates TRL has a generation-marked training version of; Mistral's it does not know.
TRL_KNOWN = [name for name in FAMILIES if name != "mistral"]
TWO_STEPS = [
    "--max_steps",
    "2",
    "--save_steps",
    "2",
    "--logging_steps",
    "1",
    "--per_device_train_batch_size",
    "4",
]
SHORT_EVAL = ["--eval_max_samples", "4", "--eval_max_new_tokens", "4"]
CONFIGS = ROOT / "recipes" / "text" / "configs"
CHAT = [{"role": "user", "content": "What is 2 + 3?"}]


@pytest.fixture(scope="session")
def families(tmp_path_factory):
    root = tmp_path_factory.mktemp("families")
    return {name: build_family(name, root / name) for name in FAMILIES}


def assert_chat_model(out, family: str) -> None:
    """Loads with the Auto classes and answers through pipeline(); the template saved is the family's own."""
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert tokenizer.chat_template == FAMILIES[family].chat_template()
    model = AutoModelForCausalLM.from_pretrained(out)
    chat = pipeline("text-generation", model=model, tokenizer=tokenizer)
    reply = chat(CHAT, max_new_tokens=3, do_sample=False)[0]["generated_text"]
    assert reply[-1]["role"] == "assistant"


@pytest.mark.parametrize("family", list(FAMILIES))
def test_sft_full_keeps_the_family_template(families, family, tmp_path):
    out = tmp_path / "sft"
    assistant_only = family in TRL_KNOWN  # TRL swaps in its training template for the families it knows
    run_recipe(
        "text/sft.py",
        *("--config", CONFIGS / "sft_tiny.yaml", "--model_name_or_path", families[family]),
        *("--chat_template_path", "", "--assistant_only_loss", str(assistant_only).lower()),
        *("--dataset_name", "builtin:arithmetic?n=60&digits=1&seed=0", "--forgetting_text", ""),
        *("--eval_steps", "2", "--output_dir", out, *TWO_STEPS, *SHORT_EVAL),
    )
    lineage = json.loads((out / "lineage.json").read_text())
    assert lineage["chat_template"] == {
        "source": "model",
        "added_tokens": 0,
        "training_template": "trl" if assistant_only else None,
    }
    assert lineage["model_loading"]["dtype"] == "float32"
    assert_chat_model(out, family)


def test_mistral_assistant_only_loss_is_refused_with_trls_remedy(families, tmp_path):
    with pytest.raises(RecipeInputError, match=r"not training-compatible.*assistant_only_loss: false"):
        run_recipe(
            "text/sft.py",
            *("--config", CONFIGS / "sft_tiny.yaml", "--model_name_or_path", families["mistral"]),
            *("--chat_template_path", "", "--output_dir", tmp_path / "out", *TWO_STEPS),
        )


@pytest.mark.parametrize("family", list(FAMILIES))
def test_sft_lora_merges_into_a_loadable_model(families, family, tmp_path):
    out = tmp_path / "lora"
    run_recipe(
        "text/sft.py",
        *("--config", CONFIGS / "sft_lora_tiny.yaml", "--model_name_or_path", families[family]),
        *(
            "--chat_template_path",
            "",
            "--assistant_only_loss",
            "false",
            "--lora_target_modules",
            "all-linear",
        ),
        *("--dataset_name", "builtin:arithmetic?n=60&digits=1&seed=0", "--forgetting_text", ""),
        *("--eval_steps", "2", "--output_dir", out, *TWO_STEPS, *SHORT_EVAL),
    )
    assert (out / "adapter_config.json").is_file()
    assert_chat_model(out / "merged", family)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_reward_model_from_every_family(families, family, tmp_path):
    out = tmp_path / "reward"
    run_recipe(
        "text/reward.py",
        *("--config", CONFIGS / "reward_tiny.yaml", "--model_name_or_path", families[family]),
        *("--dataset_name", "builtin:preferences?n=60&digits=1&seed=0&ops=add,sub", "--eval_steps", "2"),
        *("--output_dir", out, *TWO_STEPS),
    )
    assert AutoTokenizer.from_pretrained(out).chat_template == FAMILIES[family].chat_template()
    model = AutoModelForSequenceClassification.from_pretrained(out)
    assert model.config.num_labels == 1 and model.config.pad_token_id is not None
    scores = pipeline("text-classification", model=model, tokenizer=AutoTokenizer.from_pretrained(out))
    assert len(scores(["5", "six"], function_to_apply="none")) == 2


@pytest.mark.parametrize("family", list(FAMILIES))
def test_dpo_from_every_family(families, family, tmp_path):
    out = tmp_path / "dpo"
    run_recipe(
        "text/dpo.py",
        *("--config", CONFIGS / "dpo_tiny.yaml", "--model_name_or_path", families[family]),
        *(
            "--dataset_name",
            "builtin:preferences?n=60&digits=1&seed=1&ops=add,sub",
            "--reward_model_path",
            "",
        ),
        *("--eval_steps", "2", "--output_dir", out, *TWO_STEPS, *SHORT_EVAL),
    )
    assert_chat_model(out, family)


@pytest.mark.parametrize("algorithm", ["grpo", "rloo"])
@pytest.mark.parametrize("family", list(FAMILIES))
def test_online_rl_from_every_family(families, family, algorithm, tmp_path):
    out = tmp_path / algorithm
    run_recipe(
        "text/grpo.py",
        *("--config", CONFIGS / f"{algorithm}_tiny.yaml", "--model_name_or_path", families[family]),
        *("--dataset_name", "builtin:chat-mix?arithmetic_rows=40&safety_rows=10&digits=1&seed=7&ops=add,sub"),
        *(
            "--num_generations",
            "2",
            "--max_completion_length",
            "4",
            "--output_dir",
            out,
            *TWO_STEPS,
            *SHORT_EVAL,
        ),
    )
    assert_chat_model(out, family)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_distillation_from_every_family_teacher(families, family, tmp_path):
    out = tmp_path / "distill"
    run_recipe(
        "text/distill.py",
        *("--config", CONFIGS / "distill_chat_tiny.yaml", "--teacher_model_name_or_path", families[family]),
        *("--dataset_name", "builtin:arithmetic?n=80&digits=1&seed=0", "--max_train_documents", "20"),
        *("--compare_with_scratch", "false", "--output_dir", out, *TWO_STEPS, *SHORT_EVAL),
    )
    assert_chat_model(out, family)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_replies_stop_at_the_family_end_of_turn(families, family):
    tokenizer = AutoTokenizer.from_pretrained(families[family])
    model = AutoModelForCausalLM.from_pretrained(families[family])
    end = {"llama3": "<|eot_id|>", "qwen2.5": "<|im_end|>", "qwen3": "<|im_end|>", "gemma3": "<end_of_turn>"}
    end |= {"phi3": "<|end|>", "mistral": "</s>"}
    assert tokenizer.convert_ids_to_tokens(end_of_turn_token_id(tokenizer)) == end[family]
    assert tokenizer.convert_tokens_to_ids(end[family]) in stop_token_ids(tokenizer, model)


def test_chatml_on_a_family_without_its_tokens_is_cloned_in(families):
    tokenizer = AutoTokenizer.from_pretrained(families["llama3"])
    model = AutoModelForCausalLM.from_pretrained(families["llama3"])
    before = len(tokenizer)
    record = prepare_chat_template(model, tokenizer, "chatml", assistant_only_loss=True)
    assert record.added_tokens >= 2 and len(tokenizer) > before
    assert model.get_input_embeddings().num_embeddings == len(tokenizer.vocab)
    assert tokenizer.eos_token == "<|im_end|>" and "{% generation %}" in tokenizer.chat_template
    with torch.no_grad():  # the resized model still runs on the new ids
        model(torch.tensor([tokenizer.convert_tokens_to_ids(["<|im_start|>", "<|im_end|>"])]))


@pytest.mark.parametrize("option", ["load_in_4bit", "load_in_8bit"])
def test_kbit_request_on_cpu_is_refused_by_name(families, option, tmp_path):
    with pytest.raises(RecipeInputError, match=rf"^{option} needs a CUDA GPU"):
        model_loading(ModelConfig(model_name_or_path="x", use_peft=True, **{option: True}))
    with pytest.raises(RecipeInputError, match=rf"^{option} needs a CUDA GPU"):
        run_recipe(
            "text/sft.py",
            *("--config", CONFIGS / "sft_lora_tiny.yaml", "--model_name_or_path", families["qwen2.5"]),
            *(f"--{option}", "true", "--output_dir", tmp_path / "out"),
        )
    assert not (tmp_path / "out").exists()  # refused before any work


def test_dtype_is_honoured_and_recorded(families, tmp_path):
    out = tmp_path / "bf16"
    run_recipe(
        "text/sft.py",
        *("--config", CONFIGS / "sft_tiny.yaml", "--model_name_or_path", families["qwen2.5"]),
        *(
            "--chat_template_path",
            "",
            "--dtype",
            "bfloat16",
            "--dataset_name",
            "builtin:arithmetic?n=60&seed=0",
        ),
        *("--forgetting_text", "", "--eval_steps", "2", "--output_dir", out, *TWO_STEPS, *SHORT_EVAL),
    )
    assert AutoModelForCausalLM.from_pretrained(out, dtype="auto").dtype == torch.bfloat16
    lineage = json.loads((out / "lineage.json").read_text())
    assert lineage["model_loading"]["dtype"] == "bfloat16"
    assert (
        "loaded with" in (out / "README.md").read_text()
        and "dtype `bfloat16`" in (out / "README.md").read_text()
    )
