"""Near-duplicate removal (MinHash LSH) and n-gram decontamination against an evaluation set.

`near_dedup` follows datatrove's MinHash pipeline (0.10.1, `datatrove/pipeline/dedup/minhash.py`) so results
are comparable with a datatrove run at scale: the same text simplification, word 5-gram shingles hashed
with 64-bit xxhash (or SHA-1, datatrove's offline choice), the same permutation parameters drawn from
`np.random.RandomState(seed)`, 14 bands of 8 rows, and clusters as connected components of band collisions.
Two differences, both deliberate:
- words are split on whitespace after simplification, where datatrove runs spaCy's rule-based English
  tokenizer; on simplified text (no punctuation) the two differ only on spaCy's exceptions ("cannot" ->
  "can not", "id" -> "i d") and on symbols outside datatrove's punctuation list ("©"), and whitespace
  needs no spaCy. On the noisy-web corpus the same-cluster pairs agree 99-100% with datatrove's
  (`bench/near_dedup_vs_datatrove.py`);
- each cluster keeps its lowest-index document (datatrove keeps whichever root union-by-size picked), so the
  earliest occurrence survives and the output is reproducible row for row.
With `threshold` set, candidate pairs are kept only when their signatures agree on at least that fraction
of permutations (the estimated Jaccard similarity), which removes LSH's chance collisions.

`decontaminate` drops training rows that share any word n-gram (13 by default, as in GPT-3's
decontamination) with an evaluation set, on the same simplified text.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass
from functools import cached_property
from typing import Any, ClassVar

import datasets
import numpy as np
import xxhash  # a dependency of `datasets`, so always importable where this module is

from hfrecipes.core.data_report import DataReport
from hfrecipes.core.errors import RecipeInputError
from hfrecipes.data.sources import load_source
from hfrecipes.data.steps import MAX_EXAMPLES, Step, batch_rows, row_text, select_with_report

# http://en.wikipedia.org/wiki/Mersenne_prime; the permutations map hashes into [0, 2**61 - 1).
MERSENNE_PRIME = np.uint64((1 << 61) - 1)

# datatrove.utils.text.PUNCTUATION: the characters its simplification turns into spaces (ASCII and CJK
# punctuation plus C0/C1 control characters). Copied so the shingles match datatrove's without importing it.
_PUNCTUATION = (
    "!/—”:％１〈&(、━\\【#%「」，】；+^]~“《„';’{|∶´[=-`*．（–？！：$～«〉,><》)?）。…@_.\"}►»"
    + "".join(
        chr(code) for start, end in ((0, 9), (11, 13), (13, 32), (127, 160)) for code in range(start, end)
    )
)
_PUNCTUATION_TO_SPACE = str.maketrans(_PUNCTUATION, " " * len(_PUNCTUATION))
# In a str pattern \d is any Unicode decimal digit, the same set as datatrove's \p{Nd}.
_NUMBER = re.compile(r"\d+([.,،٫⎖⎗⎘]\d+)?")

HASH_FUNCTIONS = ("xxhash", "sha1")
# Shingles permuted at once: a (1024 x 112) uint64 matrix is ~1 MB, small enough to stay in cache.
_SHINGLES_PER_SLICE = 1024


@dataclass(frozen=True)
class MatchNormalization:
    """How text is simplified before shingling, as datatrove's `TextNormConfig` (same defaults): changes
    that do not make two documents different (case, punctuation, digits, accents) should not hide a match."""

    lowercase: bool = True
    remove_punctuation: bool = True
    normalize_numbers: bool = True
    strip_diacritics: bool = True

    def simplify(self, text: str) -> str:
        """datatrove's `simplify_text`, in its order: lowercase, numbers -> 0, punctuation -> space,
        whitespace collapsed, accents removed."""
        if self.lowercase:
            text = text.lower()
        if self.normalize_numbers:
            text = _NUMBER.sub("0", text)
        if self.remove_punctuation:
            text = text.translate(_PUNCTUATION_TO_SPACE)
        text = " ".join(text.split())  # str.split and re's \s agree on what Unicode whitespace is
        # ASCII text has no combining marks: skipping it avoids a per-character Python loop on most documents.
        if self.strip_diacritics and not text.isascii():
            text = "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")
        return text.strip()

    def words(self, text: str) -> list[str]:
        return self.simplify(text).split()


def _xxhash64(value: bytes) -> int:
    return xxhash.xxh64_intdigest(value)


def _sha1_64(value: bytes) -> int:
    """datatrove's `sha1_hash64`: the first 8 bytes of SHA-1, little-endian."""
    return int.from_bytes(hashlib.sha1(value).digest()[:8], "little")


def ngram_hashes(words: list[str], n: int, hash_function: str = "xxhash") -> np.ndarray:
    """64-bit hashes of the UTF-8 bytes of every word n-gram joined by single spaces (as datatrove hashes
    them; xxhash 4 refuses str, which is why datatrove 0.10.1's own xxhash mode fails on this stack);
    empty when there are fewer than `n` words."""
    grams = map(" ".join, zip(*(words[k:] for k in range(n)), strict=False))
    hash_one = _xxhash64 if hash_function == "xxhash" else _sha1_64
    return np.fromiter(
        map(hash_one, map(str.encode, grams)), dtype=np.uint64, count=max(len(words) - n + 1, 0)
    )


def _permute(hashes: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(hashes * a + b) mod 2**64 mod (2**61 - 1), datatrove's permutation, with the modulo done by folding
    (2**61 = 1 mod p) instead of division: same values, twice as fast."""
    permuted = hashes * a
    permuted += b
    high = permuted >> np.uint64(61)
    permuted &= MERSENNE_PRIME
    permuted += high
    permuted -= MERSENNE_PRIME * (permuted >= MERSENNE_PRIME)
    return permuted


@dataclass(frozen=True)
class MinHasher:
    """Computes MinHash signatures; picklable, so `datasets.map(num_proc=...)` workers each rebuild the same
    permutation parameters from `seed`."""

    num_perm: int = 112
    shingle_size: int = 5
    seed: int = 1
    hash_function: str = "xxhash"
    normalization: MatchNormalization = MatchNormalization()

    @cached_property
    def permutations(self) -> tuple[np.ndarray, np.ndarray]:
        """The (a, b) of h -> (a*h + b) mod p, drawn exactly as datatrove draws them (same seed, same
        values). The product wraps modulo 2**64 before the modulo, as in datatrove."""
        generator = np.random.RandomState(self.seed)
        a = generator.randint(1, MERSENNE_PRIME, dtype=np.uint64, size=(1, self.num_perm))
        b = generator.randint(0, MERSENNE_PRIME, dtype=np.uint64, size=(1, self.num_perm))
        return a, b

    def signatures(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(signatures uint64 [len(texts), num_perm], has_shingles bool [len(texts)]). A text with fewer
        words than `shingle_size` has no shingles and no signature (its row is all zeros); like datatrove,
        such texts are never near-duplicates of anything (exact dedup covers short copies)."""
        signatures = np.zeros((len(texts), self.num_perm), dtype=np.uint64)
        has_shingles = np.zeros(len(texts), dtype=bool)
        for row, text in enumerate(texts):
            hashes = ngram_hashes(self.normalization.words(text), self.shingle_size, self.hash_function)
            if len(hashes):
                signatures[row] = self.signature(hashes)
                has_shingles[row] = True
        return signatures, has_shingles

    def signature(self, shingle_hashes: np.ndarray) -> np.ndarray:
        """Minimum of each permutation over the shingles, in slices that keep the (shingles x permutations)
        matrix in cache (about twice as fast as one big matrix)."""
        a, b = self.permutations
        signature = np.full(self.num_perm, np.iinfo(np.uint64).max, dtype=np.uint64)
        for start in range(0, len(shingle_hashes), _SHINGLES_PER_SLICE):
            permuted = _permute(shingle_hashes[start : start + _SHINGLES_PER_SLICE, None], a, b)
            np.minimum(signature, permuted.min(axis=0), out=signature)
        return signature


@dataclass
class LshResult:
    """`cluster_ids[i]`: the lowest index in document i's cluster (i itself when it has no duplicate)."""

    cluster_ids: np.ndarray
    candidate_pairs: int
    linked_pairs: np.ndarray  # (k, 2) pairs whose union formed the clusters

    @property
    def keep(self) -> np.ndarray:
        return self.cluster_ids == np.arange(len(self.cluster_ids))

    @property
    def duplicate_clusters(self) -> int:
        sizes = np.bincount(self.cluster_ids, minlength=len(self.cluster_ids))
        return int((sizes > 1).sum())


def estimated_jaccard(signatures: np.ndarray, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Fraction of permutations on which two signatures agree: an unbiased estimate of Jaccard similarity."""
    return (signatures[first] == signatures[second]).mean(axis=-1)


def lsh_clusters(
    signatures: np.ndarray,
    has_shingles: np.ndarray,
    bands: int,
    rows_per_band: int,
    threshold: float | None = None,
) -> LshResult:
    """Band the signatures; documents equal on all rows of any band are candidates; clusters are the
    connected components of the candidate (or, with `threshold`, verified) pairs."""
    count = len(signatures)
    documents = np.flatnonzero(has_shingles)
    groups: list[np.ndarray] = []
    star_pairs: list[np.ndarray] = []
    for band in range(bands):
        keys = np.ascontiguousarray(signatures[documents, band * rows_per_band : (band + 1) * rows_per_band])
        _, bucket = np.unique(keys.view(np.dtype((np.void, keys.shape[1] * 8))).ravel(), return_inverse=True)
        order = np.argsort(bucket, kind="stable")  # stable: ascending document index within a bucket
        sorted_bucket = bucket[order]
        starts = np.flatnonzero(np.r_[True, sorted_bucket[1:] != sorted_bucket[:-1]])
        sizes = np.diff(np.r_[starts, len(order)])
        leaders = np.repeat(starts, sizes)
        followers = np.flatnonzero(np.arange(len(order)) != leaders)
        # Linking every member to its bucket's first member gives the same components as datatrove's
        # chain of consecutive members, with k - 1 pairs per bucket of k.
        star_pairs.append(
            np.stack([documents[order[leaders[followers]]], documents[order[followers]]], axis=1)
        )
        if threshold is not None:
            groups.extend(documents[order[s : s + z]] for s, z in zip(starts, sizes, strict=True) if z > 1)
    candidates = np.unique(np.concatenate(star_pairs), axis=0) if star_pairs else np.empty((0, 2), np.int64)
    linked = candidates if threshold is None else _verified_pairs(groups, signatures, threshold)
    return LshResult(
        cluster_ids=connected_components(count, linked), candidate_pairs=len(candidates), linked_pairs=linked
    )


def _verified_pairs(groups: list[np.ndarray], signatures: np.ndarray, threshold: float) -> np.ndarray:
    """Within each bucket, link the lowest-index member to every member similar enough to it, then repeat
    with the lowest unlinked member: a member unlike the first can still join a later one."""
    pairs = []
    for members in {tuple(g.tolist()): g for g in groups}.values():  # the same bucket recurs across bands
        remaining = members
        while len(remaining) > 1:
            leader, rest = remaining[0], remaining[1:]
            similar = estimated_jaccard(signatures, np.full(len(rest), leader), rest) >= threshold
            pairs.append(np.stack([np.full(int(similar.sum()), leader), rest[similar]], axis=1))
            remaining = rest[~similar]
    return np.unique(np.concatenate(pairs), axis=0) if pairs else np.empty((0, 2), np.int64)


def connected_components(count: int, pairs: np.ndarray) -> np.ndarray:
    """Label every node with the lowest node index of its component (min-label propagation with pointer
    jumping, vectorised; a label only ever moves to a smaller index of the same component)."""
    labels = np.arange(count)
    if len(pairs) == 0:
        return labels
    first, second = pairs[:, 0], pairs[:, 1]
    while True:
        smaller = np.minimum(labels[first], labels[second])
        updated = labels.copy()
        np.minimum.at(updated, first, smaller)
        np.minimum.at(updated, second, smaller)
        updated = updated[updated]
        if np.array_equal(updated, labels):
            return labels
        labels = updated


def minhash_clusters(
    texts: list[str],
    *,
    shingle_size: int = 5,
    bands: int = 14,
    rows_per_band: int = 8,
    threshold: float | None = None,
    seed: int = 1,
    hash_function: str = "xxhash",
    normalization: MatchNormalization | None = None,
) -> list[int]:
    """Cluster id per text (the lowest index in its near-duplicate cluster), in one process: for benchmarks
    and for callers outside a `datasets` pipeline."""
    hasher = MinHasher(
        num_perm=bands * rows_per_band,
        shingle_size=shingle_size,
        seed=seed,
        hash_function=hash_function,
        normalization=normalization or MatchNormalization(),
    )
    signatures, has_shingles = hasher.signatures(list(texts))
    return lsh_clusters(signatures, has_shingles, bands, rows_per_band, threshold).cluster_ids.tolist()


def _require_int(step: str, name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise RecipeInputError(f"{step}: `{name}` must be an integer >= {minimum}, got {value!r}.")


def _require_bools(step: str, **values: Any) -> None:
    for name, value in values.items():
        if not isinstance(value, bool):
            raise RecipeInputError(f"{step}: `{name}` must be true or false, got {value!r}.")


@dataclass
class NearDedup(Step):
    """Remove near-duplicate documents with MinHash LSH; each cluster keeps its first (lowest-index) row.

    `shingle_size` words per shingle; `bands` x `rows_per_band` permutations (`num_perm`, if given, must
    equal their product). Documents whose Jaccard similarity s passes LSH with probability
    1 - (1 - s**rows_per_band)**bands: with the defaults (14 x 8) about 0.72 is the 50% point, 0.8 is found
    92% of the time. Lower `rows_per_band` (more bands) to catch looser copies and set `threshold` (estimated
    Jaccard that a candidate pair must reach) to keep precision. Signatures are computed with
    `datasets.map(num_proc)`; banding and clustering run in the main process.
    """

    name: ClassVar[str] = "near_dedup"
    shingle_size: int = 5
    num_perm: int | None = None
    bands: int = 14
    rows_per_band: int = 8
    threshold: float | None = None
    seed: int = 1
    hash_function: str = "xxhash"
    lowercase: bool = True
    remove_punctuation: bool = True
    normalize_numbers: bool = True
    strip_diacritics: bool = True

    def __post_init__(self) -> None:
        _require_int(self.name, "shingle_size", self.shingle_size, 1)
        _require_int(self.name, "bands", self.bands, 1)
        _require_int(self.name, "rows_per_band", self.rows_per_band, 1)
        if self.num_perm is not None and self.num_perm != self.bands * self.rows_per_band:
            raise RecipeInputError(
                f"{self.name}: num_perm ({self.num_perm!r}) must equal bands x rows_per_band "
                f"({self.bands} x {self.rows_per_band} = {self.bands * self.rows_per_band}); "
                "set one consistent pair, or leave num_perm out."
            )
        if self.threshold is not None and (
            isinstance(self.threshold, bool)
            or not isinstance(self.threshold, int | float)
            or not 0 < self.threshold <= 1
        ):
            raise RecipeInputError(
                f"{self.name}: `threshold` must be a number in (0, 1] (estimated Jaccard), got {self.threshold!r}."
            )
        _require_int(self.name, "seed", self.seed, 0)
        if self.hash_function not in HASH_FUNCTIONS:
            raise RecipeInputError(
                f"{self.name}: `hash_function` must be one of {', '.join(HASH_FUNCTIONS)}, got {self.hash_function!r}."
            )
        _require_bools(
            self.name,
            lowercase=self.lowercase,
            remove_punctuation=self.remove_punctuation,
            normalize_numbers=self.normalize_numbers,
            strip_diacritics=self.strip_diacritics,
        )

    @property
    def hasher(self) -> MinHasher:
        return MinHasher(
            num_perm=self.bands * self.rows_per_band,
            shingle_size=self.shingle_size,
            seed=self.seed,
            hash_function=self.hash_function,
            normalization=MatchNormalization(
                lowercase=self.lowercase,
                remove_punctuation=self.remove_punctuation,
                normalize_numbers=self.normalize_numbers,
                strip_diacritics=self.strip_diacritics,
            ),
        )

    def apply(
        self, dataset: datasets.Dataset, report: DataReport, num_proc: int | None = None
    ) -> datasets.Dataset:
        columns = self.resolved_columns(dataset)
        hasher = self.hasher

        def sign(batch: dict[str, list]) -> dict[str, Any]:
            rows = batch_rows(batch)
            signatures, has_shingles = hasher.signatures([row_text(row, columns) for row in rows])
            return {"_minhash": signatures, "_has_shingles": has_shingles.tolist()}

        signed = dataset.select_columns(columns).map(
            sign, batched=True, num_proc=num_proc, remove_columns=columns, desc="minhash signatures"
        )
        table = signed.with_format("numpy")[:]
        # The numpy formatter returns int64; every value is below 2**61, so the cast is exact.
        signatures = np.asarray(table["_minhash"]).astype(np.uint64).reshape(len(dataset), hasher.num_perm)
        has_shingles = np.asarray(table["_has_shingles"], dtype=bool)
        result = lsh_clusters(signatures, has_shingles, self.bands, self.rows_per_band, self.threshold)
        keep = result.keep
        removed = np.flatnonzero(~keep)
        examples = []
        for index in removed[:MAX_EXAMPLES].tolist():
            kept_index = int(result.cluster_ids[index])
            examples.append(
                {
                    "removed_index": index,
                    "kept_index": kept_index,
                    "estimated_jaccard": round(
                        float(estimated_jaccard(signatures, np.array(index), np.array(kept_index))), 3
                    ),
                    "removed": row_text(dataset[index], columns)[:300],
                    "kept": row_text(dataset[kept_index], columns)[:300],
                }
            )
        details = {
            "duplicate_clusters": result.duplicate_clusters,
            "candidate_pairs": result.candidate_pairs,
            "linked_pairs": len(result.linked_pairs),
            "removed_rows": len(removed),
            "rows_without_shingles": int((~has_shingles).sum()),
            "duplicate_examples": examples,
        }
        return select_with_report(dataset, keep.tolist(), self, report, columns, details=details)


@dataclass
class Decontaminate(Step):
    """Drop training rows that share a word n-gram with an evaluation set (benchmark contamination).

    `eval_source`: a source spec (`load_source`: jsonl/parquet path, `builtin:...`, Hub id with `eval_split`);
    `eval_column`: the column, or list of columns, holding the evaluation text (for QA sets, e.g.
    [question, answer]; they are joined, so n-grams spanning question and answer count too). Texts are
    simplified as for near_dedup (lowercase, punctuation and accents removed, digits -> 0) and split into
    words; `ngram_size` 13 is GPT-3's choice: long enough that common phrases do not match.
    """

    name: ClassVar[str] = "decontaminate"
    eval_source: str = ""
    eval_column: str | list[str] = "text"
    eval_split: str = "test"
    ngram_size: int = 13

    def __post_init__(self) -> None:
        if not isinstance(self.eval_source, str) or not self.eval_source.strip():
            raise RecipeInputError(
                f"{self.name}: set `eval_source` to the evaluation set to decontaminate against "
                "(a jsonl/parquet path, builtin:<name> or Hub id)."
            )
        eval_columns = [self.eval_column] if isinstance(self.eval_column, str) else self.eval_column
        if (
            not isinstance(eval_columns, list)
            or not eval_columns
            or not all(isinstance(c, str) for c in eval_columns)
        ):
            raise RecipeInputError(
                f"{self.name}: `eval_column` must be a column name or a list of names, got {self.eval_column!r}."
            )
        _require_int(self.name, "ngram_size", self.ngram_size, 1)

    @property
    def eval_columns(self) -> list[str]:
        return [self.eval_column] if isinstance(self.eval_column, str) else list(self.eval_column)

    def eval_ngram_hashes(self) -> tuple[frozenset[int], int]:
        """(hashes of every n-gram of the evaluation set, number of evaluation rows)."""
        evaluation = load_source(self.eval_source, split=self.eval_split)
        missing = [c for c in self.eval_columns if c not in evaluation.column_names]
        if missing:
            raise RecipeInputError(
                f"{self.name}: evaluation set {self.eval_source!r} has no column(s) {missing}; "
                f"its columns are {evaluation.column_names}. Set `eval_column`."
            )
        normalization = MatchNormalization()
        hashes: set[int] = set()
        for row in evaluation.select_columns(self.eval_columns):
            words = normalization.words(row_text(row, self.eval_columns))
            hashes.update(ngram_hashes(words, self.ngram_size).tolist())
        if not hashes:
            raise RecipeInputError(
                f"{self.name}: no evaluation text in {self.eval_source!r} ({self.eval_columns}) has "
                f"{self.ngram_size} words, so nothing could ever match. Lower `ngram_size` or check `eval_column`."
            )
        return frozenset(hashes), len(evaluation)

    def apply(
        self, dataset: datasets.Dataset, report: DataReport, num_proc: int | None = None
    ) -> datasets.Dataset:
        columns = self.resolved_columns(dataset)
        eval_hashes, eval_rows = self.eval_ngram_hashes()
        size = self.ngram_size
        normalization = MatchNormalization()

        def first_match(batch: dict[str, list]) -> dict[str, list[str]]:
            matches = []
            for values in zip(*batch.values(), strict=True):
                words = normalization.words(row_text(dict(zip(batch, values, strict=True)), columns))
                hits = np.flatnonzero([h in eval_hashes for h in ngram_hashes(words, size).tolist()])
                matches.append(" ".join(words[hits[0] : hits[0] + size]) if len(hits) else "")
            return {"_match": matches}

        matches = dataset.select_columns(columns).map(
            first_match, batched=True, num_proc=num_proc, remove_columns=columns, desc=self.name
        )["_match"]
        matches = list(matches)
        contaminated = [i for i, match in enumerate(matches) if match]
        details = {
            "eval_rows": eval_rows,
            "eval_ngrams": len(eval_hashes),
            "contaminated_rows": len(contaminated),
            "matches": [
                {"index": i, "ngram": matches[i], "text": row_text(dataset[i], columns)[:300]}
                for i in contaminated[:MAX_EXAMPLES]
            ],
        }
        return select_with_report(
            dataset, [not match for match in matches], self, report, columns, details=details
        )
