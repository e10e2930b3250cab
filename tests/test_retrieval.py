import math
from collections import defaultdict

import pytest

from hfrecipes.builtins.qa import stdlib_functions
from hfrecipes.core.data_report import DataReport
from hfrecipes.core.errors import RecipeInputError
from hfrecipes.data import load_source, parse_pipeline, run_pipeline
from hfrecipes.data.text import chunk_text
from hfrecipes.text.rag import UNKNOWN, answer_metrics, contexts_for, rag_training_rows, substitute_answer
from hfrecipes.text.retrieval import (
    RetrievalIndex,
    bm25_tokens,
    chunk_corpus,
    load_embedder,
    random_recall_at_k,
    recall_at_k,
    relevant_passages,
    retrieval_metrics,
)

SMALL = "max_modules=8"


@pytest.fixture(scope="module")
def qa():
    corpus = load_source(f"builtin:stdlib-qa?part=corpus&{SMALL}")
    questions = load_source(f"builtin:stdlib-qa?part=questions&{SMALL}")
    passages = chunk_corpus(corpus, max_words=40)
    heldout = questions.filter(lambda r: r["split"] == "heldout")
    return corpus, questions, passages, heldout


@pytest.fixture(scope="module")
def embedder():
    return load_embedder(None)  # the packaged all-MiniLM-L6-v2


def test_stdlib_qa_is_deterministic_and_answers_are_in_the_corpus():
    questions = load_source("builtin:stdlib-qa?part=questions")
    assert questions.to_list() == load_source("builtin:stdlib-qa?part=questions").to_list()
    assert set(questions["kind"]) == {"module", "count", "first", "default"} and len(questions) > 1000
    corpus_text = "\n\n".join(load_source("builtin:stdlib-qa?part=corpus")["text"])
    paragraphs = corpus_text.split("\n\n")
    splits = defaultdict(set)
    for row in questions:
        holding = [p for p in paragraphs if p.startswith(row["evidence"])]
        assert len(holding) == 1  # exactly one paragraph per function, and it states the answer
        assert row["answer"] in holding[0]
        splits[row["qualified_name"]].add(row["split"])
    assert all(len(s) == 1 for s in splits.values())  # every question about a function is on one side
    heldout = sum("heldout" in s for s in splits.values()) / len(splits)
    assert 0.1 < heldout < 0.3  # heldout_percent=20 by a stable hash


def test_stdlib_qa_options_are_checked():
    with pytest.raises(RecipeInputError, match="part must be corpus or questions"):
        load_source("builtin:stdlib-qa?part=answers")
    with pytest.raises(RecipeInputError, match="modules must be a comma list"):
        load_source("builtin:stdlib-qa?modules=numpy")
    with pytest.raises(RecipeInputError, match="kinds must be"):
        load_source("builtin:stdlib-qa?kinds=colour")
    facts = stdlib_functions(("textwrap",))
    wrap = next(f for f in facts if f.name == "wrap")
    assert wrap.paragraph().startswith(
        "`textwrap.wrap(text, width=70, **kwargs)` is a function of the `textwrap`"
    )
    assert wrap.default == ("width", "70") and len(wrap.parameters) == 3


def test_chunk_step_packs_paragraphs_and_windows_long_ones():
    text = "one two three\n\nfour five\n\n" + " ".join(f"w{i}" for i in range(10))
    assert chunk_text(text, max_words=5) == ["one two three\n\nfour five", "w0 w1 w2 w3 w4", "w5 w6 w7 w8 w9"]
    windows = chunk_text(" ".join(f"w{i}" for i in range(10)), max_words=6, overlap_words=2)
    assert windows == ["w0 w1 w2 w3 w4 w5", "w4 w5 w6 w7 w8 w9"]
    docs = load_source(f"builtin:stdlib-qa?part=corpus&{SMALL}")
    report = DataReport()
    passages = run_pipeline(docs, parse_pipeline([{"chunk": {"max_words": 40}}]), report)
    assert set(passages.column_names) >= {"text", "passage_id", "doc_id", "chunk"}
    assert max(len(t.split()) for t in passages["text"]) <= 40
    assert report.steps[-1].step == "chunk" and report.steps[-1].rows_out == len(passages) > len(docs)
    with pytest.raises(RecipeInputError, match="overlap_words < max_words"):
        chunk_corpus(docs, max_words=4, overlap_words=4)


def test_recall_at_k_and_its_random_baseline():
    retrieved = [[3, 1, 2], [0, 2, 1], [4, 0, 1]]
    relevant = [{1}, {1}, {2}]
    assert recall_at_k(retrieved, relevant, [1, 2, 3]) == {
        "recall@1": 0.0,
        "recall@2": 1 / 3,
        "recall@3": 2 / 3,
    }
    assert random_recall_at_k(5, [{0}], [1, 5])["recall@1"] == pytest.approx(0.2)
    assert random_recall_at_k(5, [{0, 1}], [2])["recall@2"] == pytest.approx(
        1 - math.comb(3, 2) / math.comb(5, 2)
    )
    with pytest.raises(RecipeInputError, match="no relevant passage"):
        recall_at_k([[0]], [set()], [1])


def test_bm25_recall_beats_random_by_far(qa):
    _, _, passages, heldout = qa
    assert bm25_tokens("Which module provides `bisect_left`?") == [
        "module",
        "provides",
        "bisect_left",
        "bisect",
        "left",
    ]
    metrics = retrieval_metrics(
        RetrievalIndex.build(passages, "bm25"), heldout["question"], heldout["evidence"], [1, 5]
    )
    assert metrics["recall@5"] >= 0.85 and metrics["random_recall@5"] < 0.15
    assert metrics["recall@1"] >= 10 * metrics["random_recall@1"]


def test_dense_and_hybrid_indexes_beat_random_and_round_trip(qa, embedder, tmp_path):
    _, _, passages, heldout = qa
    queries, evidence = heldout["question"][:40], heldout["evidence"][:40]
    dense = RetrievalIndex.build(passages, "dense", embedder)
    metrics = retrieval_metrics(dense, queries, evidence, [1, 5])
    assert metrics["recall@5"] >= 0.7 and metrics["recall@1"] >= 10 * metrics["random_recall@1"]
    dense.save(tmp_path / "dense")
    loaded = RetrievalIndex.load(tmp_path / "dense")  # names the packaged default embedder, loads it itself
    assert loaded.search(queries[:5], 3)[0] == dense.search(queries[:5], 3)[0]
    hybrid = RetrievalIndex.build(passages, "hybrid", embedder)
    assert retrieval_metrics(hybrid, queries, evidence, [5])["recall@5"] >= metrics["recall@5"] - 0.1
    hybrid.save(tmp_path / "hybrid")
    assert len(RetrievalIndex.load(tmp_path / "hybrid", embedder)) == len(passages)


def test_bad_retrieval_input_is_refused(qa, embedder, tmp_path):
    _, _, passages, _ = qa
    with pytest.raises(RecipeInputError, match="No passages to index"):
        RetrievalIndex.build([], "bm25")
    with pytest.raises(RecipeInputError, match="corpus is empty"):
        chunk_corpus(passages.select([]))
    with pytest.raises(RecipeInputError, match="no text"):
        chunk_corpus(passages.select(range(3)).map(lambda r: {"text": "  "}))
    index = RetrievalIndex.build(passages.select(range(5)), "dense", embedder)
    with pytest.raises(RecipeInputError, match=r"k=6 but the index holds 5 passages"):
        index.search(["Which module provides `wrap`?"], k=6)
    with pytest.raises(RecipeInputError, match=r"more than the embedder's limit of 256.*shorten the query"):
        index.search(["word " * 300], k=1)
    with pytest.raises(RecipeInputError, match="chunk the corpus smaller"):
        RetrievalIndex.build(["word " * 300], "dense", embedder)
    with pytest.raises(RecipeInputError, match="Unknown retriever 'sparse'"):
        RetrievalIndex.build(["a passage"], "sparse")
    with pytest.raises(RecipeInputError, match="is not a retrieval index"):
        RetrievalIndex.load(tmp_path)


def test_rag_rows_keep_heldout_passages_out_and_teach_abstention(qa):
    _, questions, passages, heldout = qa
    train = questions.filter(lambda r: r["split"] == "train")
    index = RetrievalIndex.build(passages, "bm25")
    texts = index.texts
    unseen = set().union(*relevant_passages(texts, heldout["evidence"]))
    relevant = relevant_passages(texts, train["evidence"])
    rows = rag_training_rows(
        train["question"],
        train["answer"],
        index,
        relevant,
        k=2,
        exclude=unseen,
        unknown_fraction=0.3,
        closed_book_fraction=0.3,
        counterfactuals=1,
        kinds=train["kind"],
        seed=0,
    )
    kinds = rows["row_kind"]
    assert kinds.count("rag") == len(train) and 0 < kinds.count("abstain") < len(train)
    assert 0.5 * len(train) < kinds.count("counterfactual") <= len(train)
    for row in rows:
        prompt, reply = row["prompt"][0]["content"], row["completion"][0]["content"]
        assert not any(texts[p] in prompt for p in unseen)  # held-out facts never reach training
        if row["row_kind"] == "closed_book":
            assert "Context:\n(none)" in prompt and reply != UNKNOWN
        if row["row_kind"] == "abstain":
            assert reply == UNKNOWN
        if row["row_kind"] == "counterfactual":  # a swapped answer, readable only from the context
            assert reply in prompt.split("Question:")[0] and reply != UNKNOWN
    with_gold = contexts_for(index, train["question"][:20], 2)
    without = contexts_for(index, train["question"][:20], 2, drop=relevant[:20])
    assert all(not set(c) & r for c, r in zip(without, relevant[:20], strict=True))
    assert sum(bool(set(c) & r) for c, r in zip(with_gold, relevant[:20], strict=True)) >= 15


def test_counterfactual_substitution_replaces_whole_words_only():
    text = "`m.f(a, b)` is a function of the `m` module (2 parameters); y2 = 2"
    assert (
        substitute_answer(text, "2", "5")
        == "`m.f(a, b)` is a function of the `m` module (5 parameters); y2 = 5"
    )
    assert substitute_answer("`os.sep` of os and osx", "os", "re") == "`re.sep` of re and osx"


def test_answer_metrics_count_confident_wrong_answers_as_hallucinations():
    metrics = answer_metrics(["textwrap", "Unknown.", "3", "bisect"], ["textwrap", "json", "2", "`bisect`"])
    assert metrics == {"exact_match": 0.5, "abstain_rate": 0.25, "hallucination_rate": 0.25}
