"""Domain mixing: how many rows each domain contributes, with exact target shares and a repetition cap.

Two ways to set the target shares:

- `weights`: explicit shares per domain (normalised, e.g. {"web": 0.6, "code": 0.3, "math": 0.1}).
- `temperature`: p_d ∝ n_d ** (1 / T) over the domain sizes n_d, the sampling multilingual LMs use to
  balance languages (XLM-R, mT5): T = 1 keeps the natural proportions, a large T tends to uniform, and
  anything in between up-samples the small domains.

Why exact counts instead of `datasets.interleave_datasets(probabilities=...)`: interleaving samples the
domain of each row at random, so the realised shares drift from the targets by sampling noise (large for
small domains), and its stopping strategies either stop at the first exhausted domain or oversample every
domain until all are exhausted, neither of which respects a per-domain repetition budget. Here the row
count of each domain is computed exactly (the largest total that keeps every domain within
`max_epochs * n_d` rows, apportioned by largest remainder), rows are drawn as epoch-wise reshuffled
passes (a row appears at most ceil(max_epochs) times), and the parts are joined with
`datasets.concatenate_datasets` and shuffled with the seed, so the result is deterministic and its shares
are the targets up to one row per domain.
"""

from __future__ import annotations

import logging
import math
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, ClassVar

import datasets
import numpy as np

from hfrecipes.core.data_report import DataReport
from hfrecipes.core.errors import RecipeInputError
from hfrecipes.data.steps import Step, batch_rows, default_columns, row_text

logger = logging.getLogger(__name__)

DOMAIN_COLUMN = "domain"


def whitespace_length(text: str) -> int:
    """The default token count: words separated by whitespace (no tokenizer needed, comparable across runs)."""
    return len(text.split())


def temperature_shares(sizes: dict[str, int], temperature: float) -> dict[str, float]:
    """p_d ∝ n_d ** (1 / T); computed in log space so tiny temperatures on big domains do not overflow."""
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0):
        raise RecipeInputError(
            f"temperature must be a positive number (1 = proportional to domain size, larger = closer to "
            f"uniform), got {temperature!r}."
        )
    logits = {domain: math.log(n) / temperature for domain, n in sizes.items() if n > 0}
    if not logits:
        raise RecipeInputError(f"Every domain is empty ({sizes}); nothing to mix.")
    top = max(logits.values())
    unnormalised = {domain: math.exp(logit - top) for domain, logit in logits.items()}
    total = sum(unnormalised.values())
    return {domain: unnormalised.get(domain, 0.0) / total for domain in sizes}


def weight_shares(weights: dict[str, float], sizes: dict[str, int]) -> tuple[dict[str, float], list[str]]:
    """Normalised shares from explicit weights, and the domains that have rows but no weight.

    A domain missing from `weights` gets weight 0 (left out) rather than an error, so a config can mix a
    subset of the available domains; it is returned so the caller can warn in the report. A positive weight
    on a domain without rows is an error: it is almost always a typo, and its share cannot be met."""
    domains = ", ".join(f"{d} ({n} rows)" for d, n in sizes.items())
    for domain, weight in weights.items():
        if not (isinstance(weight, (int, float)) and math.isfinite(weight) and weight >= 0):
            raise RecipeInputError(
                f"Mixing weight for domain {domain!r} must be a non-negative number, got {weight!r}."
            )
        if weight > 0 and sizes.get(domain, 0) == 0:
            raise RecipeInputError(
                f"Mixing weight given for domain {domain!r}, which has no rows. Domains: {domains}."
            )
    total = sum(weights.values())
    if total <= 0:
        raise RecipeInputError(f"Mixing weights must sum to a positive number, got {weights}.")
    unweighted = [d for d, n in sizes.items() if n > 0 and d not in weights]
    return {domain: weights.get(domain, 0) / total for domain in sizes}, unweighted


def domain_row_counts(
    weights: dict[str, float | int | Fraction], caps: dict[str, int], total_rows: int | None = None
) -> dict[str, int]:
    """Rows per domain: exactly `total_rows` (default: as many as the caps allow) split by relative weights.

    The largest total that keeps every domain d within its cap is min_d cap_d / share_d; quotas
    share_d * total are rounded by largest remainder, which never pushes a domain over its cap (a fractional
    quota below an integer cap rounds up to at most that cap). The arithmetic is exact (integers and
    Fractions as given, floats read as the decimal they print as), so weights 0.7/0.3 with 120 rows allowed
    for the 0.3 domain give 400 rows, not 399, and weights equal to the domain sizes give every row."""
    exact = {d: _exact(w) for d, w in weights.items() if w > 0}
    share_sum = sum(exact.values())
    exact = {d: s / share_sum for d, s in exact.items()}
    limiting = min(exact, key=lambda d: (Fraction(caps[d]) / exact[d], d))
    largest = math.floor(Fraction(caps[limiting]) / exact[limiting])
    if total_rows is None:
        total = largest
    elif total_rows > largest:
        raise RecipeInputError(
            f"total_rows={total_rows} cannot keep the target shares within the repetition caps: at most "
            f"{largest} rows (domain {limiting!r} may give {caps[limiting]} rows for a share of "
            f"{float(exact[limiting]):.3f}). Raise max_epochs for {limiting!r} or lower total_rows."
        )
    else:
        total = total_rows
    if total < 1:
        raise RecipeInputError(
            f"The repetition caps allow no rows at the target shares (caps {caps}); raise max_epochs."
        )
    quotas = {d: s * total for d, s in exact.items()}
    counts = {d: math.floor(q) for d, q in quotas.items()}
    leftover = total - sum(counts.values())
    for domain in sorted(exact, key=lambda d: (-(quotas[d] - counts[d]), d))[:leftover]:
        counts[domain] += 1
    return {domain: counts.get(domain, 0) for domain in weights}


def _exact(value: float | int | Fraction) -> Fraction:
    return Fraction(value) if isinstance(value, (int, Fraction)) else Fraction(str(value))


def epoch_indices(num_rows: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` row indices as whole reshuffled passes plus a partial one: each row at most ceil(count/num_rows)
    times, and repeats spread over the data instead of adjacent copies."""
    full_passes, rest = divmod(count, num_rows) if num_rows else (0, 0)
    parts = [rng.permutation(num_rows) for _ in range(full_passes)]
    if rest:
        parts.append(rng.permutation(num_rows)[:rest])
    return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)


def split_by_domain(dataset: datasets.Dataset, column: str = DOMAIN_COLUMN) -> dict[str, datasets.Dataset]:
    """One dataset per value of `column` (in first-seen order), the input `mix_domains` expects."""
    if column not in dataset.column_names:
        raise RecipeInputError(
            f"Mixing needs a {column!r} column to group rows by domain; the dataset has {dataset.column_names}."
        )
    rows_by_domain: dict[str, list[int]] = {}
    for index, value in enumerate(dataset[column]):
        rows_by_domain.setdefault(str(value), []).append(index)
    return {domain: dataset.select(rows) for domain, rows in rows_by_domain.items()}


def mix_domains(
    datasets_by_domain: dict[str, datasets.Dataset],
    *,
    report: DataReport,
    weights: dict[str, float] | None = None,
    temperature: float | None = None,
    max_epochs: float | dict[str, float] = 1.0,
    total_rows: int | None = None,
    seed: int = 0,
    length_fn: Callable[[str], int] | None = None,
    tokenizer: Any = None,
    token_counts: dict[str, list[int]] | None = None,
    columns: list[str] | None = None,
    num_proc: int | None = None,
) -> datasets.Dataset:
    """Mix domains to target shares and return one shuffled dataset whose `domain` column names each row's
    domain (an existing `domain` column is overwritten with the key it was passed under).

    Shares come from `weights` or `temperature` (not both; neither = temperature 1, the natural
    proportions). `max_epochs` caps each domain at max_epochs * n_d rows (a float, or a dict per domain
    where missing domains default to 1.0); `total_rows` fixes the output size, otherwise it is the largest
    the caps allow. Tokens for the report come from `token_counts` (per row, per domain), else a
    `tokenizer`, else `length_fn(text)` (default: whitespace words) over `columns` (default: by TRL's
    column conventions). The report gets a `mix_domains` step and `summary["domains"]`: rows and tokens
    with their shares before and after, the target share and the repetition factor of every domain."""
    sizes = _check_domains(datasets_by_domain)
    if weights is not None and temperature is not None:
        raise RecipeInputError(
            "Give either mixing `weights` or a sampling `temperature`, not both "
            f"(got weights={weights} and temperature={temperature})."
        )
    # The counts use exact weights where the target is rational: the user's decimals, or the sizes
    # themselves at T = 1 (so the default keeps every row once, with no float rounding losing one).
    unweighted: list[str] = []
    if weights is not None:
        shares, unweighted = weight_shares(weights, sizes)
        relative_weights = {d: weights.get(d, 0) for d in sizes}
    else:
        shares = temperature_shares(sizes, 1.0 if temperature is None else temperature)
        relative_weights = dict(sizes) if temperature in (None, 1) else shares
    epochs = _epochs_per_domain(max_epochs, sizes)
    if total_rows is not None and (
        isinstance(total_rows, bool) or not isinstance(total_rows, int) or total_rows < 1
    ):
        raise RecipeInputError(f"total_rows must be a positive integer, got {total_rows!r}.")
    if not isinstance(seed, int) or seed < 0:
        raise RecipeInputError(f"seed must be a non-negative integer, got {seed!r}.")
    lengths = _row_lengths(datasets_by_domain, length_fn, tokenizer, token_counts, columns, num_proc)

    # Decimal reading of the float, so max_epochs=0.29 on 100 rows caps at 29, not 28.999... -> 28.
    caps = {d: math.floor(_exact(epochs[d]) * sizes[d]) for d in sizes}
    counts = domain_row_counts(relative_weights, caps, total_rows)
    parts, picked_lengths = [], {}
    for domain, dataset in datasets_by_domain.items():
        rng = np.random.default_rng([seed, zlib.crc32(domain.encode("utf-8"))])
        indices = epoch_indices(sizes[domain], counts[domain], rng)
        picked_lengths[domain] = int(np.asarray(lengths[domain], dtype=np.int64)[indices].sum())
        if len(indices):
            if DOMAIN_COLUMN in dataset.column_names:
                dataset = dataset.remove_columns(DOMAIN_COLUMN)
            parts.append(dataset.add_column(DOMAIN_COLUMN, [domain] * len(dataset)).select(indices))
    try:
        mixed = datasets.concatenate_datasets(parts)
    except ValueError as err:  # missing columns are filled with None; only clashing types fail
        raise RecipeInputError(
            f"Domains cannot be mixed because a column has different types across domains: {err}. "
            "Cast it to one type in every domain first (Dataset.cast_column)."
        ) from err
    mixed = mixed.shuffle(seed=seed)

    domains = _domain_table(sizes, counts, shares, {d: sum(v) for d, v in lengths.items()}, picked_lengths)
    report.summary["domains"] = domains
    warnings = []
    if unweighted:
        warnings.append(f"domains with rows but no weight were left out: {unweighted}")
        logger.warning("Mixing leaves out domains without a weight: %s", unweighted)
    report.add(
        "mix_domains",
        rows_in=sum(sizes.values()),
        rows_out=len(mixed),
        removed=sum(n - min(n, counts[d]) for d, n in sizes.items()),
        tokens_in=sum(entry["tokens_before"] for entry in domains.values()),
        tokens_out=sum(entry["tokens_after"] for entry in domains.values()),
        details={
            "params": {
                "weights": weights,
                "temperature": temperature,
                "max_epochs": max_epochs,
                "total_rows": total_rows,
                "seed": seed,
            },
            "domains": domains,
            "warnings": warnings,
        },
    )
    return mixed


def _check_domains(datasets_by_domain: dict[str, datasets.Dataset]) -> dict[str, int]:
    if not isinstance(datasets_by_domain, dict) or not datasets_by_domain:
        raise RecipeInputError("mix_domains needs a non-empty mapping of domain name -> Dataset.")
    for domain, dataset in datasets_by_domain.items():
        if not isinstance(domain, str) or not isinstance(dataset, datasets.Dataset):
            raise RecipeInputError(
                f"mix_domains needs domain names (str) mapped to datasets.Dataset, got {domain!r}: "
                f"{type(dataset).__name__}."
            )
    return {domain: len(dataset) for domain, dataset in datasets_by_domain.items()}


def _epochs_per_domain(max_epochs: float | dict[str, float], sizes: dict[str, int]) -> dict[str, float]:
    per_domain = max_epochs if isinstance(max_epochs, dict) else dict.fromkeys(sizes, max_epochs)
    unknown = sorted(set(per_domain) - set(sizes))
    if unknown:
        raise RecipeInputError(f"max_epochs names unknown domain(s) {unknown}; domains: {list(sizes)}.")
    for domain, value in per_domain.items():
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise RecipeInputError(
                f"max_epochs for domain {domain!r} must be a positive number (1 = each row at most once), "
                f"got {value!r}."
            )
    return {domain: float(per_domain.get(domain, 1.0)) for domain in sizes}


def _row_lengths(
    datasets_by_domain: dict[str, datasets.Dataset],
    length_fn: Callable[[str], int] | None,
    tokenizer: Any,
    token_counts: dict[str, list[int]] | None,
    columns: list[str] | None,
    num_proc: int | None,
) -> dict[str, list[int]]:
    """Tokens of every row, per domain: only one source of counts, so the report says what it measured."""
    given = [
        name
        for name, value in (
            ("length_fn", length_fn),
            ("tokenizer", tokenizer),
            ("token_counts", token_counts),
        )
        if value is not None
    ]
    if len(given) > 1:
        raise RecipeInputError(f"Give one way to count tokens, not {given}.")
    if token_counts is not None:
        for domain, dataset in datasets_by_domain.items():
            if len(token_counts.get(domain, [])) != len(dataset):
                raise RecipeInputError(
                    f"token_counts[{domain!r}] must have one count per row ({len(dataset)}), "
                    f"got {len(token_counts.get(domain, []))}."
                )
        return {domain: list(token_counts[domain]) for domain in datasets_by_domain}
    counter = (
        _TokenizerLengths(tokenizer)
        if tokenizer is not None
        else _FunctionLengths(length_fn or whitespace_length)
    )
    lengths = {}
    for domain, dataset in datasets_by_domain.items():
        if len(dataset) == 0:
            lengths[domain] = []
            continue
        read = columns or default_columns(dataset.column_names)
        missing = [c for c in read if c not in dataset.column_names]
        if missing:
            raise RecipeInputError(
                f"Domain {domain!r} lacks the text column(s) {missing} used to count tokens "
                f"(it has {dataset.column_names}); set `columns`."
            )

        def measure(batch: dict[str, list], read: list[str] = read) -> dict[str, list[int]]:
            rows = batch_rows(batch)
            return {"_tokens": counter.batch([row_text(row, read) for row in rows])}

        measured = dataset.select_columns(read).map(
            measure, batched=True, num_proc=num_proc, remove_columns=read, desc=f"count tokens ({domain})"
        )
        lengths[domain] = list(measured["_tokens"])
    return lengths


@dataclass
class _FunctionLengths:
    length_fn: Callable[[str], int]

    def batch(self, texts: list[str]) -> list[int]:
        return [int(self.length_fn(text)) for text in texts]


@dataclass
class _TokenizerLengths:
    """Token counts from a Hugging Face tokenizer, a batch at a time (fast tokenizers parallelise batches)."""

    tokenizer: Any

    def batch(self, texts: list[str]) -> list[int]:
        return [len(ids) for ids in self.tokenizer(texts, add_special_tokens=False)["input_ids"]]


def _domain_table(
    sizes: dict[str, int],
    counts: dict[str, int],
    shares: dict[str, float],
    tokens_before: dict[str, int],
    tokens_after: dict[str, int],
) -> dict[str, dict[str, Any]]:
    def share(value: int, total: int) -> float:
        return value / total if total else 0.0

    rows_in, rows_out = sum(sizes.values()), sum(counts.values())
    all_tokens_in, all_tokens_out = sum(tokens_before.values()), sum(tokens_after.values())
    return {
        domain: {
            "target_share": shares[domain],
            "rows_before": n,
            "rows_after": counts[domain],
            "row_share_before": share(n, rows_in),
            "row_share_after": share(counts[domain], rows_out),
            "tokens_before": tokens_before[domain],
            "tokens_after": tokens_after[domain],
            "token_share_before": share(tokens_before[domain], all_tokens_in),
            "token_share_after": share(tokens_after[domain], all_tokens_out),
            "repetition": share(counts[domain], n),
        }
        for domain, n in sizes.items()
    }


@dataclass
class MixDomains(Step):
    """Rebalance a dataset with a `domain` column in a YAML pipeline: `mix_domains` on its per-domain parts.

    Parameters as `mix_domains` (weights or temperature, max_epochs, total_rows, seed); tokens for the
    report are whitespace words over `columns`."""

    name: ClassVar[str] = "mix_domains"
    weights: dict[str, float] | None = None
    temperature: float | None = None
    max_epochs: float | dict[str, float] = 1.0
    total_rows: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.weights is not None and self.temperature is not None:
            raise RecipeInputError("mix_domains: give either `weights` or `temperature`, not both.")
        if self.domains:
            # Scoped steps are merged back in the original row order, which would undo the shuffle.
            raise RecipeInputError(
                "mix_domains takes no `domains`; to mix a subset, give weights only to those domains."
            )

    def apply(
        self, dataset: datasets.Dataset, report: DataReport, num_proc: int | None = None
    ) -> datasets.Dataset:
        return mix_domains(
            split_by_domain(dataset),
            report=report,
            weights=self.weights,
            temperature=self.temperature,
            max_epochs=self.max_epochs,
            total_rows=self.total_rows,
            seed=self.seed,
            columns=self.columns,
            num_proc=num_proc,
        )


__all__ = [
    "MixDomains",
    "domain_row_counts",
    "epoch_indices",
    "mix_domains",
    "split_by_domain",
    "temperature_shares",
    "weight_shares",
    "whitespace_length",
]
