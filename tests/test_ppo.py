"""PPO maths against hand-computed examples, and a tiny end-to-end run whose reward must rise."""

from __future__ import annotations

import math
import random

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import AutoModelForCausalLM, HfArgumentParser, LlamaConfig, PreTrainedTokenizerFast

from hfrecipes.core.errors import RecipeInputError
from hfrecipes.text.ppo import (
    AdaptiveKLController,
    FixedKLController,
    PPOConfig,
    PPOTrainer,
    ValueHeadModel,
    compute_gae,
    kl_penalty,
    masked_mean,
    masked_whiten,
    per_token_rewards,
    plot_ppo_curves,
    response_mask,
)

from .conftest import load_recipe

# The loss and the training step live beside the recipe (recipes/text/ppo_training.py), where a user changes them.
ppo_training = load_recipe("text/ppo_training.py")
policy_loss, value_loss, ppo_step = ppo_training.policy_loss, ppo_training.value_loss, ppo_training.ppo_step

T = torch.tensor


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models gain nothing from intra-op threads, and on a busy 2-core machine they cost ~10x."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_gae_matches_hand_computation_and_ignores_padding():
    # gamma=0.9, lam=0.8 (gamma*lam=0.72). Row 0, three real tokens:
    #   d2 = 2.0 + 0        - 1.5 = 0.5    A2 = 0.5
    #   d1 = 0.0 + 0.9*1.5  - 1.0 = 0.35   A1 = 0.35 + 0.72*0.5  = 0.71
    #   d0 = 1.0 + 0.9*1.0  - 0.5 = 1.4    A0 = 1.4  + 0.72*0.71 = 1.9112
    # Row 1, two real tokens then padding holding garbage that must not leak in:
    #   d1 = 1.0 + 0        + 0.4 = 1.4    A1 = 1.4
    #   d0 = 0.5 - 0.9*0.4  - 0.2 = -0.06  A0 = -0.06 + 0.72*1.4 = 0.948
    rewards = T([[1.0, 0.0, 2.0], [0.5, 1.0, 9.0]])
    values = T([[0.5, 1.0, 1.5], [0.2, -0.4, 7.0]])
    mask = T([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    advantages, returns = compute_gae(rewards, values, mask, gamma=0.9, lam=0.8)
    torch.testing.assert_close(advantages, T([[1.9112, 0.71, 0.5], [0.948, 1.4, 0.0]]))
    torch.testing.assert_close(returns, T([[2.4112, 1.71, 2.0], [1.148, 1.0, 0.0]]))
    # gamma = lam = 1: the advantage is the sum of future rewards minus the value (Monte Carlo).
    advantages, _ = compute_gae(rewards, values, mask, gamma=1.0, lam=1.0)
    torch.testing.assert_close(advantages[0], T([3.0, 2.0, 2.0]) - values[0])


def test_policy_loss_clips_the_ratio():
    # ratio 1.5, A=+1: max(-1.5, -1.2) = -1.2 (clipped) | ratio 0.5, A=+1: max(-0.5, -0.8) = -0.5
    # ratio 0.5, A=-1: max(0.5, 0.8) = 0.8 (clipped)    | ratio 1.1, A=-2: 2.2 inside the range | padding ignored
    ratios = T([[1.5, 0.5, 0.5, 1.1, 3.0]])
    advantages = T([[1.0, 1.0, -1.0, -2.0, 5.0]])
    mask = T([[1.0, 1.0, 1.0, 1.0, 0.0]])
    old = torch.zeros_like(ratios)
    loss, clipfrac = policy_loss(ratios.log(), old, advantages, mask, clip_range=0.2)
    assert loss.item() == pytest.approx((-1.2 - 0.5 + 0.8 + 2.2) / 4)
    assert clipfrac.item() == pytest.approx(0.5)
    # At ratio 1 (first minibatch of an update) the loss is minus the mean advantage and nothing is clipped.
    loss, clipfrac = policy_loss(old, old, advantages, mask, clip_range=0.2)
    assert loss.item() == pytest.approx(0.25) and clipfrac.item() == 0


def test_value_loss_clips_around_the_old_values():
    # v=0.5 from 0 -> clipped to 0.2: max(0.25, 0.64) = 0.64 (clipped) | v=0.1 inside: 0.81
    # v=0.0 from 1 -> clipped to 0.8: max(0.0, 0.64) = 0.64 (clipped)
    values, old, returns = T([[0.5, 0.1, 0.0]]), T([[0.0, 0.0, 1.0]]), T([[1.0, 1.0, 0.0]])
    loss, clipfrac = value_loss(values, old, returns, torch.ones(1, 3), clip_range_value=0.2)
    assert loss.item() == pytest.approx(0.5 * (0.64 + 0.81 + 0.64) / 3)
    assert clipfrac.item() == pytest.approx(2 / 3)


def test_kl_estimators_on_hand_examples():
    logp, ref = T([0.5, 0.25, 0.3]).log(), T([0.25, 0.5, 0.3]).log()
    torch.testing.assert_close(kl_penalty(logp, ref, "k1"), T([math.log(2), -math.log(2), 0.0]))
    # k3 = (r - 1) - log r with r = q / p: r=0.5 -> 0.19315, r=2 -> 0.30685, r=1 -> 0
    torch.testing.assert_close(kl_penalty(logp, ref, "k3"), T([math.log(2) - 0.5, 1 - math.log(2), 0.0]))
    # Both are unbiased: their expectation under p is the exact KL(p || q).
    p, q = T([0.5, 0.3, 0.2]), T([0.2, 0.5, 0.3])
    exact = (p * (p / q).log()).sum()
    for kind in ("k1", "k3"):
        torch.testing.assert_close((p * kl_penalty(p.log(), q.log(), kind)).sum(), exact)
    with pytest.raises(RecipeInputError, match="k2"):
        kl_penalty(logp, ref, "k2")


def test_kl_controllers():
    adaptive = AdaptiveKLController(0.1, target=6.0, horizon=1000)
    adaptive.update(12.0, n_steps=100)  # KL twice the target: error clipped to +0.2 -> x(1 + 0.2 * 0.1)
    assert adaptive.value == pytest.approx(0.102)
    adaptive.update(6.6, n_steps=100)  # error +0.1 -> x1.01
    assert adaptive.value == pytest.approx(0.102 * 1.01)
    down = AdaptiveKLController(0.1, target=6.0, horizon=1000)
    down.update(3.0, n_steps=100)  # below target: error clipped to -0.2
    assert down.value == pytest.approx(0.098)
    fixed = FixedKLController(0.1)
    fixed.update(100.0, n_steps=100)
    assert fixed.value == 0.1
    restored = AdaptiveKLController(0.5, 6.0, 1000)
    restored.load_state_dict(adaptive.state_dict())
    assert restored.value == adaptive.value


def test_whitening_and_means_ignore_padding():
    mask = T([[1.0, 1.0, 1.0, 0.0], [1.0, 1.0, 0.0, 0.0]])
    values = T([[1.0, 2.0, 3.0, 100.0], [4.0, 5.0, -50.0, 7.0]])
    real = T([1.0, 2.0, 3.0, 4.0, 5.0])
    expected = (real - real.mean()) / real.std()  # unbiased, as old TRL
    whitened = masked_whiten(values, mask)
    torch.testing.assert_close(whitened[mask.bool()], expected, atol=1e-6, rtol=1e-5)
    assert (whitened[~mask.bool()] == 0).all()
    assert masked_mean(values, mask).item() == pytest.approx(3.0)
    unshifted = masked_whiten(values, mask, shift_mean=False)
    torch.testing.assert_close(unshifted[mask.bool()], expected + 3.0, atol=1e-6, rtol=1e-5)


def test_rewards_and_response_mask():
    # -kl_coef * KL per token, the score added at the last real token.
    rewards = per_token_rewards(
        T([1.0, 2.0]),
        T([[0.1, 0.2, 0.3], [0.5, 0.5, 9.0]]),
        T([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]]),
        kl_coef=0.5,
    )
    torch.testing.assert_close(rewards, T([[-0.05, -0.1, 0.85], [-0.25, 1.75, 0.0]]))
    # Tokens up to and including the first stop token count; the rest is padding.
    mask, ended = response_mask(torch.tensor([[5, 1, 7, 1], [5, 6, 7, 8], [2, 0, 0, 0]]), stop_ids=[1, 2])
    torch.testing.assert_close(mask, T([[1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0], [1.0, 0.0, 0.0, 0.0]]))
    assert ended.tolist() == [True, False, True]


def test_config_parses_and_rejects_bad_values():
    (config,) = HfArgumentParser(PPOConfig).parse_args_into_dataclasses(
        ["--target_kl", "3", "--kl_estimator", "k3", "--batch_size", "8"]
    )
    assert (config.target_kl, config.kl_estimator, config.batch_size) == (3.0, "k3", 8)
    (config,) = HfArgumentParser(PPOConfig).parse_dict({"target_kl": None})
    assert config.target_kl is None
    with pytest.raises(RecipeInputError, match="mini_batch_size must be <= batch_size"):
        PPOConfig(batch_size=2, mini_batch_size=4)
    with pytest.raises(RecipeInputError, match="gamma must be in"):
        PPOConfig(gamma=1.5)


# --- tiny end-to-end ---------------------------------------------------------------------------------------------

WORDS = ["<pad>", "<eos>", "<bos>", *"abcdefghijkl"]
MAX_NEW_TOKENS = 8


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<pad>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="<pad>", eos_token="<eos>", bos_token="<bos>"
    )


def tiny_policy(seed: int = 0):
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(WORDS),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=64,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=2,
        tie_word_embeddings=True,
    )
    return AutoModelForCausalLM.from_config(config)


def prompts(n: int = 64) -> list[str]:
    rng = random.Random(0)
    return ["<bos> " + " ".join(rng.choices("bcdefghijkl", k=rng.randint(1, 4))) for _ in range(n)]


def count_a(prompts: list[str], completions: list[str]) -> list[float]:
    """Verifiable reward: the fraction of the response budget spent on the word `a` (chance ~ 1/15)."""
    return [c.split().count("a") / MAX_NEW_TOKENS for c in completions]


def tiny_config(output_dir, **overrides) -> PPOConfig:
    values = dict(
        output_dir=str(output_dir),
        seed=1,
        num_updates=30,
        batch_size=16,
        mini_batch_size=8,
        ppo_epochs=2,
        learning_rate=5e-3,
        max_new_tokens=MAX_NEW_TOKENS,
        init_kl_coef=0.05,
        target_kl=3.0,
        kl_horizon=100,
    )
    return PPOConfig(**{**values, **overrides})


def make_trainer(config: PPOConfig, reward_fn=count_a, **kwargs) -> PPOTrainer:
    # The reference is a frozen copy of the same freshly built policy, as a recipe gets on resume too.
    return PPOTrainer(
        config, tiny_policy(), None, tiny_tokenizer(), reward_fn, prompts(), step_fn=ppo_step, **kwargs
    )


def mean(history, key, updates) -> float:
    return sum(h[key] for h in history[updates]) / len(history[updates])


def test_tiny_ppo_run_raises_reward_keeps_kl_bounded_saves_and_resumes(tmp_path):
    out = tmp_path / "ppo"
    trainer = make_trainer(tiny_config(out, save_steps=10, checkpoints_total_limit=2))
    history = trainer.train()
    first, last = mean(history, "score", slice(0, 3)), mean(history, "score", slice(-5, None))
    print(
        f"score first 3 updates {first:.3f} -> last 5 {last:.3f}; kl last 5 {mean(history, 'kl', slice(-5, None)):.2f}"
    )
    assert [h["update"] for h in history] == list(range(1, 31))
    assert last > first + 0.15, (first, last)
    # Policy == reference at the first update: KL is 0 up to float rounding (batch shapes differ between passes).
    assert abs(history[0]["kl"]) < 1e-3 and history[0]["approx_kl"] < 0.1
    assert max(h["kl"] for h in history) < 25  # nats per 8-token response
    assert history[-1]["kl_coef"] > 0.05  # KL above target pushed the coefficient up
    assert all(math.isfinite(h[k]) for h in history for k in ("policy_loss", "value_loss", "entropy"))
    assert plot_ppo_curves(history, tmp_path / "ppo.png").stat().st_size > 0

    # At most 2 checkpoints; each is a complete, loadable causal LM plus value head.
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-20", "checkpoint-30"]
    trainer.save_model(tmp_path / "final")
    ids = torch.tensor([[2, 5, 6]])
    with torch.no_grad():
        expected_logits, expected_values = trainer.unwrapped(ids, torch.ones_like(ids))
        for path in (out / "checkpoint-30", tmp_path / "final"):
            torch.testing.assert_close(
                AutoModelForCausalLM.from_pretrained(path)(ids).logits, expected_logits
            )
            torch.testing.assert_close(
                ValueHeadModel.from_pretrained(path)(ids, torch.ones_like(ids))[1], expected_values
            )

    # A new run in the same output_dir resumes from checkpoint-30 and only runs what is left.
    resumed = make_trainer(tiny_config(out, num_updates=32, save_steps=10, checkpoints_total_limit=2))
    resumed_history = resumed.train()
    assert [h["update"] for h in resumed_history] == list(range(1, 33))
    assert resumed_history[:30] == history
    assert resumed_history[30]["kl_coef"] == pytest.approx(trainer.kl_ctl.value)
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-30", "checkpoint-32"]


def count_target(prompts: list[str], completions: list[str], target: list[str], prompt: list[str]):
    assert prompt == prompts  # prompt columns arrive aligned with the batch
    return [c.split().count(t) / MAX_NEW_TOKENS for c, t in zip(completions, target, strict=True)]


def test_resume_reproduces_the_uninterrupted_run(tmp_path):
    small = dict(num_updates=4, batch_size=4, mini_batch_size=2, max_new_tokens=4)
    columns = {"target": ["a", "b"] * 32, "prompt": prompts()}

    def run(output_dir, **overrides):
        config = tiny_config(output_dir, **{**small, **overrides})
        return make_trainer(config, count_target, prompt_columns=columns).train()

    straight = run(tmp_path / "a")
    run(tmp_path / "b", num_updates=2, save_steps=2)
    resumed = run(tmp_path / "b")
    for a, b in zip(straight, resumed, strict=True):
        assert {k: v for k, v in a.items() if k != "seconds"} == pytest.approx(
            {k: v for k, v in b.items() if k != "seconds"}
        )


def test_bad_input_and_non_finite_losses_fail_clearly(tmp_path):
    config = tiny_config(tmp_path, num_updates=1, batch_size=4, mini_batch_size=4, max_new_tokens=2)
    with pytest.raises(RecipeInputError, match="at least batch_size"):
        PPOTrainer(config, tiny_policy(), None, tiny_tokenizer(), count_a, prompts(3), step_fn=ppo_step)
    with pytest.raises(RecipeInputError, match="one value per prompt"):
        make_trainer(config, prompt_columns={"answer": [1, 2]})
    with pytest.raises(FloatingPointError, match="update 1: reward_fn"):
        make_trainer(config, reward_fn=lambda p, c: [float("nan")] * len(c)).train()
    trainer = make_trainer(config)
    with torch.no_grad():
        trainer.unwrapped.value_head.bias.fill_(float("inf"))
    with pytest.raises(FloatingPointError, match="PPO update 1: non-finite loss"):
        trainer.train()
