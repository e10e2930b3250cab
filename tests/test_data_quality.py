import inspect
import pickle
import re

import datasets
import pytest

from hfrecipes.core.data_report import DataReport
from hfrecipes.core.errors import RecipeInputError
from hfrecipes.data import parse_pipeline, run_pipeline
from hfrecipes.data.heuristics import (
    Corrupted,
    Language,
    LowInformation,
    Spam,
    language_scores,
    looks_truncated,
)
from hfrecipes.data.web_quality import C4Quality, FineWebQuality, GopherQuality, GopherRepetition
from hfrecipes.data.words import split_sentences, split_words

from .conftest import ROOT, SHAKESPEARE

STEP_NAMES = [
    "corrupted",
    "gopher_quality",
    "gopher_repetition",
    "c4_quality",
    "fineweb_quality",
    "low_information",
    "spam",
    "language",
]


def shakespeare_paragraphs() -> list[str]:
    return [p for p in re.split(r"\n\s*\n", SHAKESPEARE.read_text()) if p.strip()]


def package_sources() -> list[str]:
    return [path.read_text() for path in sorted((ROOT / "src" / "hfrecipes").rglob("*.py"))]


def varied_documents() -> list[str]:
    """~60 documents that land on both sides of every rule of the four datatrove ports."""
    paragraphs = shakespeare_paragraphs()
    prose = "\n\n".join(paragraphs[100:112])
    docs = paragraphs[:12]  # short dialogue
    docs += [
        "\n\n".join(paragraphs[i : i + n]) for i, n in ((20, 6), (40, 10), (300, 25), (900, 40), (1500, 8))
    ]
    docs += [
        " ".join(p.replace("\n", " ") for p in paragraphs[i : i + 12]) for i in (50, 600, 2000)
    ]  # one line
    sources = package_sources()
    docs += [sources[i][:3000] for i in range(0, len(sources), max(1, len(sources) // 6))]  # Python code
    docs += [re.sub(r"\s+", " ", s.split('"""')[1]) for s in sources[:6] if s.count('"""') >= 2]  # docstrings
    sentence = "The quick brown fox jumps over the lazy dog and then it runs to the old barn with the farmer."
    docs += [
        "\n".join([sentence] * 12),  # duplicate lines
        "\n\n".join([sentence, sentence, "Another paragraph of text that is here.", sentence] * 3),
        " ".join(["the cat sat on the mat"] * 30),  # top n-grams
        sentence + " " + " ".join(f"word{i} and the thing {i}" for i in range(40)),
        "\n".join(f"- item number {i} of the list with the things" for i in range(30)),  # bullets
        "\n".join(f"{sentence[:40]} and so on..." for _ in range(3)) + "\n" + prose,  # ellipsis lines
        "#tag " * 20 + prose,  # hashes
        " ".join(str(i * 7919) for i in range(200)) + " the and of with",  # non-alphabetic words
        " ".join(["supercalifragilisticexpialidocious"] * 60) + " the and",  # long words
        " ".join(["a b c d"] * 40) + " the and",  # short words
        "Lorem ipsum dolor sit amet, consectetur adipiscing elit. " + prose,
        prose + "\nfunction f() { return 1; } is a fine line of code.",
        prose.replace(".", " [1].", 3) + "\nEnable JavaScript to view this page properly.",
        prose + "\nThis site uses cookies. Read our privacy policy and terms of use.",
        "\n".join(f"Short line {i}." for i in range(40)),  # short lines
        "\n".join(["Title", "", "Menu", "Home", "About", "Contact", ""] * 5) + prose,
        "\n".join(sentence.split()),  # one word per line
        "Mr. Smith went to Washington. He arrived at 5 p.m. on Jan. 5th! Was it fun? Yes. It was. Really.",
        "Check https://example.com/a?b=1. It's fine... isn't it? (Yes.) \"Quoted.\" 'Single.' Done!",
        "e.g. the U.S.A. and the U.K. are 2 countries; i.e. they're big. Don't they? We'll see. OK.",
    ]
    return docs


@pytest.fixture(scope="module")
def documents() -> list[str]:
    return varied_documents()


# ------------------------------------------------------------------------------------------------------------
# Word and sentence splitting: spaCy's English tokenizer without spaCy


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("Don't panic, it's fine.", ["Do", "n't", "panic", ",", "it", "'s", "fine", "."]),
        ("Mr. Smith (the U.S. envoy) left.", ["Mr.", "Smith", "(", "the", "U.S.", "envoy", ")", "left", "."]),
        ("See https://example.com/a?b=1.", ["See", "https://example.com/a?b=1", "."]),
        ("a well-known 3.14 value", ["a", "well", "-", "known", "3.14", "value"]),
        ("wait... what?!", ["wait", "...", "what", "?", "!"]),
    ],
)
def test_split_words_follows_spacy_rules(text, words):
    assert split_words(text) == words


def test_split_words_matches_spacy_through_datatrove():
    pytest.importorskip("datatrove")
    pytest.importorskip("spacy")
    from datatrove.utils.text import split_into_sentences, split_into_words

    texts = varied_documents() + shakespeare_paragraphs()[:200] + [s[:4000] for s in stdlib_sources()]
    texts += [
        "I'm sure you'll see we've done it; can't, won't, y'all, gonna, 'cause, o'clock, ’tis ’em",
        "x86_64 __init__ f(x): ;) :-) <3 C++ and/or 10km $5 50% a.B a--b \"q\" 'q' “q” ‘x’ 🏾 → ���",
        'Emails: foo@bar.com; www.example.org/path); °C. 5pm 10a.m. Ph.D. N.Y.  Double  spaced.\n\n"Quote."',
    ]
    mismatched = [t[:80] for t in texts if split_words(t) != split_into_words(t, "en")]
    assert not mismatched
    sentences = [t[:80] for t in texts[:80] if split_sentences(t) != split_into_sentences(t, "en")]
    assert not sentences


# ------------------------------------------------------------------------------------------------------------
# The four datatrove ports decide exactly as datatrove does


def datatrove_filter(name: str, params: dict):
    pytest.importorskip("datatrove")
    from datatrove.pipeline import filters

    cls = {
        "gopher_quality": filters.GopherQualityFilter,
        "gopher_repetition": filters.GopherRepetitionFilter,
        "fineweb_quality": filters.FineWebQualityFilter,
        "c4_quality": filters.C4QualityFilter,
    }[name]
    return cls(**params)


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("gopher_quality", {}),
        ("gopher_quality", {"min_doc_words": 10, "min_stop_words": 3, "max_non_alpha_words_ratio": 0.9}),
        ("gopher_repetition", {}),
        (
            "gopher_repetition",
            {"dup_line_frac": None, "top_n_grams": ((2, 0.1),), "dup_n_grams": ((5, 0.05),)},
        ),
        ("fineweb_quality", {}),
        (
            "fineweb_quality",
            {"line_punct_exclude_zero": True, "short_line_length": 10, "new_line_ratio": 0.1},
        ),
        ("c4_quality", {}),
        ("c4_quality", {"split_paragraph": False, "min_num_sentences": 3, "filter_curly_bracket": False}),
    ],
)
def test_datatrove_ports_agree_with_datatrove(documents, name, params):
    from datatrove.data import Document

    reference = datatrove_filter(name, params)
    yaml_params = {k: [list(pair) for pair in v] if isinstance(v, tuple) else v for k, v in params.items()}
    (ours,) = parse_pipeline([{name: yaml_params}])
    theirs_kept, ours_kept = [], []
    for i, text in enumerate(documents):
        doc = Document(text=text, id=str(i))
        theirs_kept.append(reference.filter(doc) is True)
        if isinstance(ours, C4Quality):
            cleaned = ours.clean(text)
            ours_kept.append(cleaned is not None)
            if cleaned is not None and theirs_kept[-1]:
                assert cleaned == doc.text  # datatrove rewrites the kept text the same way
        else:
            ours_kept.append(ours.keep(text))
    assert ours_kept == theirs_kept
    assert 3 <= sum(theirs_kept) <= len(documents) - 3  # the documents test both outcomes


# ------------------------------------------------------------------------------------------------------------
# corrupted

CLEAN = "Le café de l'été\u00a0» coûte 3\u00a0€. São Paulo, MÃE, Ärger, Île-de-France: all fine text here."


@pytest.mark.parametrize(
    "text",
    [
        "This sentence was decoded badly \ufffd\ufffd\ufffd and lost bytes.",
        "Café déjà vu – it’s “naïve”.".encode().decode("cp1252", errors="replace"),
        "Ãˆ un testo con mojibake: perchÃ© la cittÃ  Ã¨ bella.",
        "Log line with escape codes \x1b[31mred\x1b[0m and a bell \x07 inside.",
        "binary\x00junk\x00\x00with NULs",
        "private use \ue000\ue001 characters from a bad decoder",
        "An image: data:image/png;base64," + "iVBORw0KGgoAAAANSUhEUgAAAA4AAAASCAYAAABrXO8x" * 8,
    ],
)
def test_corrupted_drops_damaged_text(text):
    assert not Corrupted().keep(text)


def test_corrupted_keeps_accented_text_code_and_hashes():
    step = Corrupted()
    assert step.keep(CLEAN)
    assert step.keep("sha256: " + "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08" * 2)
    assert all(step.keep(source) for source in stdlib_sources())
    assert step.keep("Tabs\tand\r\nWindows newlines are fine.")


def test_corrupted_drops_planted_truncated_records_and_keeps_normal_ones():
    article = " ".join(p.replace("\n", " ") for p in shakespeare_paragraphs()[:40])
    cut = article[:1000]
    assert cut[-1].isalnum()  # a size limit cut it mid-word
    normal = article[:1000].rsplit(" ", 1)[0].rstrip(",;:") + "."
    assert looks_truncated(cut, [512, 1000]) and not Corrupted().keep(cut)
    assert Corrupted().keep(normal)
    assert Corrupted().keep(article[:1001])  # not a round length
    assert Corrupted(drop_truncated=False).keep(cut)
    assert not Corrupted().keep('{"question": "What is 2+2?", "answer": {"value": 4, "unit": ')
    assert Corrupted().keep('{"question": "What is 2+2?", "answer": {"value": 4, "unit": null}}')
    assert not Corrupted().keep('Read the full story on <a href="https://example.com/story')
    assert Corrupted().keep("Is 3 < 4? Yes, and <b>bold</b> is closed.")


# ------------------------------------------------------------------------------------------------------------
# low_information


def test_low_information_keeps_short_answers_for_sft():
    sft = LowInformation()
    for answer in ("Paris.", "42", "Yes", "Down with him! down with him!", "Hi\nHi"):
        assert sft.keep(answer), answer
    for empty in ("...", "  ", "?!"):
        assert not sft.keep(empty)


def test_low_information_length_bounds_drop_short_answers_when_asked():
    pretraining = LowInformation(min_words=3)
    assert not pretraining.keep("Paris.") and not pretraining.keep("42")
    assert pretraining.keep("Paris is the capital.")
    assert not LowInformation(min_chars=10).keep("42")
    assert not LowInformation(max_words=3).keep("one two three four")
    assert not LowInformation(max_chars=5).keep("abcdef")


def test_low_information_drops_degenerate_repetition():
    step = LowInformation()
    assert not step.keep("I'm sorry. " * 20)
    assert not step.keep("\n".join(["Click the button below to continue."] * 6 + ["ok"]))
    assert step.keep("\n\n".join(shakespeare_paragraphs()[:30]))
    assert step.keep(package_sources()[0])
    assert LowInformation(max_top_ngram_fraction=None, max_repeated_line_fraction=None).keep(
        "I'm sorry. " * 20
    )


# ------------------------------------------------------------------------------------------------------------
# spam

PYTHON_SOURCE = '''# Copyright 2024 The Example Team. All rights reserved.
"""HTTP helpers. See http://docs.example.com/api for the protocol and https://example.com/faq."""

import re

MAX_RETRIES = 3
DEFAULT_TIMEOUT_SECONDS = 30
USER_AGENT = "example-client/1.0 (+http://example.com/bot)"
EMAIL_PATTERN = re.compile(r"[\\w.+-]+@[\\w-]+\\.[a-z]{2,}")


def fetch(url: str, retries: int = MAX_RETRIES) -> bytes:
    """Fetch `url`, retrying on failure; raise after MAX_RETRIES attempts."""
    for attempt in range(retries):
        try:
            return _get(url, timeout=DEFAULT_TIMEOUT_SECONDS, headers={"User-Agent": USER_AGENT})
        except OSError as err:  # network errors are retried, others propagate
            if attempt == retries - 1:
                raise RuntimeError(f"GET {url} failed after {retries} attempts") from err
    return b""
'''

SPAM = (
    "BUY NOW!!! Cheap watches, cheap watches, CHEAP WATCHES for everyone. Limited time offer: cheap watches at "
    "http://cheap-watches.example.com and http://watches.example.com/cheap. Click here to get cheap watches "
    "today, cheap watches with free shipping. Subscribe now for more cheap watches deals! Cheap watches, best "
    "cheap watches online, cheap watches sale. ORDER NOW AND SAVE BIG ON CHEAP WATCHES."
)


def stdlib_sources() -> list[str]:
    """Real Python source full of URLs, e-mail addresses, CONSTANT_NAMES and symbols."""
    import ftplib
    import http.client
    import smtplib
    import urllib.request

    return [inspect.getsource(module) for module in (ftplib, http.client, smtplib, urllib.request)]


def test_spam_keeps_python_source_and_drops_real_spam():
    step = Spam()
    assert step.keep(PYTHON_SOURCE)
    assert all(step.keep(source) for source in stdlib_sources())
    assert step.keep("\n\n".join(shakespeare_paragraphs()[:50]))
    assert not step.keep(SPAM)


def test_spam_rules_each_catch_their_case():
    words = " ".join(f"word{i}" for i in range(40))
    assert not Spam().keep("Click here and buy now: " + words)  # two boilerplate phrases
    assert Spam().keep("All rights reserved. All rights reserved. " + words)  # one phrase, twice
    assert not Spam().keep(" ".join(f"see http://site{i}.example.com" for i in range(40)))
    assert not Spam().keep(" ".join(f"mail person{i}@example.com now" for i in range(20)))
    assert not Spam().keep("THIS IS A GREAT DEAL YOU WILL NOT BELIEVE " * 5)
    stuffed = " ".join(["casino"] * 20 + [f"topic{i}" for i in range(30)])
    assert not Spam().keep(stuffed) and Spam(max_top_word_fraction=None).keep(stuffed)
    assert Spam().keep("See https://docs.python.org/3/library/re.html")  # too short for ratios


# ------------------------------------------------------------------------------------------------------------
# language

ENGLISH = "The weather is nice today and we are going to the park with our friends after lunch."
FRENCH = "Le temps est beau aujourd'hui et nous allons au parc avec nos amis après le déjeuner."
RUSSIAN = "Сегодня хорошая погода, и мы идём в парк с друзьями после обеда."
CHINESE = "今天天气很好，我们午饭后和朋友们一起去公园。"
CODE = 'def mean(values):\n    """Return the average of the values, or 0 if there are none."""\n    return sum(values) / len(values) if values else 0\n'


def test_language_scripts():
    latin = Language()
    assert [latin.keep(t) for t in (ENGLISH, FRENCH, RUSSIAN, CHINESE, CODE)] == [
        True,
        True,
        False,
        False,
        True,
    ]
    assert [Language(scripts=["cyrillic"]).keep(t) for t in (ENGLISH, RUSSIAN, CHINESE)] == [
        False,
        True,
        False,
    ]
    assert [Language(scripts=["han"]).keep(t) for t in (ENGLISH, RUSSIAN, CHINESE)] == [False, False, True]
    assert latin.keep("42")  # no letters: nothing to judge


def test_language_stop_words():
    english = Language(languages=["en"])
    assert [english.keep(t) for t in (ENGLISH, FRENCH, RUSSIAN, CODE)] == [True, False, False, True]
    french = Language(languages=["fr"])
    assert [french.keep(t) for t in (ENGLISH, FRENCH, CODE)] == [False, True, False]
    assert english.keep("Paris.") and french.keep("42")  # too short to tell: kept


@pytest.mark.parametrize(
    ("language", "text"),
    [
        ("en", ENGLISH),
        ("fr", FRENCH),
        (
            "de",
            "Das Wetter ist heute schön und wir gehen mit unseren Freunden nach dem Mittagessen in den Park.",
        ),
        ("es", "El tiempo es bueno hoy y vamos al parque con nuestros amigos después de la comida."),
        ("it", "Il tempo è bello oggi e andiamo al parco con gli amici dopo il pranzo."),
        ("pt", "O tempo está bom hoje e vamos ao parque com os nossos amigos depois do almoço."),
        ("nl", "Het weer is mooi vandaag en we gaan met onze vrienden naar het park na de lunch."),
    ],
)
def test_language_scores_pick_the_language(language, text):
    scores = language_scores(text)
    assert max(scores, key=scores.get) == language
    assert Language(languages=[language]).keep(text)


# ------------------------------------------------------------------------------------------------------------
# Pipeline integration: parsing, bad parameters, datasets runs, pickling


@pytest.mark.parametrize("name", STEP_NAMES)
def test_parse_pipeline_builds_every_step(name):
    (step,) = parse_pipeline([name])
    assert step.name == name
    assert pickle.loads(pickle.dumps(step)).params() == step.params()  # datasets.map(num_proc) pickles steps


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        (
            "corrupted",
            {"max_replacement_fraction": 2},
            "max_replacement_fraction must be a number between 0 and 1",
        ),
        ("corrupted", {"truncation_length_multiples": [0]}, "truncation_length_multiples"),
        ("gopher_quality", {"min_doc_words": -5}, "min_doc_words must be a whole number"),
        ("gopher_quality", {"stop_words": "the"}, "stop_words must be a list"),
        ("gopher_repetition", {"top_n_grams": [[2, 3.0]]}, "top_n_grams must be a list of"),
        ("c4_quality", {"min_num_sentences": -2}, "-1 to disable"),
        ("fineweb_quality", {"line_punct_thr": "high"}, "line_punct_thr must be a number"),
        ("low_information", {"min_words": 5, "max_words": 2}, "min_words=5 is larger than max_words=2"),
        ("spam", {"boilerplate_phrases": "buy now"}, "boilerplate_phrases must be a list"),
        ("language", {"scripts": ["klingon"]}, "scripts must be a non-empty list of latin"),
        ("language", {"languages": ["xx"]}, "languages must be a list of en, fr"),
    ],
)
def test_bad_parameters_are_refused_with_a_clear_message(name, params, message):
    with pytest.raises(RecipeInputError, match=re.escape(message)):
        parse_pipeline([{name: params}])


def test_filters_run_in_a_pipeline_and_report_removed_rows():
    rows = [CLEAN, "mojibake: perchÃ© la cittÃ  Ã¨ bella", "Paris.", "...", ENGLISH, RUSSIAN]
    report = DataReport()
    out = run_pipeline(
        datasets.Dataset.from_dict({"text": rows}),
        parse_pipeline(["corrupted", "low_information", {"language": {"scripts": ["latin"]}}]),
        report,
    )
    assert out["text"] == [CLEAN, "Paris.", ENGLISH]
    assert [s.removed for s in report.steps] == [1, 1, 1]
    assert report.steps[0].examples[0].startswith("mojibake")


def test_c4_quality_rewrites_kept_rows_and_refuses_chat_columns():
    good = "\n".join(
        ["Menu", *(f"This is sentence number {i} of the article. It has two sentences." for i in range(3))]
    )
    report = DataReport()
    out = C4Quality().apply(datasets.Dataset.from_dict({"text": [good, "Too short."]}), report)
    assert out["text"] == [good.split("\n", 1)[1]]  # the "Menu" line is gone
    assert report.steps[0].removed == 1 and report.steps[0].details["rows_changed"] == 1
    assert report.steps[0].examples == ["Too short."]
    chats = datasets.Dataset.from_dict({"messages": [[{"role": "user", "content": good}]]})
    with pytest.raises(RecipeInputError, match="rewrites plain text"):
        C4Quality().apply(chats, DataReport())


def test_gopher_and_fineweb_judge_prose_not_fragments():
    prose = "\n".join(p.replace("\n", " ") for p in shakespeare_paragraphs()[100:112])  # a line per speech
    assert GopherQuality().keep(prose) and not GopherQuality().keep("Too short to be a document.")
    assert GopherRepetition().keep(prose) and not GopherRepetition().keep("\n".join(["same line here"] * 10))
    assert FineWebQuality().keep(prose) and not FineWebQuality().keep("\n".join(["a", "b", "c", "d"]))
