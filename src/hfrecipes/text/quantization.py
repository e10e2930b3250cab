"""Post-training int8 quantisation of a causal-LM stage for CPU deployment, saved as safetensors.

Backends:
- `torchao` (default): `Int8DynamicActivationInt8WeightConfig` (int8 weights, activations quantised per token at
  run time) or `Int8WeightOnlyConfig` (int8 weights, float activations), applied through transformers'
  `TorchAoConfig`. transformers flattens torchao's `Int8Tensor` into plain safetensors tensors plus JSON metadata,
  so the output is int8 on disk and loads with `AutoModelForCausalLM.from_pretrained(dir)` (torchao installed).
- `torch`: torch's built-in `torch.ao.quantization.quantize_dynamic` (int8 `nn.Linear`, fbgemm/x86 kernels).
  Its packed weights only serialise through pickle, which this project does not write, so the directory keeps
  the float32 safetensors and `quantization.json`; `load_quantized(dir)` applies the quantisation at load. It
  saves memory and time at run time, not disk. (PyTorch has deprecated these built-ins in favour of torchao.)

Both quantise the decoder's `nn.Linear` layers; embeddings and the (often tied) LM head stay in float.
"""

from __future__ import annotations

import json
import statistics
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from torch.ao.nn.quantized.dynamic import Linear as DynamicQuantizedLinear
from torch.ao.quantization import quantize_dynamic
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    TorchAoConfig,
)

from hfrecipes.core.errors import RecipeInputError
from hfrecipes.core.io import atomic_write_json
from hfrecipes.text.models import ModelLoading

BACKENDS = ("torchao", "torch")
METHODS = {"torchao": ("int8_dynamic", "int8_weight_only"), "torch": ("int8_dynamic",)}
RECIPE_FILE = "quantization.json"
# Architectures whose decoder layers are torch.nn.Linear and whose quantised forward and generate were checked
# with torchao 0.18 (both methods) and torch's quantize_dynamic, on tiny random configs: build, quantise, save,
# reload with AutoModelForCausalLM, generate.
SUPPORTED_MODEL_TYPES = (
    "bloom",
    "gemma",
    "gemma2",
    "gemma3_text",
    "gpt_neox",
    "granite",
    "llama",
    "mistral",
    "olmo2",
    "opt",
    "phi",
    "phi3",
    "qwen2",
    "qwen3",
    "smollm3",
)
KNOWN_UNSUPPORTED = {
    "gpt2": "its attention and MLP layers are transformers' Conv1D, not nn.Linear, so nothing would be quantised",
    "falcon": "torchao's Int8Tensor has no aten.permute, which FalconLinear's forward needs",
}


def check_quantize_options(backend: str, method: str) -> None:
    """Refuse an unknown backend or method (arguments only: nothing is read)."""
    if backend not in BACKENDS:
        raise RecipeInputError(f"Unknown quantisation backend {backend!r}; use one of {BACKENDS}.")
    if method not in METHODS[backend]:
        raise RecipeInputError(f"The {backend} backend offers {METHODS[backend]}, not {method!r}.")


def check_quantizable(model_name_or_path: str, backend: str, method: str) -> Any:
    """Refuse what the int8 path cannot quantise, before loading weights: returns the model's config."""
    check_quantize_options(backend, method)
    path = Path(model_name_or_path)
    if (path / "adapter_config.json").is_file() and not (path / "config.json").is_file():
        raise RecipeInputError(
            f"{model_name_or_path} is a LoRA adapter, not a model: quantise the merged model instead (sft.py "
            "with `merge_adapter: true` writes it to <output_dir>/merged)."
        )
    try:
        config = AutoConfig.from_pretrained(model_name_or_path)
    except (OSError, ValueError) as err:
        raise RecipeInputError(f"Could not read a model config from {model_name_or_path!r}: {err}") from err
    if getattr(config, "quantization_config", None):
        raise RecipeInputError(
            f"{model_name_or_path} is already quantised; quantise the float model it came from."
        )
    if config.model_type not in SUPPORTED_MODEL_TYPES:
        why = KNOWN_UNSUPPORTED.get(config.model_type, "it has not been checked with this int8 path")
        raise RecipeInputError(
            f"Model type {config.model_type!r} is not supported by the {backend} int8 path: {why}. Supported model "
            f"types: {', '.join(SUPPORTED_MODEL_TYPES)}."
        )
    architectures = config.architectures or []
    if not any(a.endswith("ForCausalLM") for a in architectures):
        raise RecipeInputError(
            f"{model_name_or_path} is a {', '.join(architectures) or config.model_type} model; this recipe "
            "quantises causal LMs (text generation) only, e.g. pretrain.py / sft.py / distill.py outputs."
        )
    return config


def _torchao_config(method: str) -> Any:
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, Int8WeightOnlyConfig

    quant_type = (
        Int8DynamicActivationInt8WeightConfig() if method == "int8_dynamic" else Int8WeightOnlyConfig()
    )
    return TorchAoConfig(quant_type)


def _torch_dynamic(model: PreTrainedModel) -> PreTrainedModel:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning)  # the built-ins' deprecation notices
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        quantize_dynamic(model.base_model, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)
    return model


def quantized_layers(model: torch.nn.Module) -> int:
    """How many layers hold int8 weights (torchao tensors or torch's dynamic quantised Linear)."""
    return sum(
        isinstance(module, DynamicQuantizedLinear)
        or type(getattr(module, "weight", None)).__name__ == "Int8Tensor"
        for module in model.modules()
    )


def quantize_model(
    model_name_or_path: str, backend: str, method: str, loading: ModelLoading | None = None
) -> PreTrainedModel:
    """Load a float causal LM (with `loading`'s revision, attention and remote-code options) and quantise it
    (CPU, float32 compute)."""
    check_quantizable(model_name_or_path, backend, method)
    kwargs = (loading or ModelLoading()).float32_kwargs()
    if backend == "torchao":
        model = AutoModelForCausalLM.from_pretrained(
            model_name_or_path, quantization_config=_torchao_config(method), use_safetensors=True, **kwargs
        )
    else:
        model = _torch_dynamic(
            AutoModelForCausalLM.from_pretrained(model_name_or_path, use_safetensors=True, **kwargs)
        )
    if not quantized_layers(model):
        raise RecipeInputError(
            f"The {backend} backend found no nn.Linear layer to quantise in {model_name_or_path}."
        )
    return model.eval()


def save_quantized(
    model: PreTrainedModel, directory: Path, *, backend: str, method: str, source: str
) -> dict[str, Any]:
    """Write the model (safetensors only) and `quantization.json`, which `load_quantized` reads."""
    recipe = {
        "backend": backend,
        "method": method,
        "source": source,
        "quantized_layers": quantized_layers(model),
    }
    if backend == "torchao":
        model.save_pretrained(directory)  # int8 tensors flattened into safetensors + torchao metadata
    else:  # packed fbgemm weights need pickle: keep the float weights, quantise at load
        AutoModelForCausalLM.from_pretrained(
            source, dtype=torch.float32, use_safetensors=True
        ).save_pretrained(directory)
        recipe["applied_at_load"] = True
    atomic_write_json(directory / RECIPE_FILE, recipe)
    return recipe


def load_quantized(directory: str | Path) -> PreTrainedModel:
    """Load a quantize.py output ready to run: torchao outputs load as they are (AutoModelForCausalLM works
    too); `torch` outputs get torch's dynamic int8 quantisation applied now."""
    directory = Path(directory)
    recipe_file = directory / RECIPE_FILE
    if not recipe_file.is_file():
        raise RecipeInputError(f"{directory} has no {RECIPE_FILE}: it is not a quantize.py output.")
    recipe = json.loads(recipe_file.read_text())
    model = AutoModelForCausalLM.from_pretrained(directory, use_safetensors=True)
    if recipe["backend"] == "torch":
        model = _torch_dynamic(model)
    return model.eval()


def weights_bytes(directory: str | Path) -> int:
    """Size on disk of the weights (every *.safetensors file)."""
    return sum(p.stat().st_size for p in Path(directory).glob("*.safetensors"))


@torch.no_grad()
def generation_speed(
    models: dict[str, PreTrainedModel],
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[str],
    max_new_tokens: int = 64,
    repeats: int = 3,
) -> dict[str, float]:
    """Greedy decoding tokens per second (batch 1, exactly `max_new_tokens` per prompt) for each model, runs
    interleaved so that load on a shared machine hits every model alike; median over `repeats` rounds after
    one warm-up."""
    encoded = [tokenizer(p, return_tensors="pt", add_special_tokens=False) for p in prompts]
    rounds: dict[str, list[float]] = {name: [] for name in models}
    for round_index in range(repeats + 1):
        for name, model in models.items():
            started = time.perf_counter()
            for inputs in encoded:
                model.generate(
                    **inputs,
                    max_new_tokens=max_new_tokens,
                    min_new_tokens=max_new_tokens,
                    do_sample=False,
                    pad_token_id=tokenizer.pad_token_id,
                )
            if round_index:  # the first round warms up
                rounds[name].append(max_new_tokens * len(encoded) / (time.perf_counter() - started))
    return {name: statistics.median(values) for name, values in rounds.items()}
