"""Demographic terms in pairs, for counterfactual data augmentation and for counting who a corpus talks about.

Every category (gender, name origin, religion, age) lists pairs of terms that differ only in the group they
name (he/she, father/mother, John/Mohammed, church/mosque, young/old). `swap_terms` replaces every term with
its counterpart, keeping the case of what it replaces ("He" -> "She", "MOSQUE" -> "CHURCH") and matching whole
words only ("he" is not swapped inside "the", "old" not in "gold"). `count_terms` counts the terms of each
group, which the data report records for every pipeline (`demographic_terms` in its summary).

Two words need context, and get a simple documented rule:
- "her" is the counterpart of both "his" (a determiner: "his book") and "him" (an object: "saw him"). It
  becomes "his" when a word follows it that is not a function word ("her book" -> "his book") and "him"
  otherwise ("saw her." -> "saw him.", "gave her the keys" -> "gave him the keys"). Likewise "his" becomes
  "her" before a noun and "hers" otherwise ("the book is his" -> "the book is hers").
- "old" in an age expression ("five years old", "a 3-year-old") is a number, not a group, and stays.
Names are matched only when capitalised (or in capitals), so ordinary words are never taken for names.
Swapping twice gives back the text, except where "her" stands in for "him" before a noun-like word.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from typing import Any

from hfrecipes.core.errors import RecipeInputError

# category -> ((group_a, group_b, ((term_a, term_b), ...)), ...); terms lowercase (names capitalised).
TERM_PAIRS: dict[str, tuple[tuple[str, str, tuple[tuple[str, str], ...]], ...]] = {
    "gender": (
        (
            "male",
            "female",
            (
                ("he", "she"),
                ("him", "her"),
                ("his", "her"),
                ("himself", "herself"),
                ("man", "woman"),
                ("men", "women"),
                ("boy", "girl"),
                ("boys", "girls"),
                ("father", "mother"),
                ("fathers", "mothers"),
                ("son", "daughter"),
                ("sons", "daughters"),
                ("brother", "sister"),
                ("brothers", "sisters"),
                ("husband", "wife"),
                ("husbands", "wives"),
                ("uncle", "aunt"),
                ("uncles", "aunts"),
                ("nephew", "niece"),
                ("nephews", "nieces"),
                ("grandfather", "grandmother"),
                ("grandson", "granddaughter"),
                ("dad", "mom"),
                ("dads", "moms"),
                ("king", "queen"),
                ("kings", "queens"),
                ("prince", "princess"),
                ("boyfriend", "girlfriend"),
                ("male", "female"),
                ("males", "females"),
                ("gentleman", "lady"),
                ("gentlemen", "ladies"),
                ("mr", "mrs"),
                ("sir", "madam"),
                ("actor", "actress"),
                ("waiter", "waitress"),
                ("groom", "bride"),
            ),
        ),
    ),
    "name_origin": (
        (
            "anglo",
            "arabic",
            (("John", "Mohammed"), ("James", "Ahmed"), ("Emily", "Fatima"), ("Sarah", "Aisha")),
        ),
        (
            "anglo",
            "south_asian",
            (("David", "Rahul"), ("Michael", "Arjun"), ("Anna", "Priya"), ("Laura", "Ananya")),
        ),
        (
            "anglo",
            "east_asian",
            (("Robert", "Wei"), ("Thomas", "Hiroshi"), ("Claire", "Mei"), ("Megan", "Yuki")),
        ),
        (
            "anglo",
            "hispanic",
            (("Richard", "Carlos"), ("Daniel", "Alejandro"), ("Jennifer", "Maria"), ("Hannah", "Lucia")),
        ),
        (
            "anglo",
            "african_american",
            (("Brad", "Jamal"), ("Greg", "Darnell"), ("Katie", "Lakisha"), ("Allison", "Tamika")),
        ),
    ),
    "religion": (
        (
            "christian",
            "muslim",
            (
                ("christian", "muslim"),
                ("christians", "muslims"),
                ("christianity", "islam"),
                ("church", "mosque"),
                ("churches", "mosques"),
                ("bible", "quran"),
                ("priest", "imam"),
                ("priests", "imams"),
            ),
        ),
        (
            "jewish",
            "hindu",
            (
                ("jewish", "hindu"),
                ("jews", "hindus"),
                ("judaism", "hinduism"),
                ("synagogue", "temple"),
                ("synagogues", "temples"),
            ),
        ),
        (
            "buddhist",
            "sikh",
            (
                ("buddhist", "sikh"),
                ("buddhists", "sikhs"),
                ("buddhism", "sikhism"),
                ("monastery", "gurdwara"),
            ),
        ),
    ),
    "age": (
        (
            "young",
            "old",
            (
                ("young", "old"),
                ("younger", "older"),
                ("youngest", "oldest"),
                ("teenager", "pensioner"),
                ("teenagers", "pensioners"),
                ("millennial", "boomer"),
                ("millennials", "boomers"),
            ),
        ),
    ),
}
CATEGORIES = tuple(TERM_PAIRS)
NAME_CATEGORIES = frozenset({"name_origin"})
# The columns whose text is counted and swapped, by TRL's column conventions.
TEXT_COLUMNS = ("text", "messages", "prompt", "completion", "chosen", "rejected")

# Words after which "her"/"his" is a pronoun (object or "hers"), not a determiner before a noun.
_FUNCTION_WORDS = frozenset(
    """a about after again all also an and any are as at back be because before but by can could did do does
    down every for from had has have here home if in into is it just last later many more most much never no
    not now of off on once one only or out over since so some still than that the their them then there these
    they this those through to today tomorrow too under until up very was we well were what when where which
    while who why will with would yesterday yet you""".split()  # noqa: SIM905 - reads better as text
)
_WORD = re.compile(r"\b[A-Za-z]+\b")
_OLD_IN_AGE = re.compile(r"(?:\d|\byears?|\bmonths?|\bweeks?|\bdays?)[\s-]*old\b", re.IGNORECASE)
_AGE_EXPRESSION = re.compile(r"(?:\d|year|years|month|months|week|weeks|day|days)[\s-]*$", re.IGNORECASE)


def _build_index() -> dict[str, tuple[str, str, str]]:
    """term (lowercase) -> (category, its group, its counterpart); a term may sit in one pair only, except
    "her", whose counterpart is decided by context."""
    index: dict[str, tuple[str, str, str]] = {}
    for category, groups in TERM_PAIRS.items():
        for group_a, group_b, pairs in groups:
            for term_a, term_b in pairs:
                for term, group, other in ((term_a, group_a, term_b), (term_b, group_b, term_a)):
                    key = term.lower()
                    if key in index and key != "her":
                        raise ValueError(f"Demographic term {term!r} is listed twice.")
                    index[key] = (category, group, other.lower())
    index["hers"] = ("gender", "female", "his")  # the pronoun; "her" and "his" are resolved by context
    return index


TERMS = _build_index()


def check_categories(categories: Iterable[str] | None) -> tuple[str, ...]:
    """The categories to use (all when None), refusing unknown names with the list of known ones."""
    if categories is None:
        return CATEGORIES
    chosen = tuple(categories)
    unknown = [c for c in chosen if c not in TERM_PAIRS]
    if unknown or not chosen:
        raise RecipeInputError(
            f"Unknown demographic categories {unknown or chosen!r}; choose from {', '.join(CATEGORIES)}."
        )
    return chosen


def _pattern(categories: tuple[str, ...]) -> re.Pattern[str]:
    terms = sorted((t for t, (c, _, _) in TERMS.items() if c in categories), key=len, reverse=True)
    alternatives = "|".join(map(re.escape, terms))
    return re.compile(rf"\b(?:(?P<article>an?)(?P<space>\s+))?(?P<term>{alternatives})\b", re.IGNORECASE)


_PATTERNS: dict[tuple[str, ...], re.Pattern[str]] = {}


def _compiled(categories: tuple[str, ...]) -> re.Pattern[str]:
    if categories not in _PATTERNS:
        _PATTERNS[categories] = _pattern(categories)
    return _PATTERNS[categories]


def _is_term(match: re.Match[str]) -> bool:
    """Whether a match is a demographic term in its context (a capitalised name; "old" not in an age)."""
    word = match.group("term")
    category = TERMS[word.lower()][0]
    if category in NAME_CATEGORIES and not word[0].isupper():
        return False
    before = match.string[max(0, match.start("term") - 12) : match.start("term")]
    return not (word.lower() == "old" and _AGE_EXPRESSION.search(before))


def _next_word(text: str, end: int) -> str | None:
    found = re.match(r"\s*([A-Za-z]+)", text[end:])
    return found.group(1).lower() if found else None


def _match_case(source: str, target: str) -> str:
    if len(source) > 1 and source.isupper():
        return target.upper()
    if source[0].isupper():
        return target[0].upper() + target[1:]
    return target


def _counterpart(match: re.Match[str]) -> str:
    """The swapped term, with "a"/"an" before it agreeing with the new word ("an old" -> "a young")."""
    word = match.group("term")
    key = word.lower()
    if key in ("her", "his"):
        following = _next_word(match.string, match.end())
        determiner = following is not None and following not in _FUNCTION_WORDS
        target = {"her": ("his", "him"), "his": ("her", "hers")}[key][0 if determiner else 1]
    elif key == "hers":
        target = "his"
    else:
        target = TERMS[key][2]
    if TERMS[key][0] in NAME_CATEGORIES:
        target = target.capitalize()
    swapped = _match_case(word, target)
    article = match.group("article")
    if article is None:
        return swapped
    new_article = "an" if target[0].lower() in "aeiou" else "a"
    shouting = len(word) > 1 and word.isupper()  # "A YOUNG MAN": the article is in capitals too
    new_article = new_article.upper() if shouting else _match_case(article, new_article)
    return new_article + match.group("space") + swapped


def swap_terms(text: str, categories: Iterable[str] | None = None) -> str:
    """`text` with every demographic term of `categories` (all by default) replaced by its counterpart,
    keeping case and word boundaries ("He asked his sister" -> "She asked her brother")."""
    pattern = _compiled(check_categories(categories))
    return pattern.sub(lambda m: _counterpart(m) if _is_term(m) else m.group(0), text)


def find_terms(text: str, categories: Iterable[str] | None = None) -> list[tuple[str, str, str]]:
    """Every demographic term in `text` as (term as written, category, group), in order."""
    pattern = _compiled(check_categories(categories))
    found = [m.group("term") for m in pattern.finditer(text) if _is_term(m)]
    return [(term, *TERMS[term.lower()][:2]) for term in found]


def has_terms(text: str, categories: Iterable[str] | None = None) -> bool:
    """Whether `text` holds at least one demographic term of `categories`."""
    pattern = _compiled(check_categories(categories))
    return any(_is_term(m) for m in pattern.finditer(text))


def empty_counts(categories: Iterable[str] | None = None) -> dict[str, dict[str, int]]:
    """{category: {group: 0}} for every group of the categories, in a fixed order."""
    counts: dict[str, dict[str, int]] = {}
    for category in check_categories(categories):
        groups = counts.setdefault(category, {})
        for group_a, group_b, _ in TERM_PAIRS[category]:
            groups.setdefault(group_a, 0)
            groups.setdefault(group_b, 0)
    return counts


def count_terms(texts: Iterable[str], categories: Iterable[str] | None = None) -> dict[str, dict[str, int]]:
    """How many terms of each group occur in `texts`: {"gender": {"male": 12, "female": 5}, ...}."""
    chosen = check_categories(categories)
    counts = empty_counts(chosen)
    # Words are counted at C speed (a corpus of gigabytes passes through here); the two context rules of
    # `find_terms` are applied to the totals: names only capitalised, "old" not in an age expression.
    words: Counter[str] = Counter()
    ages = 0
    for text in texts:
        if isinstance(text, str):
            words.update(_WORD.findall(text))
            if "old" in text or "OLD" in text:
                ages += len(_OLD_IN_AGE.findall(text))
    for word, number in words.items():
        entry = TERMS.get(word.lower())
        if entry is None or entry[0] not in chosen:
            continue
        if entry[0] in NAME_CATEGORIES and not word[0].isupper():
            continue
        counts[entry[0]][entry[1]] += number
    if "age" in chosen:
        counts["age"]["old"] -= ages
    return counts


def value_texts(value: Any) -> list[str]:
    """The text in one cell: a string, or the contents of chat messages (or strings) in a list."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [
            item.get("content") if isinstance(item, dict) else item
            for item in value
            if isinstance(item.get("content") if isinstance(item, dict) else item, str)
        ]
    return []


def swap_value(value: Any, categories: Iterable[str] | None = None) -> Any:
    """One cell with its terms swapped: a string, or every message's `content` (or every string) in a list."""
    if isinstance(value, str):
        return swap_terms(value, categories)
    if isinstance(value, list):
        return [
            {**item, "content": swap_terms(item["content"], categories)}
            if isinstance(item, dict) and isinstance(item.get("content"), str)
            else swap_terms(item, categories)
            if isinstance(item, str)
            else item
            for item in value
        ]
    return value


def count_dataset_terms(
    dataset: Any, columns: Iterable[str] | None = None, categories: Iterable[str] | None = None
) -> dict[str, dict[str, int]]:
    """`count_terms` over the text columns of a `datasets.Dataset` (by default those of TEXT_COLUMNS it has),
    read in batches; chat `messages` contribute their contents."""
    columns = [c for c in (columns or TEXT_COLUMNS) if c in dataset.column_names]
    chosen = check_categories(categories)
    counts = empty_counts(chosen)
    if not columns or len(dataset) == 0:
        return counts
    for batch in dataset.select_columns(columns).iter(batch_size=1000):
        texts = [text for column in columns for value in batch[column] for text in value_texts(value)]
        for category, groups in count_terms(texts, chosen).items():
            for group, number in groups.items():
                counts[category][group] += number
    return counts
