import json

import pytest
from datasets import load_from_disk
from huggingface_hub import DatasetCard, ModelCard

from hfrecipes.core.errors import RecipeInputError

from .conftest import ROOT, TINY_PRETRAIN, read_json, run_recipe

PREPARE_TINY = ROOT / "recipes/text/configs/prepare_tiny.yaml"


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    out = tmp_path_factory.mktemp("prepared") / "out"
    run_recipe("text/prepare_data.py", "--config", PREPARE_TINY, "--output_dir", out)
    return out


def test_prepared_dataset_and_reports(prepared):
    dataset = load_from_disk(str(prepared))
    report = read_json(prepared / "data_report.json")
    assert len(dataset) == report["summary"]["rows"] > 0
    assert {"text", "domain"} <= set(dataset.column_names)
    for step in report["steps"]:
        assert step["rows_in"] == step["rows_out"] + step["removed"], step["step"]
    removed_by = {s["step"]: s["removed"] for s in report["steps"]}
    # The noisy corpus has planted problems: the cleaning steps must actually remove rows.
    assert sum(removed_by.values()) > 0
    markdown = (prepared / "data_report.md").read_text()
    assert "| step | rows in |" in markdown and "data_report.png" in markdown
    # The people domain's stereotype skew shows up as counts per group (e.g. "female 634").
    gender = report["summary"]["demographic_terms"]["gender"]
    assert gender["male"] > 0 and f"female {gender['female']:,}" in markdown
    assert "people" in report["summary"]["domains"]
    assert (prepared / "data_report.png").stat().st_size > 2000
    card = DatasetCard.load(prepared / "README.md")
    assert "hfrecipes" in card.data.tags
    assert read_json(prepared / "lineage.json")["recipe"] == "text/prepare_data"


def test_pretraining_reads_a_prepared_directory_and_cites_its_report(prepared, tmp_path):
    out = tmp_path / "pretrain"
    run_recipe(
        "text/pretrain.py",
        *TINY_PRETRAIN,
        "--dataset_name",
        prepared,
        "--max_documents",
        "400",
        "--max_steps",
        "10",
        "--eval_steps",
        "10",
        "--output_dir",
        out,
    )
    lineage = read_json(out / "lineage.json")
    data_input = next(i for i in lineage["inputs"] if i["kind"] == "data")
    assert data_input["recipe"] == "text/prepare_data" and len(data_input["lineage_sha256"]) == 64
    upstream = lineage["data_report"]["upstream"]
    assert upstream["steps"] == read_json(prepared / "data_report.json")["steps"]
    card = ModelCard.load(out / "README.md").text
    assert "Prepared from raw data" in card and upstream["steps"][-1]["step"] in card


def test_unreadable_files_in_a_directory_are_reported_not_fatal(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(3):
        (corpus / f"part{i}.jsonl").write_text(json.dumps({"text": f"document {i} " * 30}) + "\n")
    (corpus / "broken.jsonl").write_text('{"text": "fine"}\n{oops\n')
    (corpus / "latin1.jsonl").write_bytes('{"text": "caf\xe9"}\n'.encode("latin-1"))
    out = tmp_path / "out"
    run_recipe(
        "text/prepare_data.py", "--sources", str(corpus), "--pipeline", "normalize", "--output_dir", out
    )
    load = read_json(out / "data_report.json")["steps"][0]
    unreadable = {item["path"].split("/")[-1]: item["reason"] for item in load["details"]["unreadable_files"]}
    assert set(unreadable) == {"broken.jsonl", "latin1.jsonl"}
    assert "broken.jsonl:2: malformed JSON line" in unreadable["broken.jsonl"]
    assert "not valid UTF-8" in unreadable["latin1.jsonl"]
    assert load["rows_out"] == 3


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["--pipeline", "normalize", "sparkle"], "Unknown pipeline step 'sparkle'"),
        (["--sources", "builtin:nope"], "Unknown built-in dataset"),
    ],
)
def test_bad_input_is_refused_with_a_clear_error(tmp_path, overrides, message):
    with pytest.raises(RecipeInputError, match=message):
        run_recipe(
            "text/prepare_data.py", "--config", PREPARE_TINY, *overrides, "--output_dir", tmp_path / "out"
        )
    assert not (tmp_path / "out").exists()


def test_the_same_yaml_on_the_datatrove_backend_keeps_the_same_rows(prepared, tmp_path):
    """prepare_tiny.yaml with `backend: datatrove`: the filters run on datatrove's local executor, the steps it
    has no equivalent for (near_dedup with a threshold, mixing) continue on datasets; same result."""
    out = tmp_path / "datatrove"
    run_recipe(
        "text/prepare_data.py",
        "--config",
        PREPARE_TINY,
        "--backend",
        "datatrove",
        "--datatrove_workers",
        "1",
        "--output_dir",
        out,
    )
    expected, got = load_from_disk(str(prepared)), load_from_disk(str(out))
    assert list(got["text"]) == list(expected["text"]) and len(got) > 0
    steps = [s["step"] for s in read_json(out / "data_report.json")["steps"]]
    assert steps == [s["step"] for s in read_json(prepared / "data_report.json")["steps"]]
