import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GPT2Config, GPT2LMHeadModel

from hfrecipes.core.errors import RecipeInputError
from hfrecipes.text.models import get_causal_lm
from hfrecipes.text.quantization import SUPPORTED_MODEL_TYPES, load_quantized, quantized_layers

from .conftest import ROOT, read_json, run_recipe

QUANTIZE_TINY = ROOT / "recipes/text/configs/quantize_tiny.yaml"
# The held-out split of the shared tiny pretraining run (conftest.TINY_PRETRAIN's data settings).
HELDOUT = [
    *("--dataset_name", "builtin:python-stdlib", "--max_documents", "60", "--validation_fraction", "0.1"),
    *("--split_mode", "random", "--pipeline", "normalize", "drop_empty", "exact_dedup"),
]
FAST = [
    "--eval_max_documents",
    "20",
    "--speed_prompts",
    "2",
    "--speed_max_new_tokens",
    "16",
    "--speed_repeats",
    "1",
]


def quantize(model_dir, out, *overrides):
    run_recipe(
        "text/quantize.py",
        "--config",
        QUANTIZE_TINY,
        *HELDOUT,
        *FAST,
        "--model_name_or_path",
        model_dir,
        "--output_dir",
        out,
        *overrides,
    )
    return read_json(out / "metrics.json")


def test_torchao_int8_model_is_int8_on_disk_loads_and_generates(tiny_pretrain_run, tmp_path):
    out = tmp_path / "int8"
    metrics = quantize(tiny_pretrain_run, out)
    assert metrics["quantized_layers"] == 3 * 7  # q, k, v, o, gate, up, down in each of the 3 layers
    assert metrics["size_ratio"] < 0.45  # int8 linear weights; the float embedding is what remains
    assert abs(metrics["heldout_nats_per_char_delta"]) < 0.05
    assert metrics["tokens_per_second"] > 0 and metrics["tokens_per_second_before"] > 0
    assert not [
        p.name for p in out.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".pkl")
    ]  # safetensors only
    # The standard class loads it (torchao rebuilds the int8 tensors from the safetensors metadata) and it generates.
    model = AutoModelForCausalLM.from_pretrained(out)
    assert quantized_layers(model) == 21
    tokenizer = AutoTokenizer.from_pretrained(out)
    ids = tokenizer("def ", return_tensors="pt")
    generated = model.generate(**ids, max_new_tokens=8, min_new_tokens=8, do_sample=False)
    assert generated.shape[1] == ids["input_ids"].shape[1] + 8
    float_model = AutoModelForCausalLM.from_pretrained(tiny_pretrain_run)
    with torch.no_grad():
        assert torch.allclose(model(**ids).logits, float_model(**ids).logits, atol=0.1)
    assert (out / "lineage.json").is_file() and "weights on disk" in (out / "README.md").read_text()


def test_torch_builtin_backend_quantises_at_load(tiny_pretrain_run, tmp_path):
    out = tmp_path / "torch"
    metrics = quantize(tiny_pretrain_run, out, "--backend", "torch")
    assert metrics["quantized_layers"] == 21 and abs(metrics["heldout_nats_per_char_delta"]) < 0.05
    assert metrics["size_ratio"] == pytest.approx(1.0, abs=0.01)  # float weights on disk, int8 at load
    model = load_quantized(out)
    assert quantized_layers(model) == 21
    assert model.generate(torch.tensor([[5, 6, 7]]), max_new_tokens=4, do_sample=False).shape == (1, 7)


def save(model, path):
    model.save_pretrained(path)
    return path


@pytest.mark.parametrize(
    ("make", "overrides", "message"),
    [
        (
            lambda p: save(GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=1, n_head=2, vocab_size=64)), p),
            [],
            r"Model type 'gpt2' is not supported.*Conv1D.*Supported model types: .*llama",
        ),
        (
            lambda p: save(
                get_causal_lm(model_name_or_path=None, preset="tiny", vocab_size=64, head="reward").model, p
            ),
            [],
            "LlamaForSequenceClassification model; this recipe quantises causal LMs",
        ),
        (lambda p: (p.mkdir(), (p / "adapter_config.json").write_text("{}"), p)[-1], [], "is a LoRA adapter"),
        (
            lambda p: save(get_causal_lm(model_name_or_path=None, preset="tiny", vocab_size=64).model, p),
            ["--backend", "torch", "--method", "int8_weight_only"],
            "The torch backend offers",
        ),
        (lambda p: p, ["--backend", "bitsandbytes"], "Unknown quantisation backend"),
    ],
)
def test_unsupported_models_and_options_are_refused(tmp_path, make, overrides, message):
    model_dir = make(tmp_path / "model")
    with pytest.raises(RecipeInputError, match=message):
        run_recipe(
            "text/quantize.py",
            "--config",
            QUANTIZE_TINY,
            "--model_name_or_path",
            model_dir,
            "--output_dir",
            tmp_path / "out",
            *overrides,
        )
    assert not (tmp_path / "out").exists()


def test_supported_types_include_the_presets():
    assert AutoConfig.for_model("llama").model_type in SUPPORTED_MODEL_TYPES
