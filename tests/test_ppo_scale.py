"""PPO at scale on tiny stand-ins: LoRA (actor = adapter, critic = value head on the adapted trunk, reference =
the base with the adapter disabled), bf16 and gradient checkpointing, k-bit refused without CUDA, and 2 updates
from each real model family's tiny checkpoint, stopping at the family's own end-of-turn token."""

from __future__ import annotations

import json

import pytest
import torch
from accelerate import Accelerator
from peft import AutoPeftModelForCausalLM, LoraConfig
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    pipeline,
)

from hfrecipes.core.errors import RecipeInputError
from hfrecipes.text.families import FAMILIES, build_family
from hfrecipes.text.models import ModelLoading
from hfrecipes.text.ppo import VALUE_HEAD_FILE, DisabledAdapter, PPOConfig, PPOTrainer, build_policy
from hfrecipes.text.tokenization import load_tokenizer

from .conftest import ROOT, load_recipe, read_json, run_recipe

ppo_step = load_recipe("text/ppo_training.py").ppo_step
CONFIGS = ROOT / "recipes" / "text" / "configs"
LORA = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05, target_modules="all-linear", task_type="CAUSAL_LM")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models gain nothing from intra-op threads, and on a busy 2-core machine they cost ~10x."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def family_dir(tmp_path_factory):
    """family name -> a tiny random checkpoint of it (built once per module)."""
    root, built = tmp_path_factory.mktemp("families"), {}

    def get(name: str):
        if name not in built:
            built[name] = build_family(name, root / name)
        return built[name]

    return get


def chat_prompts(tokenizer, n: int = 8) -> list[str]:
    conversations = [[{"role": "user", "content": f"What is {i} + {i}?"}] for i in range(n)]
    return tokenizer.apply_chat_template(conversations, add_generation_prompt=True, tokenize=False)


def short_replies(prompts, completions, **columns) -> list[float]:
    return [-len(c) / 10 for c in completions]


def tiny_config(output_dir, **overrides) -> PPOConfig:
    values = dict(
        output_dir=str(output_dir),
        seed=3,
        num_updates=2,
        batch_size=4,
        mini_batch_size=2,
        ppo_epochs=1,
        learning_rate=1e-2,
        max_new_tokens=4,
    )
    return PPOConfig(**{**values, **overrides})


def trainer_for(path, config, peft_config=None, loading=None, accelerator=None) -> PPOTrainer:
    tokenizer = load_tokenizer(str(path))
    torch.manual_seed(config.seed)  # LoRA's A matrices are random: seeded as start_stage does
    policy = build_policy(str(path), loading or ModelLoading(), peft_config, config.gradient_checkpointing)
    reference = None if peft_config else AutoModelForCausalLM.from_pretrained(path)
    return PPOTrainer(
        config,
        policy,
        reference,
        tokenizer,
        short_replies,
        chat_prompts(tokenizer),
        accelerator=accelerator,
        step_fn=ppo_step,
    )


def test_lora_trains_only_the_adapter_and_value_head_and_the_reference_is_the_base(family_dir, tmp_path):
    path = family_dir("qwen2.5")
    trainer = trainer_for(path, tiny_config(tmp_path), peft_config=LORA)
    trainable = {n for n, p in trainer.unwrapped.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or n.startswith("value_head.") for n in trainable), trainable
    assert any(n.startswith("value_head.") for n in trainable)  # the critic sits on the policy's adapter
    optimized = sum(len(g["params"]) for g in trainer.optimizer.param_groups)
    assert optimized == len(trainable)  # the frozen base never reaches the optimizer
    # One copy of the weights: the reference is the policy's own base with the adapter switched off.
    assert isinstance(trainer.ref_policy, DisabledAdapter) and trainer.ref_policy.model is trainer.policy
    history = trainer.train()
    assert [h["update"] for h in history] == [1, 2]
    assert abs(history[0]["kl"]) < 1e-4  # LoRA's B starts at zero: policy == reference at the first rollout
    ids = torch.tensor([trainer.prompt_ids[0]])
    base = AutoModelForCausalLM.from_pretrained(path)
    with torch.no_grad():
        expected = base(input_ids=ids).logits
        torch.testing.assert_close(trainer.ref_policy(input_ids=ids).logits, expected)
        assert not torch.allclose(trainer.policy(input_ids=ids).logits, expected)  # the adapter has learned
    # The saved adapter loads with peft and gives the trained policy; the value head is beside it.
    trainer.save_model(tmp_path / "final")
    assert (tmp_path / "final" / VALUE_HEAD_FILE).is_file()
    assert not (tmp_path / "final" / "model.safetensors").exists()
    with torch.no_grad():
        loaded = AutoPeftModelForCausalLM.from_pretrained(tmp_path / "final")
        torch.testing.assert_close(loaded(input_ids=ids).logits, trainer.policy(input_ids=ids).logits)


def test_lora_resume_reproduces_the_uninterrupted_run(family_dir, tmp_path):
    path = family_dir("qwen2.5")
    straight = trainer_for(path, tiny_config(tmp_path / "a", num_updates=3), LORA).train()
    trainer_for(path, tiny_config(tmp_path / "b", num_updates=2, save_steps=2), LORA).train()
    assert (tmp_path / "b" / "checkpoint-2" / "adapter_model.safetensors").is_file()
    resumed = trainer_for(path, tiny_config(tmp_path / "b", num_updates=3), LORA).train()
    for a, b in zip(straight, resumed, strict=True):
        assert {k: v for k, v in a.items() if k != "seconds"} == pytest.approx(
            {k: v for k, v in b.items() if k != "seconds"}, rel=1e-4, abs=1e-6
        )


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora-bf16-weights"])
def test_bf16_and_gradient_checkpointing_run_two_updates(family_dir, tmp_path, lora):
    path = family_dir("llama3")
    config = tiny_config(tmp_path, bf16=True, gradient_checkpointing=True)
    loading = ModelLoading(dtype="bfloat16") if lora else ModelLoading()
    accelerator = Accelerator(cpu=True, mixed_precision="bf16")
    trainer = trainer_for(path, config, LORA if lora else None, loading, accelerator)
    layers = [m for m in trainer.unwrapped.modules() if getattr(m, "gradient_checkpointing", False)]
    assert layers and trainer.unwrapped.training  # checkpointing acts in train mode only...
    assert all(
        m.p == 0 for m in trainer.unwrapped.modules() if isinstance(m, torch.nn.Dropout)
    )  # ...dropout off
    calls = []
    for layer in layers:
        layer._gradient_checkpointing_func = lambda f, *a, _inner=layer._gradient_checkpointing_func, **k: (
            calls.append(1) or _inner(f, *a, **k)
        )
    history = trainer.train()
    assert len(history) == 2 and all(torch.isfinite(torch.tensor(h["loss"])) for h in history)
    assert calls, "gradient checkpointing never ran"
    assert trainer.policy.dtype == (torch.bfloat16 if lora else torch.float32)
    assert trainer.unwrapped.value_head.weight.dtype == torch.float32


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_two_updates_from_each_family_stop_at_its_end_of_turn(family_dir, tmp_path, family):
    path = family_dir(family)
    trainer = trainer_for(path, tiny_config(tmp_path), LORA)
    tokenizer, spec = trainer.tokenizer, FAMILIES[family]
    stops = [tokenizer.convert_tokens_to_ids(t) for t in spec.stop]
    # The family's generation_config stop tokens, not only ChatML's.
    assert set(stops) <= set(trainer.stop_ids)
    if spec.bos:  # templates that write BOS themselves (Llama-3, Gemma-3, Mistral): no second one is added
        bos = tokenizer.convert_tokens_to_ids(spec.bos)
        for text, ids in zip(trainer.prompts, trainer.prompt_ids, strict=True):
            assert ids.count(bos) == text.count(spec.bos) <= 1, (family, text)
    # Make the family's last-listed stop token (its end of turn: <|eot_id|>, <end_of_turn>, <|end|>, ...) the
    # likeliest next token: every response must end right there, one token long.
    end_of_turn = stops[-1]

    def favour_end_of_turn(module, inputs, output):
        output[..., end_of_turn] += 50.0
        return output

    trainer.policy.get_output_embeddings().register_forward_hook(favour_end_of_turn)
    history = trainer.train()
    assert [h["update"] for h in history] == [1, 2]
    assert all(h["ended_with_stop"] == 1.0 and h["response_length"] == 1.0 for h in history), history


def reward_model_beside(policy_dir, directory):
    tokenizer = load_tokenizer(str(policy_dir))
    torch.manual_seed(0)
    config = AutoConfig.from_pretrained(policy_dir, num_labels=1, pad_token_id=tokenizer.pad_token_id)
    AutoModelForSequenceClassification.from_config(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


RECIPE_ARGS = (
    *("--config", CONFIGS / "ppo_lora_tiny.yaml", "--reward_funcs", "correctness"),
    *("--dataset_name", "builtin:chat-mix?arithmetic_rows=40&safety_rows=10&digits=1&seed=1&ops=add"),
    *(
        "--eval_fraction",
        "0.1",
        "--eval_max_samples",
        "2",
        "--eval_max_new_tokens",
        "4",
        "--num_updates",
        "2",
    ),
    *("--batch_size", "4", "--mini_batch_size", "2", "--ppo_epochs", "1", "--max_new_tokens", "6"),
)


def test_lora_recipe_saves_the_adapter_value_head_merged_model_and_loading_record(family_dir, tmp_path):
    policy = family_dir("llama3")
    reward = reward_model_beside(policy, tmp_path / "reward")
    out = tmp_path / "ppo"
    run_recipe(
        "text/ppo.py",
        *RECIPE_ARGS,
        *("--model_name_or_path", policy, "--reward_model_path", reward, "--reward_weights", "1.0", "0.5"),
        *("--merge_adapter", "true", "--save_steps", "1", "--output_dir", out),
    )
    assert (out / "adapter_config.json").is_file() and (out / VALUE_HEAD_FILE).is_file()
    assert read_json(out / "metrics.json")["updates"] == 2
    lineage = read_json(out / "lineage.json")
    assert lineage["model_loading"]["dtype"] == "float32" and lineage["model_loading"]["quantization"] is None
    assert json.loads((out / "adapter_config.json").read_text())["r"] == 16
    assert AutoPeftModelForCausalLM.from_pretrained(out)
    chat = pipeline("text-generation", model=str(out / "merged"))
    reply = chat([{"role": "user", "content": "What is 2 + 3?"}], max_new_tokens=3)[0]["generated_text"]
    assert reply[-1]["role"] == "assistant"


def test_load_in_4bit_without_cuda_stops_in_one_line_naming_the_option(family_dir, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(RecipeInputError) as error:
        run_recipe(
            "text/ppo.py",
            *RECIPE_ARGS,
            *("--model_name_or_path", family_dir("phi3"), "--reward_model_path", family_dir("phi3")),
            *("--use_peft", "true", "--load_in_4bit", "true"),
            *("--output_dir", tmp_path / "ppo"),
        )
    message = str(error.value)
    assert "load_in_4bit" in message and "\n" not in message
    assert not (tmp_path / "ppo").exists()
