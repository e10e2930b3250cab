"""Our own cheap text-health filters for web and short (SFT) data: corrupted, low_information, spam, language.

Rules, not models: each step counts something simple (broken characters, repeated lines, boilerplate phrases,
stop words of a language, letters of a script) and compares it with a limit measured on 13k ordinary documents
(prose, READMEs, docstrings, source code) so that ordinary text passes.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from typing import ClassVar

from hfrecipes.core.errors import RecipeInputError
from hfrecipes.data.steps import FilterStep, check_counts, check_fractions, check_non_negative
from hfrecipes.data.web_quality import find_duplicates

# --------------------------------------------------------------------------------------------------------------
# corrupted

_MOJIBAKE_CONTINUATION = "\u0080-\u00bf€‚ƒ„…†‡ˆ‰Š‹ŒŽ‘’“”•–—˜™š›œžŸ"
# UTF-8 read as Latin-1/cp1252: the lead bytes of accented Latin ("Ã©"), Latin-1 symbols ("Â°"), Cyrillic
# ("Ð¿"), Greek ("Î±") and 3-byte punctuation ("â€™"), then continuation bytes, plus the byte-order mark. Only
# these leads: "é", "à" or "É" before "«" or a no-break space is ordinary French, not mojibake.
_MOJIBAKE = re.compile(f"[ÂÃÄÅÎÏÐÑ][{_MOJIBAKE_CONTINUATION}]|â[{_MOJIBAKE_CONTINUATION}]{{2}}|ï»¿")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
# What decoding binary data as text leaves behind: NUL, private-use and lone surrogate code points.
_BINARY = re.compile("[\x00\ue000-\uf8ff\ud800-\udfff\U000f0000-\U0010ffff]")
_BASE64_RUN = re.compile(r"[A-Za-z0-9+/]{64,}={0,2}")
_TAG_START = re.compile(r"<[A-Za-z/!]")


def _longest_base64_run(text: str) -> int:
    """Length of the longest base64-looking run: mixed case letters and digits, no spaces (hashes in hex and
    long words are not base64)."""
    longest = 0
    for match in _BASE64_RUN.finditer(text):
        run = match.group()
        if any(c.isdigit() for c in run) and not run.islower() and not run.isupper():
            longest = max(longest, len(run))
    return longest


def looks_truncated(text: str, length_multiples: list[int]) -> bool:
    """A record cut off by a size limit. Two simple signs:
    - its length is an exact multiple of a usual limit (`length_multiples`: 512 also covers 1024, 2048, ...;
      1000 covers 2000, 5000, ...) and it ends on a letter or digit, not on punctuation: cut mid-sentence. About
      1 text in 1000 has such a length by chance, and only those without final punctuation are dropped;
    - its structure is left open: JSON that starts with { or [ and has more openings than closings, or an HTML
      tag opened and never closed at the very end ("... <a href=")."""
    stripped = text.rstrip()
    if not stripped:
        return False
    if stripped[-1].isalnum() and any(len(text) % m == 0 and len(text) >= m for m in length_multiples):
        return True
    openings = stripped.count("{") + stripped.count("[")
    if stripped[0] in "{[" and openings > stripped.count("}") + stripped.count("]"):
        return True
    last_tag = stripped.rfind("<")
    return last_tag >= 0 and ">" not in stripped[last_tag:] and bool(_TAG_START.match(stripped, last_tag))


@dataclass
class Corrupted(FilterStep):
    """Drop texts damaged by bad decoding or extraction: U+FFFD replacement characters, mojibake (UTF-8 read
    as Latin-1/cp1252: "Ã©", "â€™"), control characters other than tab/newline/carriage return, binary junk
    (NUL, private-use, surrogate code points), long base64 blobs, and truncated records (see
    `looks_truncated`). Every limit can be set to null to disable its check."""

    name: ClassVar[str] = "corrupted"
    max_replacement_fraction: float | None = 0.001
    max_mojibake_sequences: int | None = 1
    max_control_fraction: float | None = 0.001
    max_binary_fraction: float | None = 0.0
    max_base64_run: int | None = 256
    drop_truncated: bool = True
    truncation_length_multiples: list[int] = field(default_factory=lambda: [512, 1000])

    def __post_init__(self) -> None:
        check_fractions(self, "max_replacement_fraction", "max_control_fraction", "max_binary_fraction")
        check_counts(self, "max_mojibake_sequences", "max_base64_run")
        multiples = self.truncation_length_multiples
        if not isinstance(multiples, list) or not all(
            isinstance(m, int) and not isinstance(m, bool) and m > 0 for m in multiples
        ):
            raise RecipeInputError(
                f"Step 'corrupted': truncation_length_multiples must be a list of positive whole numbers "
                f"(e.g. [512, 1000]), got {multiples!r}."
            )

    def keep(self, text: str) -> bool:
        if not text:
            return True
        size = len(text)
        if (
            self.max_replacement_fraction is not None
            and text.count("\ufffd") > self.max_replacement_fraction * size
        ):
            return False
        if (
            self.max_mojibake_sequences is not None
            and len(_MOJIBAKE.findall(text)) > self.max_mojibake_sequences
        ):
            return False
        if (
            self.max_control_fraction is not None
            and len(_CONTROL.findall(text)) > self.max_control_fraction * size
        ):
            return False
        if (
            self.max_binary_fraction is not None
            and len(_BINARY.findall(text)) > self.max_binary_fraction * size
        ):
            return False
        if self.max_base64_run is not None and _longest_base64_run(text) > self.max_base64_run:
            return False
        return not (self.drop_truncated and looks_truncated(text, self.truncation_length_multiples))


# --------------------------------------------------------------------------------------------------------------
# low_information

_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")
# Repetition over fewer lines, or an n-gram seen only twice, says nothing: "Hi" answered with "Hi", or
# "Down with him! down with him!", is not degenerate text; "I'm sorry. I'm sorry. I'm sorry. ..." is.
_MIN_LINES_FOR_REPETITION = 4
_MIN_NGRAM_REPEATS = 3


def _top_ngram_coverage(words: list[str], n: int) -> float:
    """Share of the word characters inside occurrences of the most frequent n-gram, when it occurs at least
    `_MIN_NGRAM_REPEATS` times (overlapping occurrences count each word once)."""
    grams = list(zip(*(words[i:] for i in range(n)), strict=False))
    if len(grams) < _MIN_NGRAM_REPEATS:
        return 0.0
    top, occurrences = Counter(grams).most_common(1)[0]
    if occurrences < _MIN_NGRAM_REPEATS:
        return 0.0
    covered = {i + k for i, gram in enumerate(grams) if gram == top for k in range(n)}
    return sum(len(words[i]) for i in covered) / sum(map(len, words))


@dataclass
class LowInformation(FilterStep):
    """Cheap rule for short and SFT data: length bounds in characters and words (a word is a run of letters or
    digits, so "..." has none), and degenerate repetition: the share of the characters of non-blank lines in
    lines repeating an earlier one (from 4 lines on), and the share of the words' characters inside a
    `top_ngram_size`-gram repeated 3 times or more. The defaults keep one-word answers ("Paris.", "42") and
    sit above what prose, READMEs, docstrings and source code reach (at most 0.56 on 13k such documents);
    raise `min_words` for pretraining text."""

    name: ClassVar[str] = "low_information"
    min_chars: int | None = 1
    max_chars: int | None = None
    min_words: int | None = 1
    max_words: int | None = None
    max_repeated_line_fraction: float | None = 0.7
    max_top_ngram_fraction: float | None = 0.7
    top_ngram_size: int = 3

    def __post_init__(self) -> None:
        check_counts(self, "min_chars", "max_chars", "min_words", "max_words", "top_ngram_size")
        check_fractions(self, "max_repeated_line_fraction", "max_top_ngram_fraction")
        if not self.top_ngram_size:
            raise RecipeInputError("Step 'low_information': top_ngram_size must be at least 1.")
        for low, high in (("min_chars", "max_chars"), ("min_words", "max_words")):
            low_value, high_value = getattr(self, low), getattr(self, high)
            if low_value is not None and high_value is not None and low_value > high_value:
                raise RecipeInputError(
                    f"Step 'low_information': {low}={low_value} is larger than {high}={high_value}; nothing could pass."
                )

    def keep(self, text: str) -> bool:
        size = len(text.strip())
        if not _within(size, self.min_chars, self.max_chars):
            return False
        words = _WORD.findall(text.lower())
        if not _within(len(words), self.min_words, self.max_words):
            return False
        if self.max_repeated_line_fraction is not None:
            lines = [line.strip() for line in text.splitlines() if line.strip()]
            if (
                len(lines) >= _MIN_LINES_FOR_REPETITION
                and find_duplicates(lines)[1] / sum(map(len, lines)) > self.max_repeated_line_fraction
            ):
                return False
        return not (
            self.max_top_ngram_fraction is not None
            and _top_ngram_coverage(words, self.top_ngram_size) > self.max_top_ngram_fraction
        )


def _within(value: int, low: int | None, high: int | None) -> bool:
    return (low is None or value >= low) and (high is None or value <= high)


# --------------------------------------------------------------------------------------------------------------
# spam

_URL = re.compile(r"\b(?:https?://|ftp://|www\.)\S+", re.IGNORECASE)
_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)*\.[A-Za-z]{2,}\b")
# Whole words of letters only: identifiers like MAX_SIZE or UTF8 are not words here, so code is not "shouting".
_LETTER_WORD = re.compile(r"\b[^\W\d_]{2,}\b")
DEFAULT_BOILERPLATE = (
    "click here",
    "subscribe now",
    "all rights reserved",
    "buy now",
    "limited time offer",
    "lorem ipsum",
    "act now",
    "order now",
    "100% free",
    "free shipping",
    "money back guarantee",
    "risk free",
    "work from home",
    "sign up now",
    "call now",
)


@dataclass
class Spam(FilterStep):
    """Drop promotional and SEO spam. A text is spam when more than `max_boilerplate_phrases` different
    boilerplate phrases occur in it ("click here", "buy now", ...: one "All rights reserved" in a licence header
    is fine), or, from `min_words` words on (over a few words a ratio is noise: "See https://docs.python.org"
    is a fine answer), when it has more than `max_url_density` URLs or `max_email_density` e-mail addresses per
    word (URLs not counted as words), when one keyword (a 3+ letter word that is not a stop word) takes more
    than `max_top_word_fraction` of the keywords, or when more than `max_all_caps_fraction` of its letter-only
    words are in capitals. Defaults measured on 13k documents (prose, READMEs, docstrings, Python source) to
    keep them all."""

    name: ClassVar[str] = "spam"
    max_url_density: float | None = 0.5
    max_email_density: float | None = 0.1
    max_top_word_fraction: float | None = 0.35
    max_all_caps_fraction: float | None = 0.5
    max_boilerplate_phrases: int | None = 1
    boilerplate_phrases: list[str] = field(default_factory=lambda: list(DEFAULT_BOILERPLATE))
    min_words: int = 30

    def __post_init__(self) -> None:
        check_non_negative(self, "max_url_density", "max_email_density")
        check_fractions(self, "max_top_word_fraction", "max_all_caps_fraction")
        check_counts(self, "max_boilerplate_phrases", "min_words")
        phrases = self.boilerplate_phrases
        if not isinstance(phrases, list) or not all(isinstance(p, str) and p.strip() for p in phrases):
            raise RecipeInputError(
                f"Step 'spam': boilerplate_phrases must be a list of non-empty phrases, got {phrases!r}."
            )
        alternatives = "|".join(re.escape(p.strip().lower()) for p in phrases)
        self._boilerplate = re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)") if phrases else None

    def keep(self, text: str) -> bool:
        lowered = text.lower()
        if (
            self._boilerplate is not None
            and self.max_boilerplate_phrases is not None
            and len(set(self._boilerplate.findall(lowered))) > self.max_boilerplate_phrases
        ):
            return False
        urls = _URL.findall(text)
        words = _WORD.findall(_URL.sub(" ", lowered) if urls else lowered)
        n_words = len(words)
        if n_words < self.min_words:
            return True
        if self.max_url_density is not None and len(urls) / n_words > self.max_url_density:
            return False
        if (
            self.max_email_density is not None
            and len(_EMAIL.findall(text)) / n_words > self.max_email_density
        ):
            return False
        if self.max_top_word_fraction is not None:
            stop_words = _stop_words_of_all_languages()
            keywords = [w for w in words if len(w) > 2 and w not in stop_words]
            if (
                len(keywords) >= self.min_words
                and Counter(keywords).most_common(1)[0][1] / len(keywords) > self.max_top_word_fraction
            ):
                return False
        if self.max_all_caps_fraction is not None:
            letter_words = _LETTER_WORD.findall(text)
            shouted = sum(1 for w in letter_words if w.isupper())
            if letter_words and shouted / len(letter_words) > self.max_all_caps_fraction:
                return False
        return True


# --------------------------------------------------------------------------------------------------------------
# language


# Frequent function words of each language (a cheap vote, not a model). Words that are common in another of
# these languages are left out where it mattered on test text (Italian "i" and "come" read English as Italian).
_STOP_WORDS_SPACED = {
    "en": (
        "the and of to a in is it that was for on are with as be at by this have from or not but what all were "
        "when we there can an your which their if do will each about how up out them then she many some so these "
        "would other into has more her like him could no than been its who now my over did only way may after "
        "just where most i you he me his our us should any also because very those"
    ),
    "fr": (
        "le la les de des du un une et est en que qui dans pour pas sur au aux il elle ils nous vous je tu ce "
        "cette ces son sa ses leur mais ou avec par plus se ne sont été être avoir fait comme tout bien très "
        "aussi où donc car dont était même"
    ),
    "de": (
        "der die das und ist nicht ein eine einen dem den des zu mit sich auf für von im auch es als an wie ich "
        "er sie wir ihr aber oder wenn noch nur bei aus nach so wird werden hat haben sind war dass kann über "
        "vor durch mehr schon sehr"
    ),
    "es": (
        "el la los las de del y que en un una es por con para no se lo su al como más pero sus le ya este esta "
        "son entre cuando muy sin sobre también hasta hay donde desde todo nos durante todos uno les ni contra "
        "otros ese eso ante ellos está"
    ),
    "it": (
        "il lo la gli le di del della dei delle e è che un una per non con sono più anche ma da dal nel nella al "
        "alla si ci questo questa ha hanno essere stato tra fra se quando molto tutto tutti sua suo loro mi ti"
    ),
    "pt": (
        "o a os as de do da dos das e é que um uma em no na nos nas por para com não se mais como mas ao aos "
        "foi são seu sua ou quando muito já também só pelo pela até isso ela ele entre depois sem mesmo eu "
        "está tem"
    ),
    "nl": (
        "de het een en van in is dat op te zijn voor met die niet aan er om ook als dan maar bij of uit nog naar "
        "kan wordt door over wel geen meer zo ze hij zij wij ik je was werd heeft hebben deze dit worden zich"
    ),
}
STOP_WORDS_BY_LANGUAGE = {
    language: frozenset(words.split()) for language, words in _STOP_WORDS_SPACED.items()
}


@functools.cache
def _stop_words_of_all_languages() -> frozenset[str]:
    return frozenset().union(*STOP_WORDS_BY_LANGUAGE.values())


# Unicode character names start with the script ("LATIN SMALL LETTER A", "CJK UNIFIED IDEOGRAPH-4E2D").
SCRIPTS = {
    "latin": ("LATIN",),
    "cyrillic": ("CYRILLIC",),
    "greek": ("GREEK",),
    "arabic": ("ARABIC",),
    "hebrew": ("HEBREW",),
    "han": ("CJK",),
    "kana": ("HIRAGANA", "KATAKANA"),
    "hangul": ("HANGUL",),
    "devanagari": ("DEVANAGARI",),
    "bengali": ("BENGALI",),
    "tamil": ("TAMIL",),
    "telugu": ("TELUGU",),
    "thai": ("THAI",),
    "armenian": ("ARMENIAN",),
    "georgian": ("GEORGIAN",),
    "ethiopic": ("ETHIOPIC",),
}
_SCRIPT_OF_NAME_PREFIX = {prefix: script for script, prefixes in SCRIPTS.items() for prefix in prefixes}
_ASCII_LETTER = re.compile(r"[A-Za-z]")
_NON_ASCII_LETTER = re.compile(r"[^\x00-\x7f\W\d_]")


@functools.lru_cache(maxsize=65536)
def _script_of(letter: str) -> str:
    """The script (a key of SCRIPTS) of one letter, or "other"."""
    return _SCRIPT_OF_NAME_PREFIX.get(unicodedata.name(letter, "").split(" ", 1)[0], "other")


def script_counts(text: str) -> Counter[str]:
    """Letters per script; ASCII letters are counted in bulk as Latin."""
    counts = Counter(map(_script_of, _NON_ASCII_LETTER.findall(text)))
    ascii_letters = len(_ASCII_LETTER.findall(text))
    if ascii_letters:
        counts["latin"] += ascii_letters
    return counts


def language_scores(text: str) -> dict[str, int]:
    """How many different stop words of each language the text uses (different, so "O heavens! O heavens!"
    is not two votes for Portuguese)."""
    words = set(_WORD.findall(text.lower()))
    return {language: len(words & stop_words) for language, stop_words in STOP_WORDS_BY_LANGUAGE.items()}


@dataclass
class Language(FilterStep):
    """Keep texts in chosen scripts and, optionally, languages, by cheap rules and no model.
    Script: at least `min_script_fraction` of the letters belong to `scripts` (by Unicode character name:
    latin, cyrillic, greek, arabic, hebrew, han, kana, hangul, devanagari, ...); a text without letters ("42")
    is kept. Language (`languages`, among en, fr, de, es, it, pt, nl): the language using the most different
    stop words must be allowed; below `min_stop_words` the language is undetermined and the text is kept
    (short answers), and a tie keeps the text if any tied language is allowed."""

    name: ClassVar[str] = "language"
    scripts: list[str] = field(default_factory=lambda: ["latin"])
    min_script_fraction: float = 0.5
    languages: list[str] | None = None
    min_stop_words: int = 3

    def __post_init__(self) -> None:
        if (
            not isinstance(self.scripts, list)
            or not self.scripts
            or any(s not in SCRIPTS for s in self.scripts)
        ):
            raise RecipeInputError(
                f"Step 'language': scripts must be a non-empty list of {', '.join(SCRIPTS)}; got {self.scripts!r}."
            )
        if self.languages is not None and (
            not isinstance(self.languages, list)
            or not self.languages
            or any(language not in STOP_WORDS_BY_LANGUAGE for language in self.languages)
        ):
            raise RecipeInputError(
                f"Step 'language': languages must be a list of {', '.join(STOP_WORDS_BY_LANGUAGE)} "
                f"(or null for any); got {self.languages!r}."
            )
        check_fractions(self, "min_script_fraction")
        check_counts(self, "min_stop_words")

    def keep(self, text: str) -> bool:
        counts = script_counts(text)
        letters = sum(counts.values())
        if letters and sum(counts[s] for s in self.scripts) / letters < self.min_script_fraction:
            return False
        if self.languages is None:
            return True
        scores = language_scores(text)
        best = max(scores.values())
        return best < self.min_stop_words or any(scores[language] == best for language in self.languages)


__all__ = [
    "DEFAULT_BOILERPLATE",
    "SCRIPTS",
    "STOP_WORDS_BY_LANGUAGE",
    "Corrupted",
    "Language",
    "LowInformation",
    "Spam",
    "language_scores",
    "looks_truncated",
    "script_counts",
]
