"""Which FAISS index a collection gets, building it, and measuring its recall.

The rule (measured on one million CLIP-like 512-d embeddings, see bench/README.md "Search a
collection"), on FAISS's ``index_factory`` strings, inner product over L2-normalised embeddings:

- up to :data:`EXACT_MAX` items, and while the float32 vectors fit the memory budget: ``Flat``, exact
  (a query scans every vector: a few milliseconds at 50 000 x 512 on one core);
- above: ``IVF<nlist>,SQ<bits>``, an inverted file over ``nlist`` k-means cells (about ``2 sqrt(n)``, a
  power of two) storing each vector as ``bits``-bit scalars: 6 bits when that fits the budget (0.19 of
  the float32 size with the ids), else 4 bits (0.13), else ``IVF<nlist>,PQ<D/8>`` (D/8 bytes a vector).
  A query takes :data:`RERANK` times as many candidates from it as it asks for and re-scores them
  exactly with the stored float16 embeddings (the shards, memory-mapped): the compressed codes only
  have to find the neighbours, not order them. The number of cells a query visits (``nprobe``) is the
  smallest power of two whose recall@10 against exact search reaches :data:`RECALL_TARGET` on sample
  queries; that recall is written beside the index.

Recall queries: :data:`RECALL_QUERIES` collection vectors moved away from themselves by Gaussian noise
(cosine about 0.6 to where they started) and renormalised, the way a speech query lands near, not on,
the images it describes; exact neighbours come from a full scan of the shards.
"""

from __future__ import annotations

import math
from typing import Callable, Iterable, Optional, Tuple

import numpy as np

EXACT_MAX = 50_000
RERANK = 4
RECALL_TARGET = 0.95
RECALL_QUERIES = 200
RECALL_K = 10
NPROBES = (1, 2, 4, 8, 16, 32, 64, 128, 256)
ID_BYTES = 8  # an IVF list stores each vector's int64 id beside its code
TRAIN_PER_CELL = 40  # k-means training points per cell (FAISS warns below 39)


def nlist_for(n: int) -> int:
    """Cells of the inverted file for ``n`` vectors: the power of two nearest ``2 sqrt(n)``, 64..65536."""
    return int(min(65536, max(64, 2 ** round(math.log2(2 * math.sqrt(max(n, 1)))))))


def choose_factory(n: int, dim: int, memory_bytes: int) -> str:
    """The ``index_factory`` string for ``n`` vectors of ``dim`` under a memory budget (see module doc)."""
    if n <= EXACT_MAX and n * dim * 4 <= memory_bytes:
        return "Flat"
    nlist = nlist_for(n)
    for bits in (6, 4):
        if n * (dim * bits // 8 + ID_BYTES) <= memory_bytes:
            return f"IVF{nlist},SQ{bits}"
    m = max(1, dim // 8)
    while dim % m:
        m -= 1
    return f"IVF{nlist},PQ{m}"


def new_index(factory: str, dim: int):
    import faiss

    return faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)


def train(index, sample: np.ndarray) -> None:
    """Train ``index`` (IVF cells, scalar ranges / codebooks) on ``sample`` (m, D); no-op for Flat."""
    if not index.is_trained:
        index.train(np.ascontiguousarray(sample, dtype=np.float32))


def train_size(factory: str) -> int:
    """How many vectors training ``factory`` wants (0: none)."""
    if not factory.startswith("IVF"):
        return 0
    nlist = int(factory[3:].split(",")[0])
    return TRAIN_PER_CELL * nlist


def recall_queries(sample: np.ndarray, seed: int = 0) -> np.ndarray:
    """(Q, D) queries near (not on) ``sample``'s vectors: each plus Gaussian noise of 1.4 times its
    norm, renormalised (cosine about 0.6 to the vector it came from: a speech query is about as close to
    its image as two different images of a topic are)."""
    rng = np.random.default_rng(seed)
    q = sample.astype(np.float32)
    q = q + 1.4 * rng.standard_normal(q.shape).astype(np.float32) / math.sqrt(q.shape[1])
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def exact_topk(queries: np.ndarray, shards: Iterable[np.ndarray], k: int = RECALL_K) -> np.ndarray:
    """(Q, k) ids of the exact top-k by inner product over the concatenated ``shards`` (each (n_j, D)),
    streamed: the collection need not fit in memory."""
    best_s = np.full((len(queries), 0), -np.inf, np.float32)
    best_i = np.zeros((len(queries), 0), np.int64)
    offset = 0
    for emb in shards:
        s = queries @ np.asarray(emb, dtype=np.float32).T
        ids = np.broadcast_to(np.arange(offset, offset + len(emb)), s.shape)
        s, ids = np.concatenate([best_s, s], 1), np.concatenate([best_i, ids], 1)
        top = np.argsort(-s, axis=1, kind="stable")[:, :k]
        best_s, best_i = np.take_along_axis(s, top, 1), np.take_along_axis(ids, top, 1)
        offset += len(emb)
    return best_i


def recall_at(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean over queries of |found_q ∩ truth_q| / |truth_q| (ids; -1 never matches)."""
    k = truth.shape[1]
    return float(np.mean([len(set(f[f >= 0]) & set(t)) / k for f, t in zip(found, truth)]))


def is_exact(index) -> bool:
    import faiss

    return isinstance(index, faiss.IndexFlat)


def search(index, queries: np.ndarray, k: int, vectors: Optional[Callable[[np.ndarray], np.ndarray]] = None):
    """(Q, D) -> (scores, ids), each (Q, k), best first. An approximate index with ``vectors`` (FAISS ids
    -> stored (n, D) embeddings) takes ``RERANK * k`` candidates and keeps the ``k`` best by exact inner
    product; an exact index (or no ``vectors``) answers directly."""
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    if vectors is None or is_exact(index):
        return index.search(queries, k)
    _, cand = index.search(queries, RERANK * k)
    scores = np.full((len(queries), k), -np.inf, np.float32)
    ids = np.full((len(queries), k), -1, np.int64)
    for qi, (q, row) in enumerate(zip(queries, cand)):
        row = row[row >= 0]
        s = vectors(row) @ q
        top = np.argsort(-s, kind="stable")[:k]
        scores[qi, : len(top)], ids[qi, : len(top)] = s[top], row[top]
    return scores, ids


def tune_nprobe(
    index,
    queries: np.ndarray,
    truth: np.ndarray,
    vectors: Optional[Callable[[np.ndarray], np.ndarray]] = None,
    target: float = RECALL_TARGET,
) -> Tuple[Optional[int], float]:
    """Set ``index``'s nprobe to the smallest of :data:`NPROBES` reaching ``target`` recall@k with
    :func:`search` (else the largest tried); return (nprobe, None for an exact index; the recall)."""
    import faiss

    k = truth.shape[1]
    if is_exact(index):
        return None, recall_at(index.search(queries, k)[1], truth)
    ivf = faiss.extract_index_ivf(index)
    rec = 0.0
    for nprobe in [p for p in NPROBES if p <= ivf.nlist]:
        ivf.nprobe = nprobe
        rec = recall_at(search(index, queries, k, vectors)[1], truth)
        if rec >= target:
            break
    return int(ivf.nprobe), rec


def add_all(index, shards: Iterable[np.ndarray], on_shard: Optional[Callable[[int], None]] = None) -> None:
    """Add every shard's vectors (float16 or float32, (n_j, D)) in order; ids follow the shard order."""
    for emb in shards:
        index.add(np.ascontiguousarray(emb, dtype=np.float32))
        if on_shard is not None:
            on_shard(len(emb))
