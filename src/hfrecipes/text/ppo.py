"""Actor-critic PPO for causal LMs (RLHF), small enough to read in one sitting. TRL 1.x dropped its PPOTrainer.

The algorithm is the one of Ziegler et al. 2019, "Fine-Tuning Language Models from Human Preferences", as
implemented in TRL's old PPOTrainer, with the choices listed in Huang et al. 2024, "The N+ Implementation
Details of RLHF with PPO" (cited below as "N+"):

- an episode is one sampled completion of one prompt; the policy samples from its plain softmax (temperature
  only: no top-k/top-p), so the log-probabilities PPO uses are those of the sampled distribution;
- per-token reward = -kl_coef * KL(policy || reference) at every response token, plus the scalar score of the
  whole completion (reward model and/or reward functions) at its last token;
- advantages by generalized advantage estimation (GAE, Schulman et al. 2016), whitened over the rollout batch;
- clipped policy loss and clipped value loss, several epochs of shuffled minibatches per rollout;
- KL coefficient fixed, or adapted towards a target KL (Ziegler et al. 2019, section 2.2);
- the critic is a linear value head on the policy's last hidden state (shared trunk, as TRL's
  AutoModelForCausalLMWithValueHead): one model in memory, and `vf_coef` balances the two losses on it;
- dropout stays off throughout (models are kept in eval mode, or have their dropout zeroed when gradient
  checkpointing needs train mode), so the first minibatch's ratio is exactly 1.

At scale (`build_policy`): with LoRA, ONE base model holds a PEFT adapter that is the actor, the value head sits
on the same adapted trunk (the critic shares the policy's adapter), and the reference is that base with the
adapter switched off (`DisabledAdapter`): no second copy of the weights. Only the adapter and the value head
train; the reward model stays separate and frozen. bf16 (Accelerate's autocast, or `dtype: bfloat16` weights),
gradient checkpointing and k-bit bases (QLoRA, on CUDA) combine with it.

This module is the plumbing and the maths: the models on Accelerate, prompt order, reward calls, the KL
controllers, logging, checkpoints and resume, plus GAE, whitening and the KL estimators. The part a user changes
(the rollout, the clipped losses and the update) is the `step_fn` the trainer is given: `ppo_step` in
`recipes/text/ppo_training.py`, beside the recipe, where `hfrecipes copy text/ppo.py` brings it along.

Everything runs on Accelerate (DDP or one process, CPU or GPU). The trainable module (policy + value head) and
its optimizer go through `accelerator.prepare`, so an `accelerate launch` DeepSpeed config (ZeRO-2/3) shards them;
frozen parts (the reference, the reward model) never reach the optimizer, weights are gathered with
`accelerator.get_state_dict` when saved, and generation runs on the unwrapped model (DeepSpeed's hooks gather
ZeRO-3 shards layer by layer there: slow, but correct).
"""

from __future__ import annotations

import copy
import json
import logging
import os
import random
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType, set_seed
from peft import (
    PeftConfig,
    PeftModel,
    get_peft_model,
    prepare_model_for_kbit_training,
    set_peft_model_state_dict,
)
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM, PreTrainedModel, PreTrainedTokenizerBase
from transformers.trainer_pt_utils import safe_globals

from hfrecipes.core.efficiency import EfficiencyMeter, lm_efficiency
from hfrecipes.core.errors import NonFiniteError, RecipeInputError
from hfrecipes.core.reports import plt, save_figure
from hfrecipes.core.training import last_complete_checkpoint
from hfrecipes.text.evaluation import stop_token_ids as default_stop_token_ids
from hfrecipes.text.models import ModelLoading, load_pretrained
from hfrecipes.text.posttraining import check_lora_targets

logger = logging.getLogger(__name__)

VALUE_HEAD_FILE = "value_head.safetensors"
ADAPTER_FILE = "adapter_model.safetensors"  # what PeftModel.save_pretrained writes
# Under DeepSpeed, a checkpoint's sharded weights and optimizer state (accelerator.save_state) go in this folder.
DEEPSPEED_STATE = "deepspeed"
# Written last into a checkpoint: with the right `global_step` in it, it marks the checkpoint complete (the same
# rule as Trainer's, so hfrecipes.core.training.last_complete_checkpoint finds PPO checkpoints too).
STATE_FILE = "trainer_state.json"
RewardFn = Callable[..., Sequence[float]]  # (prompts, completions, **prompt_columns) -> one score each
# (trainer, update) -> this process's statistics of the update as 0-d tensors, `kl` (nats per response) among them
StepFn = Callable[["PPOTrainer", int], dict[str, torch.Tensor]]


# --- the maths: pure functions on [batch, response_length] tensors; `mask` marks real response tokens ---------


def masked_mean(values: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean over the real tokens (all of them, or along `dim`); padding neither adds nor counts."""
    if dim is None:
        return (values * mask).sum() / mask.sum().clamp(min=1)
    return (values * mask).sum(dim) / mask.sum(dim).clamp(min=1)


def masked_whiten(values: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True) -> torch.Tensor:
    """Zero mean, unit variance over the real tokens only; padding stays 0 and does not move the statistics."""
    mean = masked_mean(values, mask)
    count = mask.sum()
    var = masked_mean((values - mean) ** 2, mask) * (count / (count - 1) if count > 1 else 1.0)
    whitened = (values - mean) * torch.rsqrt(var + 1e-8)
    if not shift_mean:
        whitened = whitened + mean
    return whitened * mask


def compute_gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized advantage estimation over right-padded responses.

    delta_t = r_t + gamma * V_{t+1} - V_t and A_t = delta_t + gamma * lam * A_{t+1}, where anything past the
    last real token (V_{t+1}, A_{t+1}) is 0: the episode ends there. Returns (advantages, returns = A + V), both
    zero on padding. The returns are the value head's regression target.
    """
    rewards, values, mask = rewards * mask, values * mask, mask.to(values.dtype)
    advantages = torch.zeros_like(values)
    next_value = next_advantage = torch.zeros_like(values[:, 0])
    for t in reversed(range(values.shape[1])):
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        next_advantage = (delta + gamma * lam * next_advantage) * mask[:, t]
        advantages[:, t] = next_advantage
        next_value = values[:, t]
    return advantages, (advantages + values) * mask


def kl_penalty(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, kind: str = "k1") -> torch.Tensor:
    """Per-token estimate of KL(policy || reference) from the sampled token's log-probabilities (Schulman,
    "Approximating KL divergence", 2020): k1 = log p - log q (unbiased, can be negative per token); k3 =
    (q/p - 1) - log(q/p) (unbiased, never negative, lower variance)."""
    log_ratio = logprobs - ref_logprobs
    if kind == "k1":
        return log_ratio
    if kind == "k3":
        return torch.expm1(-log_ratio) + log_ratio
    raise RecipeInputError(f"Unknown KL estimator {kind!r}; use 'k1' or 'k3'.")


def per_token_rewards(
    scores: torch.Tensor, kl: torch.Tensor, mask: torch.Tensor, kl_coef: float
) -> torch.Tensor:
    """-kl_coef * KL at every response token, plus each completion's score at its last real token."""
    rewards = -kl_coef * kl * mask
    last = mask.sum(1).long().clamp(min=1) - 1
    return rewards.scatter_add(1, last[:, None], scores[:, None].to(rewards.dtype))


def response_mask(responses: torch.Tensor, stop_ids: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask of the tokens up to and including the first stop token (all of them when none was generated),
    and whether each response ended with a stop token."""
    is_stop = torch.isin(responses, torch.tensor(list(stop_ids), device=responses.device))
    stops_before = torch.cumsum(is_stop.long(), dim=1) - is_stop.long()
    return (stops_before == 0).float(), is_stop.any(dim=1)


def logprobs_and_entropy(logits: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probability of each token under `logits` and the entropy of each position's distribution."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    entropy = -(logp.exp() * logp).sum(-1)
    return logp.gather(-1, tokens[..., None]).squeeze(-1), entropy


class FixedKLController:
    """A constant KL coefficient; the adaptive controller's interface, so the trainer treats both alike."""

    def __init__(self, kl_coef: float):
        self.value = kl_coef

    def update(self, current_kl: float, n_steps: int) -> None:
        pass

    def state_dict(self) -> dict[str, float]:
        return {"value": self.value}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.value = state["value"]


class AdaptiveKLController(FixedKLController):
    """Ziegler et al. 2019, eq. 2: beta <- beta * (1 + K_beta * e), e = clip(KL / target - 1, -0.2, 0.2),
    K_beta = n_steps / horizon. A KL above target raises the coefficient, below target lowers it."""

    def __init__(self, init_kl_coef: float, target: float, horizon: int):
        super().__init__(init_kl_coef)
        self.target, self.horizon = target, horizon

    def update(self, current_kl: float, n_steps: int) -> None:
        error = float(np.clip(current_kl / self.target - 1.0, -0.2, 0.2))
        self.value *= 1.0 + error * n_steps / self.horizon


# --- model -------------------------------------------------------------------------------------------------------


class ValueHeadModel(torch.nn.Module):
    """A causal LM policy plus a linear value head on its last hidden state (shared trunk).

    `forward` returns (logits, values) for every position. The head starts at zero, so values start at 0 and
    the value loss sends no gradient into the shared trunk until the head has learned something. The policy is
    saved with `save_pretrained` (loadable by `AutoModelForCausalLM`), the head beside it in
    `value_head.safetensors`.
    """

    def __init__(self, policy: PreTrainedModel):
        super().__init__()
        self.policy = policy
        hidden_size = policy.config.get_text_config().hidden_size
        self.value_head = torch.nn.Linear(hidden_size, 1, device=policy.device, dtype=torch.float32)
        torch.nn.init.zeros_(self.value_head.weight)
        torch.nn.init.zeros_(self.value_head.bias)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.policy(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            output_hidden_states=True,
            use_cache=False,
        )
        hidden = out.hidden_states[-1].float()
        with torch.autocast(hidden.device.type, enabled=False):  # the critic stays in float32 under bf16
            return out.logits, self.value_head(hidden).squeeze(-1)

    def save_pretrained(
        self, path: str | Path, state_dict: dict[str, torch.Tensor] | None = None, **kwargs: Any
    ) -> None:
        """The policy (a full model, or with LoRA its adapter) and `value_head.safetensors`. `state_dict` is the
        whole module's gathered weights (`accelerator.get_state_dict`, needed under ZeRO-3), else they are read here."""
        head = self.value_head.state_dict()
        if state_dict is not None:
            parts = {"policy.": {}, "value_head.": {}}
            for key, value in state_dict.items():
                prefix = key.split(".", 1)[0] + "."
                parts[prefix][key.removeprefix(prefix)] = value
            kwargs["state_dict"], head = parts["policy."], parts["value_head."]
        self.policy.save_pretrained(path, **kwargs)
        save_file(
            {k: v.detach().float().cpu().contiguous() for k, v in head.items()},
            str(Path(path) / VALUE_HEAD_FILE),
        )

    def load_value_head(self, path: str | Path) -> None:
        self.value_head.load_state_dict(load_file(str(Path(path) / VALUE_HEAD_FILE), device="cpu"))

    @classmethod
    def from_pretrained(cls, path: str | Path, **kwargs: Any) -> ValueHeadModel:
        """Load the policy; load the value head too when the directory has one (else it starts at zero)."""
        model = cls(AutoModelForCausalLM.from_pretrained(path, **kwargs))
        if (Path(path) / VALUE_HEAD_FILE).is_file():
            model.load_value_head(path)
        return model


class DisabledAdapter:
    """PPO's reference with LoRA: the policy's base model with its adapter switched off for every call (forward
    and generate), so the reference costs no second copy of the weights. Other attributes are the model's. Not a
    module on purpose: freezing or moving it must not touch the adapter the actor trains."""

    def __init__(self, model: PeftModel):
        self.model = model

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with self.model.disable_adapter():
            return self.model(*args, **kwargs)

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        with self.model.disable_adapter():
            return self.model.generate(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)


def disable_dropout(model: torch.nn.Module) -> torch.nn.Module:
    """Zero every dropout (nn.Dropout modules, LoRA's included, and attention dropout read from a module
    attribute), so train mode, which gradient checkpointing needs, computes exactly what eval mode does."""
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
        if isinstance(getattr(module, "attention_dropout", None), float):
            module.attention_dropout = 0.0
    return model


def build_policy(
    path: str,
    loading: ModelLoading,
    peft_config: PeftConfig | None = None,
    gradient_checkpointing: bool = False,
) -> PreTrainedModel:
    """The actor to start PPO from: the checkpoint at `path` loaded with `loading`'s options (dtype, attention,
    k-bit). With `peft_config`, the base is frozen and a LoRA adapter added (k-bit bases prepared as for
    QLoRA): pass it with `ref_policy=None` and the trainer's reference is the base with the adapter disabled."""
    policy = load_pretrained(path, loading)
    if peft_config is None:
        return policy
    check_lora_targets(policy, peft_config)
    if loading.quantization is not None:
        policy = prepare_model_for_kbit_training(
            policy,
            use_gradient_checkpointing=gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
    return get_peft_model(policy, copy.deepcopy(peft_config))  # PEFT rewrites its config's targets


# --- configuration -----------------------------------------------------------------------------------------------


@dataclass
class PPOConfig:
    """PPO's settings (the YAML keys of recipes/text/ppo.py): rollout sizes, GAE, clipping, the KL penalty,
    logging and checkpoints; refused at construction when out of range."""

    output_dir: str = field(
        default="outputs/ppo", metadata={"help": "Checkpoints go to checkpoint-<update>/."}
    )
    seed: int = field(default=42, metadata={"help": "Seeds model init, prompt order and sampling."})
    num_updates: int = field(default=100, metadata={"help": "PPO updates; each = one rollout + ppo_epochs."})
    batch_size: int = field(default=16, metadata={"help": "Prompts per rollout, per process."})
    mini_batch_size: int = field(default=4, metadata={"help": "Episodes per optimizer step, per process."})
    ppo_epochs: int = field(default=4, metadata={"help": "Passes over each rollout."})
    learning_rate: float = field(default=1e-5, metadata={"help": "AdamW learning rate (constant)."})
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient clipping norm."})
    max_new_tokens: int = field(default=64, metadata={"help": "Response length limit."})
    temperature: float = field(default=1.0, metadata={"help": "Sampling temperature (no top-k/top-p)."})
    gamma: float = field(default=1.0, metadata={"help": "Discount factor of GAE."})
    lam: float = field(default=0.95, metadata={"help": "Lambda of GAE."})
    cliprange: float = field(default=0.2, metadata={"help": "Policy ratio clip range."})
    cliprange_value: float = field(default=0.2, metadata={"help": "Value clip range."})
    vf_coef: float = field(default=0.1, metadata={"help": "Weight of the value loss."})
    init_kl_coef: float = field(default=0.05, metadata={"help": "Initial (or fixed) KL coefficient."})
    target_kl: float | None = field(
        default=6.0,
        metadata={"help": "Target KL (nats per response) for the adaptive controller; null = fixed."},
    )
    kl_horizon: int = field(
        default=10000, metadata={"help": "Horizon (episodes) of the adaptive KL controller."}
    )
    kl_estimator: str = field(
        default="k1", metadata={"help": "KL estimator in the reward.", "choices": ["k1", "k3"]}
    )
    whiten_advantages: bool = field(default=True, metadata={"help": "Whiten advantages over each rollout."})
    missing_eos_penalty: float | None = field(
        default=None, metadata={"help": "Subtracted from the score of responses that hit max_new_tokens."}
    )
    logging_steps: int = field(default=1, metadata={"help": "Log every N updates (log_history keeps all)."})
    save_steps: int = field(default=0, metadata={"help": "Checkpoint every N updates; 0 = never."})
    checkpoints_total_limit: int | None = field(default=2, metadata={"help": "Keep at most N checkpoints."})
    bf16: bool = field(default=False, metadata={"help": "bf16 autocast (dtype: bfloat16 = bf16 weights)."})
    gradient_checkpointing: bool = field(
        default=False, metadata={"help": "Recompute activations in backward: less memory, ~30% more time."}
    )
    trust_remote_code: bool = field(
        default=False, metadata={"help": "Run the model repository's own code (Hub models that need it)."}
    )

    def __post_init__(self) -> None:
        at_least_one = (
            "num_updates",
            "batch_size",
            "mini_batch_size",
            "ppo_epochs",
            "max_new_tokens",
            "logging_steps",
        )
        positive = ("learning_rate", "cliprange", "cliprange_value", "temperature", "kl_horizon")
        problems = [
            *(f"{k} must be >= 1" for k in at_least_one if getattr(self, k) < 1),
            *(f"{k} must be in [0, 1]" for k in ("gamma", "lam") if not 0 <= getattr(self, k) <= 1),
            *(f"{k} must be > 0" for k in positive if getattr(self, k) <= 0),
        ]
        if self.mini_batch_size > self.batch_size:
            problems.append("mini_batch_size must be <= batch_size")
        if self.target_kl is not None and self.target_kl <= 0:
            problems.append("target_kl must be > 0 (or null for a fixed KL coefficient)")
        if self.kl_estimator not in ("k1", "k3"):
            problems.append("kl_estimator must be 'k1' or 'k3'")
        if self.init_kl_coef < 0 or self.save_steps < 0 or (self.checkpoints_total_limit or 1) < 1:
            problems.append("init_kl_coef and save_steps must be >= 0, checkpoints_total_limit >= 1 or null")
        if problems:
            raise RecipeInputError("Invalid PPO config: " + "; ".join(problems) + ".")


# --- trainer -----------------------------------------------------------------------------------------------------


class PPOTrainer:
    """PPO on a causal LM.

    - `train_prompts`: prompt strings, already chat-templated; tokenized without adding special tokens.
    - `reward_fn(prompts, completions, **columns) -> one float per completion`: the prompt strings, the
      decoded completions (special tokens skipped, cut at the stop token) and, as keyword lists aligned with
      them, the batch's values of `prompt_columns` (e.g. `answer`), as TRL's reward functions receive them.
    - `ref_policy`: the frozen reference; None = a copy of `policy` as passed (so on resume pass the same
      initial policy: the checkpoint's weights are loaded into it afterwards), or, when `policy` is a PEFT
      model (`build_policy` with LoRA), its base with the adapter disabled (`DisabledAdapter`).
    - `stop_token_ids`: default the tokenizer's EOS, the policy's `generation_config.eos_token_id` (the family's
      end-of-turn tokens) and the template's end-of-turn token.
    - `step_fn(trainer, update)`: one PPO update (rollout, advantages, optimizer steps), e.g. `ppo_step` of
      recipes/text/ppo_training.py; it returns the update's statistics, which `step` averages and logs.
    """

    def __init__(
        self,
        config: PPOConfig,
        policy: PreTrainedModel,
        ref_policy: PreTrainedModel | None,
        tokenizer: PreTrainedTokenizerBase,
        reward_fn: RewardFn,
        train_prompts: Sequence[str],
        accelerator: Accelerator | None = None,
        *,
        prompt_columns: Mapping[str, Sequence[Any]] | None = None,
        stop_token_ids: Sequence[int] | None = None,
        step_fn: StepFn,
    ):
        self.config, self.tokenizer, self.reward_fn, self.step_fn = config, tokenizer, reward_fn, step_fn
        # cpu=True is what makes a multi-process CPU launch (accelerate_configs/cpu_ddp.yaml) use gloo.
        self.accelerator = accelerator or Accelerator(cpu=not torch.cuda.is_available())
        launched = int(os.environ.get("WORLD_SIZE", "1"))
        if launched != self.accelerator.num_processes:
            raise RecipeInputError(
                f"Launched with WORLD_SIZE={launched} but Accelerate sees {self.accelerator.num_processes} "
                "process(es): the processes would train unsynchronised copies. Check the accelerate config."
            )
        if tokenizer.pad_token_id is None:
            raise RecipeInputError(
                "The tokenizer has no pad token; set tokenizer.pad_token (e.g. to its EOS)."
            )
        self.prompts = list(train_prompts)
        self.prompt_ids = tokenizer(self.prompts, add_special_tokens=False)["input_ids"]
        world = self.accelerator.num_processes
        if len(self.prompts) < config.batch_size * world or any(not ids for ids in self.prompt_ids):
            raise RecipeInputError(
                f"PPO needs at least batch_size x processes = {config.batch_size * world} non-empty prompts, "
                f"got {len(self.prompts)} ({sum(not ids for ids in self.prompt_ids)} empty)."
            )
        self.columns = {k: list(v) for k, v in (prompt_columns or {}).items()}
        if any(len(v) != len(self.prompts) for v in self.columns.values()):
            raise RecipeInputError(
                f"Every prompt column needs one value per prompt ({len(self.prompts)}); got lengths "
                f"{ {k: len(v) for k, v in self.columns.items()} }."
            )
        self.stop_ids = list(stop_token_ids or default_stop_token_ids(tokenizer, policy))
        set_seed(config.seed)
        device = self.accelerator.device
        self.lora = isinstance(policy, PeftModel)
        if not self.lora:
            self.ref_policy = (ref_policy or copy.deepcopy(policy)).to(device).eval().requires_grad_(False)
        if config.gradient_checkpointing:
            policy.activation_checkpointing_enable({"use_reentrant": False})
        if getattr(policy, "hf_device_map", None) is None:  # k-bit weights were placed at load time
            policy = policy.to(device)
        # Eval mode for good: dropout off (N+). Gradient checkpointing only acts in train mode, so there the
        # dropout is zeroed instead.
        model = ValueHeadModel(policy)
        model = disable_dropout(model).train() if config.gradient_checkpointing else model.eval()
        trainable = [p for p in model.parameters() if p.requires_grad]  # with LoRA: adapter + value head
        optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate, eps=1e-5)  # eps: N+
        plugin = getattr(self.accelerator.state, "deepspeed_plugin", None)
        if plugin is not None:  # DeepSpeed cannot infer the micro-batch from a dataloader: PPO has none
            plugin.deepspeed_config["train_micro_batch_size_per_gpu"] = config.mini_batch_size
        self.model, self.optimizer = self.accelerator.prepare(model, optimizer)
        if self.lora:  # the same trunk with the adapter off: the reference costs no memory
            self.ref_policy = ref_policy or DisabledAdapter(self.policy)
        set_seed(config.seed, device_specific=True)  # each process samples its own completions
        self.kl_ctl = (
            FixedKLController(config.init_kl_coef)
            if config.target_kl is None
            else AdaptiveKLController(config.init_kl_coef, config.target_kl, config.kl_horizon)
        )
        self.update, self.log_history = 0, []

    @property
    def unwrapped(self) -> ValueHeadModel:
        return self.accelerator.unwrap_model(self.model)

    @property
    def policy(self) -> PreTrainedModel:
        return self.unwrapped.policy

    # --- what the step function uses -------------------------------------------------------------------------

    def prompt_batch(self, update: int) -> list[int]:
        """This process's prompt indices for `update` (1-based): epochs of seeded permutations, so the order
        depends only on (seed, update) and a resumed run sees the same prompts as an uninterrupted one."""
        world, rank = self.accelerator.num_processes, self.accelerator.process_index
        global_batch = self.config.batch_size * world
        per_epoch = len(self.prompts) // global_batch
        epoch, k = divmod(update - 1, per_epoch)
        order = torch.randperm(
            len(self.prompts), generator=torch.Generator().manual_seed(self.config.seed + epoch)
        )
        start = k * global_batch + rank * self.config.batch_size
        return order[start : start + self.config.batch_size].tolist()

    def score(self, update: int, indices: Sequence[int], completions: Sequence[str]) -> torch.Tensor:
        """`reward_fn`'s scores of the completions of the prompts at `indices` (with their prompt columns), one
        finite float each, on this process's device."""
        columns = {k: [v[i] for i in indices] for k, v in self.columns.items()}
        raw = self.reward_fn([self.prompts[i] for i in indices], list(completions), **columns)
        scores = torch.tensor([float(x) for x in raw], device=self.accelerator.device)
        if scores.shape != (len(indices),) or not torch.isfinite(scores).all():
            raise NonFiniteError(
                f"PPO update {update}: reward_fn must return one finite float per completion, got {scores.tolist()}."
            )
        return scores

    # --- optimisation ---------------------------------------------------------------------------------------

    def step(self, update: int) -> dict[str, float]:
        """One PPO update by `step_fn`; its statistics, averaged over processes, make the update's log record.
        The KL controller then moves towards its target on the update's `kl`."""
        cfg, started, world = self.config, time.perf_counter(), self.accelerator.num_processes
        kl_coef = self.kl_ctl.value
        means = self.step_fn(self, update)
        reduced = self.accelerator.reduce(
            torch.stack(list(means.values())).float(), reduction="mean"
        ).tolist()
        record = {
            "update": update,
            "step": update,
            "episodes": update * cfg.batch_size * world,
            "kl_coef": kl_coef,
            **dict(zip(means, reduced, strict=True)),
        }
        self.kl_ctl.update(record["kl"], cfg.batch_size * world)
        record["seconds"] = time.perf_counter() - started
        return record

    def train(self, resume_from_checkpoint: bool | str = True) -> list[dict[str, float]]:
        """Run updates until `num_updates`. True resumes from the last complete checkpoint in output_dir (if
        any), a path resumes from that checkpoint, False starts fresh. Returns `log_history`, one dict/update."""
        cfg = self.config
        if resume_from_checkpoint:
            path = resume_from_checkpoint if isinstance(resume_from_checkpoint, str) else None
            path = path or last_complete_checkpoint(cfg.output_dir)
            if path:
                self.load_checkpoint(path)
        while self.update < cfg.num_updates:
            record = self.step(self.update + 1)
            self.update += 1
            self.log_history.append(record)
            if self.update % cfg.logging_steps == 0 or self.update == cfg.num_updates:
                logger.info("PPO %s", " ".join(f"{k}={v:.4g}" for k, v in record.items()))
            if cfg.save_steps and (self.update % cfg.save_steps == 0 or self.update == cfg.num_updates):
                self.save_checkpoint()
        return self.log_history

    # --- saving and resuming --------------------------------------------------------------------------------

    def save_model(self, output_dir: str | Path) -> None:
        """Policy (save_pretrained, safetensors) + tokenizer + value_head.safetensors, from the main process."""
        self.accelerator.wait_for_everyone()
        state_dict = self._gathered_state_dict()
        if self.accelerator.is_main_process:
            self.unwrapped.save_pretrained(output_dir, state_dict=state_dict)
            self.tokenizer.save_pretrained(output_dir)

    @property
    def deepspeed(self) -> bool:
        return self.accelerator.distributed_type == DistributedType.DEEPSPEED

    def _gathered_state_dict(self) -> dict[str, torch.Tensor] | None:
        """Under DeepSpeed the weights are sharded: every process takes part in gathering them (ZeRO-3)."""
        if not self.deepspeed:
            return None
        return self.accelerator.get_state_dict(self.model)

    def save_checkpoint(self) -> Path:
        """checkpoint-<update>/: model, optimizer, KL controller, log history, every process's RNG. Written to a
        hidden temp dir, `trainer_state.json` last, then renamed into place; old ones pruned to the limit."""
        acc, out = self.accelerator, Path(self.config.output_dir)
        final, tmp = out / f"checkpoint-{self.update}", out / f".checkpoint-{self.update}.tmp"
        if acc.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        acc.wait_for_everyone()
        rng = {
            "python": random.getstate(),
            "numpy": np.random.get_state(),
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        }
        torch.save(rng, tmp / f"rng_state_{acc.process_index}.pth")
        state_dict = self._gathered_state_dict()
        if acc.is_main_process:
            self.unwrapped.save_pretrained(tmp, state_dict=state_dict)
            self.tokenizer.save_pretrained(tmp)
        if self.deepspeed:  # every process writes its shards of the weights and the optimizer state
            acc.save_state(str(tmp / DEEPSPEED_STATE))
        elif acc.is_main_process:
            torch.save(self.optimizer.state_dict(), tmp / "optimizer.pt")
        acc.wait_for_everyone()
        if acc.is_main_process:
            state = {
                "global_step": self.update,
                "kl_controller": self.kl_ctl.state_dict(),
                "log_history": self.log_history,
                "config": asdict(self.config),
            }
            (tmp / STATE_FILE).write_text(json.dumps(state, indent=2))
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
            self._prune_checkpoints(out)
        acc.wait_for_everyone()
        return final

    def _prune_checkpoints(self, out: Path) -> None:
        limit = self.config.checkpoints_total_limit
        steps = sorted(
            int(p.name.split("-")[1]) for p in out.glob("checkpoint-*") if p.name.split("-")[1].isdigit()
        )
        for step in steps[: -limit if limit else 0]:
            shutil.rmtree(out / f"checkpoint-{step}", ignore_errors=True)

    def load_checkpoint(self, path: str | Path) -> None:
        """Restore everything `save_checkpoint` wrote; training continues at the checkpoint's update + 1."""
        path = Path(path)
        state_file = path / STATE_FILE
        if not state_file.is_file():
            raise RecipeInputError(f"{path} is not a complete PPO checkpoint (no {STATE_FILE}).")
        state = json.loads(state_file.read_text())
        policy = self.policy
        if self.deepspeed:  # sharded weights and optimizer state, as save_checkpoint had them
            self.accelerator.load_state(str(path / DEEPSPEED_STATE))
        elif self.lora:  # the checkpoint holds the adapter only; the base is the one loaded at the start
            set_peft_model_state_dict(policy, load_file(str(path / ADAPTER_FILE), device="cpu"))
        else:
            saved = AutoModelForCausalLM.from_pretrained(path, dtype=policy.dtype)
            policy.load_state_dict(saved.state_dict())
        if not self.deepspeed:
            self.unwrapped.load_value_head(path)
            self.optimizer.load_state_dict(
                torch.load(path / "optimizer.pt", map_location="cpu", weights_only=True)
            )
        self.kl_ctl.load_state_dict(state["kl_controller"])
        self.update, self.log_history = int(state["global_step"]), list(state["log_history"])
        rng_file = path / f"rng_state_{self.accelerator.process_index}.pth"
        if rng_file.is_file():
            with safe_globals():  # numpy's RNG state, allow-listed: nothing else is unpickled
                rng = torch.load(rng_file, weights_only=True)
            random.setstate(rng["python"])
            np.random.set_state(rng["numpy"])
            torch.set_rng_state(rng["torch"])
            if rng["cuda"] is not None and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(rng["cuda"])
        else:
            logger.warning(
                "%s has no RNG state for process %d; sampling will differ",
                path,
                self.accelerator.process_index,
            )
        logger.warning("Resumed PPO from %s (update %d)", path, self.update)


def plot_ppo_curves(log_history: Sequence[dict[str, float]], path: Path) -> Path | None:
    """Score, KL and losses against update: the three things to watch in a PPO run. None if nothing logged."""
    if not log_history:
        return None
    updates = [h["update"] for h in log_history]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.5), dpi=100)
    panels = (("score", "rlhf_reward"), ("kl",), ("policy_loss", "value_loss"))
    for ax, keys in zip(axes, panels, strict=True):
        for key in keys:
            ax.plot(updates, [h[key] for h in log_history], label=key)
        ax.set_xlabel("PPO update")
        ax.grid(alpha=0.3)
        ax.legend()
    axes[1].set_ylabel("nats per response")
    return save_figure(fig, Path(path))


def ppo_efficiency(trainer: PPOTrainer, meter: EfficiencyMeter, first_update: int) -> dict:
    """Efficiency of the updates run now: 6·N·D on the tokens of the PPO optimisation passes (ppo_epochs × each
    rollout's prompt + response tokens); update time includes the rollout (sampling, reference forward)."""
    cfg, world, run = trainer.config, trainer.accelerator.num_processes, trainer.log_history[first_update:]
    prompt_tokens = sum(map(len, trainer.prompt_ids)) / len(trainer.prompt_ids)
    tokens = sum(
        cfg.ppo_epochs * cfg.batch_size * world * (prompt_tokens + r["response_length"]) for r in run
    )
    return lm_efficiency(
        meter.stop(),
        trainer.policy,
        tokens,
        train_seconds=sum(r["seconds"] for r in run),
        steps=len(run),
        world_size=world,
        device=trainer.accelerator.device,
        note="rollouts (sampling, policy, value and reference forwards) not counted",
    )
