"""hfrecipes' `near_dedup` against datatrove's 4-stage MinHash pipeline on the same documents.

    python bench/near_dedup_vs_datatrove.py [--n 300] [--seed 0]

Both use 5-gram shingles, 14 bands x 8 rows, seed 1 and SHA-1 shingle hashes (datatrove 0.10.1's xxhash mode
fails with xxhash 4, which refuses str). datatrove's stages run in this process one after the other (stage 2
once per bucket), which is what LocalPipelineExecutor does with more bookkeeping. Prints how many signatures
are identical (they differ only where spaCy's tokenizer splits words that whitespace does not: "cannot",
"id"), how many documents each removes, and how far the two clusterings agree.
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import time
from pathlib import Path

import numpy as np

from hfrecipes.builtins.noisy_web import noisy_web
from hfrecipes.data.near_dedup import MinHasher, minhash_clusters


def _config():
    from datatrove.pipeline.dedup.minhash import MinhashConfig
    from datatrove.utils.hashing import HashConfig

    return MinhashConfig(hash_config=HashConfig(hash_fc="sha1", precision=64))


def datatrove_minhash(texts: list[str]) -> tuple[np.ndarray, set[int]]:
    """(cluster label per text = lowest index in its cluster, indices datatrove removes)."""
    from datatrove.data import Document
    from datatrove.pipeline.dedup.minhash import (
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupSignature,
    )

    config = _config()
    documents = [Document(text=text, id=str(i)) for i, text in enumerate(texts)]
    with tempfile.TemporaryDirectory() as folder:
        MinhashDedupSignature(output_folder=f"{folder}/signatures", config=config).run(iter(documents))
        for bucket in range(config.num_buckets):
            MinhashDedupBuckets(
                input_folder=f"{folder}/signatures", output_folder=f"{folder}/buckets", config=config
            ).run(rank=bucket, world_size=config.num_buckets)
        MinhashDedupCluster(
            input_folder=f"{folder}/buckets",
            output_folder=f"{folder}/remove",
            config=config,
            save_cluster_id=True,
        ).run(world_size=1)
        # Stage 3 writes little-endian uint32s: the removed doc ids, and (doc id, cluster number) pairs.
        # Reading them is what stage 4 (MinhashDedupFilter) does before it drops documents.
        remove_file, clusters_file = (
            Path(folder, "remove", "000000.remove"),
            Path(folder, "remove", "000000.clusters"),
        )
        removed = set(np.fromfile(remove_file, dtype="<u4").tolist()) if remove_file.exists() else set()
        pairs = (
            np.fromfile(clusters_file, dtype="<u4").reshape(-1, 2)
            if clusters_file.exists()
            else np.empty((0, 2))
        )
    labels = np.arange(len(texts))
    for number in np.unique(pairs[:, 1]):
        members = pairs[pairs[:, 1] == number, 0]
        labels[members] = members.min()
    return labels, removed


def datatrove_signatures(texts: list[str]) -> list[np.ndarray | None]:
    from datatrove.pipeline.dedup.minhash import MinhashDedupSignature

    with tempfile.TemporaryDirectory() as folder:
        signer = MinhashDedupSignature(output_folder=folder, config=_config())
        shingles = [signer.get_shingles(text) for text in texts]
        return [
            np.concatenate(signer.get_signature(s)).astype(np.uint64) if s.size else None for s in shingles
        ]


def same_cluster_pairs(labels: np.ndarray) -> set[tuple[int, int]]:
    pairs: set[tuple[int, int]] = set()
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label).tolist()
        pairs.update(itertools.combinations(members, 2))
    return pairs


def compare_with_datatrove(texts: list[str]) -> dict[str, float]:
    """Run both on `texts`, print and return the agreement figures."""
    start = time.perf_counter()
    ours = np.array(minhash_clusters(texts, hash_function="sha1"))
    ours_seconds = time.perf_counter() - start
    start = time.perf_counter()
    theirs, theirs_removed = datatrove_minhash(texts)
    theirs_seconds = time.perf_counter() - start

    our_signatures, _ = MinHasher(hash_function="sha1").signatures(texts)
    identical = sum(
        their is not None and np.array_equal(their, ours_row)
        for their, ours_row in zip(datatrove_signatures(texts), our_signatures, strict=True)
    )
    ours_removed = set(np.flatnonzero(ours != np.arange(len(ours))).tolist())
    our_pairs, their_pairs = same_cluster_pairs(ours), same_cluster_pairs(theirs)
    both = len(our_pairs & their_pairs)
    figures = {
        "documents": len(texts),
        "identical_signatures": identical / len(texts),
        "removed_ours": len(ours_removed),
        "removed_datatrove": len(theirs_removed),
        # datatrove keeps whichever member union-by-size made the root, hfrecipes the lowest index, so the
        # removed sets can differ even for identical clusters; the pair figures compare the clusters.
        "removed_jaccard": len(ours_removed & theirs_removed) / max(len(ours_removed | theirs_removed), 1),
        "same_cluster_pairs_ours": len(our_pairs),
        "same_cluster_pairs_datatrove": len(their_pairs),
        "pair_agreement": both / max(len(our_pairs | their_pairs), 1),
        "seconds_ours": round(ours_seconds, 2),
        "seconds_datatrove": round(theirs_seconds, 2),
    }
    for name, value in figures.items():
        print(f"{name:30s} {value:.3f}" if isinstance(value, float) else f"{name:30s} {value}")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    corpus = noisy_web(n=args.n, seed=args.seed, near_dup_fraction=0.15, exact_dup_fraction=0.05)
    compare_with_datatrove(corpus["text"])


if __name__ == "__main__":
    main()
