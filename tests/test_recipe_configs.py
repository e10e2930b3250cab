"""Every shipped YAML config (tiny and full scale) parses into its recipe's dataclasses, so a typo in a
config that no test runs (the GPU-scale ones) still fails here."""

import pytest
from transformers import Seq2SeqTrainingArguments, TrainingArguments
from trl import DPOConfig, GRPOConfig, ModelConfig, RewardConfig, RLOOConfig, SFTConfig, TrlParser
from trl.experimental.gkd import GKDConfig

from hfrecipes.core.args import (
    CardArguments,
    DataArguments,
    ModelArguments,
    PublishArguments,
    TokenizerArguments,
)
from hfrecipes.diffusion.args import DiffusionTrainingArguments
from hfrecipes.text.ppo import PPOConfig

from .conftest import ROOT, load_recipe

CONFIGS = sorted((ROOT / "recipes").rglob("configs/*.yaml"))


def recipe_types(config_name: str) -> tuple:
    if config_name.startswith("pretrain_"):
        return (
            DataArguments,
            ModelArguments,
            TokenizerArguments,
            load_recipe("text/pretrain.py").PretrainArguments,
            TrainingArguments,
        )
    if config_name.startswith("tokenizer_"):
        return (
            DataArguments,
            TokenizerArguments,
            load_recipe("text/train_tokenizer.py").TokenizerScriptArguments,
        )
    if config_name.startswith("prepare_"):
        return (load_recipe("text/prepare_data.py").PrepareArguments,)
    if config_name.startswith("sft_"):
        return (load_recipe("text/sft.py").SFTScriptArguments, SFTConfig, ModelConfig)
    if config_name.startswith("reward_"):
        return (load_recipe("text/reward.py").RewardScriptArguments, RewardConfig, ModelConfig)
    if config_name.startswith("dpo_"):
        return (load_recipe("text/dpo.py").DPOScriptArguments, DPOConfig, ModelConfig)
    if config_name.startswith(("grpo_", "rloo_")):
        config_class = GRPOConfig if config_name.startswith("grpo_") else RLOOConfig
        return (load_recipe("text/grpo.py").GRPOScriptArguments, config_class, ModelConfig)
    if config_name.startswith("ppo_"):
        return (load_recipe("text/ppo.py").PPOScriptArguments, PPOConfig, ModelConfig)
    if config_name.startswith("evaluate_"):
        return (load_recipe("text/evaluate.py").EvaluateArguments, ModelConfig)
    if config_name.startswith("tts_"):
        return (load_recipe("audio/train_tts.py").TTSArguments, Seq2SeqTrainingArguments)
    if config_name.startswith("diffusion_"):
        recipe = load_recipe("image/train_diffusion.py")
        return (recipe.ImageDataArguments, recipe.DiffusionModelArguments, DiffusionTrainingArguments)
    if config_name.startswith("video_"):
        recipe = load_recipe("video/train_video_diffusion.py")
        return (recipe.VideoDataArguments, recipe.VideoModelArguments, DiffusionTrainingArguments)
    if config_name.startswith("clip_"):
        return (load_recipe("multimodal/train_clip.py").CLIPScriptArguments, TrainingArguments)
    if config_name.startswith("distill_"):
        return (DataArguments, load_recipe("text/distill.py").DistillArguments, GKDConfig, ModelConfig)
    if config_name.startswith("quantize_"):
        return (load_recipe("text/quantize.py").QuantizeArguments, ModelConfig, DataArguments)
    if config_name.startswith("embedder_"):
        from sentence_transformers import SentenceTransformerTrainingArguments

        return (load_recipe("text/train_embedder.py").EmbedderArguments, SentenceTransformerTrainingArguments)
    if config_name.startswith("rag_"):
        return (load_recipe("text/rag.py").RagArguments, SFTConfig, ModelConfig)
    raise AssertionError(f"no recipe known for {config_name}")


# Recipes whose settings are not a TrainingArguments take the publishing fields from PublishArguments; the others
# only the card's license.
PUBLISHING_OF_THEIR_OWN = ("prepare_", "tokenizer_", "ppo_", "quantize_", "diffusion_", "video_")


def parser_types(config_name: str) -> tuple:
    if config_name.startswith("evaluate_"):
        return recipe_types(config_name)
    publishing = PublishArguments if config_name.startswith(PUBLISHING_OF_THEIR_OWN) else CardArguments
    return (*recipe_types(config_name), publishing)


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.name)
def test_config_parses(config):
    # use_cpu/bf16 overrides: GPU configs ask for bf16, which TrainingArguments checks against the machine.
    extra = (
        []
        if config.name.startswith(("prepare_", "tokenizer_", "ppo_", "evaluate_", "quantize_"))
        else ["--use_cpu", "true", "--bf16", "false"]
    )
    parsed = TrlParser(parser_types(config.name)).parse_args_and_config(["--config", str(config), *extra])
    assert parsed
