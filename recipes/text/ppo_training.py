"""The part of PPO a user changes: sampling (the rollout), the loss (clipped policy loss + value loss) and the
training step (rollout -> rewards -> advantages -> update). `ppo.py` passes `ppo_step` to the library's
`PPOTrainer` (hfrecipes.text.ppo), which keeps the plumbing: models on Accelerate, prompt order, the KL
controller, logging, checkpoints and resume. `hfrecipes copy text/ppo.py DIR` brings this module along.

The algorithm is the one of Ziegler et al. 2019 as implemented in TRL's old PPOTrainer, with the choices of
Huang et al. 2024, "The N+ Implementation Details of RLHF with PPO" (see hfrecipes.text.ppo):

- the policy samples from its plain softmax (temperature only: no top-k/top-p), so the log-probabilities PPO
  uses are those of the sampled distribution;
- per-token reward = -kl_coef * KL(policy || reference) at every response token, plus the completion's score
  at its last token; advantages by GAE, whitened over the rollout;
- clipped policy loss and clipped value loss, `ppo_epochs` of shuffled minibatches per rollout.
"""

from __future__ import annotations

from typing import Any

import torch

from hfrecipes.core.errors import NonFiniteError
from hfrecipes.text.ppo import (
    PPOConfig,
    PPOTrainer,
    compute_gae,
    kl_penalty,
    logprobs_and_entropy,
    masked_mean,
    masked_whiten,
    per_token_rewards,
    response_mask,
)

# --- the loss: pure functions on [batch, response_length] tensors; `mask` marks real response tokens ---------


def policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_range: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO's clipped surrogate (Schulman et al. 2017): the pessimistic max of the unclipped and clipped losses,
    so moving the ratio beyond [1 - clip, 1 + clip] earns nothing. Returns (loss, fraction of tokens clipped)."""
    ratio = torch.exp(logprobs - old_logprobs)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_range, 1.0 + clip_range)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    return loss, masked_mean((clipped > unclipped).float(), mask)


def value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    clip_range_value: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """0.5 * squared error to the returns, with the new values clipped to old_values +- clip_range_value (the
    pessimistic max of both errors, as in OpenAI baselines / TRL). Returns (loss, fraction of tokens clipped)."""
    clipped_values = old_values + torch.clamp(values - old_values, -clip_range_value, clip_range_value)
    unclipped_error, clipped_error = (values - returns) ** 2, (clipped_values - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(unclipped_error, clipped_error), mask)
    return loss, masked_mean((clipped_error > unclipped_error).float(), mask)


def ppo_loss(
    logprobs: torch.Tensor,
    values: torch.Tensor,
    minibatch: dict[str, torch.Tensor],
    advantages: torch.Tensor,
    returns: torch.Tensor,
    config: PPOConfig,
    stats: dict[str, torch.Tensor] | None = None,
) -> torch.Tensor:
    """The loss backpropagated and logged for one minibatch: clipped policy loss + vf_coef * clipped value loss.
    `minibatch` holds the rollout's `logprobs`, `values` and `mask`; the parts go into `stats` when given."""
    mask = minibatch["mask"]
    pg_loss, pg_clip = policy_loss(logprobs, minibatch["logprobs"], advantages, mask, config.cliprange)
    vf_loss, vf_clip = value_loss(values, minibatch["values"], returns, mask, config.cliprange_value)
    if stats is not None:
        stats.update(policy_loss=pg_loss, value_loss=vf_loss, clipfrac=pg_clip, value_clipfrac=vf_clip)
    return pg_loss + config.vf_coef * vf_loss


# --- sampling --------------------------------------------------------------------------------------------------


def response_forward(
    model: Any, batch: dict[str, torch.Tensor], prompt_length: int, temperature: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (temperature-scaled, as sampled) and values at the positions that predict response tokens."""
    logits, values = model(batch["input_ids"], batch["attention_mask"], batch["position_ids"])
    p = prompt_length
    return logits[:, p - 1 : -1] / temperature, values[:, p - 1 : -1]


@torch.no_grad()
def rollout(trainer: PPOTrainer, update: int) -> dict[str, torch.Tensor]:
    """Sample completions for one batch of prompts and score them; everything PPO needs, per token."""
    cfg, tok, device = trainer.config, trainer.tokenizer, trainer.accelerator.device
    indices = trainer.prompt_batch(update)
    ids = [trainer.prompt_ids[i] for i in indices]
    p = max(map(len, ids))
    prompt = torch.tensor([[tok.pad_token_id] * (p - len(x)) + x for x in ids], device=device)  # left pad
    prompt_mask = torch.tensor([[0] * (p - len(x)) + [1] * len(x) for x in ids], device=device)
    with trainer.accelerator.autocast():  # bf16 mixed precision: the casts of the update's forward passes
        sequences = trainer.policy.generate(
            input_ids=prompt,
            attention_mask=prompt_mask,
            max_new_tokens=cfg.max_new_tokens,
            do_sample=True,
            temperature=cfg.temperature,
            top_k=0,
            top_p=1.0,
            min_p=0.0,
            typical_p=1.0,
            repetition_penalty=1.0,
            pad_token_id=tok.pad_token_id,
            eos_token_id=trainer.stop_ids,  # EOS + the model's own end-of-turn tokens (generation_config)
        )
    responses = sequences[:, p:]
    mask, ended = response_mask(responses, trainer.stop_ids)
    attention_mask = torch.cat([prompt_mask, mask.long()], dim=1)
    # Left padding shifts positions; generate() derives them from the mask, so the forward passes must too.
    position_ids = (attention_mask.cumsum(1) - 1).clamp(min=0)
    data = {"input_ids": sequences, "attention_mask": attention_mask, "position_ids": position_ids}
    logprobs, ref_logprobs, values = [], [], []
    for s in range(0, len(indices), cfg.mini_batch_size):
        chunk = {k: v[s : s + cfg.mini_batch_size] for k, v in data.items()}
        with trainer.accelerator.autocast():
            logits, value = response_forward(trainer.model, chunk, p, cfg.temperature)
            # With LoRA the reference is the same model with its adapter disabled (hfrecipes.text.ppo).
            ref_logits = trainer.ref_policy(**chunk, use_cache=False).logits[:, p - 1 : -1] / cfg.temperature
        logprobs.append(logprobs_and_entropy(logits, chunk["input_ids"][:, p:])[0])
        values.append(value.float())
        ref_logprobs.append(logprobs_and_entropy(ref_logits, chunk["input_ids"][:, p:])[0])
    completions = tok.batch_decode(
        [r[: int(m.sum())] for r, m in zip(responses, mask, strict=True)], skip_special_tokens=True
    )
    scores = trainer.score(update, indices, completions)
    if cfg.missing_eos_penalty is not None:
        scores = scores - cfg.missing_eos_penalty * (~ended).float()
    return {
        **data,
        "responses": responses,
        "mask": mask,
        "logprobs": torch.cat(logprobs) * mask,
        "ref_logprobs": torch.cat(ref_logprobs) * mask,
        "values": torch.cat(values) * mask,
        "scores": scores,
        "ended": ended.float(),
        "prompt_length": torch.tensor(p),
    }


# --- the training step -----------------------------------------------------------------------------------------


def ppo_step(trainer: PPOTrainer, update: int) -> dict[str, torch.Tensor]:
    """One PPO update: rollout, rewards, GAE, then ppo_epochs of shuffled minibatches. Returns this process's
    statistics as 0-d tensors; `kl` (nats per response) steers the trainer's adaptive KL coefficient."""
    cfg, kl_coef = trainer.config, trainer.kl_ctl.value
    batch = rollout(trainer, update)
    mask, p = batch["mask"], int(batch["prompt_length"])
    kl = kl_penalty(batch["logprobs"], batch["ref_logprobs"], cfg.kl_estimator) * mask
    rewards = per_token_rewards(batch["scores"], kl, mask, kl_coef)
    advantages, returns = compute_gae(rewards, batch["values"], mask, cfg.gamma, cfg.lam)
    if cfg.whiten_advantages:
        advantages = masked_whiten(advantages, mask)
    stats: dict[str, list[torch.Tensor]] = {}  # per minibatch, averaged below
    for _ in range(cfg.ppo_epochs):
        for idx in torch.randperm(len(mask)).split(cfg.mini_batch_size):
            mb = {k: v[idx] for k, v in batch.items() if v.dim() > 0}
            logits, values = response_forward(trainer.model, mb, p, cfg.temperature)
            logprobs, entropy = logprobs_and_entropy(logits, mb["responses"])
            parts: dict[str, torch.Tensor] = {}
            loss = ppo_loss(logprobs, values, mb, advantages[idx], returns[idx], cfg, parts)
            if not torch.isfinite(loss):
                raise NonFiniteError(
                    f"PPO update {update}: non-finite loss (policy {parts['policy_loss'].item()}, value "
                    f"{parts['value_loss'].item()}). Lower learning_rate, check the rewards and the model's dtype."
                )
            trainer.accelerator.backward(loss)
            trainer.accelerator.clip_grad_norm_(trainer.model.parameters(), cfg.max_grad_norm)
            trainer.optimizer.step()
            trainer.optimizer.zero_grad()
            log_ratio = (logprobs - mb["logprobs"]).detach()
            logged = {
                "loss": loss,
                **parts,
                "entropy": masked_mean(entropy, mb["mask"]),
                "approx_kl": 0.5 * masked_mean(log_ratio**2, mb["mask"]),
            }
            for name, value in logged.items():
                stats.setdefault(name, []).append(value.detach())
    kl_per_response = kl.sum(1)
    return {
        **{name: torch.stack(values).mean() for name, values in stats.items()},
        "score": batch["scores"].mean(),
        "kl": kl_per_response.mean(),
        "non_score_reward": -kl_coef * kl_per_response.mean(),
        "rlhf_reward": batch["scores"].mean() - kl_coef * kl_per_response.mean(),
        "response_length": mask.sum(1).mean(),
        "ended_with_stop": batch["ended"].mean(),
    }
