"""Safety steps: drop unsafe rows (blocklist and/or a local classifier) and mask personal data (PII).

`unsafe` drops a row when a blocklist term occurs as a whole word or phrase, or when an optional local
`text-classification` model scores it unsafe. `pii_mask` replaces e-mail addresses, IP addresses and phone
numbers with placeholders; its e-mail pattern and IP validation follow datatrove's `PIIFormatter`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import datasets
import transformers

from hfrecipes.core.data_report import DataReport
from hfrecipes.core.errors import RecipeInputError
from hfrecipes.data.steps import FilterStep, TransformStep, batch_rows, row_text, select_with_report

# Phrases that state an intent to hurt, not single words: a lone "kill", "bomb" or "steal" is everywhere in
# harmless text ("kill the process", "the show was a bomb", "steal a base"), so it would drop good rows.
DEFAULT_UNSAFE_TERMS = (
    # weapons and explosives meant to hurt people
    "how to make a bomb",
    "how to build a bomb",
    "make a pipe bomb",
    "homemade explosives to hurt",
    "build a weapon to kill people",
    "kill as many people as possible",
    # stealing credentials and money
    "steal someone's password",
    "steal their passwords",
    "steal login credentials",
    "steal credit card numbers",
    "buy stolen credit cards",
    # self-harm methods
    "how to kill myself",
    "how to kill yourself",
    "best way to commit suicide",
    "painless way to kill myself",
    "suicide methods",
)

UNSAFE_MATCH, UNSAFE_CLASSIFIER = "blocklist", "classifier"

# One loaded pipeline per model directory and process: datasets.map pickles the step into every worker,
# and a pipeline held on the step would be pickled (and hashed for the cache fingerprint) with it.
_CLASSIFIERS: dict[str, tuple[Any, int | None]] = {}


def read_terms_file(path: str) -> list[str]:
    """One term per line; blank lines and lines starting with `#` are skipped."""
    file = Path(path)
    if not file.is_file():
        raise RecipeInputError(
            f"unsafe: terms_file {path!r} does not exist (resolved to {file.resolve()}). "
            "Give a text file with one term per line, or remove terms_file."
        )
    lines = (line.strip() for line in file.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def compile_blocklist(terms: list[str] | tuple[str, ...]) -> re.Pattern[str]:
    """One case-insensitive alternation matching whole words/phrases. Longest first, so a phrase wins over
    a term that is its prefix; any whitespace run between words matches, so line breaks do not hide a phrase.
    Lookarounds instead of `\\b` so terms that start or end with punctuation ("c++") still need a boundary."""
    unique = sorted({" ".join(t.split()) for t in terms if t.strip()}, key=lambda t: (-len(t), t))
    alternatives = (r"\s+".join(re.escape(word) for word in term.split()) for term in unique)
    return re.compile(r"(?<!\w)(?:" + "|".join(alternatives) + r")(?!\w)", re.IGNORECASE)


def _load_classifier(path: str) -> tuple[Any, int | None]:
    """The pipeline for `path` and the longest input its model accepts (None: the tokenizer's own limit)."""
    key = str(Path(path).resolve())
    if key not in _CLASSIFIERS:
        try:
            classifier = transformers.pipeline(
                "text-classification",
                model=key,
                trust_remote_code=False,
                model_kwargs={"use_safetensors": True},
            )
        except (OSError, ValueError, KeyError) as err:
            raise RecipeInputError(
                f"unsafe: cannot load a text-classification model from classifier_path {path!r} ({err}). "
                "Point it at a local directory saved with save_pretrained (config.json, safetensors weights, "
                "tokenizer files)."
            ) from err
        limits = [
            n
            for n in (
                getattr(classifier.model.config, "max_position_embeddings", None),
                getattr(classifier.tokenizer, "model_max_length", None),
            )
            if isinstance(n, int) and 0 < n < 1_000_000
        ]
        _CLASSIFIERS[key] = (classifier, min(limits) if limits else None)
    return _CLASSIFIERS[key]


def resolve_label(id2label: dict[int, str], wanted: str) -> str:
    """The model's name for the unsafe class: `wanted` itself, or `LABEL_<i>` naming the i-th class."""
    names = {str(name) for name in id2label.values()}
    if wanted in names:
        return wanted
    index = re.fullmatch(r"LABEL_(\d+)", wanted)
    if index and int(index.group(1)) in id2label:
        return str(id2label[int(index.group(1))])
    raise RecipeInputError(
        f"unsafe: classifier_label {wanted!r} is not one of the model's labels {sorted(names)}; set "
        "classifier_label to the unsafe class's name or LABEL_<index>."
    )


@dataclass
class Unsafe(FilterStep):
    """Drop rows that contain unsafe content.

    Blocklist: `terms` (inline), `terms_file` (one per line, `#` comments) and, with `use_default_terms`,
    a short built-in list of phrases (`DEFAULT_UNSAFE_TERMS`); matched as whole words/phrases, ignoring case.
    A row is dropped when it has more than `max_matches` matches (0: any match drops it).

    Classifier (optional): `classifier_path` is a local `text-classification` model directory; a row is also
    dropped when the score of `classifier_label` (a label name or `LABEL_<i>`) is >= `threshold`. Texts are
    truncated to the model's maximum length and scored `classifier_batch_size` at a time.
    """

    name: ClassVar[str] = "unsafe"
    terms: list[str] = field(default_factory=list)
    terms_file: str | None = None
    use_default_terms: bool = True
    max_matches: int = 0
    classifier_path: str | None = None
    classifier_label: str = "unsafe"
    threshold: float = 0.5
    classifier_batch_size: int = 32

    def __post_init__(self) -> None:
        if not isinstance(self.terms, list) or not all(isinstance(t, str) for t in self.terms):
            raise RecipeInputError(f"unsafe: terms must be a list of strings, got {self.terms!r}.")
        if (
            isinstance(self.max_matches, bool)
            or not isinstance(self.max_matches, int)
            or self.max_matches < 0
        ):
            raise RecipeInputError(f"unsafe: max_matches must be an integer >= 0, got {self.max_matches!r}.")
        if not 0.0 <= self.threshold <= 1.0:
            raise RecipeInputError(f"unsafe: threshold must be between 0 and 1, got {self.threshold!r}.")
        if self.classifier_batch_size < 1:
            raise RecipeInputError(
                f"unsafe: classifier_batch_size must be >= 1, got {self.classifier_batch_size!r}."
            )
        if self.classifier_path is not None and not (Path(self.classifier_path) / "config.json").is_file():
            raise RecipeInputError(
                f"unsafe: classifier_path {self.classifier_path!r} is not a model directory (no config.json). "
                "Give a local text-classification model saved with save_pretrained, or remove classifier_path."
            )
        self._terms = [
            *self.terms,
            *(read_terms_file(self.terms_file) if self.terms_file else []),
            *(DEFAULT_UNSAFE_TERMS if self.use_default_terms else ()),
        ]
        if not any(t.strip() for t in self._terms) and self.classifier_path is None:
            raise RecipeInputError(
                "unsafe: nothing to check. Set terms, terms_file, use_default_terms: true or classifier_path."
            )

    def setup(self) -> None:
        if getattr(self, "_ready", False):
            return
        has_terms = any(t.strip() for t in self._terms)
        self._pattern = compile_blocklist(self._terms) if has_terms else None
        self._unsafe_label = None
        if self.classifier_path is not None:
            classifier, _ = _load_classifier(self.classifier_path)
            self._unsafe_label = resolve_label(classifier.model.config.id2label, self.classifier_label)
        self._ready = True

    def verdicts(self, texts: list[str]) -> list[str]:
        """Why each text is dropped: "" (kept), `UNSAFE_MATCH` or `UNSAFE_CLASSIFIER`."""
        self.setup()
        reasons = [
            UNSAFE_MATCH
            if self._pattern is not None and len(self._pattern.findall(text)) > self.max_matches
            else ""
            for text in texts
        ]
        if self.classifier_path is not None:
            # Only rows the blocklist kept need a (much slower) model call.
            pending = [i for i, reason in enumerate(reasons) if not reason and texts[i].strip()]
            for i, score in zip(pending, self.unsafe_scores([texts[i] for i in pending]), strict=True):
                if score >= self.threshold:
                    reasons[i] = UNSAFE_CLASSIFIER
        return reasons

    def unsafe_scores(self, texts: list[str]) -> list[float]:
        """The classifier's probability of the unsafe label for each text."""
        if not texts:
            return []
        classifier, max_length = _load_classifier(self.classifier_path)
        truncation = {"truncation": True, "max_length": max_length} if max_length else {"truncation": True}
        results = classifier(texts, batch_size=self.classifier_batch_size, top_k=None, **truncation)
        return [
            next(item["score"] for item in per_text if item["label"] == self._unsafe_label)
            for per_text in results
        ]

    def keep(self, text: str) -> bool:
        return not self.verdicts([text])[0]

    def apply(
        self, dataset: datasets.Dataset, report: DataReport, num_proc: int | None = None
    ) -> datasets.Dataset:
        columns = self.resolved_columns(dataset)

        def judge(batch: dict[str, list]) -> dict[str, list[str]]:
            rows = batch_rows(batch)
            return {"_reason": self.verdicts([row_text(row, columns) for row in rows])}

        reasons = dataset.select_columns(columns).map(
            judge, batched=True, num_proc=num_proc, remove_columns=columns, desc=self.name
        )["_reason"]
        details = {
            "removed_by_blocklist": reasons.count(UNSAFE_MATCH),
            "removed_by_classifier": reasons.count(UNSAFE_CLASSIFIER),
        }
        flags = [not reason for reason in reasons]
        return select_with_report(dataset, flags, self, report, columns, details=details)


_LOCAL_CHAR = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
# datatrove's PIIFormatter e-mail pattern (RFC 5322 local part; domain name or bracketed IP literal), but
# anchored at the start of a run of local-part characters instead of at `\b`: datatrove's pattern retries
# from every dot or hyphen of a long run ("1.2.1.2...") and is quadratic in its length.
EMAIL_PATTERN = re.compile(
    rf"(?<!{_LOCAL_CHAR})(?<!{_LOCAL_CHAR}\.)"
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*@(?:(?:[A-Za-z0-9](?:["
    r"A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?|\[(?:(?:25[0-5]|2[0-4][0-9]|["
    r"01]?[0-9][0-9]?)\.){3}(?:25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?|[A-Za-z0-9-]*[A-Za-z0-9]:)])"
)
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
# Exactly four octets that are not part of a longer dotted number ("1.2.3.4.5", "v1.2.3.4").
IPV4_PATTERN = re.compile(rf"(?<![\w.]){_OCTET}(?:\.{_OCTET}){{3}}(?!\w|\.\d)")
# Candidates only; `ipaddress` decides. Optional dotted tail for IPv4-mapped addresses (::ffff:1.2.3.4).
IPV6_CANDIDATE = re.compile(
    r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|\d{1,3}(?:\.\d{1,3}){3})?(?![\w:]|\.\w)"
)
_PHONE_END = r"(?!\w|[.\-/]\d)"
PHONE_PATTERN = re.compile(
    # international: +CC, then digit groups separated by single spaces, dots, hyphens; "(0)"/(area) allowed
    r"(?<![\w+])\+\d{1,3}(?:[ .\-]?\(\d{1,4}\))?[ .\-]?\d{1,12}(?:[ .\-/]\d{1,8}){0,5}"
    + _PHONE_END
    # North American: (415) 555-2671, 415-555-2671, 415.555.2671, 415 555 2671, optional leading 1
    + r"|(?<![\w+.\-])(?:1[ .\-])?(?:\(\d{3}\) ?\d{3}[ .\-]\d{4}|\d{3}(?P<us>[ .\-])\d{3}(?P=us)\d{4})"
    + _PHONE_END
    # European national with trunk 0: 020 7946 0958, 01 23 45 67 89, 06-12345678, 030/1234567, (030) 1234567
    + r"|(?<![\w+.\-/])(?:\(0\d{1,4}\) ?\d{2,8}(?:[ \-]\d{2,8}){0,4}|0\d{1,4}(?P<eu>[ .\-/])\d{2,8}(?:(?P=eu)\d{2,8}){0,4})"
    + _PHONE_END
)
MIN_PHONE_DIGITS, MAX_PHONE_DIGITS = 9, 15  # E.164 allows at most 15 digits
PII_KINDS = ("email", "ip", "phone")


def _is_ip(candidate: str, public_only: bool) -> bool:
    try:
        address = ipaddress.ip_address(candidate)
    except ValueError:
        return False
    return address.is_global or not public_only


def _is_ipv6(candidate: str, public_only: bool) -> bool:
    """A valid IPv6 address written with at least three colons or one full 4-digit group: the shorter forms
    ("1::2", "a::b") are far more often Python slices or C++ scopes than addresses."""
    groups = candidate.split(":")
    long_enough = candidate.count(":") >= 3 or any(len(group) == 4 for group in groups)
    return long_enough and _is_ip(candidate, public_only)


def _is_phone(candidate: str) -> bool:
    return MIN_PHONE_DIGITS <= sum(ch.isdigit() for ch in candidate) <= MAX_PHONE_DIGITS


@dataclass
class PIIMask(TransformStep):
    """Replace personal identifiers with placeholders; `kinds` chooses among email, ip, phone.

    - email: datatrove's PIIFormatter pattern.
    - ip: IPv4 with four octets 0-255 (no leading zeros), not inside a longer dotted number, so versions such
      as 1.2.3 or 3.11.7.1.2 stay; IPv6 validated by `ipaddress`. datatrove masks only public addresses by
      default; here every valid address is masked unless `only_public_ips` is true.
    - phone: 9 to 15 digits in one of three shapes: international `+CC` followed by digit groups (spaces,
      dots, hyphens, parentheses); North American 3-3-4 groups with one consistent separator or `(415)`;
      European national numbers starting with the trunk 0 and one consistent separator. Separators are
      required (except after `+`), so long integers in code never match; dates (2026-11-28, 28.11.2026) and
      years have too few digits or the wrong shape. Local 7-digit numbers (555-0199) are left alone.

    Unlike datatrove, which rotates through realistic fake values, replacements are fixed placeholder tokens
    so a model learns that the slot was redacted rather than memorising fake addresses.
    """

    name: ClassVar[str] = "pii_mask"
    kinds: list[str] = field(default_factory=lambda: list(PII_KINDS))
    email_replacement: str = "<EMAIL>"
    ip_replacement: str = "<IP_ADDRESS>"
    phone_replacement: str = "<PHONE>"
    only_public_ips: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.kinds, list) or not self.kinds:
            raise RecipeInputError(f"pii_mask: kinds must be a non-empty list of {list(PII_KINDS)}.")
        unknown = [k for k in self.kinds if k not in PII_KINDS]
        if unknown:
            raise RecipeInputError(f"pii_mask: unknown kinds {unknown}; choose among {list(PII_KINDS)}.")

    def transform(self, text: str) -> str:
        # E-mails first: their local part and IP-literal domains would otherwise be half-masked as IPs/phones.
        if "email" in self.kinds:
            text = EMAIL_PATTERN.sub(self.email_replacement, text)
        if "ip" in self.kinds:
            text = self._substitute(IPV6_CANDIDATE, text, self.ip_replacement, self._ipv6_check)
            text = self._substitute(IPV4_PATTERN, text, self.ip_replacement, self._ipv4_check)
        if "phone" in self.kinds:
            text = self._substitute(PHONE_PATTERN, text, self.phone_replacement, _is_phone)
        return text

    def _ipv4_check(self, candidate: str) -> bool:
        return _is_ip(candidate, self.only_public_ips)

    def _ipv6_check(self, candidate: str) -> bool:
        return _is_ipv6(candidate, self.only_public_ips)

    @staticmethod
    def _substitute(
        pattern: re.Pattern[str], text: str, replacement: str, is_valid: Callable[[str], bool]
    ) -> str:
        return pattern.sub(lambda m: replacement if is_valid(m.group(0)) else m.group(0), text)
