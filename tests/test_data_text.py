import datasets
import pytest

from hfrecipes.core.data_report import DataReport
from hfrecipes.core.errors import RecipeInputError
from hfrecipes.data import (
    normalize_text,
    pack_blocks,
    parse_pipeline,
    run_pipeline,
    select_text_column,
    tokenize_and_pack,
    tokenize_documents,
    train_validation_split,
)
from hfrecipes.text.tokenization import train_tokenizer


def test_normalize_text_nfc_controls_and_newlines():
    decomposed = "cafe\u0301"
    assert normalize_text(f"  {decomposed}\x00\x1b\r\nline\x7f two\t ") == "caf\u00e9\nline two"


def test_normalize_and_drop_empty_reports_removed_rows():
    report = DataReport()
    ds = datasets.Dataset.from_dict({"text": ["keep", "   ", "\x00\x01", "also keep"]})
    out = run_pipeline(ds, parse_pipeline(["normalize", "drop_empty"]), report)
    assert out["text"] == ["keep", "also keep"]
    normalize, drop = report.steps
    assert normalize.details["rows_changed"] == 2 and normalize.removed == 0
    assert (drop.rows_in, drop.rows_out, drop.removed) == (4, 2, 2)


def test_exact_dedup_keeps_first_occurrence_and_ignores_case_and_spacing():
    report = DataReport()
    ds = datasets.Dataset.from_dict(
        {"text": ["Hello  world", "other", "hello world", "HELLO WORLD", "other "]}
    )
    out = run_pipeline(ds, parse_pipeline(["exact_dedup"]), report)
    assert out["text"] == ["Hello  world", "other"]
    assert report.steps[-1].removed == 3 and report.steps[-1].examples


def test_select_text_column_renames_and_reports_missing_column():
    ds = datasets.Dataset.from_dict({"content": ["a"], "domain": ["x"], "other": [1]})
    assert select_text_column(ds, "content").column_names == ["text", "domain"]
    with pytest.raises(
        RecipeInputError, match=r"Text column 'body' not found.*\['content', 'domain', 'other'\]"
    ):
        select_text_column(ds, "body")


def test_random_split_is_deterministic_given_seed():
    ds = datasets.Dataset.from_dict({"text": [f"doc {i}" for i in range(100)]})
    a = train_validation_split(ds, 0.2, "random", 7, DataReport())
    b = train_validation_split(ds, 0.2, "random", 7, DataReport())
    c = train_validation_split(ds, 0.2, "random", 8, DataReport())
    assert list(a[1]["text"]) == list(b[1]["text"]) != list(c[1]["text"])
    assert len(a[0]) + len(a[1]) == 100 and set(a[0]["text"]).isdisjoint(a[1]["text"])


def test_tail_split_takes_the_last_characters_in_order():
    texts = [f"{i:03d}" * 10 for i in range(50)]
    train, validation = train_validation_split(
        datasets.Dataset.from_dict({"text": texts}), 0.1, "tail", 0, DataReport()
    )
    assert list(train["text"]) + list(validation["text"]) == texts
    assert len(validation) == 5


@pytest.fixture(scope="module")
def tokenizer():
    corpus = [f"The quick brown fox {i} jumps over the lazy dog." for i in range(200)]
    return train_tokenizer(corpus, "byte-bpe", vocab_size=300)


def test_packing_blocks_have_the_right_length_and_keep_every_token(tokenizer):
    docs = datasets.Dataset.from_dict({"text": [f"document {i} " + "word " * (i % 17) for i in range(300)]})
    tokenized = tokenize_documents(docs, tokenizer)
    stream = [t for ids in tokenized["input_ids"] for t in ids]
    blocks = pack_blocks(tokenized, block_size=32, map_batch_size=10_000)
    assert all(len(b) == 32 for b in blocks["input_ids"])
    assert list(blocks["input_ids"]) == list(blocks["labels"])
    packed = [t for b in blocks["input_ids"] for t in b]
    # Nothing lost or duplicated: the packed stream is the token stream minus only the final partial block.
    assert packed == stream[: len(packed)] and len(stream) - len(packed) < 32
    # EOS separates documents: exactly one per document in the stream.
    assert stream.count(tokenizer.eos_token_id) == len(docs)


def test_tokenize_and_pack_reports_tokens_in_and_out(tokenizer):
    report = DataReport()
    docs = datasets.Dataset.from_dict({"text": ["alpha beta gamma " * 20] * 30})
    blocks, stats = tokenize_and_pack(docs, tokenizer, 16, report, "train")
    step = report.steps[-1]
    assert step.tokens_in == stats["tokens"] == stats["tokens_packed"] + stats["tokens_dropped"]
    assert step.tokens_out == len(blocks) * 16
    assert stats["characters"] == sum(len(t) + 1 for t in docs["text"])


def test_too_few_tokens_for_one_block_is_refused(tokenizer):
    docs = datasets.Dataset.from_dict({"text": ["tiny"]})
    with pytest.raises(RecipeInputError, match="fewer than one block of 512.*smaller `block_size`"):
        tokenize_and_pack(docs, tokenizer, 512, DataReport(), "validation")


def test_report_json_numbers_add_up(tmp_path, tokenizer):
    report = DataReport(source="x")
    ds = datasets.Dataset.from_dict({"text": ["a b", "a b", "", "c d"]})
    ds = run_pipeline(ds, parse_pipeline(["normalize", "drop_empty", "exact_dedup"]), report)
    report.save(tmp_path / "data_report.json")
    saved = __import__("json").loads((tmp_path / "data_report.json").read_text())
    for step in saved["steps"]:
        assert step["rows_in"] == step["rows_out"] + step["removed"]
    assert saved["steps"][-1]["rows_out"] == 2


def test_exact_dedup_of_chat_rows_reads_the_messages():
    rows = [[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]] * 2
    ds = datasets.Dataset.from_dict({"messages": rows + [[{"role": "user", "content": "bye"}]]})
    assert len(run_pipeline(ds, parse_pipeline(["exact_dedup"]), DataReport())) == 2


def test_pipeline_refuses_unknown_steps_and_parameters():
    with pytest.raises(RecipeInputError, match="Unknown pipeline step 'sparkle'.*Available: .*exact_dedup"):
        parse_pipeline(["sparkle"])
    with pytest.raises(RecipeInputError, match=r"Step 'exact_dedup' has no parameter\(s\) \['threshold'\]"):
        parse_pipeline([{"exact_dedup": {"threshold": 0.5}}])
    with pytest.raises(RecipeInputError, match="must be a step name or a one-key mapping"):
        parse_pipeline([{"a": 1, "b": 2}])


def test_pipeline_that_removes_every_row_names_the_step():
    ds = datasets.Dataset.from_dict({"text": ["   ", ""]})
    with pytest.raises(RecipeInputError, match="Step 'drop_empty' removed every remaining row"):
        run_pipeline(ds, parse_pipeline(["drop_empty"]), DataReport())
