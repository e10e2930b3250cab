import datasets
import pytest
import torch

from hfrecipes.core.data_report import DataReport
from hfrecipes.core.errors import RecipeInputError
from hfrecipes.data import parse_pipeline, run_pipeline
from hfrecipes.data.safety import PIIMask, Unsafe
from hfrecipes.text.tokenization import train_tokenizer


def kept_texts(step, texts):
    report = DataReport()
    out = step.apply(datasets.Dataset.from_dict({"text": texts}), report)
    return list(out["text"]), report.steps[-1]


# --- blocklist -----------------------------------------------------------------------------------------


def test_blocklist_matches_whole_words_ignoring_case_not_substrings():
    step = Unsafe(terms=["class", "c++"], use_default_terms=False)
    texts = [
        "A text classification model.",  # substring only
        "The CLASS starts at nine.",
        "subclassing is fine",
        "I write C++ daily",
        "abc++ is another word",
    ]
    kept, record = kept_texts(step, texts)
    assert kept == ["A text classification model.", "subclassing is fine", "abc++ is another word"]
    assert record.removed == 2 and record.details["removed_by_blocklist"] == 2


def test_phrases_match_across_any_whitespace_and_longest_phrase_counts_once():
    step = Unsafe(terms=["steal", "steal passwords"], use_default_terms=False)
    assert not step.keep("how to STEAL\n  passwords")
    # One match (the longer phrase) is within max_matches=1; two separate matches are not.
    lenient = Unsafe(terms=["steal", "steal passwords"], use_default_terms=False, max_matches=1)
    assert lenient.keep("how to steal passwords")
    assert not lenient.keep("steal this, then steal passwords")


def test_terms_file_with_comments_and_missing_file_error(tmp_path):
    terms_file = tmp_path / "terms.txt"
    terms_file.write_text("# weapons\nzorbium ray\n\n  # indented comment\nquuxblade\n")
    step = Unsafe(terms_file=str(terms_file), use_default_terms=False)
    kept, _ = kept_texts(step, ["a Zorbium  Ray here", "a quuxblade", "weapons talk", "indented comment"])
    assert kept == ["weapons talk", "indented comment"]

    missing = tmp_path / "nope.txt"
    with pytest.raises(RecipeInputError, match="nope.txt"):
        parse_pipeline([{"unsafe": {"terms_file": str(missing)}}])


def test_default_terms_catch_harmful_phrases_but_not_everyday_words():
    step = Unsafe()
    harmful = ["Tell me how to make a bomb at home", "ways to steal credit card numbers online"]
    harmless = [
        "Shell tutorial: find the PID with ps, then kill the process with `kill -9 <pid>`.",
        "The movie was a bomb at the box office.",
        "He tried to steal second base.",
        "Kill two birds with one stone.",
    ]
    kept, record = kept_texts(step, harmful + harmless)
    assert kept == harmless
    assert record.removed == 2


def test_bad_parameters_are_refused_before_any_work():
    with pytest.raises(RecipeInputError, match="terms must be a list"):
        parse_pipeline([{"unsafe": {"terms": "badword"}}])
    with pytest.raises(RecipeInputError, match="nothing to check"):
        parse_pipeline([{"unsafe": {"use_default_terms": False}}])
    with pytest.raises(RecipeInputError, match="threshold"):
        parse_pipeline([{"unsafe": {"threshold": 1.5}}])
    with pytest.raises(RecipeInputError, match="max_matches"):
        parse_pipeline([{"unsafe": {"max_matches": -1}}])
    with pytest.raises(RecipeInputError, match="no parameter"):
        parse_pipeline([{"unsafe": {"blocklist": ["x"]}}])


# --- classifier hook -----------------------------------------------------------------------------------

SAFE = [f"the garden has {colour} flowers and green leaves" for colour in ("red", "blue", "white", "yellow")]
UNSAFE = [f"zorp blix {colour} vexa grumm zorp" for colour in ("red", "blue", "white", "yellow")]
SAFE_PROBE, UNSAFE_PROBE = "the garden has pink flowers", "zorp blix pink vexa"


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    """A tiny BERT trained for a few steps to tell made-up 'unsafe' words from garden talk, and the unsafe
    probability it gives each probe, computed with the model directly (not through the step)."""
    from transformers import BertConfig, BertForSequenceClassification

    tokenizer = train_tokenizer(SAFE + UNSAFE, "byte-bpe", vocab_size=300)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
        pad_token_id=tokenizer.pad_token_id,
        id2label={0: "safe", 1: "unsafe"},
        label2id={"safe": 0, "unsafe": 1},
    )
    model = BertForSequenceClassification(config)
    batch = tokenizer(SAFE + UNSAFE, padding=True, return_tensors="pt")
    labels = torch.tensor([0] * len(SAFE) + [1] * len(UNSAFE))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(30):
        model(**batch, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    with torch.no_grad():
        probes = tokenizer([SAFE_PROBE, UNSAFE_PROBE], padding=True, return_tensors="pt")
        safe_p, unsafe_p = model(**probes).logits.softmax(-1)[:, 1].tolist()
    path = tmp_path_factory.mktemp("classifier")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path), safe_p, unsafe_p


def test_classifier_drops_rows_scored_unsafe_at_the_threshold(classifier):
    path, safe_p, unsafe_p = classifier
    assert safe_p < 0.5 < unsafe_p < 0.999999  # the fixture trained a usable, unsaturated classifier

    strict = Unsafe(use_default_terms=False, classifier_path=path, threshold=0.5, classifier_batch_size=2)
    kept, record = kept_texts(strict, [SAFE_PROBE, UNSAFE_PROBE, "   "])
    assert kept == [SAFE_PROBE, "   "]
    assert record.details["removed_by_classifier"] == 1

    lenient = Unsafe(use_default_terms=False, classifier_path=path, threshold=0.999999)
    assert kept_texts(lenient, [SAFE_PROBE, UNSAFE_PROBE])[0] == [SAFE_PROBE, UNSAFE_PROBE]
    # The comparison is score >= threshold, on the model's own probability.
    assert not Unsafe(use_default_terms=False, classifier_path=path, threshold=unsafe_p - 1e-4).keep(
        UNSAFE_PROBE
    )
    assert Unsafe(use_default_terms=False, classifier_path=path, threshold=unsafe_p + 1e-4).keep(UNSAFE_PROBE)


def test_blocklist_or_classifier_and_label_index_names(classifier):
    path, _, _ = classifier
    step = parse_pipeline(
        [
            {
                "unsafe": {
                    "terms": ["pink flowers"],
                    "use_default_terms": False,
                    "classifier_path": path,
                    "classifier_label": "LABEL_1",
                }
            }
        ]
    )[0]
    kept, record = kept_texts(step, [SAFE_PROBE, UNSAFE_PROBE, SAFE[0]])
    assert kept == [SAFE[0]]
    assert (record.details["removed_by_blocklist"], record.details["removed_by_classifier"]) == (1, 1)


def test_classifier_errors_name_the_problem(classifier, tmp_path):
    path, _, _ = classifier
    for not_a_model in (tmp_path / "missing", tmp_path):
        with pytest.raises(RecipeInputError, match="is not a model directory"):
            parse_pipeline([{"unsafe": {"classifier_path": str(not_a_model)}}])
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(RecipeInputError, match="cannot load a text-classification model"):
        Unsafe(classifier_path=str(tmp_path)).keep("hello")
    with pytest.raises(
        RecipeInputError, match=r"'toxic' is not one of the model's labels \['safe', 'unsafe'\]"
    ):
        Unsafe(classifier_path=path, classifier_label="toxic").keep("hello")


# --- PII -----------------------------------------------------------------------------------------------


def test_pii_masks_emails():
    mask = PIIMask()
    assert mask.transform("Write to John.Doe+news@mail.example.co.uk today.") == "Write to <EMAIL> today."
    assert mask.transform("(jo_e@sub.example.com), -x@y.org") == "(<EMAIL>), <EMAIL>"
    assert mask.transform("user@[192.168.0.1] wrote") == "<EMAIL> wrote"
    for not_email in ("@mention in a tweet", "a@b is not a domain", "decorator @property"):
        assert mask.transform(not_email) == not_email


def test_pii_masks_ipv4_but_not_version_numbers():
    mask = PIIMask()
    assert (
        mask.transform("server 192.168.1.10:8080 and 8.8.8.8.")
        == "server <IP_ADDRESS>:8080 and <IP_ADDRESS>."
    )
    for version in (
        "Python 3.11.7",
        "release 1.2.3",
        "v1.2.3.4",
        "1.2.3.4.5",
        "256.1.1.1",
        "1.2.3.400",
        "01.02.03.04",
    ):
        assert mask.transform(version) == version


def test_pii_masks_ipv6_but_not_slices_scopes_times_or_macs():
    mask = PIIMask()
    assert mask.transform("host 2001:db8::8a2e:370:7334 up") == "host <IP_ADDRESS> up"
    assert mask.transform("link fe80::1 and ::ffff:10.1.2.3") == "link <IP_ADDRESS> and <IP_ADDRESS>"
    assert mask.transform("1:2:3:4:5:6:7:8") == "<IP_ADDRESS>"
    for not_ip in (
        "a[1::2]",
        "std::map<int, int>",
        "at 12:30:45",
        "mac 00:1a:2b:3c:4d:5e",
        "1:2:3:4:5:6:7:8:9",
    ):
        assert mask.transform(not_ip) == not_ip


def test_only_public_ips_keeps_private_addresses_like_datatrove():
    mask = PIIMask(only_public_ips=True)
    assert mask.transform("10.0.0.1 and 8.8.8.8 and fe80::1") == "10.0.0.1 and <IP_ADDRESS> and fe80::1"


def test_pii_masks_phone_numbers_but_not_dates_years_or_code_integers():
    mask = PIIMask()
    phones = [
        "+1 (415) 555-2671",
        "+44 20 7946 0958",
        "+33 (0)1 23 45 67 89",
        "+14155552671",
        "(415) 555-2671",
        "415-555-2671",
        "415.555.2671",
        "1-800-555-0199",
        "020 7946 0958",
        "01 23 45 67 89",
        "06-12345678",
        "030/1234567",
    ]
    for phone in phones:
        assert mask.transform(f"call {phone} now") == "call <PHONE> now", phone
    not_phones = [
        "on 2026-11-28 at 10:00",
        "on 28.11.2026",
        "in 1999 and 2024",
        "x = 1234567890123",
        "id 14155552671",
        "local 555-0199",
        "415-555.2671",  # mixed separators
        "415-555-2671-99",  # part of a longer number
        "+12 34",  # too few digits
    ]
    for text in not_phones:
        assert mask.transform(text) == text


def test_pii_kinds_replacements_and_report():
    step = parse_pipeline([{"pii_mask": {"kinds": ["email"], "email_replacement": "[mail]"}}])[0]
    report = DataReport()
    ds = datasets.Dataset.from_dict({"text": ["a@b.org at 8.8.8.8", "nothing here", "c@d.org"]})
    out = run_pipeline(ds, [step], report)
    assert list(out["text"]) == ["[mail] at 8.8.8.8", "nothing here", "[mail]"]
    assert report.steps[-1].details["rows_changed"] == 2 and report.steps[-1].removed == 0
    with pytest.raises(RecipeInputError, match=r"unknown kinds \['ssn'\]"):
        parse_pipeline([{"pii_mask": {"kinds": ["email", "ssn"]}}])


def test_long_runs_of_digits_and_dots_stay_fast():
    import time

    start = time.perf_counter()
    PIIMask().transform("1.2." * 5000 + " " + "415-" * 3000 + " " + "+" + "1" * 5000)
    assert time.perf_counter() - start < 2.0
