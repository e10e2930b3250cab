import pytest
import torch
from transformers import AutoModelForCausalLM

from hfrecipes.core.errors import RecipeInputError
from hfrecipes.text.models import CAUSAL_LM_PRESETS, context_length, get_causal_lm, preset_config


@pytest.mark.parametrize(
    ("preset", "vocab", "low", "high"), [("tiny", 1024, 0.7e6, 1.3e6), ("small", 8192, 8e6, 12e6)]
)
def test_cpu_presets_have_their_advertised_size(preset, vocab, low, high):
    built = get_causal_lm(model_name_or_path=None, preset=preset, vocab_size=vocab)
    assert low <= built.num_parameters <= high and built.source == f"preset:{preset}"


def test_real_scale_presets_match_their_namesakes_without_building_them():
    smollm = preset_config("smollm-135m", vocab_size=49152)
    params = smollm.vocab_size * smollm.hidden_size + smollm.num_hidden_layers * (
        smollm.hidden_size * smollm.hidden_size * 2
        + 2 * smollm.hidden_size * smollm.hidden_size // 3
        + 3 * smollm.hidden_size * smollm.intermediate_size
    )
    assert 125e6 < params < 145e6
    llama = preset_config("llama-1b", vocab_size=128256)
    assert (llama.hidden_size, llama.num_hidden_layers, llama.num_key_value_heads) == (2048, 16, 8)


def test_unknown_preset_lists_the_presets():
    with pytest.raises(RecipeInputError, match="Unknown model preset 'huge'.*tiny"):
        get_causal_lm(model_name_or_path=None, preset="huge", vocab_size=10)
    with pytest.raises(RecipeInputError, match="Unknown model preset"):
        context_length(None, "huge")


def test_overrides_apply_and_unknown_keys_are_refused():
    built = get_causal_lm(
        model_name_or_path=None, preset="tiny", vocab_size=300, overrides={"num_hidden_layers": 1}
    )
    assert built.model.config.num_hidden_layers == 1
    assert context_length(None, "tiny", {"max_position_embeddings": 64}) == 64
    with pytest.raises(RecipeInputError, match="not_a_field"):
        preset_config("tiny", 300, {"not_a_field": 1})


def test_load_from_a_saved_directory(tmp_path):
    built = get_causal_lm(model_name_or_path=None, preset="tiny", vocab_size=300)
    built.model.save_pretrained(tmp_path)
    loaded = get_causal_lm(model_name_or_path=str(tmp_path), preset=None, vocab_size=300)
    ids = torch.tensor([[1, 2, 3]])
    assert torch.allclose(built.model(ids).logits, loaded.model(ids).logits)
    assert isinstance(AutoModelForCausalLM.from_pretrained(tmp_path), type(built.model))
    assert context_length(str(tmp_path), None) == CAUSAL_LM_PRESETS["tiny"]["max_position_embeddings"]


def test_missing_model_path_is_a_clear_error(tmp_path):
    with pytest.raises(RecipeInputError, match="Could not load a causal LM"):
        get_causal_lm(model_name_or_path=str(tmp_path / "nope"), preset=None, vocab_size=10)
