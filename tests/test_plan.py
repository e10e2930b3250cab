"""`hfrecipes plan`: parameter counts, the optimizer/gradient accounting against a real AdamW step, the estimate
against the measured peak RSS of training steps, sharding, and the command's output and errors."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

from hfrecipes.cli.commands import main
from hfrecipes.lifecycle.plan import GIB, model_shape, plan_config
from hfrecipes.text.families import FAMILIES, build_family

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "recipes" / "text" / "configs"
ACCELERATE = ROOT / "accelerate_configs"
# The peak RSS of two training steps on CPU is within this fraction of the estimated total.
RSS_TOLERANCE = 0.15


@pytest.fixture(scope="module")
def families(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("families")
    built = {name: build_family(name, root / name) for name in FAMILIES}
    built["llama3-bias"] = build_family("llama3", root / "llama3-bias", attention_bias=True, mlp_bias=True)
    built["qwen2.5-untied"] = build_family("qwen2.5", root / "qwen2.5-untied", tie_word_embeddings=False)
    return built


def _write(path: Path, values: dict) -> Path:
    path.write_text(yaml.safe_dump(values))
    return path


def test_parameter_counts_match_num_parameters(families: dict[str, Path]) -> None:
    for name, directory in families.items():
        shape = model_shape(str(directory))
        model = AutoModelForCausalLM.from_pretrained(directory)
        assert shape.num_parameters() == model.num_parameters(), name
        reward = AutoModelForSequenceClassification.from_pretrained(directory, num_labels=1)
        assert shape.num_parameters("reward") == reward.num_parameters(), name


def test_published_parameter_counts() -> None:
    published = {  # the model cards' / safetensors index counts
        "HuggingFaceTB/SmolLM2-135M": 134_515_008,
        "HuggingFaceTB/SmolLM2-360M-Instruct": 361_821_120,
        "HuggingFaceTB/SmolLM2-1.7B": 1_711_376_384,
        "alignment-handbook/zephyr-7b-sft-full": 7_241_732_096,
        "Qwen/Qwen2.5-1.5B-Instruct": 1_543_714_304,
        "meta-llama/Llama-3.1-8B": 8_030_261_248,
    }
    for name, count in published.items():
        assert model_shape(name).num_parameters() == count, name


@pytest.mark.parametrize("targets", ["all-linear", ["q_proj", "v_proj"], None])
def test_lora_parameters_match_peft(families: dict[str, Path], targets) -> None:
    for name in ("llama3", "qwen2.5", "phi3", "gemma3"):
        if name == "phi3" and targets != "all-linear":
            continue  # phi3's projections are fused (qkv_proj) and peft has no default targets for it
        model = AutoModelForCausalLM.from_pretrained(families[name])
        peft_model = get_peft_model(model, LoraConfig(r=8, target_modules=targets, task_type="CAUSAL_LM"))
        expected, _ = peft_model.get_nb_trainable_parameters()
        assert model_shape(str(families[name])).lora_parameters(8, targets)[0] == expected, (name, targets)


def test_weights_gradients_and_optimizer_match_an_adamw_step(
    families: dict[str, Path], tmp_path: Path
) -> None:
    directory = families["mistral"]
    config = _write(
        tmp_path / "sft_x.yaml",
        dict(model_name_or_path=str(directory), bf16=False, per_device_train_batch_size=2, max_length=32),
    )
    rows = plan_config(config).rows
    model = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    ids = torch.randint(0, model.config.vocab_size, (2, 32))
    model(input_ids=ids, labels=ids).loss.backward()
    optimizer.step()
    params = list(model.parameters())
    states = [  # the moments (AdamW's scalar step counters are not counted)
        t for p in params for t in optimizer.state[p].values() if t.shape == p.shape
    ]
    assert rows["weights"] == sum(p.nbytes for p in params)
    assert rows["gradients"] == sum(p.grad.nbytes for p in params)
    assert rows["optimizer states"] == sum(t.nbytes for t in states)


def test_estimate_matches_the_peak_rss_of_training_steps(tmp_path: Path) -> None:
    shape = dict(hidden_size=384, intermediate_size=1024, num_hidden_layers=6)
    shape |= dict(num_attention_heads=8, num_key_value_heads=8)
    config = _write(
        tmp_path / "pretrain_x.yaml",
        dict(
            model_preset="small",
            model_overrides=shape,
            vocab_size=8192,
            block_size=128,
            per_device_train_batch_size=4,
        ),
    )
    plan = plan_config(config)
    script = textwrap.dedent(
        f"""
        import torch
        from transformers import AutoModelForCausalLM
        from hfrecipes.text.models import preset_config

        def status(key):
            return next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith(key))

        torch.manual_seed(0)
        warm = AutoModelForCausalLM.from_config(preset_config("tiny", 256))  # kernels and libraries loaded
        w = torch.randint(0, 256, (2, 16))
        warm(input_ids=w, labels=w).loss.backward()
        del warm
        ids = torch.randint(0, 8192, (4, 128))
        base = status("VmRSS:")
        model = AutoModelForCausalLM.from_config(preset_config("small", 8192, {shape!r}))
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        for batch in (ids[:1, :8], ids):  # a short first step allocates the optimizer states for the measured one
            model(input_ids=batch, labels=batch).loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        print(status("VmHWM:") - base)
        """
    )
    # Large blocks from mmap, so freed memory leaves the RSS and the high-water mark is the real peak.
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "OMP_NUM_THREADS": "2"}
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True, timeout=300
    )
    measured = int(out.stdout.strip().splitlines()[-1])
    print(f"estimated {plan.total / 2**20:.1f} MiB, measured peak RSS increase {measured / 2**20:.1f} MiB")
    assert abs(measured - plan.total) <= RSS_TOLERANCE * plan.total


def test_zero_stages_shard_what_they_should(tmp_path: Path) -> None:
    config = CONFIGS / "dpo_zephyr_7b.yaml"
    world = 8
    stages = {}
    for stage in (0, 1, 2, 3):
        accelerate = dict(distributed_type="DEEPSPEED", num_processes=world, mixed_precision="bf16")
        accelerate["deepspeed_config"] = dict(zero_stage=stage)
        stages[stage] = plan_config(config, _write(tmp_path / f"zero{stage}.yaml", accelerate)).rows
    ddp, zero1, zero2, zero3 = stages[0], stages[1], stages[2], stages[3]
    assert zero1["optimizer states"] == pytest.approx(ddp["optimizer states"] / world)
    assert zero1["gradients"] == ddp["gradients"] and zero1["weights"] == ddp["weights"]
    assert zero2["gradients"] == pytest.approx(ddp["gradients"] / world)
    assert zero2["weights"] == ddp["weights"]
    assert zero3["gradients"] == zero2["gradients"] and zero3["optimizer states"] == zero2["optimizer states"]
    assert ddp["weights"] / world < zero3["weights"] < ddp["weights"] / world + GIB  # + the gathered layers
    assert zero3["reference model"] == pytest.approx(ddp["reference model"] / world)
    assert zero3["activations"] == ddp["activations"] and zero3["logits"] == ddp["logits"]
    # DDP replicates everything: fp32 weights (the config loads float32) under bf16 autocast
    replicated = plan_config(config, ACCELERATE / "ddp.yaml").rows
    params = model_shape("alignment-handbook/zephyr-7b-sft-full").num_parameters()
    assert replicated["weights"] == 4 * params and replicated["optimizer states"] == 8 * params


def test_ppo_zephyr_7b_fits_on_one_80gb_gpu(capsys: pytest.CaptureFixture) -> None:
    # Needs the LoRA actor-critic ppo_zephyr_7b.yaml (use_peft, bf16, gradient checkpointing).
    assert main(["plan", str(CONFIGS / "ppo_zephyr_7b.yaml")]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("fits on one 80 GB GPU: yes"), last


def test_the_shipped_full_scale_configs_plan(capsys: pytest.CaptureFixture) -> None:
    assert main(["plan", str(CONFIGS / "sft_lora_smollm2_1.7b.yaml")]) == 0
    assert (
        main(
            ["plan", str(CONFIGS / "grpo_gsm8k.yaml"), "--accelerate_config", str(ACCELERATE / "zero2.yaml")]
        )
        == 0
    )
    assert main(["plan", str(CONFIGS / "distill_smollm2_1.7b_to_135m.yaml")]) == 0
    out = capsys.readouterr().out
    assert out.count("fits on one 80 GB GPU: yes") == 3
    assert "vLLM (colocated)" in out and "teacher model" in out


def test_an_unknown_model_is_one_line_and_status_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    config = _write(tmp_path / "sft_unknown.yaml", dict(model_name_or_path="nobody/no-such-model-123"))
    assert main(["plan", str(config)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nobody/no-such-model-123" in err[0] and "local path" in err[0]
    assert "Traceback" not in err[0]
