"""The index-kind rule, and an approximate index's recall on a clustered, CLIP-like set."""

import importlib.util

import numpy as np
import pytest
from helpers import ROOT

from espnet_speechclip.index import kind


def _clip_like():
    spec = importlib.util.spec_from_file_location("bench_index", ROOT / "bench" / "index.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.clip_like


def test_the_rule_is_exact_while_small_and_within_budget_then_compressed():
    gib = 2**30
    assert kind.choose_factory(kind.EXACT_MAX, 512, gib) == "Flat"
    assert kind.choose_factory(kind.EXACT_MAX + 1, 512, gib) == "IVF512,SQ6"
    assert kind.choose_factory(1000, 512, 1000 * 512 * 4 - 1).startswith("IVF")  # float32 over budget
    assert kind.choose_factory(1_000_000, 512, 4 * gib) == "IVF2048,SQ6"
    assert kind.choose_factory(1_000_000, 512, 300 * 2**20) == "IVF2048,SQ4"
    assert kind.choose_factory(1_000_000, 512, 100 * 2**20) == "IVF2048,PQ64"
    assert kind.nlist_for(100) == 64 and kind.nlist_for(10**8) == 16384


def test_recall_is_measured_and_reached_on_a_clustered_set(tmp_path):
    import faiss

    clip_like = _clip_like()
    x = clip_like(20_000, 64, clusters=50)
    index = kind.new_index("IVF64,SQ6", 64)
    kind.train(index, x[: kind.train_size("IVF64,SQ6")])
    kind.add_all(index, [x[:7000], x[7000:]])
    stored = x.astype(np.float16)  # what the shards hold: candidates are re-scored with it

    def vectors(ids):
        return stored[ids].astype(np.float32)

    build_q = kind.recall_queries(x[:200])
    truth = kind.exact_topk(build_q, [x[:5000], x[5000:]])
    nprobe, recall = kind.tune_nprobe(index, build_q, truth, vectors)
    assert recall >= kind.RECALL_TARGET and nprobe < 64  # reached before scanning every cell
    assert kind.recall_at(index.search(build_q, 10)[1], truth) < recall  # the re-scoring's part
    queries = clip_like(100, 64, clusters=50, seed=7, query=True)
    truth = faiss.knn(queries, x, 10, faiss.METRIC_INNER_PRODUCT)[1]
    assert kind.recall_at(kind.search(index, queries, 10, vectors)[1], truth) >= 0.9
    # a memory-mapped copy answers the same
    faiss.write_index(index, str(tmp_path / "x.index"))
    mapped = faiss.read_index(str(tmp_path / "x.index"), faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY)
    faiss.extract_index_ivf(mapped).nprobe = nprobe
    np.testing.assert_array_equal(mapped.search(queries, 10)[1], index.search(queries, 10)[1])


def test_exact_top_k_streams_over_shards():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 8)).astype(np.float32)
    q = rng.standard_normal((5, 8)).astype(np.float32)
    expected = np.argsort(-(q @ x.T), axis=1, kind="stable")[:, :4]
    np.testing.assert_array_equal(kind.exact_topk(q, [x[:100], x[100:250], x[250:]], 4), expected)
    assert kind.recall_at(expected, expected) == 1.0
    with pytest.raises(AssertionError):
        np.testing.assert_array_equal(kind.exact_topk(q, [x[:100]], 4), expected)
