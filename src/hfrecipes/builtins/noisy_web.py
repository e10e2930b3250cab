"""`builtin:noisy-web`: a deterministic "web crawl" with planted problems whose answers are known.

Every cleaning step needs data where the right answer is known: which rows are copies of which, which are
corrupted, spam, unsafe or not English. This generator writes clean documents from five domains and then
plants each kind of problem at a chosen rate, labelling every row:

- `text`; `domain`: technical, dialogue, formal, creative, structured (clean content), web (spam and
  low-information pages), forum (unsafe posts), multilingual (non-English text);
- `kind`: clean, exact_dup, near_dup, corrupted, spam, low_info, unsafe, non_english;
- `dup_of`: for exact_dup/near_dup rows the index of the clean row they copy, else -1.

Clean documents are mostly 60-400 words, and the prose domains pass Gopher-style quality and repetition
filters. Technical text is the running Python's own documentation (the language reference in `pydoc_data`
and stdlib docstrings read with `ast`; prose paragraphs only, each at most once), which yields about 260
documents; the other clean domains fill the rest. They come from templates with varied vocabulary, never
reusing a template within a document, so unrelated documents stay below 0.35 Jaccard similarity (5-gram
shingles). Structured rows (JSON lines, CSV) are clean data but not prose: Gopher's rule that 80% of words
contain a letter removes most of them, as it removes real JSON.

Problem rows are built from fresh documents, never from another row, so the only planted duplicates are
the ones `dup_of` names (`planted_duplicate_pairs`). Spam and low-information pages are templated and
often near-duplicates of each other, as they are on the web.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable

import datasets

from hfrecipes.builtins.python_docs import PYTHON_DOC_PARAGRAPHS
from hfrecipes.builtins.web_templates import (
    DIALOGUE_LINES,
    FORMAL_SENTENCES,
    GENERATED_SLOTS,
    LOW_INFO,
    LOW_INFO_REPEATED,
    MULTILINGUAL,
    POEM_LINES,
    REVIEW_SENTENCES,
    SPAM_LINES,
    STORY_SENTENCES,
    UNSAFE_LINES,
    UNSAFE_PHRASES,
    VOCABULARY,
    Slots,
    fill,
)
from hfrecipes.core.errors import RecipeInputError

KINDS = ("clean", "exact_dup", "near_dup", "corrupted", "spam", "low_info", "unsafe", "non_english")
CLEAN_DOMAINS = ("technical", "dialogue", "formal", "creative", "structured")


def _sentences(templates: list[str], rng: random.Random, words: int) -> list[str]:
    """Filled templates, each used at most once, until about `words` words: a template repeated within one
    document would look like boilerplate to repetition filters."""
    chosen, count = [], 0
    for template in rng.sample(templates, len(templates)):
        if count >= words:
            break
        sentence = fill(template, rng)
        chosen.append(sentence)
        count += len(sentence.split())
    return chosen


def _paragraphs(sentences: list[str], rng: random.Random, low: int, high: int) -> list[str]:
    """Consecutive sentences grouped into paragraphs of `low`-`high` sentences."""
    paragraphs, start = [], 0
    while start < len(sentences):
        size = rng.randint(low, high)
        paragraphs.append(" ".join(sentences[start : start + size]))
        start += size
    return paragraphs


def _target_words(rng: random.Random, low: int, high: int) -> int:
    return rng.randint(low, high)


def _dialogue(rng: random.Random) -> str:
    first, second = rng.sample(VOCABULARY["name"], 2)
    lines = _sentences(DIALOGUE_LINES, rng, _target_words(rng, 70, 360))
    return "\n".join(f"{(first, second)[i % 2]}: {line}" for i, line in enumerate(lines))


def _formal(rng: random.Random) -> str:
    body = _sentences(FORMAL_SENTENCES, rng, _target_words(rng, 70, 340))
    paragraphs = _paragraphs(body, rng, 2, 4)
    slots = Slots(rng, VOCABULARY)
    if rng.random() < 0.5:
        opening = "Dear {name} {surname},".format_map(slots)
        closing = "Yours sincerely,\n{name} {surname}\n{role}, {org}".format_map(slots)
        return "\n\n".join([opening, *paragraphs, closing])
    title = "Report on {project} ({city}, {year})".format_map(slots)
    headings = ["Summary", "Background", "Findings", "Recommendations", "Next steps"]
    sections = [f"{headings[i]}\n{p}" if i < len(headings) else p for i, p in enumerate(paragraphs)]
    return "\n\n".join([title, *sections])


def _creative(rng: random.Random) -> str:
    if rng.random() < 0.7:
        sentences = _sentences(STORY_SENTENCES, rng, _target_words(rng, 70, 360))
        return "\n\n".join(_paragraphs(sentences, rng, 2, 5))
    lines = _sentences(POEM_LINES, rng, _target_words(rng, 60, 130))
    stanzas = [lines[i : i + 4] for i in range(0, len(lines), 4)]
    title = fill("{adj} {noun}", rng).title()
    return title + "\n\n" + "\n\n".join("\n".join(line.capitalize() for line in s) for s in stanzas)


def _structured(rng: random.Random) -> str:
    """Customer-review records as JSON lines or CSV. Review sentences are dealt from one shuffled deck per
    document, so no sentence template repeats inside it."""
    deck = rng.sample(REVIEW_SENTENCES, len(REVIEW_SENTENCES))
    records, limit = [], rng.randint(3, 8)
    while len(deck) >= 2 and len(records) < limit:
        review = " ".join(fill(deck.pop(), rng) for _ in range(rng.randint(1, 2)))
        records.append(
            {
                "id": int(GENERATED_SLOTS["id"](rng)),
                "customer": fill("{name} {surname}", rng),
                "city": rng.choice(VOCABULARY["city"]),
                "rating": int(GENERATED_SLOTS["rating"](rng)),
                "review": review,
            }
        )
    if rng.random() < 0.5:
        return "\n".join(json.dumps(record, ensure_ascii=False) for record in records)
    header = "id,customer,city,rating,review"
    rows = [f'{r["id"]},{r["customer"]},{r["city"]},{r["rating"]},"{r["review"]}"' for r in records]
    return "\n".join([header, *rows])


def _non_english(rng: random.Random) -> str:
    language = rng.choice(sorted(MULTILINGUAL))
    vocabulary = MULTILINGUAL[language]
    templates = vocabulary["templates"]
    sentences = [fill(t, rng, vocabulary) for t in rng.sample(templates, rng.randint(5, 9))]
    return "\n\n".join(_paragraphs(sentences, rng, 2, 4))


def _technical_documents(count: int, rng: random.Random) -> list[str]:
    """Up to `count` documents of 80-300 words cut from consecutive documentation paragraphs (so each reads
    coherently); fewer when the documentation runs out, since reusing a paragraph would plant unlabelled
    duplicates."""
    documents: list[str] = []
    current, current_words, target = [], 0, _target_words(rng, 80, 300)
    for paragraph in PYTHON_DOC_PARAGRAPHS:
        if len(documents) == count:
            break
        current.append(paragraph)
        current_words += len(paragraph.split())
        if current_words >= target:
            documents.append("\n\n".join(current))
            current, current_words, target = [], 0, _target_words(rng, 80, 300)
    return documents


CLEAN_GENERATORS: dict[str, Callable[[random.Random], str]] = {
    "dialogue": _dialogue,
    "formal": _formal,
    "creative": _creative,
    "structured": _structured,
}


def _exact_copy(text: str, rng: random.Random) -> str:
    """The same text, or one that differs only in case and whitespace."""
    variant = rng.randrange(5)
    if variant == 0:
        return text
    if variant == 1:
        return text.lower()
    if variant == 2:
        return " ".join(text.split())
    if variant == 3:
        return "  " + text.replace("\n", "\n\n") + "\n"
    return text.upper()


_REPLACEMENT_WORDS = [
    w for key in ("noun", "adj", "verb", "city", "name", "animal") for w in VOCABULARY[key]
] + ["very", "also", "really", "then", "however", "today", "here", "there", "new", "old", "small", "large"]


def _near_copy(text: str, rng: random.Random) -> str:
    """Edit 3-10% of the words (replace 60%, delete 20%, insert 20%) in 1-4 contiguous bursts, the way web
    copies differ (a changed date, name or sentence), then vary whitespace and case."""
    lines = [line.split() for line in text.split("\n")]
    positions = [(li, wi) for li, line in enumerate(lines) for wi in range(len(line))]
    edits = max(1, round(rng.uniform(0.03, 0.10) * len(positions)))
    bursts = min(rng.randint(1, 4), edits)
    cut_points = sorted(rng.sample(range(1, edits), bursts - 1)) if bursts > 1 else []
    sizes = [b - a for a, b in zip([0, *cut_points], [*cut_points, edits], strict=True)]
    targets = set()
    for size in sizes:
        start = rng.randrange(max(len(positions) - size, 1))
        targets.update(positions[start : start + size])
    for li, wi in sorted(targets, reverse=True):  # from the end, so earlier positions stay valid
        action = rng.random()
        if action < 0.6:
            lines[li][wi] = rng.choice(_REPLACEMENT_WORDS)
        elif action < 0.8:
            del lines[li][wi]
        else:
            lines[li].insert(wi, rng.choice(_REPLACEMENT_WORDS))
    edited = "\n".join(" ".join(line) for line in lines)
    if rng.random() < 0.5:
        edited = edited.replace(". ", ".  ")
    if rng.random() < 0.3:
        edited = edited.lower()
    return edited + rng.choice(["", "\n", " "])


_MOJIBAKE_SOURCE = {"'": "’", '"': "”", " - ": " — ", "cafe": "café", "naive": "naïve"}


def _corrupt(text: str, rng: random.Random) -> str:
    """Damage as crawls show it: mojibake, replacement characters, control characters, binary junk,
    or a page cut off mid-sentence."""
    variant = rng.randrange(5)
    if variant == 0:
        # Typographic characters encoded as UTF-8 and decoded as cp1252: "’" becomes "â€™".
        for plain, fancy in _MOJIBAKE_SOURCE.items():
            text = text.replace(plain, fancy)
        text = "“" + text.replace(". ", ". “", 5) + "”"
        return text.encode("utf-8").decode("cp1252", errors="replace")
    characters = list(text)
    if variant == 1:
        for i in rng.sample(range(len(characters)), max(1, len(characters) // 12)):
            characters[i] = "\ufffd"
        return "".join(characters)
    if variant == 2:
        for i in rng.sample(range(len(characters)), max(1, len(characters) // 15)):
            characters[i] = chr(rng.choice([*range(0, 9), *range(14, 32), 127]))
        return "".join(characters)
    if variant == 3:
        junk = bytes(rng.randrange(256) for _ in range(rng.randint(200, 1200))).decode("latin-1")
        middle = len(text) // 3
        return text[:middle] + junk + text[middle * 2 :]
    cut = rng.randint(8, max(9, min(30, len(text.split()) // 4)))
    return " ".join(text.split()[:cut])[:-2]


def _spam(rng: random.Random) -> str:
    slots = Slots(rng, {**VOCABULARY, "slug": ["cheap", "mega", "super", "discount", "top", "smart"]})
    lines = [line.format_map(slots) for line in rng.sample(SPAM_LINES, rng.randint(3, len(SPAM_LINES)))]
    return "\n".join(lines * rng.randint(1, 3))


def _low_info(rng: random.Random) -> str:
    if rng.random() < 0.6:
        return fill(rng.choice(LOW_INFO), rng)
    return " ".join([rng.choice(LOW_INFO_REPEATED)] * rng.randint(20, 120))


def _unsafe(rng: random.Random) -> str:
    intro = _sentences(DIALOGUE_LINES, rng, rng.randint(10, 40))
    requests = [
        template.format(phrase=rng.choice(UNSAFE_PHRASES))
        for template in rng.sample(UNSAFE_LINES, rng.randint(2, 4))
    ]
    return " ".join([*intro, *requests])


def _fraction(name: str, value: float | str) -> float:
    try:
        fraction = float(value)
    except (TypeError, ValueError):
        raise RecipeInputError(
            f"builtin:noisy-web: {name} must be a number in [0, 1], got {value!r}."
        ) from None
    if not 0 <= fraction <= 1:
        raise RecipeInputError(f"builtin:noisy-web: {name} must be in [0, 1], got {fraction}.")
    return fraction


def noisy_web(
    n: int | str = 2000,
    seed: int | str = 0,
    near_dup_fraction: float | str = 0.08,
    exact_dup_fraction: float | str = 0.04,
    corrupt_fraction: float | str = 0.04,
    spam_fraction: float | str = 0.04,
    lowinfo_fraction: float | str = 0.04,
    unsafe_fraction: float | str = 0.02,
    non_english_fraction: float | str = 0.04,
) -> datasets.Dataset:
    """`n` rows in a seeded random order; each fraction is the share of rows of that problem kind, the
    rest are clean. Options arrive as strings from `builtin:noisy-web?n=500&seed=3`."""
    try:
        n, seed = int(n), int(seed)
    except (TypeError, ValueError):
        raise RecipeInputError(
            f"builtin:noisy-web: n and seed must be integers, got n={n!r}, seed={seed!r}."
        ) from None
    if n < 1:
        raise RecipeInputError(f"builtin:noisy-web: n must be at least 1, got {n}.")
    fractions = {
        "exact_dup": _fraction("exact_dup_fraction", exact_dup_fraction),
        "near_dup": _fraction("near_dup_fraction", near_dup_fraction),
        "corrupted": _fraction("corrupt_fraction", corrupt_fraction),
        "spam": _fraction("spam_fraction", spam_fraction),
        "low_info": _fraction("lowinfo_fraction", lowinfo_fraction),
        "unsafe": _fraction("unsafe_fraction", unsafe_fraction),
        "non_english": _fraction("non_english_fraction", non_english_fraction),
    }
    counts = {kind: round(fraction * n) for kind, fraction in fractions.items()}
    clean_count = n - sum(counts.values())
    if clean_count < 1:
        raise RecipeInputError(
            f"builtin:noisy-web: the problem fractions add up to {sum(fractions.values()):.2f}, leaving no "
            "clean rows; keep their sum below 1."
        )
    rng = random.Random(seed)

    wanted_technical = clean_count // len(CLEAN_DOMAINS)
    technical = _technical_documents(wanted_technical, rng)
    other_domains = sorted(CLEAN_GENERATORS)
    rows = [{"text": text, "domain": "technical", "kind": "clean", "dup_of": -1} for text in technical]
    for i in range(clean_count - len(technical)):
        domain = other_domains[i % len(other_domains)]
        rows.append({"text": CLEAN_GENERATORS[domain](rng), "domain": domain, "kind": "clean", "dup_of": -1})

    for kind, copy in (("exact_dup", _exact_copy), ("near_dup", _near_copy)):
        for _ in range(counts[kind]):
            original = rng.randrange(clean_count)
            source = rows[original]
            rows.append(
                {
                    "text": copy(source["text"], rng),
                    "domain": source["domain"],
                    "kind": kind,
                    "dup_of": original,
                }
            )
    for _ in range(counts["corrupted"]):
        domain = rng.choice(other_domains)
        rows.append(
            {
                "text": _corrupt(CLEAN_GENERATORS[domain](rng), rng),
                "domain": domain,
                "kind": "corrupted",
                "dup_of": -1,
            }
        )
    for kind, domain, make in (
        ("spam", "web", _spam),
        ("low_info", "web", _low_info),
        ("unsafe", "forum", _unsafe),
        ("non_english", "multilingual", _non_english),
    ):
        rows.extend(
            {"text": make(rng), "domain": domain, "kind": kind, "dup_of": -1} for _ in range(counts[kind])
        )

    order = list(range(len(rows)))
    rng.shuffle(order)
    position = {old: new for new, old in enumerate(order)}
    shuffled = [rows[old] for old in order]
    for row in shuffled:
        if row["dup_of"] >= 0:
            row["dup_of"] = position[row["dup_of"]]
    return datasets.Dataset.from_list(shuffled)


def planted_duplicate_pairs(dataset: datasets.Dataset) -> set[tuple[int, int]]:
    """{(original row, copy row)} for every planted exact or near duplicate (indices into `dataset`)."""
    return {(original, copy) for copy, original in enumerate(dataset["dup_of"]) if original >= 0}
