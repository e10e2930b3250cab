import json

import pandas as pd
import pytest

from hfrecipes.core.errors import RecipeInputError
from hfrecipes.data import list_builtins, load_source

from .conftest import SHAKESPEARE


def test_builtin_python_stdlib_is_tagged_by_domain():
    dataset = load_source("builtin:python-stdlib?max_files=20")
    assert {"text", "domain"} <= set(dataset.column_names)
    assert {"code", "documentation", "license"} == set(dataset["domain"])
    assert any("def " in t for t in dataset.filter(lambda r: r["domain"] == "code")["text"])


def test_builtin_python_stdlib_is_deterministic():
    a = load_source("builtin:python-stdlib?max_files=10&domains=code")
    b = load_source("builtin:python-stdlib?max_files=10&domains=code")
    assert list(a["text"]) == list(b["text"]) and set(a["domain"]) == {"code"}


def test_builtin_tinyshakespeare_reads_the_given_file():
    dataset = load_source(f"builtin:tinyshakespeare?path={SHAKESPEARE}")
    assert dataset[0]["text"].startswith("First Citizen:")
    # The whole file, one row per blank-line separated speech, in file order (tests/data: 2,100 speeches).
    assert "\n\n".join(dataset["text"]) == SHAKESPEARE.read_text(encoding="utf-8") and len(dataset) == 2100


def test_builtin_tinyshakespeare_without_path_says_how_to_fix(monkeypatch):
    monkeypatch.delenv("HFRECIPES_TINYSHAKESPEARE", raising=False)
    with pytest.raises(RecipeInputError, match="path="):
        load_source("builtin:tinyshakespeare")


def test_unknown_builtin_lists_the_available_ones():
    with pytest.raises(
        RecipeInputError, match="Unknown built-in dataset 'builtin:nope'.*builtin:python-stdlib"
    ):
        load_source("builtin:nope")
    assert {"python-stdlib", "tinyshakespeare"} <= set(list_builtins())


def test_missing_file_is_named(tmp_path):
    missing = tmp_path / "nothing.jsonl"
    with pytest.raises(RecipeInputError, match=f"{missing}.*does not exist"):
        load_source(str(missing))


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv", ".parquet", ".txt"])
def test_local_file_formats(tmp_path, suffix):
    rows = [{"text": f"document number {i}"} for i in range(5)]
    path = tmp_path / f"data{suffix}"
    if suffix == ".jsonl":
        path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    elif suffix == ".json":
        path.write_text(json.dumps(rows))
    elif suffix == ".csv":
        pd.DataFrame(rows).to_csv(path, index=False)
    elif suffix == ".parquet":
        pd.DataFrame(rows).to_parquet(path)
    else:
        path.write_text("\n\n".join(r["text"] for r in rows))
    dataset = load_source(str(path))
    assert dataset["text"] == [r["text"] for r in rows]


def test_directory_of_files(tmp_path):
    for i in range(3):
        (tmp_path / f"part{i}.jsonl").write_text(json.dumps({"text": f"part {i}"}) + "\n")
    assert sorted(load_source(str(tmp_path))["text"]) == ["part 0", "part 1", "part 2"]


def test_malformed_jsonl_line_reports_file_and_line(tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text('{"text": "fine"}\n{"text": "also fine"}\n{"text": oops}\n')
    with pytest.raises(RecipeInputError, match=r"broken\.jsonl:3: malformed JSON line"):
        load_source(str(path))


def test_empty_source_is_refused(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("")
    with pytest.raises(RecipeInputError, match="empty"):
        load_source(str(path))


def test_hub_id_offline_gives_a_clear_error():
    with pytest.raises(
        RecipeInputError, match="Could not load 'someone/some-dataset' from the Hugging Face Hub"
    ):
        load_source("someone/some-dataset")
