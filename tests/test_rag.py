import json

import pytest
from sentence_transformers import SentenceTransformer
from transformers import AutoModelForCausalLM, AutoTokenizer

from hfrecipes.core.errors import RecipeInputError
from hfrecipes.text.retrieval import RetrievalIndex

from .conftest import ROOT, read_json, run_recipe

CONFIGS = ROOT / "recipes/text/configs"
EMBEDDER_TINY = CONFIGS / "embedder_tiny.yaml"
RAG_TINY = CONFIGS / "rag_tiny.yaml"


@pytest.fixture(scope="module")
def embedder_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("embedder") / "out"
    run_recipe("text/train_embedder.py", "--config", EMBEDDER_TINY, "--output_dir", out)
    return out


@pytest.fixture(scope="module")
def rag_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("rag") / "out"
    run_recipe("text/rag.py", "--config", RAG_TINY, "--output_dir", out)
    return out


def test_trained_embedder_beats_its_untrained_start_and_random_retrieval(embedder_run):
    metrics = read_json(embedder_run / "metrics.json")
    assert metrics["recall@1"] > metrics["recall@1_before"]  # fine-tuning helped on held-out questions
    assert metrics["recall@5"] >= 0.9 and metrics["recall@5"] >= 5 * metrics["random_recall@5"]
    assert metrics["recall@1"] >= 10 * metrics["random_recall@1"]
    model = SentenceTransformer(str(embedder_run))  # a standard sentence-transformers folder
    assert model.encode(["Which module provides the function `bisect_left`?"]).shape == (1, 384)
    index = RetrievalIndex.load(embedder_run / "index")  # the index beside it finds its embedder ("..")
    assert index.kind == "dense" and len(index) == metrics["passages"]
    ids, scores = index.search(["How many parameters does `calendar.monthrange` take?"], k=3)
    assert "`calendar.monthrange(" in index.texts[ids[0][0]] and scores[0][0] >= scores[0][1]
    lineage = read_json(embedder_run / "lineage.json")
    assert lineage["recipe"] == "text/train_embedder" and lineage["metrics"] == metrics
    assert "recall@1_before" in (embedder_run / "README.md").read_text()
    efficiency = lineage["efficiency"]
    assert efficiency["unit"] == "pairs" and efficiency["pairs_per_second"] > 0 and 0 < efficiency["mfu"] < 1


def test_rag_with_retrieval_beats_closed_book_on_heldout_questions(rag_run):
    metrics = read_json(rag_run / "metrics.json")
    # Held-out facts were never in a training question or a training prompt; only retrieval brings them in.
    assert metrics["rag_exact_match"] >= metrics["closed_book_exact_match"] + 0.2
    assert metrics["rag_hallucination_rate"] < metrics["closed_book_hallucination_rate"]
    assert metrics["recall@2"] >= 10 * metrics["random_recall@2"]
    model = AutoModelForCausalLM.from_pretrained(rag_run)
    tokenizer = AutoTokenizer.from_pretrained(rag_run)
    assert model.config.vocab_size >= len(tokenizer)
    index = RetrievalIndex.load(rag_run / "index")
    assert index.kind == "bm25" and len(index) > 100
    samples = json.loads((rag_run / "samples.json").read_text())
    assert {"question", "answer", "closed_book", "rag", "context"} <= set(samples[0])
    assert "rag_exact_match" in (rag_run / "README.md").read_text()
    efficiency = read_json(rag_run / "lineage.json")["efficiency"]
    assert efficiency["tokens_per_second"] > 0 and 0 < efficiency["mfu"] < 1


def test_rag_retrieves_with_the_trained_embedder(embedder_run, tmp_path):
    out = tmp_path / "dense"
    run_recipe(
        "text/rag.py",
        "--config",
        RAG_TINY,
        "--output_dir",
        out,
        "--retriever",
        "hybrid",
        "--embedder_name_or_path",
        embedder_run,
        "--corpus_name",
        "builtin:stdlib-qa?part=corpus&max_modules=8&docs=0",
        "--questions_name",
        "builtin:stdlib-qa?part=questions&max_modules=8",
        "--max_steps",
        "2",
        "--save_steps",
        "2",
        "--eval_max_samples",
        "16",
    )
    metrics = read_json(out / "metrics.json")
    assert metrics["recall@2"] >= 0.8
    lineage = read_json(out / "lineage.json")
    assert any(
        i["kind"] == "embedder" and i.get("recipe") == "text/train_embedder" for i in lineage["inputs"]
    )
    assert RetrievalIndex.load(out / "index").kind == "hybrid"


def test_top_k_larger_than_the_corpus_is_refused(tmp_path):
    with pytest.raises(RecipeInputError, match="top_k=500 but the corpus has only"):
        run_recipe(
            "text/rag.py",
            "--config",
            RAG_TINY,
            "--output_dir",
            tmp_path / "out",
            "--top_k",
            "500",
            "--corpus_name",
            "builtin:stdlib-qa?part=corpus&modules=colorsys",
        )


def test_empty_corpus_is_refused(tmp_path):
    corpus = tmp_path / "empty.jsonl"
    corpus.write_text('{"text": ""}\n{"text": "   "}\n')
    with pytest.raises(RecipeInputError, match="no passages to index"):
        run_recipe(
            "text/rag.py", "--config", RAG_TINY, "--output_dir", tmp_path / "out", "--corpus_name", corpus
        )


def test_passages_longer_than_the_embedder_limit_are_refused(tmp_path):
    with pytest.raises(RecipeInputError, match="more than the embedder's limit of 16.*chunk_max_words"):
        run_recipe(
            "text/train_embedder.py",
            "--config",
            EMBEDDER_TINY,
            "--output_dir",
            tmp_path / "out",
            "--max_seq_length",
            "16",
        )
