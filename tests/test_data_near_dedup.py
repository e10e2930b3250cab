"""Near-duplicate removal, n-gram decontamination and the `builtin:noisy-web` corpus they are measured on."""

from __future__ import annotations

import importlib.util
import json
import random
import re

import datasets
import numpy as np
import pytest

from hfrecipes.builtins.noisy_web import CLEAN_DOMAINS, KINDS, noisy_web, planted_duplicate_pairs
from hfrecipes.builtins.web_templates import UNSAFE_PHRASES
from hfrecipes.core.data_report import DataReport
from hfrecipes.core.errors import RecipeInputError
from hfrecipes.data.near_dedup import MinHasher, minhash_clusters
from hfrecipes.data.registry import parse_pipeline
from hfrecipes.data.sources import load_source
from hfrecipes.data.steps import run_pipeline
from hfrecipes.data.text import dedup_key

from .conftest import ROOT

ONLY_DUPLICATES = {
    "near_dup_fraction": 0.15,
    "exact_dup_fraction": 0.05,
    "corrupt_fraction": 0,
    "spam_fraction": 0,
    "lowinfo_fraction": 0,
    "unsafe_fraction": 0,
    "non_english_fraction": 0,
}
# Planted near-copies edit 3-10% of words, which leaves 5-gram Jaccard similarity around 0.6-0.85. The
# datatrove defaults (14 bands x 8 rows) have their 50% point at ~0.72, so they miss about one copy in ten;
# 28 bands x 4 rows (same 112 permutations) find pairs from ~0.45 up, and the 0.5 estimated-Jaccard check
# removes the chance collisions that looser banding lets in.
LOOSE = {"bands": 28, "rows_per_band": 4, "threshold": 0.5}


@pytest.fixture(scope="module")
def corpus() -> datasets.Dataset:
    """1,000 rows: 800 clean, 150 near copies and 50 exact copies of clean rows."""
    return noisy_web(n=1000, seed=7, **ONLY_DUPLICATES)


def removal_scores(dup_of: list[int], cluster_ids: list[int]) -> tuple[float, float, int]:
    """(precision, recall, removed) of a clustering against the planted duplicates.

    A planted group is a clean original with its planted copies. Each cluster keeps its lowest-index row, so
    the rows removed are those whose cluster id is not their own index. A removed row is a true positive
    when its cluster also holds another member of its planted group: a copy merged with its original or a
    sibling copy, or an original removed because one of its copies comes first in the corpus. Anything else
    removed (a clean row, or a copy merged only with strangers) is a false positive.
    Precision = true positives / rows removed. Recall = true positives / rows that should go, that is
    sum over groups of (size - 1): every group should shrink to one row. True positives are counted at most
    size - 1 per group, so removing a whole group does not score above 1.
    """
    group = [original if original >= 0 else row for row, original in enumerate(dup_of)]
    members: dict[int, list[int]] = {}
    for row, root in enumerate(group):
        members.setdefault(root, []).append(row)
    removed = [row for row, cluster in enumerate(cluster_ids) if cluster != row]

    def justified(row: int) -> bool:
        return any(cluster_ids[other] == cluster_ids[row] for other in members[group[row]] if other != row)

    true_positives_by_group: dict[int, int] = {}
    for row in removed:
        if justified(row):
            true_positives_by_group[group[row]] = true_positives_by_group.get(group[row], 0) + 1
    true_positives = sum(
        min(count, len(members[root]) - 1) for root, count in true_positives_by_group.items()
    )
    should_go = sum(len(rows) - 1 for rows in members.values())
    return true_positives / max(len(removed), 1), true_positives / should_go, len(removed)


def test_removal_scores_count_what_they_claim():
    # Rows: 0 original, 1 and 2 its copies, 3 and 4 unrelated clean rows.
    dup_of = [-1, 0, 0, -1, -1]
    assert removal_scores(dup_of, [0, 0, 0, 3, 4]) == (1.0, 1.0, 2)
    assert removal_scores(dup_of, [0, 0, 2, 3, 4]) == (1.0, 0.5, 1)  # one copy missed
    assert removal_scores(dup_of, [0, 0, 0, 0, 4]) == (2 / 3, 1.0, 3)  # an unrelated row merged in
    assert removal_scores(dup_of, [0, 1, 2, 3, 3]) == (0.0, 0.0, 1)  # only strangers merged


def test_near_dedup_finds_planted_duplicates(corpus):
    dup_of = corpus["dup_of"]
    clusters = minhash_clusters(corpus["text"], **LOOSE)
    precision, recall, removed = removal_scores(dup_of, clusters)
    assert precision >= 0.95 and recall >= 0.95, (precision, recall, removed)

    # The datatrove defaults are as precise and find most copies (see LOOSE for why not all of them).
    precision, recall, _ = removal_scores(dup_of, minhash_clusters(corpus["text"]))
    assert precision >= 0.95 and recall >= 0.8, (precision, recall)


def test_exact_copies_are_always_caught(corpus):
    clusters = minhash_clusters(corpus["text"])
    exact = [
        (row, original)
        for row, (original, kind) in enumerate(zip(corpus["dup_of"], corpus["kind"], strict=True))
        if kind == "exact_dup"
    ]
    assert len(exact) == 50
    assert all(clusters[row] == clusters[original] for row, original in exact)


def test_step_keeps_the_first_of_each_cluster_and_reports_pairs(corpus):
    small = corpus.select(range(300)).add_column("row", list(range(300)))
    report = DataReport()
    out = run_pipeline(small, parse_pipeline([{"near_dedup": LOOSE}]), report)

    clusters = minhash_clusters(small["text"], **LOOSE)
    assert out["row"] == [row for row, cluster in enumerate(clusters) if cluster == row]
    record = report.steps[-1]
    assert record.step == "near_dedup" and record.removed == 300 - len(out) > 0
    details = record.details
    assert details["removed_rows"] == record.removed
    assert details["duplicate_clusters"] == len({c for r, c in enumerate(clusters) if c != r})
    assert details["candidate_pairs"] >= details["linked_pairs"] > 0
    example = details["duplicate_examples"][0]
    assert example["kept_index"] < example["removed_index"]
    assert example["estimated_jaccard"] >= LOOSE["threshold"]
    assert example["removed"] == small[example["removed_index"]]["text"][:300]
    assert example["kept"] == small[example["kept_index"]]["text"][:300]


def _boilerplated(body: str) -> str:
    header = (
        "Skip to main content. Home | News | Sport | Weather | Contact us. This website uses cookies to improve "
        "your experience; by continuing to browse the site you agree to our use of cookies and our privacy policy."
    )
    footer = (
        "Share this article on social media. Related stories, most read and editor's picks appear below. "
        "Copyright 2024 The Daily Example, all rights reserved. Registered in England, company number 1234567."
    )
    return f"{header}\n\n{body}\n\n{footer}"


def test_documents_sharing_only_boilerplate_are_not_merged(corpus):
    bodies = [
        text for text, domain in zip(corpus["text"], corpus["domain"], strict=True) if domain == "formal"
    ][:6]
    bodies = [
        " ".join(body.split()[:120]) for body in bodies
    ]  # short bodies: boilerplate is ~35% of each page
    pages = [_boilerplated(body) for body in bodies]
    # Positive control: the same body under the same boilerplate with one sentence changed is merged.
    words = bodies[0].split()
    edited = _boilerplated(" ".join(words[:60] + ["and", "the", "meeting", "was", "postponed"] + words[65:]))
    for params in ({}, LOOSE):
        clusters = minhash_clusters([*pages, edited], **params)
        assert clusters[:6] == list(range(6)), params
        assert clusters[6] == 0, params


def test_deterministic_given_seed(corpus):
    texts = corpus["text"][:200]
    assert minhash_clusters(texts, seed=3) == minhash_clusters(texts, seed=3)
    first, _ = MinHasher(seed=3).signatures(texts[:5])
    again, _ = MinHasher(seed=3).signatures(texts[:5])
    other, _ = MinHasher(seed=4).signatures(texts[:5])
    assert np.array_equal(first, again) and not np.array_equal(first, other)


def test_parallel_signatures_match_single_process(corpus):
    small = corpus.select(range(120))
    single = run_pipeline(small, parse_pipeline([{"near_dedup": LOOSE}]), DataReport())
    parallel = run_pipeline(small, parse_pipeline([{"near_dedup": LOOSE}]), DataReport(), num_proc=2)
    assert len(single) < len(small)
    assert parallel["text"] == single["text"]


def test_short_texts_are_left_to_exact_dedup():
    texts = ["too short to shingle", "too short to shingle", "one two three four five six"]
    assert minhash_clusters(texts) == [0, 1, 2]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"bands": 16, "rows_per_band": 8, "num_perm": 112}, "must equal bands x rows_per_band"),
        ({"shingle_size": 0}, "`shingle_size` must be an integer >= 1"),
        ({"bands": "14"}, "`bands` must be an integer"),
        ({"threshold": 1.5}, "`threshold` must be a number in"),
        ({"threshold": 0}, "`threshold` must be a number in"),
        ({"hash_function": "md5"}, "`hash_function` must be one of xxhash, sha1"),
        ({"lowercase": "yes"}, "`lowercase` must be true or false"),
        ({"no_such_parameter": 1}, "has no parameter"),
    ],
)
def test_bad_near_dedup_parameters_are_refused(params, message):
    with pytest.raises(RecipeInputError, match=message):
        parse_pipeline([{"near_dedup": params}])


def test_consistent_num_perm_is_accepted():
    (step,) = parse_pipeline([{"near_dedup": {"bands": 16, "rows_per_band": 8, "num_perm": 128}}])
    assert step.hasher.num_perm == 128


# --- decontamination

EVAL_QUESTION = "Which river flows through the ancient city of Valdoria before it reaches the northern sea near the harbour"
EVAL_ANSWER = "The Silverbrook river, which the old maps call the Argent"


@pytest.fixture()
def eval_file(tmp_path):
    path = tmp_path / "eval.jsonl"
    rows = [
        {"question": EVAL_QUESTION, "answer": EVAL_ANSWER},
        {"question": "What colour is the sky on a clear day?", "answer": "blue"},
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def _decontaminate(train_texts: list[str], **params) -> tuple[datasets.Dataset, DataReport]:
    report = DataReport()
    steps = parse_pipeline([{"decontaminate": params}])
    return run_pipeline(datasets.Dataset.from_dict({"text": train_texts}), steps, report), report


def test_decontamination_drops_13_gram_overlap_and_keeps_12(eval_file):
    words = EVAL_QUESTION.split()
    thirteen = " ".join(words[3:16])
    twelve = " ".join(words[3:15])
    train = [
        f"Trivia night notes: {thirteen.upper()}!!! Nobody knew.",  # case and punctuation do not hide it
        f"Trivia night notes: {twelve} and then we went home early.",
        "A document about something else entirely, with no overlap at all with any evaluation question.",
    ]
    kept, report = _decontaminate(train, eval_source=str(eval_file), eval_column="question")
    assert kept["text"] == train[1:]
    record = report.steps[-1]
    assert record.removed == 1 and record.details["contaminated_rows"] == 1
    assert record.details["eval_rows"] == 2
    assert record.details["matches"][0]["ngram"] == " ".join(w.lower() for w in words[3:16])


def test_decontamination_reads_several_eval_columns(eval_file):
    answer_leak = f"Answer key, do not share: {EVAL_ANSWER} and some more words after it to be safe."
    clean = (
        "Unrelated training text about gardening, soil, compost and the best time to plant beans in spring."
    )
    kept, _ = _decontaminate(
        [answer_leak, clean], eval_source=str(eval_file), eval_column="question", ngram_size=8
    )
    assert kept["text"] == [answer_leak, clean]  # the answer is not in the question column
    kept, _ = _decontaminate(
        [answer_leak, clean], eval_source=str(eval_file), eval_column=["question", "answer"], ngram_size=8
    )
    assert kept["text"] == [clean]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, "set `eval_source`"),
        ({"eval_source": "x.jsonl", "ngram_size": 0}, "`ngram_size` must be an integer >= 1"),
        ({"eval_source": "x.jsonl", "eval_column": []}, "`eval_column` must be a column name or a list"),
    ],
)
def test_bad_decontamination_parameters_are_refused(params, message):
    with pytest.raises(RecipeInputError, match=message):
        parse_pipeline([{"decontaminate": params}])


def test_decontamination_refuses_unusable_eval_sets(eval_file):
    with pytest.raises(RecipeInputError, match="no column"):
        _decontaminate(["some text"], eval_source=str(eval_file), eval_column="passage")
    with pytest.raises(RecipeInputError, match="Lower `ngram_size`"):
        _decontaminate(["some text"], eval_source=str(eval_file), eval_column="answer", ngram_size=50)
    with pytest.raises(RecipeInputError, match="does not exist"):
        _decontaminate(["some text"], eval_source=str(eval_file.with_name("missing.jsonl")))


# --- the noisy-web corpus


def test_noisy_web_labels_every_planted_problem():
    corpus = load_source("builtin:noisy-web?n=400&seed=5")
    assert corpus.column_names == ["text", "domain", "kind", "dup_of"]
    kinds = corpus["kind"]
    assert set(kinds) == set(KINDS)
    expected = {"exact_dup": 16, "near_dup": 32, "corrupted": 16, "spam": 16, "low_info": 16, "unsafe": 8}
    assert {kind: kinds.count(kind) for kind in expected} == expected
    assert {d for d, k in zip(corpus["domain"], kinds, strict=True) if k == "clean"} == set(CLEAN_DOMAINS)

    pairs = planted_duplicate_pairs(corpus)
    assert len(pairs) == 48
    for original, copy in pairs:
        assert kinds[original] == "clean" and kinds[copy] in {"exact_dup", "near_dup"}
        a, b = corpus[original]["text"], corpus[copy]["text"]
        if kinds[copy] == "exact_dup":
            assert dedup_key(a) == dedup_key(b)
        else:
            assert dedup_key(a) != dedup_key(b)
            shared = len(set(a.lower().split()) & set(b.lower().split())) / len(set(a.lower().split()))
            assert shared > 0.8
    assert all(
        original == -1
        for original, kind in zip(corpus["dup_of"], kinds, strict=True)
        if kind not in {"exact_dup", "near_dup"}
    )

    def damaged(text: str) -> bool:
        """Replacement characters, mojibake, control characters or binary junk, or cut short."""
        return (
            "\ufffd" in text
            or "â€" in text
            or any(ord(c) < 32 and c not in "\n\t" for c in text)
            or len(text.split()) <= 40
        )

    by_kind = {kind: [t for t, k in zip(corpus["text"], kinds, strict=True) if k == kind] for kind in KINDS}
    assert all(damaged(text) for text in by_kind["corrupted"])
    assert not any(damaged(text) for text in by_kind["clean"])
    assert all("http" in text or "www." in text for text in by_kind["spam"])
    assert all(any(phrase in text for phrase in UNSAFE_PHRASES) for text in by_kind["unsafe"])
    assert not any(phrase in text for text in by_kind["clean"] for phrase in UNSAFE_PHRASES)


def test_noisy_web_is_deterministic_given_seed():
    first = noisy_web(n=150, seed=11)
    assert first.to_list() == noisy_web(n=150, seed=11).to_list()
    assert first["text"] != noisy_web(n=150, seed=12)["text"]


@pytest.mark.parametrize(
    "options",
    [{"n": 0}, {"n": "many"}, {"spam_fraction": 1.5}, {"near_dup_fraction": 0.6, "exact_dup_fraction": 0.5}],
)
def test_noisy_web_refuses_bad_options(options):
    with pytest.raises(RecipeInputError, match="noisy-web"):
        noisy_web(**options)


def test_clean_prose_passes_gopher_filters():
    """Clean prose documents are long and natural enough for Gopher's quality and repetition rules as
    datatrove implements them. Words are split with a regex that makes every punctuation mark a token (a
    little stricter than the spaCy tokenizer datatrove loads by default, which takes seconds to load).
    Structured rows (JSON/CSV) are left out: they are clean data but not prose, and Gopher's rule that 80%
    of words contain a letter removes most of them, as it does real JSON."""
    pytest.importorskip("datatrove")
    from datatrove.data import Document
    from datatrove.pipeline.filters import GopherQualityFilter, GopherRepetitionFilter
    from datatrove.utils.word_tokenizers import WordTokenizer

    class PunctuationSplitter(WordTokenizer):
        def word_tokenize(self, text: str) -> list[str]:
            return re.findall(r"\w+|[^\w\s]", text)

        def sent_tokenize(self, text: str) -> list[str]:
            return [text]

        def span_tokenize(self, text: str) -> list[tuple[int, int]]:
            return [(0, len(text))]

    corpus = noisy_web(n=400, seed=2, **ONLY_DUPLICATES)
    rows = [
        (text, domain)
        for text, domain, kind in zip(corpus["text"], corpus["domain"], corpus["kind"], strict=True)
        if kind == "clean" and domain != "structured"
    ]
    sample = random.Random(0).sample(rows, 200)
    splitter = PunctuationSplitter()
    filters = [GopherQualityFilter(language=splitter), GopherRepetitionFilter(language=splitter)]
    failures = []
    for i, (text, domain) in enumerate(sample):
        document = Document(text=text, id=str(i))
        verdicts = [f.filter(document) for f in filters]
        if any(verdict is not True for verdict in verdicts):
            failures.append((domain, verdicts))
    assert len(failures) <= 10, failures
    assert {domain for _, domain in sample} == set(CLEAN_DOMAINS) - {"structured"}


@pytest.mark.slow
def test_clusters_agree_with_datatrove():
    """datatrove's own 4-stage MinHash (about 10 s on 300 documents, hence slow)."""
    pytest.importorskip("datatrove")
    spec = importlib.util.spec_from_file_location(
        "near_dedup_bench", ROOT / "bench" / "near_dedup_vs_datatrove.py"
    )
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    figures = bench.compare_with_datatrove(noisy_web(n=300, seed=0, **ONLY_DUPLICATES)["text"])
    assert figures["pair_agreement"] >= 0.95
    assert abs(figures["removed_ours"] - figures["removed_datatrove"]) <= 0.05 * figures["removed_datatrove"]
