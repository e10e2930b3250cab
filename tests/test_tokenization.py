import pytest
from transformers import AutoTokenizer

from hfrecipes.core.errors import RecipeInputError
from hfrecipes.data import load_source
from hfrecipes.text.tokenization import CHATML_TEMPLATE, IM_END, fertility, train_tokenizer

from .conftest import ROOT, read_json, run_recipe

UNSEEN = [
    "Ünïcödé ✓ and emoji 🚀 in text never seen",
    "tabs\tand\n\nnewlines  double  spaces ",
    "数学 математика ℝ≠∅",
]


@pytest.fixture(scope="module")
def corpus():
    return load_source("builtin:python-stdlib?max_files=25")["text"]


@pytest.fixture(scope="module")
def byte_bpe(corpus, tmp_path_factory):
    path = tmp_path_factory.mktemp("tok")
    train_tokenizer(corpus, "byte-bpe", vocab_size=600).save_pretrained(path)
    return AutoTokenizer.from_pretrained(path)


def test_byte_level_roundtrip_is_lossless_on_unseen_text(byte_bpe):
    for text in UNSEEN:
        assert byte_bpe.decode(byte_bpe(text, add_special_tokens=False)["input_ids"]) == text


def test_special_tokens_and_chat_template(byte_bpe):
    assert byte_bpe.bos_token and byte_bpe.eos_token and byte_bpe.pad_token
    assert len({byte_bpe.bos_token_id, byte_bpe.eos_token_id, byte_bpe.pad_token_id}) == 3
    assert byte_bpe.chat_template == CHATML_TEMPLATE and "{% generation %}" in byte_bpe.chat_template
    assert len(byte_bpe) == 600


def test_assistant_mask_covers_exactly_the_assistant_turns(byte_bpe):
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": "And 3+3?"},
        {"role": "assistant", "content": "It is 6."},
    ]
    out = byte_bpe.apply_chat_template(
        messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    masked = [i for i, m in zip(out["input_ids"], out["assistant_masks"], strict=True) if m]
    assert byte_bpe.decode(masked) == f"4{IM_END}It is 6.{IM_END}"
    prompt = byte_bpe.apply_chat_template(messages[:2], tokenize=False, add_generation_prompt=True)
    assert prompt.endswith("<|im_start|>assistant\n")


def test_char_tokenizer_roundtrip_and_unknown_characters(tmp_path):
    tokenizer = train_tokenizer(["hello world\nthe end"], "char")
    tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    text = "hello\n the world"
    ids = loaded(text, add_special_tokens=False)["input_ids"]
    assert len(ids) == len(text) and loaded.decode(ids) == text
    assert loaded.unk_token_id in loaded("xyz?", add_special_tokens=False)["input_ids"]


def test_fertility_is_lower_for_a_larger_vocabulary(corpus):
    heldout = UNSEEN + ["def function(argument):\n    return argument + 1\n"]
    small = fertility(train_tokenizer(corpus, "byte-bpe", vocab_size=300), heldout)
    large = fertility(train_tokenizer(corpus, "byte-bpe", vocab_size=1500), heldout)
    assert large["tokens_per_char"] < small["tokens_per_char"] <= 1.5
    assert large["tokens_per_word"] < small["tokens_per_word"]


def test_bad_tokenizer_settings():
    with pytest.raises(RecipeInputError, match="vocab_size >= 261"):
        train_tokenizer(["text"], "byte-bpe", vocab_size=100)
    with pytest.raises(RecipeInputError, match="Unknown tokenizer_type 'wordpiece'"):
        train_tokenizer(["text"], "wordpiece")


def test_train_tokenizer_recipe_end_to_end(tmp_path):
    out = tmp_path / "tok"
    run_recipe(
        "text/train_tokenizer.py",
        "--config",
        ROOT / "recipes/text/configs/tokenizer_tiny.yaml",
        "--max_documents",
        "80",
        "--vocab_size",
        "700",
        "--output_dir",
        out,
    )
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert len(tokenizer) == 700
    lineage = read_json(out / "lineage.json")
    assert (
        lineage["recipe"] == "text/train_tokenizer" and lineage["metrics"]["heldout_roundtrip_exact"] is True
    )
    assert 0 < lineage["metrics"]["tokens_per_char"] < 1
    assert (out / "README.md").read_text().count("tokens_per_word") == 1
    assert not list(tmp_path.glob(".*staging*"))
