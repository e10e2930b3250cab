"""`hfrecipes plan`: how much GPU memory a text recipe's config needs per GPU, before anything is downloaded.

The model's shape comes from a local path or the local Hugging Face cache (`AutoConfig`), a preset
(`CAUSAL_LM_PRESETS`), the stage that makes a `runs/...` input (the catalogue), or `KNOWN_ARCHITECTURES`, the
published config.json of the public models the shipped configs name. The accounting is the standard one (the ZeRO
paper, Hugging Face's model memory estimator): per trainable parameter 2 bytes of 16-bit weights, 4 of fp32 master
weights and 8 of Adam moments, gradients 2 (16-bit) or 4 (fp32) bytes; frozen models are weights only; activations
are counted per decoder layer from the tensors autograd saves (measured on Llama-class layers with SDPA).
"""

from __future__ import annotations

import json
import shlex
from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml
from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING
from transformers import AutoConfig, PretrainedConfig, TrainingArguments
from trl import DPOConfig, GRPOConfig, ModelConfig, RewardConfig, RLOOConfig, SFTConfig

from hfrecipes.core.catalogue import recipe_catalogue, stage_producer
from hfrecipes.core.errors import RecipeInputError
from hfrecipes.text.models import CAUSAL_LM_PRESETS
from hfrecipes.text.ppo import PPOConfig

GIB = 1024**3
DTYPE_BYTES = {"float32": 4, "float": 4, "bfloat16": 2, "float16": 2, "half": 2}
# An "80 GB" H100/A100 shows 79.6 GiB to torch; 1.5 GiB of it goes to the CUDA context, NCCL and cuBLAS workspaces.
GPU_GIB, RESERVED_GIB = 79.6, 1.5

# Published config.json of the public causal LMs the shipped configs name (or that users start from), so a plan
# needs no download. Keys are AutoConfig's; model_type picks the layer layout.
_SMOLLM2 = dict(model_type="llama", vocab_size=49152, tie_word_embeddings=True)
_MISTRAL_7B = dict(
    model_type="mistral",
    vocab_size=32000,
    hidden_size=4096,
    intermediate_size=14336,
    num_hidden_layers=32,
    num_attention_heads=32,
    num_key_value_heads=8,
    tie_word_embeddings=False,
)
_LLAMA3 = dict(model_type="llama", vocab_size=128256, num_key_value_heads=8)
_QWEN25 = dict(model_type="qwen2", vocab_size=151936, tie_word_embeddings=True)
KNOWN_ARCHITECTURES: dict[str, dict[str, Any]] = {
    "HuggingFaceTB/SmolLM-135M": {**_SMOLLM2, **dict(hidden_size=576, intermediate_size=1536)}
    | dict(num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3),
    "HuggingFaceTB/SmolLM2-135M": {**_SMOLLM2, **dict(hidden_size=576, intermediate_size=1536)}
    | dict(num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3),
    "HuggingFaceTB/SmolLM2-360M": {**_SMOLLM2, **dict(hidden_size=960, intermediate_size=2560)}
    | dict(num_hidden_layers=32, num_attention_heads=15, num_key_value_heads=5),
    "HuggingFaceTB/SmolLM2-1.7B": {**_SMOLLM2, **dict(hidden_size=2048, intermediate_size=8192)}
    | dict(num_hidden_layers=24, num_attention_heads=32, num_key_value_heads=32),
    "alignment-handbook/zephyr-7b-sft-full": _MISTRAL_7B,
    "HuggingFaceH4/zephyr-7b-beta": _MISTRAL_7B,
    "mistralai/Mistral-7B-v0.1": _MISTRAL_7B,
    "mistralai/Mistral-7B-Instruct-v0.2": _MISTRAL_7B,
    "Qwen/Qwen2.5-0.5B": {**_QWEN25, **dict(hidden_size=896, intermediate_size=4864)}
    | dict(num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2),
    "Qwen/Qwen2.5-1.5B": {**_QWEN25, **dict(hidden_size=1536, intermediate_size=8960)}
    | dict(num_hidden_layers=28, num_attention_heads=12, num_key_value_heads=2),
    "Qwen/Qwen2.5-7B": {**_QWEN25, **dict(vocab_size=152064, tie_word_embeddings=False)}
    | dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28)
    | dict(num_attention_heads=28, num_key_value_heads=4),
    "meta-llama/Llama-3.2-1B": {**_LLAMA3, **dict(hidden_size=2048, intermediate_size=8192)}
    | dict(num_hidden_layers=16, num_attention_heads=32, tie_word_embeddings=True),
    "meta-llama/Llama-3.2-3B": {**_LLAMA3, **dict(hidden_size=3072, intermediate_size=8192)}
    | dict(num_hidden_layers=28, num_attention_heads=24, tie_word_embeddings=True),
    "meta-llama/Llama-3.1-8B": {**_LLAMA3, **dict(hidden_size=4096, intermediate_size=14336)}
    | dict(num_hidden_layers=32, num_attention_heads=32, tie_word_embeddings=False),
}
# Instruct variants share their base model's shape.
KNOWN_ARCHITECTURES |= {f"{name}-Instruct": shape for name, shape in list(KNOWN_ARCHITECTURES.items())}

# The text recipes `plan` knows, by script, and the TRL/transformers config class whose defaults they use.
RECIPE_DEFAULTS = {
    "text/pretrain.py": TrainingArguments,
    "text/sft.py": SFTConfig,
    "text/rag.py": SFTConfig,
    "text/reward.py": RewardConfig,
    "text/dpo.py": DPOConfig,
    "text/grpo.py": GRPOConfig,
    "text/distill.py": SFTConfig,  # GKDConfig (trl.experimental) subclasses SFTConfig: same batch and length
    "text/ppo.py": PPOConfig,
}
# Defaults of the recipe scripts' own arguments (the library never imports a recipe).
PRETRAIN_BLOCK_SIZE, DISTILL_BLOCK_SIZE, NEW_TOKENIZER_VOCAB, RAG_TOKENIZER_VOCAB = 256, 128, 1024, 2048
PROMPT_TOKENS = (
    512  # PPO and GRPO configs bound the response, not the prompt: assumed unless max_prompt_length
)
# Activation bytes per token and decoder layer = bytes × (C·hidden + 2·kv_dim + 4·intermediate): the tensors a
# Llama-class layer saves for backward with SDPA attention (measured with saved_tensors_hooks: C = 8 in fp32, 10 in
# bf16, where RMSNorm keeps fp32 copies). Logits: the fp32 copy for the loss and its log-softmax, 8 bytes a token.
LAYER_HIDDEN_FACTOR = {4: 8, 2: 10}
LOGITS_BYTES = 8
# Optimizer state bytes per trainable parameter, beyond the weights (bf16 runs add a 4-byte fp32 master copy).
OPTIMIZER_BYTES = {"adamw": 8, "adam": 8, "8bit": 2, "adafactor": 4, "lion": 4, "sgd": 4}


def dtype_bytes(dtype: Any) -> int | None:
    """Bytes a parameter for a dtype name or torch dtype; None for "auto" or nothing."""
    return DTYPE_BYTES.get(str(dtype).removeprefix("torch.")) if dtype not in (None, "auto") else None


@dataclass(frozen=True)
class ModelShape:
    """A decoder-only transformer's shape: enough to count its parameters and size its activations."""

    source: str
    model_type: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    tie_word_embeddings: bool
    attention_bias: bool = False
    mlp_bias: bool = False
    note: str = ""
    saved_bytes: int = (
        4  # bytes a parameter in the checkpoint (what `dtype="auto"`, transformers' default, loads)
    )

    @classmethod
    def from_config(cls, config: PretrainedConfig, source: str, note: str = "") -> ModelShape:
        """The shape of a transformers config (the text part of a multimodal one)."""
        text = config.get_text_config()
        heads = text.num_attention_heads
        return cls(
            source=source,
            model_type=text.model_type,
            vocab_size=text.vocab_size,
            hidden_size=text.hidden_size,
            intermediate_size=text.intermediate_size,
            num_hidden_layers=text.num_hidden_layers,
            num_attention_heads=heads,
            num_key_value_heads=getattr(text, "num_key_value_heads", None) or heads,
            head_dim=getattr(text, "head_dim", None) or text.hidden_size // heads,
            tie_word_embeddings=bool(
                getattr(config, "tie_word_embeddings", getattr(text, "tie_word_embeddings", True))
            ),
            attention_bias=bool(getattr(text, "attention_bias", False)),
            mlp_bias=bool(getattr(text, "mlp_bias", False)),
            note=note,
            saved_bytes=dtype_bytes(getattr(config, "dtype", None)) or 4,
        )

    def linears(self) -> dict[str, tuple[int, int]]:
        """One decoder layer's linear layers by module name: (in_features, out_features)."""
        h, q, kv, i = (
            self.hidden_size,
            self.num_attention_heads * self.head_dim,
            self.num_key_value_heads * self.head_dim,
            self.intermediate_size,
        )
        if self.model_type == "phi3":  # fused projections
            return {
                "qkv_proj": (h, q + 2 * kv),
                "o_proj": (q, h),
                "gate_up_proj": (h, 2 * i),
                "down_proj": (i, h),
            }
        attention = {"q_proj": (h, q), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (q, h)}
        return attention | {"gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}

    def layer_parameters(self) -> int:
        """Parameters of one decoder layer: projections, their biases, norms (Gemma 3: four, Qwen 3 / Gemma 3:
        per-head q/k norms too)."""
        linears = self.linears()
        count = sum(n_in * n_out for n_in, n_out in linears.values())
        q, kv = self.num_attention_heads * self.head_dim, self.num_key_value_heads * self.head_dim
        if self.model_type == "qwen2":  # q, k and v have biases, o does not
            count += q + 2 * kv
        elif self.attention_bias:
            count += q + 2 * kv + self.hidden_size
        if self.mlp_bias:
            count += 2 * self.intermediate_size + self.hidden_size
        norms = 4 if self.model_type.startswith("gemma3") else 2
        count += norms * self.hidden_size
        if self.model_type.startswith(("qwen3", "gemma3")):
            count += 2 * self.head_dim
        return count

    def num_parameters(self, head: str = "causal-lm") -> int:
        """All parameters (as `model.num_parameters()` counts them); head "reward" swaps the LM head for a
        one-output score layer (AutoModelForSequenceClassification)."""
        embed = self.vocab_size * self.hidden_size
        out = self.hidden_size if head == "reward" else 0 if self.tie_word_embeddings else embed
        return embed + out + self.num_hidden_layers * self.layer_parameters() + self.hidden_size

    def lora_parameters(
        self, r: int, targets: list[str] | str | None, use_dora: bool = False
    ) -> tuple[int, list[str]]:
        """Trainable LoRA parameters for rank `r` on `targets` ("all-linear", module names, or None for peft's
        default for the architecture), and the module names hit."""
        linears = self.linears()
        if targets is None:
            targets = TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING.get(self.model_type)
            if targets is None:
                raise RecipeInputError(
                    f"peft has no default LoRA targets for {self.model_type}: set lora_target_modules."
                )
        if isinstance(targets, str):
            targets = list(linears) if targets == "all-linear" else [targets]
        hit = [name for name in linears if name in targets]
        if not hit:
            raise RecipeInputError(
                f"lora_target_modules {targets} names none of {self.source}'s linear layers: {', '.join(linears)}."
            )
        per_layer = sum(r * (linears[n][0] + linears[n][1]) + (linears[n][1] if use_dora else 0) for n in hit)
        return self.num_hidden_layers * per_layer, hit


@dataclass(frozen=True)
class Sharding:
    """How an accelerate config spreads a run: world size, what is sharded, what is offloaded, the precision."""

    name: str = "one process, no sharding"
    world: int = 1
    shard_optimizer: bool = False  # optimizer states / world (ZeRO-1 and up, FSDP)
    shard_grads: bool = False  # gradients / world too (ZeRO-2, FSDP shard-grad-op)
    shard_weights: bool = False  # weights too (ZeRO-3, FSDP full shard)
    offload_optimizer: bool = False
    offload_weights: bool = False
    mixed_precision: str | None = None
    deepspeed: bool = False


def read_sharding(path: str | Path | None) -> Sharding:
    """The Sharding an accelerate config file asks for (None: one process)."""
    if path is None:
        return Sharding()
    try:
        cfg = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise RecipeInputError(f"Cannot read the accelerate config {path}: {err}") from err
    # accelerate's num_processes counts the processes of all machines together (see multi_node.yaml)
    world = int(cfg.get("num_processes") or 1)
    precision = cfg.get("mixed_precision")
    precision = None if precision in (None, "no") else str(precision)
    kind = str(cfg.get("distributed_type", "NO"))
    if kind == "DEEPSPEED":
        ds = cfg.get("deepspeed_config") or {}
        stage, offload_opt, offload_param = ds.get("zero_stage"), ds.get("offload_optimizer_device"), None
        offload_param = ds.get("offload_param_device")
        if ds.get("deepspeed_config_file"):
            zero = json.loads(Path(ds["deepspeed_config_file"]).read_text()).get("zero_optimization", {})
            stage = zero.get("stage", stage)
            offload_opt = (zero.get("offload_optimizer") or {}).get("device", offload_opt)
            offload_param = (zero.get("offload_param") or {}).get("device", offload_param)
        stage = int(stage or 0)
        return Sharding(
            name=f"DeepSpeed ZeRO-{stage} over {world} GPU(s)"
            + (f", optimizer offloaded to {offload_opt}" if offload_opt not in (None, "none") else "")
            + (
                f", parameters offloaded to {offload_param}"
                if stage == 3 and offload_param not in (None, "none")
                else ""
            ),
            world=world,
            shard_optimizer=stage >= 1,
            shard_grads=stage >= 2,
            shard_weights=stage >= 3,
            offload_optimizer=offload_opt not in (None, "none"),
            offload_weights=stage == 3 and offload_param not in (None, "none"),
            mixed_precision=precision,
            deepspeed=True,
        )
    if kind == "FSDP":
        fsdp = cfg.get("fsdp_config") or {}
        strategy = str(fsdp.get("fsdp_sharding_strategy", "FULL_SHARD")).upper()
        if int(fsdp.get("fsdp_version", 1)) == 2:
            strategy = "FULL_SHARD" if fsdp.get("fsdp_reshard_after_forward", True) else "SHARD_GRAD_OP"
        full = strategy in ("FULL_SHARD", "1", "HYBRID_SHARD", "4")
        offload = bool(fsdp.get("fsdp_offload_params", False))
        return Sharding(
            name=f"FSDP {'full shard' if full else 'shard grad op'} over {world} GPU(s)"
            + (", parameters and optimizer offloaded to CPU" if offload else ""),
            world=world,
            shard_optimizer=strategy != "NO_SHARD",
            shard_grads=strategy != "NO_SHARD",
            shard_weights=full,
            offload_optimizer=offload,
            offload_weights=offload,
            mixed_precision=precision,
        )
    name = (
        f"DDP over {world} GPU(s) (every GPU holds everything)" if world > 1 else "one process, no sharding"
    )
    return Sharding(name=name, world=world, mixed_precision=precision)


@dataclass
class Plan:
    """A run's memory per GPU in bytes, by row, with what it assumed."""

    title: list[str]
    rows: dict[str, float]
    assumptions: list[str] = field(default_factory=list)

    @property
    def total(self) -> float:
        """Bytes per GPU, all rows together."""
        return sum(self.rows.values())

    @property
    def fits(self) -> bool:
        """Whether the total leaves room for the CUDA context on one 80 GB GPU."""
        return self.total / GIB <= GPU_GIB - RESERVED_GIB

    def render(self) -> str:
        """The table `hfrecipes plan` prints."""
        lines = [*self.title, "", f"{'memory per GPU':28s}{'GiB':>9s}"]
        lines += [f"  {name:26s}{value / GIB:9.2f}" for name, value in self.rows.items()]
        lines += [
            f"  {'total':26s}{self.total / GIB:9.2f}",
            "",
            "assumptions: " + "; ".join(self.assumptions),
        ]
        lines.append(
            f"fits on one 80 GB GPU: {'yes' if self.fits else 'no'} (total {self.total / GIB:.1f} GiB per GPU)"
        )
        return "\n".join(lines)


def recipe_of(config_path: Path) -> str:
    """The recipe script (e.g. text/sft.py) a config file belongs to: by the shipped catalogue, else its name."""
    for recipe, _, configs in recipe_catalogue():
        if config_path.name in configs and config_path.parent.parent.name == Path(recipe).parent.name:
            return recipe
    prefix = config_path.name.split("_")[0]
    by_prefix = {Path(r).stem: r for r in RECIPE_DEFAULTS} | {"rloo": "text/grpo.py"}
    if prefix in by_prefix:
        return by_prefix[prefix]
    raise RecipeInputError(
        f"Cannot tell which recipe {config_path} is for; pass --recipe (one of {', '.join(RECIPE_DEFAULTS)})."
    )


def _settings(recipe: str, values: dict[str, Any]) -> dict[str, Any]:
    """The config's values over the defaults of the classes the recipe parses (TRL's ModelConfig included)."""
    merged = {}
    classes = (ModelConfig, RECIPE_DEFAULTS[recipe])
    if recipe == "text/grpo.py" and values.get("algorithm") == "rloo":
        classes = (ModelConfig, RLOOConfig)
    for cls in classes:
        merged |= {f.name: f.default for f in fields(cls) if f.default is not MISSING}
    merged |= values
    if merged.get("bf16") is None:  # TRL's configs: bf16 unless fp16 (transformers' TrainingArguments: False)
        merged["bf16"] = not merged.get("fp16")
    checkpointing = merged.get("activation_checkpointing")
    merged["checkpointing"] = bool(
        merged.get("gradient_checkpointing") if checkpointing is None else checkpointing
    )
    return merged


def _config_values(path: Path) -> dict[str, Any]:
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise RecipeInputError(f"Cannot read the config {path}: {err}") from err
    if not isinstance(values, dict):
        raise RecipeInputError(f"{path} is not a YAML mapping of recipe arguments.")
    return values


def preset_shape(preset: str, vocab_size: int, overrides: dict[str, Any] | None = None) -> ModelShape:
    """The shape of a model preset (hfrecipes.text.models) with `overrides` applied, for `vocab_size`."""
    if preset not in CAUSAL_LM_PRESETS:
        raise RecipeInputError(f"Unknown model preset {preset!r}. Available: {', '.join(CAUSAL_LM_PRESETS)}.")
    values = {**CAUSAL_LM_PRESETS[preset], **(overrides or {})}
    heads = values["num_attention_heads"]
    return ModelShape(
        source=f"preset {preset}" + (f" with {overrides}" if overrides else ""),
        model_type="llama",
        vocab_size=vocab_size,
        hidden_size=values["hidden_size"],
        intermediate_size=values["intermediate_size"],
        num_hidden_layers=values["num_hidden_layers"],
        num_attention_heads=heads,
        num_key_value_heads=values.get("num_key_value_heads") or heads,
        head_dim=values.get("head_dim") or values["hidden_size"] // heads,
        tie_word_embeddings=values.get("tie_word_embeddings", True),
        attention_bias=values.get("attention_bias", False),
        mlp_bias=values.get("mlp_bias", False),
    )


def model_shape(name: str, depth: int = 0) -> ModelShape:
    """The shape of `name`: a local checkpoint, a stage a shipped config makes, a cached Hub id, or a known
    public architecture; otherwise one line saying how to make it known."""
    path = Path(name)
    if (path / "config.json").is_file():
        return ModelShape.from_config(AutoConfig.from_pretrained(path), name, "local checkpoint")
    producer = stage_producer(name)
    if producer and depth < 4:
        config = Path(shlex.split(producer)[shlex.split(producer).index("--config") + 1])
        made = policy_shape(config, depth=depth + 1)
        saved = dtype_bytes(_settings(recipe_of(config), _config_values(config)).get("dtype"))
        note = f"not made yet: {config}'s model"
        return replace(made, source=name, note=note, saved_bytes=saved or made.saved_bytes)
    if not path.exists():
        try:
            config = AutoConfig.from_pretrained(name, local_files_only=True)
        except (OSError, ValueError):
            config = None
        if config is not None:
            return ModelShape.from_config(config, name, "local Hugging Face cache")
        known = KNOWN_ARCHITECTURES.get(name)
        if known:  # all of them are published in bfloat16
            shape = ModelShape.from_config(AutoConfig.for_model(**known), name, "published config.json")
            return replace(shape, saved_bytes=2)
    raise RecipeInputError(
        f"Unknown model {name!r}: it is not a local checkpoint, not in the local Hugging Face cache and not one of "
        "the architectures hfrecipes plan knows; pass a local path (or download it once: "
        f"`hf download {name} config.json`)."
    )


def _vocab_of(tokenizer: str | None, default: int) -> int:
    """The vocabulary a preset gets: the named tokenizer's model's, else the size of a tokenizer trained here."""
    return model_shape(tokenizer).vocab_size if tokenizer else default


def policy_shape(config_path: Path, recipe: str | None = None, depth: int = 0) -> ModelShape:
    """The shape of the model a config trains (the student for distillation)."""
    recipe = recipe or recipe_of(config_path)
    values = _settings(recipe, _config_values(config_path))
    if recipe == "text/distill.py":  # the student: model_name_or_path, else a preset
        teacher = values.get("teacher_model_name_or_path")
        if values.get("model_name_or_path"):
            return model_shape(values["model_name_or_path"], depth)
        vocab = model_shape(teacher, depth).vocab_size if teacher else NEW_TOKENIZER_VOCAB
        return preset_shape(values.get("student_preset", "tiny"), vocab, values.get("student_overrides"))
    if values.get("model_name_or_path"):
        return model_shape(values["model_name_or_path"], depth)
    if recipe in ("text/dpo.py", "text/grpo.py", "text/ppo.py"):
        raise RecipeInputError(
            f"{config_path} sets no model_name_or_path; {recipe} starts from a trained model."
        )
    if recipe == "text/pretrain.py":
        vocab = _vocab_of(
            values.get("tokenizer_name_or_path"), int(values.get("vocab_size", NEW_TOKENIZER_VOCAB))
        )
    else:
        default = RAG_TOKENIZER_VOCAB if recipe == "text/rag.py" else NEW_TOKENIZER_VOCAB
        vocab = int(values.get("tokenizer_vocab_size", default))
    return preset_shape(values.get("model_preset") or "tiny", vocab, values.get("model_overrides"))


def _optimizer_bytes(optim: str) -> int:
    name = str(optim).lower()
    for key in ("8bit", "adafactor", "lion", "sgd"):
        if key in name:
            return OPTIMIZER_BYTES[key]
    return OPTIMIZER_BYTES["adamw"]


def activation_bytes(
    shape: ModelShape, sequences: int, tokens: int, elt: int, checkpointing: bool, lora_inputs: int = 0
) -> tuple[float, float]:
    """(decoder-layer activations, logits) in bytes for `sequences` × `tokens` in one micro-batch; with
    checkpointing, each layer keeps its input and one layer at a time is recomputed. `lora_inputs`: the summed
    input features of the LoRA modules of a layer, whose dropout keeps a copy of the input (and a 1-byte mask)."""
    kv = shape.num_key_value_heads * shape.head_dim
    per_token = elt * (LAYER_HIDDEN_FACTOR[elt] * shape.hidden_size + 2 * kv + 4 * shape.intermediate_size)
    per_token += (elt + 1) * lora_inputs
    layer = sequences * tokens * per_token
    if checkpointing:
        layers = shape.num_hidden_layers * sequences * tokens * shape.hidden_size * elt + layer
    else:
        layers = shape.num_hidden_layers * layer
    return layers, sequences * tokens * shape.vocab_size * LOGITS_BYTES


def plan_config(
    config_path: str | Path, accelerate_config: str | Path | None = None, recipe: str | None = None
) -> Plan:
    """The memory per GPU of training with a text recipe's config under an accelerate config."""
    config_path = Path(config_path)
    recipe = recipe or recipe_of(config_path)
    if recipe not in RECIPE_DEFAULTS:
        raise RecipeInputError(
            f"hfrecipes plan estimates the causal-LM training recipes ({', '.join(RECIPE_DEFAULTS)}); "
            f"{config_path} is for {recipe}."
        )
    v = _settings(recipe, _config_values(config_path))
    sharding = read_sharding(accelerate_config)
    policy = policy_shape(config_path, recipe)
    sixteen = bool(v.get("bf16") or v.get("fp16") or sharding.mixed_precision)
    elt = 2 if sixteen else 4  # activations: autocast computes in 16 bits
    ds16 = sharding.deepspeed and sixteen  # DeepSpeed casts every model it prepares to 16 bits
    # TRL's ModelConfig dtype (float32 unless set; "auto": as saved) loads the policy, reference and teacher
    asked = dtype_bytes(v.get("dtype"))
    load = 2 if ds16 else (asked or policy.saved_bytes)
    kbit = 0.5 if v.get("load_in_4bit") else 1 if v.get("load_in_8bit") else None
    world, notes = sharding.world, []
    head = "reward" if recipe == "text/reward.py" else "causal-lm"
    ppo, peft = recipe == "text/ppo.py", bool(v.get("use_peft"))

    # --- trainable parameters ---
    total = policy.num_parameters(head)
    base, lora_inputs = 0, 0  # frozen parameters of the trained model (a LoRA base)
    if peft:
        r = int(v.get("lora_r", 16))
        trainable, hit = policy.lora_parameters(r, v.get("lora_target_modules"), bool(v.get("use_dora")))
        for module in v.get("lora_modules_to_save") or []:
            if module in ("lm_head", "embed_tokens"):
                trainable += policy.vocab_size * policy.hidden_size
        trainable += policy.hidden_size if head == "reward" else 0  # the score layer trains too
        if float(v.get("lora_dropout", 0.05)) > 0:
            lora_inputs = sum(policy.linears()[name][0] for name in hit)
        base, kind = (
            total,
            f"LoRA r={r} on {', '.join(hit)}" + (f", base in {int(8 * kbit)} bits" if kbit else ""),
        )
    else:
        trainable, kind = total, "full fine-tuning"
    frozen: dict[str, tuple[ModelShape, str, int]] = {}  # label -> (shape, head, bytes a parameter)
    if ppo:  # hfrecipes.text.ppo.ValueHeadModel: the critic is a value head on the policy's trunk
        trainable += policy.hidden_size + 1
        if peft:
            notes.append(
                "PPO: actor and critic share one frozen base (LoRA adapter + value head), the reference "
                "is that base with the adapter disabled"
            )
        else:
            frozen["reference model"] = (policy, "", load)
            notes.append("PPO: the critic is a value head on the policy's trunk; the reference a full copy")

    # --- the shape of one micro-batch ---
    batch = int(v.get("per_device_train_batch_size", 8))
    prompt = int(v.get("max_prompt_length") or PROMPT_TOKENS)
    generated = 0  # sequences whose KV cache a rollout holds
    if recipe == "text/pretrain.py":
        sequences, tokens = batch, int(v.get("block_size", PRETRAIN_BLOCK_SIZE))
    elif recipe in ("text/reward.py", "text/dpo.py"):
        sequences, tokens = 2 * batch, int(v["max_length"])  # chosen and rejected
    elif recipe == "text/grpo.py":
        sequences, tokens = batch, prompt + int(v["max_completion_length"])
        steps = v.get("steps_per_generation") or int(v.get("gradient_accumulation_steps", 1))
        generated = 0 if v.get("use_vllm") else int(v.get("generation_batch_size") or batch * steps)
        notes.append(f"prompts of {prompt} tokens")
    elif ppo:
        sequences, tokens = int(v.get("mini_batch_size", 4)), prompt + int(v.get("max_new_tokens", 64))
        generated = int(v.get("batch_size", 16))
        notes.append(f"prompts of {prompt} tokens; mini_batch_size episodes per optimizer step")
    elif recipe == "text/distill.py" and v.get("dataset_kind", "text") == "text":
        sequences, tokens = batch, int(v.get("block_size", DISTILL_BLOCK_SIZE))
    else:
        sequences, tokens = batch, int(v.get("max_length", 1024))

    # --- frozen models held during training ---
    def saved(shape: ModelShape) -> int:
        return 2 if ds16 else shape.saved_bytes

    if recipe == "text/dpo.py":
        fsdp = sharding.shard_grads and not sharding.deepspeed
        if not peft and not (v.get("precompute_ref_log_probs") and not fsdp):
            frozen["reference model"] = (policy, "", load)
        if v.get("reward_model_path"):
            notes.append("DPO's reward model and start copy serve the evaluation, on CPU: not counted")
    if recipe == "text/grpo.py" and float(v.get("beta", 0.0)) != 0.0 and not peft:
        frozen["reference model"] = (policy, "", load)
    if recipe in ("text/grpo.py", "text/ppo.py") and v.get("reward_model_path"):
        path = v["reward_model_path"]
        try:
            shape = model_shape(path)
        except RecipeInputError:
            shape = replace(policy, source=path, note="assumed: the policy's architecture")
            notes.append(f"{path} not found: assumed to have the policy's architecture")
        # PPO puts it beside the policy in the dtype asked for; GRPO's trainer takes it as loaded (as saved)
        frozen["reward model"] = (shape, "reward", (asked or shape.saved_bytes) if ppo else saved(shape))
    if recipe == "text/distill.py" and v.get("teacher_model_name_or_path"):
        shape = model_shape(v["teacher_model_name_or_path"])
        frozen["teacher model"] = (shape, "", 2 if ds16 else (asked or shape.saved_bytes))

    # --- bytes ---
    opt = _optimizer_bytes(v.get("optim", "adamw_torch"))
    if ds16:  # 16-bit weights and gradients, fp32 master weights in the optimizer
        w, g, o, how = 2, 2, 4 + opt, f"2+2+4+{opt} (16-bit weights, gradients, fp32 master, states)"
    elif peft or load == 4:  # fp32 weights (peft keeps adapters in fp32), autocast
        w, g, o, how = 4, 4, opt, f"4+4+{opt} (fp32 weights, gradients, optimizer states)"
    else:  # 16-bit weights train in 16 bits, optimizer states in their dtype
        w, g, o, how = 2, 2, opt // 2, f"2+2+{opt // 2} (16-bit weights, gradients, optimizer states)"
    weight_share = 0 if sharding.offload_weights else (1 / world if sharding.shard_weights else 1)
    grad_share = 1 / world if sharding.shard_grads else 1
    rows = {"weights": (trainable * w + base * (kbit or load)) * weight_share}
    if sharding.shard_weights:  # the layers gathered for compute (the current one and the prefetched next)
        rows["weights"] += 2 * policy.layer_parameters() * load
    rows["gradients"] = trainable * g * grad_share
    opt_share = 1 / world if sharding.shard_optimizer else 1
    rows["optimizer states"] = 0 if sharding.offload_optimizer else trainable * o * opt_share
    if sixteen and w == 4 and not peft and not sharding.shard_weights:
        rows["bf16 weight copies"] = trainable * 2  # autocast caches the cast of each trained weight
    layers, logits = activation_bytes(policy, sequences, tokens, elt, v["checkpointing"], lora_inputs)
    rows["activations"] = layers
    if recipe == "text/grpo.py":  # TRL keeps the logits of the completion only (logits_to_keep)
        logits = logits * int(v["max_completion_length"]) // tokens
    rows["logits"] = logits * (2 if recipe == "text/distill.py" else 1)  # + the teacher's
    if generated:
        kv = 2 * policy.num_hidden_layers * policy.num_key_value_heads * policy.head_dim
        rows["rollout KV cache"] = generated * tokens * kv * (2 if sixteen else load)
    frozen_share = 1 / world if sharding.shard_weights and not ppo else 1
    for label, (shape, model_head, nbytes) in frozen.items():
        rows[label] = shape.num_parameters(model_head or "causal-lm") * nbytes * frozen_share
    if recipe == "text/grpo.py" and v.get("use_vllm") and v.get("vllm_mode", "server") == "colocate":
        rows["vLLM (colocated)"] = float(v.get("vllm_gpu_memory_utilization", 0.3)) * GPU_GIB * GIB

    # --- what was assumed ---
    def describe(label: str, shape: ModelShape, params: int) -> str:
        where = f"{shape.model_type}, {shape.note}" if shape.note else shape.model_type
        return f"{label:16s}{shape.source} ({where}): {params / 1e6:,.1f} M parameters"

    title = [
        f"hfrecipes plan: {config_path} ({recipe})"
        + (f" under {accelerate_config}" if accelerate_config else ""),
        describe("model", policy, total) + f"; {kind}: {trainable / 1e6:,.2f} M trainable",
        *(
            describe(label, shape, shape.num_parameters(h or "causal-lm"))
            for label, (shape, h, _) in frozen.items()
        ),
        f"{'sharding':16s}{sharding.name}; {'bf16' if sixteen else 'fp32'} compute, weights loaded in "
        + ("16" if load == 2 else "32")
        + " bits",
        f"{'micro-batch':16s}{sequences} sequences x {tokens} tokens per GPU; gradient checkpointing "
        + ("on" if v["checkpointing"] else "off"),
    ]
    assumptions = [
        f"{v.get('optim', 'adamw_torch')}: bytes per trainable parameter {how}",
        "frozen models weights only, in their load dtype",
        f"activations per layer and token {elt}x({LAYER_HIDDEN_FACTOR[elt]}h+2kv+4i) bytes (SDPA/flash attention)"
        + (", only layer inputs kept with checkpointing" if v["checkpointing"] else ""),
        f"logits {LOGITS_BYTES} bytes a token x vocab",
        f"fits means total <= {GPU_GIB - RESERVED_GIB:.1f} GiB ({RESERVED_GIB} GiB for CUDA context)",
        *notes,
    ]
    return Plan(title=title, rows=rows, assumptions=assumptions)
