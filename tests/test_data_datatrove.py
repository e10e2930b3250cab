"""The datatrove backend keeps exactly the rows the datasets backend keeps, on the same YAML pipeline.

near_dedup: both backends draw the same MinHash permutations from the seed and simplify text the same way.
With `hash_function: sha1` they also hash shingles identically (datatrove's only offline hash), so the
default run asserts equality; they can still differ where spaCy splits simplified words differently from
whitespace ("cannot") or in which member of a 3+ document cluster survives, neither of which happens on
this data. With our default xxhash the hashes differ, so the slow test only bounds the disagreement.
"""

from __future__ import annotations

import datasets
import pytest
from datatrove.pipeline.dedup.exact_dedup import ExactDedupFilter, ExactDedupSignature, ExactFindDedups
from datatrove.pipeline.dedup.minhash import (
    MinhashDedupBuckets,
    MinhashDedupCluster,
    MinhashDedupFilter,
    MinhashDedupSignature,
)
from datatrove.pipeline.filters import FineWebQualityFilter, GopherQualityFilter, GopherRepetitionFilter
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.writers import JsonlWriter

import hfrecipes.builtins.noisy_web  # noqa: F401  (registers builtin:noisy-web)
from hfrecipes.core.data_report import DataReport
from hfrecipes.core.errors import RecipeInputError
from hfrecipes.data import load_source, parse_pipeline, run_pipeline
from hfrecipes.data.datatrove_backend import (
    ScopedNativeFilter,
    StepFilter,
    StepTransform,
    build_datatrove_pipeline,
    run_with_datatrove,
)

PIPELINE = [
    "normalize",  # our transform, wrapped
    {"low_information": {"domains": ["web"]}},  # our filter, wrapped, limited to one domain
    "corrupted",
    "gopher_quality",  # datatrove's own blocks from here
    "gopher_repetition",
    "fineweb_quality",
    "c4_quality",  # rewrites the text, in both backends
    "exact_dedup",
    {"near_dedup": {"hash_function": "sha1"}},
]


@pytest.fixture(scope="module")
def noisy_web() -> datasets.Dataset:
    return load_source("builtin:noisy-web?n=300&seed=0")


@pytest.fixture(scope="module")
def both_backends(noisy_web, tmp_path_factory):
    datasets_report, datatrove_report = DataReport(), DataReport()
    expected = run_pipeline(noisy_web, parse_pipeline(PIPELINE), datasets_report)
    work_dir = tmp_path_factory.mktemp("datatrove") / "work"
    # workers=1 runs the tasks in this process: spaCy (datatrove's word splitter) loads once, not per worker.
    got = run_with_datatrove(
        noisy_web, parse_pipeline(PIPELINE), work_dir, tasks=2, workers=1, report=datatrove_report
    )
    return expected, got, datasets_report, datatrove_report


def test_datatrove_keeps_the_same_rows_with_the_same_columns(both_backends):
    expected, got, _, _ = both_backends
    assert got.features == expected.features
    # Row for row: the same rows in the same order, with c4_quality's rewritten text and every other column.
    assert got.to_list() == expected.to_list()


def test_every_step_reports_the_same_rows_in_and_out(both_backends, noisy_web):
    _, _, datasets_report, datatrove_report = both_backends
    per_step = [(s.step, s.rows_in, s.rows_out) for s in datatrove_report.steps]
    assert per_step == [(s.step, s.rows_in, s.rows_out) for s in datasets_report.steps]
    removed = {s.step: s.removed for s in datatrove_report.steps}
    # Not vacuous: each kind of block (wrapped, domain-limited, native, dedup) removed rows here.
    for step in ("low_information", "corrupted", "gopher_quality", "fineweb_quality", "c4_quality"):
        assert removed[step] > 0, step
    assert removed["exact_dedup"] > 0 and removed["near_dedup"] > 0
    records = {s.step: s for s in datatrove_report.steps}
    assert records["low_information"].rows_in == sum(d == "web" for d in noisy_web["domain"])
    assert records["gopher_quality"].details["datatrove_block"] == GopherQualityFilter.name
    assert records["corrupted"].details["datatrove_block"] == "hfrecipes corrupted"
    assert records["normalize"].details["rows_changed"] == datasets_report.steps[0].details["rows_changed"]


def test_pipeline_maps_steps_to_datatrove_blocks_with_their_parameters(tmp_path):
    steps = parse_pipeline(
        [
            {"gopher_quality": {"min_doc_words": 30, "stop_words": ["the", "a"]}},
            {"gopher_repetition": {"top_n_grams": [[2, 0.25]]}},
            {"fineweb_quality": {"stop_chars": ["."], "domains": ["web"]}},
            "spam",
            "normalize",
            {"near_dedup": {"shingle_size": 3, "bands": 4, "rows_per_band": 2, "seed": 7}},
            "exact_dedup",
        ]
    )
    stages = build_datatrove_pipeline(
        steps, tmp_path / "in", tmp_path / "out", tmp_path / "work", ["text", "domain"]
    )
    blocks = [[type(block) for block in stage.pipeline] for stage in stages]
    assert blocks == [
        [
            JsonlReader,
            GopherQualityFilter,
            GopherRepetitionFilter,
            ScopedNativeFilter,
            StepFilter,
            StepTransform,
            JsonlWriter,
        ],
        [JsonlReader, MinhashDedupSignature],
        [MinhashDedupBuckets],
        [MinhashDedupCluster],
        [JsonlReader, MinhashDedupFilter, JsonlWriter],
        [JsonlReader, ExactDedupSignature],
        [ExactFindDedups],
        [JsonlReader, ExactDedupFilter, JsonlWriter],
    ]
    first = stages[0].pipeline
    assert first[1].min_doc_words == 30 and first[1].stop_words == {"the", "a"}
    assert first[2].top_n_grams == ((2, 0.25),)
    assert isinstance(first[3].inner, FineWebQualityFilter) and first[3].inner.stop_chars == (".",)
    assert first[3].domains == {"web"}
    config = stages[1].pipeline[1].config
    assert (config.n_grams, config.num_buckets, config.hashes_per_bucket, config.seed) == (3, 4, 2, 7)
    assert config.hash_config.hash_fc == "sha1"
    # One bucket-matching task per band, one clustering task; per-document stages take the run's count.
    assert [stage.tasks for stage in stages] == [None, None, 4, 1, None, None, 1, None]
    # The dedup signatures and the filter stage after them read the same shards, so document indices agree.
    assert stages[1].source == stages[4].source == stages[0].destination
    assert stages[-1].destination == str(tmp_path / "out")


@pytest.mark.parametrize(
    ("step", "message"),
    [
        ("contradictory_labels", "not supported on the datatrove backend"),
        ({"near_dedup": {"threshold": 0.8}}, "threshold"),
        ({"near_dedup": {"domains": ["web"]}}, "domains"),
        ({"gopher_quality": {"columns": ["title"]}}, "reads only the `text` column"),
        ({"spam": {"domains": ["web"]}}, "no `domain` column"),
    ],
)
def test_unsupported_steps_are_refused_before_any_work(tmp_path, step, message):
    dataset = datasets.Dataset.from_dict({"text": ["a b c"], "title": ["t"], "label": ["x"]})
    with pytest.raises(RecipeInputError, match=message):
        run_with_datatrove(dataset, parse_pipeline([step]), tmp_path / "work", workers=1)
    assert not (tmp_path / "work").exists()


def test_refuses_a_work_dir_with_an_earlier_run(tmp_path):
    (tmp_path / "work" / "logs").mkdir(parents=True)
    dataset = datasets.Dataset.from_dict({"text": ["a b c"]})
    with pytest.raises(RecipeInputError, match="not empty"):
        run_with_datatrove(dataset, parse_pipeline(["drop_empty"]), tmp_path / "work", workers=1)


def test_transforms_rewrite_metadata_columns_and_empty_texts_are_reported(tmp_path):
    dataset = datasets.Dataset.from_dict(
        {
            "text": ["A fine sentence.\r\n", "", "  \x07 ", "Another one."],
            "title": ["  First\r\n", "Second", "Third", None],
            "score": [1, 2, 3, 4],
        }
    )
    spec = [{"normalize": {"columns": ["text", "title"]}}, "drop_empty"]
    expected_report, report = DataReport(), DataReport()
    expected = run_pipeline(dataset, parse_pipeline(spec), expected_report)
    got = run_with_datatrove(
        dataset, parse_pipeline(spec), tmp_path / "work", tasks=2, workers=1, report=report
    )
    assert got.to_list() == expected.to_list()
    assert got["title"] == ["First", None] and got["score"] == [1, 4]
    # datatrove's reader skips the row that arrives without text; the report says so instead of losing it.
    assert [(s.step, s.rows_in, s.rows_out) for s in report.steps] == [
        ("datatrove_skipped_empty", 4, 3),
        ("normalize", 3, 3),
        ("drop_empty", 3, 2),
    ]
    assert report.steps[1].details["rows_changed"] == expected_report.steps[0].details["rows_changed"] == 2


@pytest.mark.slow
def test_default_xxhash_near_dedup_agrees_within_a_bound(tmp_path):
    """Our default hashes shingles with xxhash, datatrove with SHA-1: the same LSH on different hash values.
    noisy-web's near copies edit 3-10% of the words, which puts many pairs near the 14 x 8 bands' 50% point
    (Jaccard ~0.72), so a pair caught by one hash can be missed by the other (11 of 1,000 rows here), and
    in clusters of 3+ datatrove may keep a later member. Allow 3% of the documents to differ."""
    dataset = load_source("builtin:noisy-web?n=1000&seed=1")
    spec = ["normalize", "exact_dedup", "near_dedup"]
    dataset = dataset.add_column("row", list(range(len(dataset))))
    expected = set(run_pipeline(dataset, parse_pipeline(spec), DataReport())["row"])
    got = set(run_with_datatrove(dataset, parse_pipeline(spec), tmp_path / "work", workers=1)["row"])
    assert len(expected) < len(dataset) and len(got) < len(dataset)
    assert len(expected ^ got) <= 0.03 * len(dataset)


def test_the_tiny_prepare_config_runs_the_same_on_both_backends(noisy_web, tmp_path):
    """recipes/text/configs/prepare_tiny.yaml's cleaning steps (domain-scoped prose filters, spam, unsafe, PII
    masking, dedup) keep the same rows on datatrove. Mixing is a whole-dataset step the datatrove backend
    refuses, and its near_dedup `threshold` has no datatrove equivalent, so those two are adapted."""
    import yaml

    from .conftest import ROOT

    pipeline = yaml.safe_load((ROOT / "recipes/text/configs/prepare_tiny.yaml").read_text())["pipeline"]
    names = [item if isinstance(item, str) else next(iter(item)) for item in pipeline]
    assert "mix_domains" in names and "near_dedup" in names
    adapted = [
        {"near_dedup": {"hash_function": "sha1"}} if name == "near_dedup" else item
        for name, item in zip(names, pipeline, strict=True)
        if name != "mix_domains"
    ]
    expected = run_pipeline(noisy_web, parse_pipeline(adapted), DataReport())
    got = run_with_datatrove(noisy_web, parse_pipeline(adapted), tmp_path / "work", tasks=2, workers=1)
    assert len(expected) < len(noisy_web)  # the steps really removed rows
    assert list(got["text"]) == list(expected["text"])
    assert list(got["domain"]) == list(expected["domain"])
