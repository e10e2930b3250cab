import math
from collections import Counter

import datasets
import pytest

from hfrecipes.core.data_report import DataReport
from hfrecipes.core.errors import RecipeInputError
from hfrecipes.data import parse_pipeline, run_pipeline
from hfrecipes.data.mixing import domain_row_counts, mix_domains, split_by_domain, temperature_shares


def domain(name, rows, words_per_row=1):
    """Rows with a unique id and a known number of whitespace words."""
    return datasets.Dataset.from_dict(
        {
            "text": [" ".join([f"{name}{i}"] * words_per_row) for i in range(rows)],
            "row_id": [f"{name}-{i}" for i in range(rows)],
        }
    )


@pytest.fixture(scope="module")
def uneven():
    return {"web": domain("web", 2000, 1), "code": domain("code", 150, 3), "math": domain("math", 12, 5)}


def shares_of(values):
    counts = Counter(values)
    return {key: count / len(values) for key, count in counts.items()}


def test_weights_reach_target_shares_on_very_uneven_domains(uneven):
    weights = {"web": 0.5, "code": 0.3, "math": 0.2}
    mixed = mix_domains(uneven, weights=weights, max_epochs=20, seed=1, report=DataReport())
    realised = shares_of(mixed["domain"])
    for name, target in weights.items():
        assert abs(realised[name] - target) < 0.02, (name, realised)
    # "math" (12 rows x 20 epochs = 240 rows at 20%) limits the total: 1200 rows.
    assert len(mixed) == 1200
    assert max(Counter(mixed["row_id"]).values()) <= 20


def test_unnormalised_weights_and_fixed_total_rows(uneven):
    mixed = mix_domains(uneven, weights={"web": 3, "code": 1}, total_rows=200, seed=0, report=DataReport())
    assert len(mixed) == 200 and Counter(mixed["domain"]) == {"web": 150, "code": 50}
    assert len(set(mixed["row_id"])) == 200  # no repeats needed, so none made


def test_temperature_math():
    sizes = {"big": 10_000, "mid": 100, "small": 1, "empty": 0}
    proportional = temperature_shares(sizes, 1.0)
    total = sum(sizes.values())
    assert all(math.isclose(proportional[d], n / total) for d, n in sizes.items())
    square_root = temperature_shares(sizes, 2.0)
    assert math.isclose(square_root["big"] / square_root["mid"], 10.0)
    uniform = temperature_shares(sizes, 1e6)
    assert all(abs(uniform[d] - 1 / 3) < 1e-4 for d in ("big", "mid", "small")) and uniform["empty"] == 0
    sharp = temperature_shares(sizes, 0.001)  # would overflow outside log space
    assert sharp["big"] == pytest.approx(1.0)


def test_temperature_one_keeps_every_row_once_and_large_temperature_balances(uneven):
    everything = mix_domains(uneven, temperature=1.0, report=DataReport())
    assert len(everything) == 2162 and Counter(everything["row_id"]).most_common(1)[0][1] == 1

    balanced = mix_domains(uneven, temperature=100.0, max_epochs=200, report=DataReport())
    realised = shares_of(balanced["domain"])
    expected = temperature_shares({d: len(ds) for d, ds in uneven.items()}, 100.0)
    assert all(abs(realised[d] - expected[d]) < 0.02 for d in uneven)
    assert all(abs(realised[d] - 1 / 3) < 0.03 for d in uneven)


@pytest.mark.parametrize("max_epochs", [1.0, 2.5, {"math": 4, "code": 0.5}])
def test_repetition_cap_holds_for_every_row(uneven, max_epochs):
    mixed = mix_domains(
        uneven, weights={"web": 1, "code": 1, "math": 1}, max_epochs=max_epochs, report=DataReport()
    )
    per_domain = max_epochs if isinstance(max_epochs, dict) else dict.fromkeys(uneven, max_epochs)
    copies = Counter(mixed["row_id"])
    domains = Counter(mixed["domain"])
    for name, dataset in uneven.items():
        epochs = per_domain.get(name, 1.0)
        assert domains[name] <= math.floor(epochs * len(dataset))
        assert max(copies[row_id] for row_id in dataset["row_id"]) <= math.ceil(epochs)
    assert len(set(domains.values())) == 1  # equal weights: the capped domain sets every count


def test_repeats_are_whole_reshuffled_passes():
    mixed = mix_domains({"tiny": domain("t", 10)}, max_epochs=3.5, report=DataReport())
    copies = Counter(mixed["row_id"])
    assert len(mixed) == 35 and sorted(Counter(copies.values()).items()) == [(3, 5), (4, 5)]


def test_deterministic_given_seed(uneven):
    def run(seed):
        return mix_domains(uneven, temperature=3.0, max_epochs=2, seed=seed, report=DataReport())["row_id"]

    assert run(7) == run(7)
    assert run(7) != run(8)


def test_report_shares_before_and_after(uneven):
    report = DataReport()
    mixed = mix_domains(uneven, weights={"web": 0.6, "code": 0.2, "math": 0.2}, max_epochs=5, report=report)
    domains = report.summary["domains"]
    assert report.steps[-1].step == "mix_domains" and report.steps[-1].details["domains"] == domains
    for key in (
        "row_share_before",
        "row_share_after",
        "token_share_before",
        "token_share_after",
        "target_share",
    ):
        assert math.isclose(sum(entry[key] for entry in domains.values()), 1.0), key
    words = {name: sum(len(t.split()) for t in ds["text"]) for name, ds in uneven.items()}
    assert {d: e["tokens_before"] for d, e in domains.items()} == words
    mixed_words = Counter()
    for row in mixed:
        mixed_words[row["domain"]] += len(row["text"].split())
    assert {d: e["tokens_after"] for d, e in domains.items()} == mixed_words
    assert domains["math"]["repetition"] == domains["math"]["rows_after"] / 12 == 5.0
    assert report.steps[-1].rows_out == len(mixed) and report.steps[-1].tokens_out == sum(
        mixed_words.values()
    )


class CharacterTokenizer:
    """Stands in for a Hugging Face tokenizer: one id per character, batched like `tokenizer(texts)`."""

    def __call__(self, texts, add_special_tokens=True):
        return {"input_ids": [[ord(c) for c in text] for text in texts]}


def test_tokens_from_a_length_fn_or_a_tokenizer():
    parts = {"a": domain("a", 3, words_per_row=2), "b": domain("b", 2)}  # "a0 a0" is 5 characters
    by_length_fn, by_tokenizer = DataReport(), DataReport()
    mix_domains(parts, length_fn=len, report=by_length_fn)
    mix_domains(parts, tokenizer=CharacterTokenizer(), report=by_tokenizer)
    for report in (by_length_fn, by_tokenizer):
        assert report.summary["domains"]["a"]["tokens_before"] == 15
        assert report.summary["domains"]["b"]["tokens_before"] == 4
    with pytest.raises(RecipeInputError, match=r"one way to count tokens, not \['length_fn', 'tokenizer'\]"):
        mix_domains(parts, length_fn=len, tokenizer=CharacterTokenizer(), report=DataReport())


def test_token_counts_override_word_counts():
    parts = {"a": domain("a", 3), "b": domain("b", 2)}
    report = DataReport()
    mix_domains(parts, token_counts={"a": [10, 10, 10], "b": [5, 5]}, report=report)
    assert report.summary["domains"]["a"]["tokens_before"] == 30
    assert report.summary["domains"]["b"]["token_share_before"] == pytest.approx(10 / 40)
    with pytest.raises(
        RecipeInputError, match=r"token_counts\['b'\] must have one count per row \(2\), got 1"
    ):
        mix_domains(parts, token_counts={"a": [1, 1, 1], "b": [1]}, report=DataReport())


def test_domain_without_weight_is_left_out_with_a_warning(uneven):
    report = DataReport()
    mixed = mix_domains(uneven, weights={"web": 1, "code": 1}, report=report)
    assert set(mixed["domain"]) == {"web", "code"}
    assert "math" in report.steps[-1].details["warnings"][0]
    assert report.summary["domains"]["math"]["rows_after"] == 0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (
            {"weights": {"web": 1, "mathh": 1}},
            r"domain 'mathh', which has no rows.*web \(2000 rows\).*math \(12 rows\)",
        ),
        ({"weights": {"web": 0, "code": 0}}, r"must sum to a positive number"),
        ({"weights": {"web": 1, "code": -0.5}}, r"weight for domain 'code' must be a non-negative number"),
        ({"temperature": 0}, r"temperature must be a positive number"),
        ({"temperature": -1.0}, r"temperature must be a positive number"),
        ({"weights": {"web": 1}, "temperature": 2.0}, r"either mixing `weights` or a sampling `temperature`"),
        ({"max_epochs": 0}, r"max_epochs for domain 'web' must be a positive number"),
        ({"max_epochs": {"webb": 2}}, r"max_epochs names unknown domain\(s\) \['webb'\]"),
        ({"total_rows": 5000}, r"total_rows=5000 cannot keep the target shares.*at most 2162 rows"),
        ({"total_rows": 0}, r"total_rows must be a positive integer"),
    ],
)
def test_bad_inputs_are_refused(uneven, kwargs, match):
    with pytest.raises(RecipeInputError, match=match):
        mix_domains(uneven, report=DataReport(), **kwargs)


def test_empty_domains_and_columns_across_domains():
    parts = {"a": domain("a", 5), "b": domain("b", 0)}
    with pytest.raises(RecipeInputError, match=r"domain 'b', which has no rows"):
        mix_domains(parts, weights={"a": 1, "b": 1}, report=DataReport())
    assert len(mix_domains(parts, report=DataReport())) == 5  # empty domain gets share 0 by temperature
    extra_column = {"a": domain("a", 2), "c": datasets.Dataset.from_dict({"text": ["x"], "score": [1.0]})}
    assert mix_domains(extra_column, report=DataReport())["score"].count(None) == 2
    clashing = {"a": domain("a", 2), "c": datasets.Dataset.from_dict({"text": ["x"], "row_id": [7]})}
    with pytest.raises(RecipeInputError, match=r"different types across domains.*row_id"):
        mix_domains(clashing, report=DataReport())


def test_largest_remainder_counts_are_exact_and_within_caps():
    counts = domain_row_counts({"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}, {"a": 100, "b": 100, "c": 100}, 100)
    assert sum(counts.values()) == 100 and sorted(counts.values()) == [33, 33, 34]
    counts = domain_row_counts({"a": 0.7, "b": 0.3}, {"a": 10_000, "b": 120})
    assert counts == {"a": 280, "b": 120}


def test_mix_domains_step_rebalances_a_dataset_with_a_domain_column():
    rows = datasets.concatenate_datasets(
        [domain("x", 90).add_column("domain", ["x"] * 90), domain("y", 10).add_column("domain", ["y"] * 10)]
    )
    assert {name: len(part) for name, part in split_by_domain(rows).items()} == {"x": 90, "y": 10}
    report = DataReport()
    steps = parse_pipeline([{"mix_domains": {"weights": {"x": 0.5, "y": 0.5}, "max_epochs": 3}}])
    mixed = run_pipeline(rows, steps, report)
    assert Counter(mixed["domain"]) == {"x": 30, "y": 30}
    assert report.summary["domains"]["y"]["repetition"] == 3.0
    with pytest.raises(RecipeInputError, match=r"needs a 'domain' column"):
        split_by_domain(domain("z", 3))
    with pytest.raises(RecipeInputError, match=r"mix_domains takes no `domains`"):
        parse_pipeline([{"mix_domains": {"domains": ["x"]}}])
