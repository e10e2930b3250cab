"""Text quality filters: corruption, Gopher quality and repetition, C4, FineWeb, low information, spam, language.

`gopher_quality`, `gopher_repetition`, `c4_quality` and `fineweb_quality` mirror datatrove 0.10.1's
`GopherQualityFilter`, `GopherRepetitionFilter`, `C4QualityFilter` and `FineWebQualityFilter` rule for rule,
with the same parameter names and defaults, so a recipe's numbers compare with FineWeb-style pipelines (their
keep decisions, and C4's rewritten text, equal datatrove's on 13k varied documents). datatrove splits English
words and sentences with spaCy; `split_words` and `split_sentences` re-implement spaCy 3.8's English tokenizer
and sentencizer from spaCy's own rules (prefix, suffix and infix patterns, tokenizer exceptions, URL pattern,
special-case matcher), so the filters need neither spaCy nor datatrove at run time and run 10-25x faster than
datatrove's. The other steps are our own cheap heuristics for web and short (SFT) data.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any, ClassVar

import datasets

from hfrecipes.core.data_report import DataReport
from hfrecipes.core.errors import RecipeInputError
from hfrecipes.data.steps import FilterStep, Step, select_with_report

# --------------------------------------------------------------------------------------------------------------
# Character sets copied from datatrove 0.10.1 (datatrove/utils/text.py), so the ports decide exactly as it does.

# Unicode's Sentence_Terminal characters: a line "ends with terminal punctuation" when it ends with one of these.
TERMINAL_PUNCTUATION = frozenset(
    "!.?\u0589\u061d\u061e\u061f\u06d4\u0700\u0701\u0702\u07f9\u0837\u0839\u083d\u083e\u0964\u0965"
    "\u104a\u104b\u1362\u1367\u1368\u166e\u1735\u1736\u17d4\u17d5\u17d6\u17d9\u17da\u1803\u1809\u1944"
    "\u1945\u1aa8\u1aa9\u1aaa\u1aab\u1b5a\u1b5b\u1b5e\u1b5f\u1b7d\u1b7e\u1c3b\u1c3c\u1c7e\u1c7f\u203c"
    "\u203d\u2047\u2048\u2049\u2e2e\u2e3c\u2e53\u2e54\u3002\ua4ff\ua60e\ua60f\ua6f3\ua6f7\ua876\ua877"
    "\ua8ce\ua8cf\ua92f\ua9c8\ua9c9\uaa5d\uaa5e\uaa5f\uaaf0\uaaf1\uabeb\ufe52\ufe56\ufe57\uff01\uff0e"
    "\uff1f\uff61\U00010a56\U00010a57\U00010f55\U00010f56\U00010f57\U00010f58\U00010f59\U00010f86"
    "\U00010f87\U00010f88\U00010f89\U00011047\U00011048\U000110be\U000110bf\U000110c0\U000110c1"
    "\U00011141\U00011142\U00011143\U000111c5\U000111c6\U000111cd\U000111de\U000111df\U00011238"
    "\U00011239\U0001123b\U0001123c\U000112a9\U0001144b\U0001144c\U000115c2\U000115c3\U000115c9"
    "\U000115ca\U000115cb\U000115cc\U000115cd\U000115ce\U000115cf\U000115d0\U000115d1\U000115d2"
    "\U000115d3\U000115d4\U000115d5\U000115d6\U000115d7\U00011641\U00011642\U0001173c\U0001173d"
    "\U0001173e\U00011944\U00011946\U00011a42\U00011a43\U00011a9b\U00011a9c\U00011c41\U00011c42"
    "\U00011ef7\U00011ef8\U00011f43\U00011f44\U00016a6e\U00016a6f\U00016af5\U00016b37\U00016b38"
    "\U00016b44\U00016e98\U0001bc9f\U0001da88"
)
# A word made only of these characters is a "symbol" and does not count as a word in gopher_quality.
_DATATROVE_PUNCTUATION = (
    "!/—”:％１〈&(、━\\【#%「」，】；+^]~“《„';’{|∶´[=-`*．（–？！：$～«〉,><》)?）。…@_.\"}►»"
    + "".join(map(chr, [*range(0, 9), *range(11, 13), *range(13, 32), *range(127, 160)]))
)
_SYMBOL_CHARS = "".join(sorted(set(_DATATROVE_PUNCTUATION) | TERMINAL_PUNCTUATION))

# --------------------------------------------------------------------------------------------------------------
# spaCy-compatible English word splitting (what datatrove's `split_into_words(text, "en")` returns).
#
# spaCy's tokenizer cuts the text on whitespace, then peels prefixes and suffixes off every chunk, stopping at a
# tokenizer exception ("don't" -> "do" "n't", "Mr."), keeps URLs whole, splits the rest on infixes, and finally
# merges adjacent pieces that spell an exception containing punctuation (")" ":" -> "):"). The lists below are
# spaCy 3.8's English ones (spacy/lang/char_classes.py, punctuation.py, tokenizer_exceptions.py, en/).


def _spaced(words: str) -> tuple[str, ...]:
    return tuple(words.split())


_PUNCT = r"… …… , : ; \! \? ¿ ؟ ¡ \( \) \[ \] \{ \} < > _ # \* & 。 ？ ！ ， 、 ； ： ～ · । ، ۔ ؛ ٪"
_QUOTES = r"' \" ” “ ` ‘ ´ ’ ‚ , „ » « 「 」 『 』 （ ） 〔 〕 【 】 《 》 〈 〉 〈 〉 ⟦ ⟧"
_HYPHENS = "- – — -- --- —— ~"
_CURRENCY = r"\$ £ € ¥ ฿ US\$ C\$ A\$ ₽ ﷼ ₴ ₠ ₡ ₢ ₣ ₤ ₥ ₦ ₧ ₨ ₩ ₪ ₫ € ₭ ₮ ₯ ₰ ₱ ₲ ₳ ₴ ₵ ₶ ₷ ₸ ₹ ₺ ₻ ₼ ₽ ₾ ₿"
_UNITS = (
    "km km² km³ m m² m³ dm dm² dm³ cm cm² cm³ mm mm² mm³ ha µm nm yd in ft kg g mg µg t lb oz m/s km/h kmh mph "
    "hPa Pa mbar mb MB kb KB gb GB tb TB T G M K % км км² км³ м м² м³ дм дм² дм³ см см² см³ мм мм² мм³ нм кг г "
    "мг м/с км/ч кПа Па мбар Кб КБ кб Мб МБ мб Гб ГБ гб Тб ТБ тб"
)
# spaCy's letters without case (Hebrew, Arabic, Indic, Ethiopic, Hangul, kana, CJK): both "lower" and "upper".
_UNCASED_LETTERS = (
    r"\u0591-\u05f4\u0620-\u064a\u066e-\u06d5\u06e5-\u06ff\u0900-\u097f\u0980-\u09ff\u0b80-\u0bff\u0c00-\u0c7f"
    r"\u0c80-\u0cff\u0d80-\u0dff\u1100-\u11ff\u1200-\u137f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af"
    r"\uf900-\ufaff\ufb1d-\ufb4f"
)
# Exceptions kept as one token; contractions are generated by `_contractions`.
_SINGLE_TOKEN_EXCEPTIONS = r"""
' '' 'Cause 'Cos 'Coz 'Cuz 'S 'bout 'cause 'cos 'coz 'cuz 'd 'em 'll 'nuff 're 's ‘S ‘s — C++ and/or w/o \")
Ma'am ma'am O'clock o'clock Doin' doin' Goin' goin' Havin' havin' Lovin' lovin' Nothin' nothin' Nuthin' nuthin'
Ol' ol' Somethin' somethin' a. b. c. d. e. f. g. h. i. j. k. l. m. n. o. p. q. r. s. t. u. v. w. x. y. z. ä. ö. ü.
a.m. p.m. e.g. E.g. E.G. i.e. I.e. I.E. co. Co. Corp. Inc. Ltd. Bros. Messrs. Mr. Mrs. Ms. Dr. Prof. Jr. St. Mt.
Adm. Gen. Gov. Rep. Rev. Sen. Ph.D. vs. v.s. D.C. N.C. N.D. N.H. N.J. N.M. N.Y. S.C. Jan. Feb. Mar. Apr. Jun.
Jul. Aug. Sep. Sept. Oct. Nov. Dec. Ak. Ala. Ariz. Ark. Calif. Colo. Conn. Del. Fla. Ga. Ia. Id. Ill. Ind. Kan.
Kans. Ky. La. Mass. Md. Mich. Minn. Miss. Mo. Mont. Neb. Nebr. Nev. Okla. Ore. Pa. Tenn. Va. Wash. Wis.
(*_*) (-8 (-: (-; (-_-) (._.) (: (; (= (>_<) (^_^) (o: (¬_¬) (ಠ_ಠ) (╯°□°）╯︵┻━┻ )-: ): -_- -__- ._. 0.0 0.o 0_0
0_o 8) 8-) 8-D 8D :'( :') :'-( :'-) :( :(( :((( :() :) :)) :))) :* :-( :-(( :-((( :-) :-)) :-))) :-* :-/ :-0 :-3
:-> :-D :-O :-P :-X :-] :-o :-p :-x :-| :-} :/ :0 :1 :3 :> :D :O :P :X :] :o :o) :p :x :| :} ;) ;-) ;-D ;D ;_;
<.< </3 <3 <33 <333 =( =) =/ =3 =D =[ =] =| >.< >.> >:( >:o ><(((*> @_@ O.O O.o O_O O_o V.V V_V XD XDD [-: [:
[= ]= ^_^ ^__^ ^___^ o.0 o.O o.o o_0 o_O o_o v.v v_v xD xDD ¯\(ツ)/¯ ಠ_ಠ ಠ︵ಠ
"""
_CLITIC_GROUPS = (
    ("'ll",),
    ("ll",),
    ("'ll", "'ve"),
    ("ll", "ve"),
    ("'d",),
    ("d",),
    ("'d", "'ve"),
    ("d", "ve"),
)
# Pronoun + clitic spellings spaCy leaves whole because they are also words ("Ill", "shed", "well", ...).
_NOT_CONTRACTIONS = _spaced("Ill ill Its its Hell hell Shell shell Shed shed were Were Well well Whore whore")


def _contractions() -> dict[str, tuple[str, ...]]:
    """spaCy's English contraction exceptions: spelling -> its tokens ("don't" -> ("do", "n't"))."""
    cases: dict[str, tuple[str, ...]] = {}

    def add(*parts: str) -> None:
        for variant in (parts, (parts[0].title(), *parts[1:])):
            cases["".join(variant)] = variant

    for clitics in (("'m",), ("m",), ("'m", "a"), ("m", "a")):
        add("i", *clitics)
    for pronoun in ("i", "you", "he", "she", "it", "we", "they"):
        for clitics in _CLITIC_GROUPS:
            add(pronoun, *clitics)
    for pronoun in ("i", "you", "we", "they"):
        add(pronoun, "'ve")
        add(pronoun, "ve")
    for pronoun in ("you", "we", "they"):
        add(pronoun, "'re")
        add(pronoun, "re")
    for pronoun in ("he", "she", "it"):
        add(pronoun, "'s")
        add(pronoun, "s")
    singular, plural = ("that", "this"), ("these", "those")
    for word in ("who", "what", "when", "where", "why", "how", "there", *singular, *plural):
        if word not in plural:
            add(word, "'s")
            add(word, "s")
        for clitics in _CLITIC_GROUPS:
            add(word, *clitics)
        if word not in singular:
            for clitic in ("'re", "re", "'ve", "ve"):
                add(word, clitic)
    modals = _spaced("ca could do does did had may might must need ought sha should wo would")
    for verb in modals:
        for clitics in (("n't",), ("nt",), ("n't", "'ve"), ("nt", "ve")):
            add(verb, *clitics)
    for verb in ("could", "might", "must", "should", "would", "not"):
        add(verb, "'ve")
        add(verb, "ve")
    for verb in ("ai", "are", "is", "was", "were", "have", "has", "dare"):
        add(verb, "n't")
        add(verb, "nt")
    for parts in (("can", "not"), ("gon", "na"), ("got", "ta"), ("let", "'s"), ("how", "'d", "'y")):
        add(*parts)
    for parts in (("y'", "all"), ("y", "all"), ("c'm", "on"), ("C'm", "on")):
        cases["".join(parts)] = parts
    for hour in range(1, 13):
        for period in ("a.m.", "am", "p.m.", "pm"):
            cases[f"{hour}{period}"] = (str(hour), period)
    for unit in "CcFfKk":
        cases[f"°{unit}."] = ("°", unit, ".")
    for word in _NOT_CONTRACTIONS:
        cases.pop(word, None)
    return cases


def _tokenizer_exceptions() -> dict[str, tuple[str, ...]]:
    exceptions = _contractions()
    exceptions.update((orth, (orth,)) for orth in _SINGLE_TOKEN_EXCEPTIONS.split())
    # spaCy adds every exception again with the typographic apostrophe.
    for orth, parts in list(exceptions.items()):
        if "'" in orth:
            exceptions[orth.replace("'", "’")] = tuple(part.replace("'", "’") for part in parts)
    return exceptions


def _as_char_class(codes: list[int]) -> str:
    """Sorted code points as a regex character-class body of ranges (fast to match, unlike single escapes)."""
    ranges: list[list[int]] = []
    for code in codes:
        if ranges and ranges[-1][1] == code - 1:
            ranges[-1][1] = code
        else:
            ranges.append([code, code])
    return "".join(re.escape(chr(a)) + ("" if a == b else "-" + re.escape(chr(b))) for a, b in ranges)


def _split_list(spaced: str) -> list[str]:
    return [piece for piece in spaced.split(" ") if piece.strip()]


@dataclass(frozen=True)
class _EnglishRules:
    prefix_search: Callable[[str], re.Match | None]
    suffix_search: Callable[[str], re.Match | None]
    infix_finditer: Callable[[str], Iterator[re.Match]]
    url_match: Callable[[str], re.Match | None]
    exceptions: dict[str, tuple[str, ...]]
    merges: dict[tuple[str, ...], str]  # pieces that spell an exception -> that exception
    merge_firsts: frozenset[str]  # first pieces of those
    changing_merges: frozenset[tuple[str, ...]]  # those whose merge changes the pieces ("a" "." -> "a.")
    changing_merge_firsts: frozenset[str]
    longest_merge: int


@functools.cache
def _english_rules() -> _EnglishRules:
    """Compile spaCy's English rules once per process (about 0.1 s, on first use only)."""
    lower = "".join(c for c in map(chr, range(0x530)) if c.isalpha() and c.islower())
    upper = "".join(c for c in map(chr, range(0x530)) if c.isalpha() and c.isupper())
    al, au = re.escape(lower) + _UNCASED_LETTERS, re.escape(upper) + _UNCASED_LETTERS
    alpha, quotes = al + au, _QUOTES.replace(" ", "")
    symbol_planes = [*range(0x10000), *range(0x1D000, 0x1D400), *range(0x1F000, 0x1FB00)]
    icons = [f"[{_as_char_class([c for c in symbol_planes if unicodedata.category(chr(c)) == 'So'])}]"]
    ellipses = [r"\.\.+", "…"]
    punct = _split_list(_PUNCT)
    prefixes = ["§", "%", "=", "—", "–", r"\+(?![0-9])", *punct, *ellipses, *_split_list(_QUOTES)]
    prefixes += [*_split_list(_CURRENCY), *icons]
    suffixes = [*punct, *ellipses, *_split_list(_QUOTES), *icons, "'s", "'S", "’s", "’S", "—", "–"]
    suffixes += [
        r"(?<=[0-9])\+",
        r"(?<=°[FfCcKk])\.",
        r"(?<=[0-9])(?:{})".format("|".join(_split_list(_CURRENCY))),
        r"(?<=[0-9])(?:{})".format("|".join(_split_list(_UNITS))),
        r"(?<=[0-9{al}{e}{p}(?:{q})])\.".format(al=al, e=r"%²\-\+", q=quotes, p="|".join(punct)),
        rf"(?<=[{au}][{au}])\.",
    ]
    infixes = [
        *ellipses,
        *icons,
        r"(?<=[0-9])[+\-\*^](?=[0-9-])",
        rf"(?<=[{al}{quotes}])\.(?=[{au}{quotes}])",
        rf"(?<=[{alpha}]),(?=[{alpha}])",
        r"(?<=[{a}0-9])(?:{h})(?=[{a}])".format(a=alpha, h="|".join(_split_list(_HYPHENS))),
        rf"(?<=[{alpha}0-9])[:<>=/](?=[{alpha}])",
    ]
    url_match = re.compile(
        r"^(?:(?:[\w\+\-\.]{2,})://)?(?:\S+(?::\S*)?@)?(?:(?!(?:10|127)(?:\.\d{1,3}){3})"
        r"(?!(?:169\.254|192\.168)(?:\.\d{1,3}){2})(?!172\.(?:1[6-9]|2\d|3[0-1])(?:\.\d{1,3}){2})"
        r"(?:[1-9]\d?|1\d\d|2[01]\d|22[0-3])(?:\.(?:1?\d{1,2}|2[0-4]\d|25[0-5])){2}"
        r"(?:\.(?:[1-9]\d?|1\d\d|2[0-4]\d|25[0-4]))|(?:(?:[A-Za-z0-9\u00a1-\uffff][A-Za-z0-9\u00a1-\uffff_-]{0,62})?"
        r"[A-Za-z0-9\u00a1-\uffff]\.)+(?:[" + al + r"]{2,63}))(?::\d{2,5})?(?:[/?#]\S*)?$"
    ).match
    rules = _EnglishRules(
        prefix_search=re.compile("|".join("^" + p for p in prefixes)).search,
        suffix_search=re.compile("|".join(p + "$" for p in suffixes)).search,
        infix_finditer=re.compile("|".join(infixes)).finditer,
        url_match=url_match,
        exceptions=_tokenizer_exceptions(),
        merges={},
        merge_firsts=frozenset(),
        changing_merges=frozenset(),
        changing_merge_firsts=frozenset(),
        longest_merge=0,
    )
    # spaCy re-joins pieces spelling an exception that its own affix rules would split (faster_heuristics mode).
    for orth in rules.exceptions:
        if rules.prefix_search(orth) or rules.suffix_search(orth) or next(rules.infix_finditer(orth), None):
            pieces = tuple(_split_chunk(orth, rules, use_exceptions=False))
            if len(pieces) > 1:
                rules.merges[pieces] = orth
    changing = frozenset(pieces for pieces, orth in rules.merges.items() if rules.exceptions[orth] != pieces)
    return dataclasses.replace(
        rules,
        merge_firsts=frozenset(pieces[0] for pieces in rules.merges),
        changing_merges=changing,
        changing_merge_firsts=frozenset(pieces[0] for pieces in changing),
        longest_merge=max(map(len, rules.merges)),
    )


def _split_chunk(chunk: str, rules: _EnglishRules, use_exceptions: bool = True) -> list[str]:
    """spaCy's `_split_affixes` + `_attach_tokens` for one whitespace-free chunk."""
    exceptions = rules.exceptions if use_exceptions else {}
    prefixes: list[str] = []
    suffixes: list[str] = []
    string, last_size = chunk, 0
    while string and len(string) != last_size and string not in exceptions:
        last_size = len(string)
        match = rules.prefix_search(string)
        pre_len = match.end() if match else 0
        if pre_len and string[pre_len:] in exceptions:
            prefixes.append(string[:pre_len])
            string = string[pre_len:]
            break
        match = rules.suffix_search(string[pre_len:])
        suf_len = match.end() - match.start() if match else 0
        if suf_len and string[:-suf_len] in exceptions:
            suffixes.append(string[-suf_len:])
            string = string[:-suf_len]
            break
        if pre_len and suf_len and pre_len + suf_len <= len(string):
            prefixes.append(string[:pre_len])
            suffixes.append(string[-suf_len:])
            string = string[pre_len : len(string) - suf_len]
        elif pre_len:
            prefixes.append(string[:pre_len])
            string = string[pre_len:]
        elif suf_len:
            suffixes.append(string[-suf_len:])
            string = string[:-suf_len]
    pieces = prefixes
    if string in exceptions:
        pieces.extend(exceptions[string])
    elif string and rules.url_match(string):
        pieces.append(string)
    elif string:
        start = 0
        for match in rules.infix_finditer(string):
            infix_start, infix_end = match.span()
            if infix_start == 0:
                continue
            if infix_start != start:
                pieces.append(string[start:infix_start])
            if infix_start != infix_end:
                pieces.append(string[infix_start:infix_end])
            start = infix_end
        if string[start:]:
            pieces.append(string[start:])
    pieces.extend(reversed(suffixes))
    return pieces


# A word followed by one of these always splits into the word and the mark, and no exception spells such a pair.
_PLAIN_TRAILING_MARKS = frozenset(",;:!?")


def _chunk_words(chunk: str, rules: _EnglishRules) -> list[str] | tuple[str, ...]:
    """The pieces of one whitespace-free chunk, before special-case merging; common shapes skip the regexes."""
    exception = rules.exceptions.get(chunk)
    if exception:
        return exception
    if chunk.isalpha() or chunk.isdecimal():
        return (chunk,)
    head = chunk[:-1]
    if chunk[-1] in _PLAIN_TRAILING_MARKS and head.isalpha():
        return (*rules.exceptions.get(head, (head,)), chunk[-1])
    return _split_chunk(chunk, rules)


def _may_merge(pieces: list[str] | tuple[str, ...], rules: _EnglishRules) -> bool:
    """Whether special-case merging could change these pieces of one chunk (else the matcher is skipped)."""
    if len(pieces) < 2:
        return False
    for i, piece in enumerate(pieces[:-1]):
        if piece in rules.changing_merge_firsts:
            for size in range(2, min(rules.longest_merge, len(pieces) - i) + 1):
                if tuple(pieces[i : i + size]) in rules.changing_merges:
                    return True
    return False


_CHUNK_OR_SPACE = re.compile(r"\S+|\s+")


def _tokens_with_starts(text: str, rules: _EnglishRules) -> list[tuple[str, int]]:
    """spaCy's tokens (whitespace runs other than one space after a word are tokens too) with their offsets,
    after spaCy's special-case matcher: it finds every run of adjacent tokens spelling an exception's pieces,
    also across a single space, keeps the longest (then leftmost) of overlapping ones, and merges those that
    lie inside one chunk (a match across a space only blocks the others)."""
    tokens: list[tuple[str, int]] = []
    chunk_of: list[int] = []  # whitespace tokens get -1: no match spans them
    may_merge = False
    for number, match in enumerate(_CHUNK_OR_SPACE.finditer(text)):
        start, chunk = match.span()[0], match.group()
        if chunk.isspace():
            if chunk != " " or not start:
                tokens.append((chunk, start))
                chunk_of.append(-1)
            continue
        pieces = _chunk_words(chunk, rules)
        may_merge = may_merge or _may_merge(pieces, rules)
        for piece in pieces:
            tokens.append((piece, start))
            chunk_of.append(number)
            start += len(piece)
    if not may_merge:
        return tokens
    matches = []
    for i, (token, _) in enumerate(tokens):
        if token not in rules.merge_firsts:
            continue
        for size in range(2, min(rules.longest_merge, len(tokens) - i) + 1):
            if chunk_of[i + size - 1] == -1:
                break
            if tuple(t for t, _ in tokens[i : i + size]) in rules.merges:
                matches.append((i, size))
    seen: set[int] = set()
    merged_at: dict[int, int] = {}
    for i, size in sorted(matches, key=lambda m: (-m[1], m[0])):
        if i not in seen and i + size - 1 not in seen and chunk_of[i] == chunk_of[i + size - 1]:
            merged_at[i] = size
        seen.update(range(i, i + size))
    result: list[tuple[str, int]] = []
    i = 0
    while i < len(tokens):
        size = merged_at.get(i)
        if size is None:
            result.append(tokens[i])
            i += 1
            continue
        start = tokens[i][1]
        for piece in rules.exceptions[rules.merges[tuple(t for t, _ in tokens[i : i + size])]]:
            result.append((piece, start))
            start += len(piece)
        i += size
    return result


def split_words(text: str) -> list[str]:
    """The words datatrove's `split_into_words(text, "en")` returns (spaCy's English tokenizer, whitespace
    tokens dropped), without spaCy: punctuation is split off, "don't" -> "do" "n't", URLs stay whole."""
    rules = _english_rules()
    words: list[str] = []
    for chunk in text.split():
        pieces = _chunk_words(chunk, rules)
        if _may_merge(pieces, rules):
            return [token for token, _ in _tokens_with_starts(text, rules) if not token.isspace()]
        words.extend(pieces)
    return words


def _is_punct(token: str) -> bool:
    return all(unicodedata.category(char).startswith("P") for char in token)


def sentence_ends(text: str) -> list[int]:
    """End offsets of the sentences of spaCy's `sentencizer` (datatrove's English `split_into_sentences`): a
    sentence ends at a sentence-final mark once a token that is not punctuation (a whitespace token counts)
    follows."""
    ends: list[int] = []
    seen_terminal, last_end = False, 0
    for token, start in _tokens_with_starts(text, _english_rules()):
        if token in TERMINAL_PUNCTUATION:
            seen_terminal = True
        elif seen_terminal and not _is_punct(token):
            ends.append(last_end)
            seen_terminal = False
        last_end = start + len(token)
    if last_end:
        ends.append(last_end)
    return ends


def split_sentences(text: str) -> list[str]:
    """datatrove's `split_into_sentences(text, "en")`: the text cut after every sentence end but the last."""
    cuts = sentence_ends(text)[:-1]
    return [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]


# --------------------------------------------------------------------------------------------------------------
# Parameter checks shared by the steps: one message that names the step, the parameter and the fix.


def _nullable(step: Step, name: str) -> bool:
    """Whether the parameter accepts null (its annotation says `| None`), which disables its rule."""
    return "None" in str(next(f.type for f in dataclasses.fields(step) if f.name == name))


def _check_numbers(step: Step, names: tuple[str, ...], low: float, high: float | None, whole: bool) -> None:
    for name in names:
        value = getattr(step, name)
        if value is None and _nullable(step, name):
            continue
        kind = (int,) if whole else (int, float)
        if (
            isinstance(value, bool)
            or not isinstance(value, kind)
            or value < low
            or (high is not None and value > high)
        ):
            bound = f"between {low} and {high}" if high is not None else f">= {low}"
            null = " (or null to disable)" if _nullable(step, name) else ""
            raise RecipeInputError(
                f"Step {step.name!r}: {name} must be a {'whole number' if whole else 'number'} {bound}{null}, "
                f"got {value!r}."
            )


def _check_fractions(step: Step, *names: str) -> None:
    _check_numbers(step, names, 0, 1, whole=False)


def _check_non_negative(step: Step, *names: str) -> None:
    _check_numbers(step, names, 0, None, whole=False)


def _check_counts(step: Step, *names: str) -> None:
    _check_numbers(step, names, 0, None, whole=True)


def _duplicates(elements: list[str]) -> tuple[int, int]:
    """How many elements repeat an earlier one, and their characters (datatrove's `find_duplicates`)."""
    seen: set[str] = set()
    count = chars = 0
    for element in elements:
        if element in seen:
            count += 1
            chars += len(element)
        else:
            seen.add(element)
    return count, chars


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
        _check_fractions(self, "max_replacement_fraction", "max_control_fraction", "max_binary_fraction")
        _check_counts(self, "max_mojibake_sequences", "max_base64_run")
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
# gopher_quality

GOPHER_STOP_WORDS = ("the", "be", "to", "of", "and", "that", "have", "with")


@dataclass
class GopherQuality(FilterStep):
    """Gopher's document quality rules (Rae et al. 2021, table A1), mirroring datatrove 0.10.1's
    `GopherQualityFilter` with its defaults: 50..100,000 words (not counting pure-symbol words), mean word
    length 3..10 characters, at most 0.1 "#" and 0.1 ellipses per word, at most 90% of lines starting with a
    bullet and 30% ending with an ellipsis, at least 80% of words containing a letter, at least 2 of the stop
    words. Words come from `split_words` (spaCy's English tokenizer, as datatrove). As in datatrove, 0 or null
    disables a rule. Differs only where datatrove would divide by zero: a text without words is dropped."""

    name: ClassVar[str] = "gopher_quality"
    min_doc_words: int | None = 50
    max_doc_words: int | None = 100000
    min_avg_word_length: float | None = 3
    max_avg_word_length: float | None = 10
    max_symbol_word_ratio: float | None = 0.1
    max_bullet_lines_ratio: float | None = 0.9
    max_ellipsis_lines_ratio: float | None = 0.3
    max_non_alpha_words_ratio: float | None = 0.8
    min_stop_words: int | None = 2
    stop_words: list[str] | None = None

    def __post_init__(self) -> None:
        _check_counts(self, "min_doc_words", "max_doc_words", "min_stop_words")
        _check_non_negative(self, "min_avg_word_length", "max_avg_word_length", "max_symbol_word_ratio")
        _check_fractions(
            self, "max_bullet_lines_ratio", "max_ellipsis_lines_ratio", "max_non_alpha_words_ratio"
        )
        if self.stop_words is not None and not (
            isinstance(self.stop_words, list) and all(isinstance(w, str) for w in self.stop_words)
        ):
            raise RecipeInputError(
                f"Step 'gopher_quality': stop_words must be a list of words, got {self.stop_words!r}."
            )
        self._stop_words = frozenset(GOPHER_STOP_WORDS if self.stop_words is None else self.stop_words)

    def keep(self, text: str) -> bool:
        words = split_words(text)
        n_words = len(words)
        if not n_words:
            return False
        content_words = [w for w in words if w.strip(_SYMBOL_CHARS)]
        n_content = len(content_words)
        if self.min_doc_words and n_content < self.min_doc_words:
            return False
        if self.max_doc_words and n_content > self.max_doc_words:
            return False
        mean_length = sum(map(len, content_words)) / n_content if n_content else math.nan
        if self.min_avg_word_length and mean_length < self.min_avg_word_length:
            return False
        if self.max_avg_word_length and mean_length > self.max_avg_word_length:
            return False
        if self.max_symbol_word_ratio and (
            text.count("#") / n_words > self.max_symbol_word_ratio
            or (text.count("...") + text.count("…")) / n_words > self.max_symbol_word_ratio
        ):
            return False
        lines = text.splitlines()
        if (
            self.max_bullet_lines_ratio
            and sum(line.lstrip().startswith(("•", "-")) for line in lines) / len(lines)
            > self.max_bullet_lines_ratio
        ):
            return False
        if (
            self.max_ellipsis_lines_ratio
            and sum(line.rstrip().endswith(("...", "…")) for line in lines) / len(lines)
            > self.max_ellipsis_lines_ratio
        ):
            return False
        if self.max_non_alpha_words_ratio:
            alpha_words = sum(1 for w in words if w.isalpha() or any(map(str.isalpha, w)))
            if alpha_words / n_words < self.max_non_alpha_words_ratio:
                return False
        return not (self.min_stop_words and len(self._stop_words.intersection(words)) < self.min_stop_words)


# --------------------------------------------------------------------------------------------------------------
# gopher_repetition

_PARAGRAPH_BREAK = re.compile(r"\n{2,}")
_LINE_BREAKS = re.compile(r"\n+")


def _pairs(value: Any, step: str, name: str) -> list[tuple[int, float]]:
    """[[n, fraction], ...] from YAML, checked."""
    try:
        pairs = [(int(n), float(frac)) for n, frac in value]
    except (TypeError, ValueError):
        pairs = []
    if (value and not pairs) or any(n < 1 or not 0 <= frac <= 1 for n, frac in pairs):
        raise RecipeInputError(
            f"Step {step!r}: {name} must be a list of [n, max_fraction] pairs with n >= 1 and 0 <= max_fraction "
            f"<= 1, e.g. [[2, 0.2], [3, 0.18]]; got {value!r}."
        )
    return pairs


def _duplicated_ngram_chars(words: list[str], n: int) -> int:
    """Characters in n-grams that repeat an earlier n-gram, scanning without overlap after a repeat
    (datatrove's `find_all_duplicate`, which also joins the words without a separator)."""
    grams = list(map("".join, zip(*(words[i:] for i in range(n)), strict=False)))
    if len(set(grams)) == len(grams):
        return 0
    seen: set[str] = set()
    repeated = i = 0
    while i < len(grams):
        gram = grams[i]
        if gram in seen:
            repeated += len(gram)
            i += n
        else:
            seen.add(gram)
            i += 1
    return repeated


@dataclass
class GopherRepetition(FilterStep):
    """Gopher's repetition rules (Rae et al. 2021, table A1), mirroring datatrove 0.10.1's
    `GopherRepetitionFilter` with its defaults: duplicate paragraphs and lines (share of them, and share of the
    text's characters), characters covered by the most frequent 2/3/4-gram, and by repeated 5..10-grams.
    0 or null disables a fraction rule, as in datatrove."""

    name: ClassVar[str] = "gopher_repetition"
    dup_line_frac: float | None = 0.3
    dup_para_frac: float | None = 0.3
    dup_line_char_frac: float | None = 0.2
    dup_para_char_frac: float | None = 0.2
    top_n_grams: list[list[float]] = field(default_factory=lambda: [[2, 0.2], [3, 0.18], [4, 0.16]])
    dup_n_grams: list[list[float]] = field(
        default_factory=lambda: [[5, 0.15], [6, 0.14], [7, 0.13], [8, 0.12], [9, 0.11], [10, 0.10]]
    )

    def __post_init__(self) -> None:
        _check_fractions(self, "dup_line_frac", "dup_para_frac", "dup_line_char_frac", "dup_para_char_frac")
        self._top_n_grams = _pairs(self.top_n_grams, self.name, "top_n_grams")
        self._dup_n_grams = _pairs(self.dup_n_grams, self.name, "dup_n_grams")

    def keep(self, text: str) -> bool:
        if not text:
            return False
        size = len(text)
        paragraphs = _PARAGRAPH_BREAK.split(text.strip())
        count, chars = _duplicates(paragraphs)
        if self.dup_para_frac and count / len(paragraphs) > self.dup_para_frac:
            return False
        if self.dup_para_char_frac and chars / size > self.dup_para_char_frac:
            return False
        lines = _LINE_BREAKS.split(text)
        count, chars = _duplicates(lines)
        if self.dup_line_frac and count / len(lines) > self.dup_line_frac:
            return False
        if self.dup_line_char_frac and chars / size > self.dup_line_char_frac:
            return False
        words = split_words(text)
        for n, max_fraction in self._top_n_grams:
            if len(words) < n:
                continue
            # Tuples stand for datatrove's " "-joined n-grams (words never contain spaces); max() keeps the first
            # of equally frequent n-grams, as Counter.most_common(1) does.
            counts = Counter(zip(*(words[i:] for i in range(n)), strict=False))
            top, occurrences = max(counts.items(), key=itemgetter(1))
            if (sum(map(len, top)) + n - 1) * occurrences / size > max_fraction:
                return False
        return all(_duplicated_ngram_chars(words, n) / size <= frac for n, frac in self._dup_n_grams)


# --------------------------------------------------------------------------------------------------------------
# fineweb_quality


@dataclass
class FineWebQuality(FilterStep):
    """FineWeb's line-level quality rules, mirroring datatrove 0.10.1's `FineWebQualityFilter` with its defaults:
    at least 12% of non-blank lines end with terminal punctuation, at most 67% are short (<= 30 characters),
    at most 1% of the characters are in duplicated lines, at most 0.3 newlines per word."""

    name: ClassVar[str] = "fineweb_quality"
    line_punct_thr: float = 0.12
    line_punct_exclude_zero: bool = False
    stop_chars: list[str] | None = None
    short_line_thr: float = 0.67
    short_line_length: int = 30
    char_duplicates_ratio: float = 0.01
    new_line_ratio: float = 0.3

    def __post_init__(self) -> None:
        _check_fractions(self, "line_punct_thr", "short_line_thr", "char_duplicates_ratio")
        _check_non_negative(self, "new_line_ratio")
        _check_counts(self, "short_line_length")
        if self.stop_chars is not None and not (
            isinstance(self.stop_chars, list) and all(isinstance(c, str) and c for c in self.stop_chars)
        ):
            raise RecipeInputError(
                f"Step 'fineweb_quality': stop_chars must be a list of strings, got {self.stop_chars!r}."
            )
        stop_chars = TERMINAL_PUNCTUATION if self.stop_chars is None else self.stop_chars
        self._stop_chars = tuple(stop_chars)
        self._single_stop_chars = frozenset(stop_chars) if all(len(c) == 1 for c in stop_chars) else None

    def _ends_with_stop_char(self, line: str) -> bool:
        if self._single_stop_chars is not None:
            return line[-1] in self._single_stop_chars
        return line.endswith(self._stop_chars)

    def keep(self, text: str) -> bool:
        lines = [line for line in text.split("\n") if line.strip()]
        if not lines:
            return False
        ratio = sum(1 for line in lines if self._ends_with_stop_char(line)) / len(lines)
        if ratio < self.line_punct_thr and not (ratio == 0 and self.line_punct_exclude_zero):
            return False
        if sum(1 for line in lines if len(line) <= self.short_line_length) / len(lines) > self.short_line_thr:
            return False
        if _duplicates(lines)[1] / (len(text) - text.count("\n")) > self.char_duplicates_ratio:
            return False
        return text.count("\n") / len(split_words(text)) <= self.new_line_ratio


# --------------------------------------------------------------------------------------------------------------
# c4_quality

_CITATION = re.compile(r"\[\d*]|\[edit]|\[citation needed]")
_C4_END_PUNCTUATION = (".", "?", "!", '"', "'")
_C4_POLICY_PHRASES = (
    "terms of use",
    "privacy policy",
    "cookie policy",
    "uses cookies",
    "use of cookies",
    "use cookies",
)


@dataclass
class C4Quality(Step):
    """C4's cleaning rules (Raffel et al. 2020), mirroring datatrove 0.10.1's `C4QualityFilter` with its
    defaults. Like datatrove it rewrites the text, keeping only lines that end in terminal punctuation and have
    at least 3 words, none longer than 1000 characters, without "javascript" or cookie/terms-of-use phrases
    (citation markers like [1] removed), and drops a document that mentions "lorem ipsum", contains "{", or
    keeps fewer than 5 sentences. -1 disables a count rule, as in datatrove. Reads plain-text columns only;
    each is judged and rewritten on its own, and a row is dropped if any of them fails. Dropped rows are
    reported unchanged; `rows_changed` counts kept rows whose text was rewritten."""

    name: ClassVar[str] = "c4_quality"
    split_paragraph: bool = True
    remove_citations: bool = True
    filter_no_terminal_punct: bool = True
    min_num_sentences: int = 5
    min_words_per_line: int = 3
    max_word_length: int = 1000
    filter_lorem_ipsum: bool = True
    filter_javascript: bool = True
    filter_curly_bracket: bool = True
    filter_policy: bool = True

    def __post_init__(self) -> None:
        for name in ("min_num_sentences", "min_words_per_line", "max_word_length"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < -1:
                raise RecipeInputError(
                    f"Step 'c4_quality': {name} must be a whole number >= 0, or -1 to disable, got {value!r}."
                )

    def clean(self, text: str) -> str | None:
        """The text with its bad lines removed, or None when the whole document is dropped."""
        lines = text.splitlines() if self.split_paragraph else split_sentences(text)
        num_sentences = 0
        kept_lines = []
        for line in lines:
            line = line.strip()
            words = line.split()
            if self.max_word_length != -1 and any(len(word) > self.max_word_length for word in words):
                continue
            if self.remove_citations:
                line = _CITATION.sub("", line)
            if self.filter_no_terminal_punct and (
                not line.endswith(_C4_END_PUNCTUATION) or line.endswith("...")
            ):
                continue
            if len(words) < self.min_words_per_line:
                continue
            lowered = line.lower()
            if self.filter_lorem_ipsum and "lorem ipsum" in lowered:
                return None
            if self.filter_javascript and "javascript" in lowered:
                continue
            if self.filter_curly_bracket and "{" in line:
                return None
            if self.filter_policy and any(phrase in lowered for phrase in _C4_POLICY_PHRASES):
                continue
            if self.min_num_sentences != -1:
                num_sentences += len(sentence_ends(line)) if self.split_paragraph else 1
            kept_lines.append(line)
        if num_sentences < self.min_num_sentences:
            return None
        return ("\n" if self.split_paragraph else " ").join(kept_lines).strip()

    def apply(
        self, dataset: datasets.Dataset, report: DataReport, num_proc: int | None = None
    ) -> datasets.Dataset:
        columns = self.resolved_columns(dataset)
        not_text = [
            c
            for c in columns
            if getattr(dataset.features[c], "dtype", None) not in ("string", "large_string")
        ]
        if not_text:
            raise RecipeInputError(
                f"Step 'c4_quality' rewrites plain text, but columns {not_text} are not strings (chat `messages`?). "
                "Use it on a `text` column, or set `columns` to string columns only."
            )

        def judge(batch: dict[str, list]) -> dict[str, list]:
            out: dict[str, list] = {c: [] for c in columns}
            out["_keep"], out["_changed"] = [], []
            for values in zip(*(batch[c] for c in columns), strict=True):
                cleaned = [self.clean(v or "") for v in values]
                keep = all(c is not None for c in cleaned)
                for column, original, new in zip(columns, values, cleaned, strict=True):
                    out[column].append(new if keep else original)
                out["_keep"].append(keep)
                out["_changed"].append(keep and list(values) != cleaned)
            return out

        judged = dataset.map(judge, batched=True, num_proc=num_proc, desc=self.name)
        flags, changed = judged["_keep"], sum(judged["_changed"])
        judged = judged.remove_columns(["_keep", "_changed"])
        return select_with_report(judged, flags, self, report, columns, details={"rows_changed": changed})


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
        _check_counts(self, "min_chars", "max_chars", "min_words", "max_words", "top_ngram_size")
        _check_fractions(self, "max_repeated_line_fraction", "max_top_ngram_fraction")
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
                and _duplicates(lines)[1] / sum(map(len, lines)) > self.max_repeated_line_fraction
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
        _check_non_negative(self, "max_url_density", "max_email_density")
        _check_fractions(self, "max_top_word_fraction", "max_all_caps_fraction")
        _check_counts(self, "max_boilerplate_phrases", "min_words")
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
        _check_fractions(self, "min_script_fraction")
        _check_counts(self, "min_stop_words")

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
    "GOPHER_STOP_WORDS",
    "SCRIPTS",
    "STOP_WORDS_BY_LANGUAGE",
    "TERMINAL_PUNCTUATION",
    "C4Quality",
    "Corrupted",
    "FineWebQuality",
    "GopherQuality",
    "GopherRepetition",
    "Language",
    "LowInformation",
    "Spam",
    "language_scores",
    "looks_truncated",
    "script_counts",
    "sentence_ends",
    "split_sentences",
    "split_words",
]
