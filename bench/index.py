"""Search a million CLIP-like embeddings: build time, index bytes, memory, latency, recall; embedding speed.

The collection: ``--n`` L2-normalised ``--dim``-d vectors drawn to look like CLIP image embeddings
rather than uniform noise (:func:`clip_like`): a direction every embedding shares (CLIP's embeddings sit
in a narrow cone: a random pair has cosine about 0.3 here), ``--clusters`` topic centres used with
Zipf-like frequencies (a few topics are very common), and per-item noise with a decaying power spectrum
in a random rotation (most of the variance in a few hundred directions, as in CLIP). Queries are drawn
the same way with more noise and a shifted modality direction (the "modality gap": a speech or text
query sits farther from its nearest images than two images do).

Reported: the index the package's rule chooses for the size and budget (``espnet_speechclip.index.kind``),
its build time (training + adding), its bytes against the float32 embeddings, recall@10 of the bench
queries against exact search, p50/p99 latency of one top-10 query (vector search alone), resident memory
of a fresh process that loads the index and serves the queries, and exact search's latency for contrast.
With ``--model`` (a trained SpeechCLIP) also end to end from a 5 s recording: embedding it and searching.
With ``--throughput``: images/s of CLIP's image tower for the stand-in CLIP and ViT-B/32, random weights.

    OMP_NUM_THREADS=2 python bench/index.py --json index.json
    cd egs2/speechclip/sc1 && python ../../../bench/index.py --model exp/synth_parallel --throughput
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def clip_like(n: int, dim: int = 512, clusters: int = 1000, seed: int = 0, query: bool = False) -> np.ndarray:
    """(n, dim) float32 unit vectors shaped like CLIP embeddings (see the module doc). The geometry
    (shared direction, centres, spectrum) is fixed; ``seed`` draws the items; ``query`` draws queries."""
    rng = np.random.default_rng(seed)
    geo = np.random.default_rng(1234)
    common = geo.standard_normal(dim)
    common /= np.linalg.norm(common)
    gap = geo.standard_normal(dim)
    gap /= np.linalg.norm(gap)
    centres = geo.standard_normal((clusters, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    rotation = np.linalg.qr(geo.standard_normal((dim, dim)))[0].astype(np.float32)
    spectrum = (1.0 / np.sqrt(np.arange(1, dim + 1))).astype(np.float32)
    spectrum /= np.sqrt((spectrum**2).sum())
    weights = 1.0 / np.arange(1, clusters + 1) ** 0.8
    weights /= weights.sum()
    out = np.empty((n, dim), np.float32)
    for s in range(0, n, 100_000):
        m = min(100_000, n - s)
        c = rng.choice(clusters, m, p=weights)
        noise = (rng.standard_normal((m, dim)).astype(np.float32) * spectrum) @ rotation
        x = 0.6 * common + 0.7 * centres[c] + (1.1 if query else 0.7) * noise
        if query:
            x = x + 0.5 * gap
        out[s : s + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def _percentiles(ms: List[float]) -> Dict[str, float]:
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99))}


def time_queries(search, queries: np.ndarray, k: int = 10) -> Dict[str, float]:
    """One query at a time, as a user's (``search(q (1, D), k)``): p50 / p99 latency in ms."""
    ms = []
    for q in queries:
        t = time.perf_counter()
        search(q[None], k)
        ms.append((time.perf_counter() - t) * 1000)
    return _percentiles(ms)


_SERVE = """
import sys, numpy as np, faiss
from espnet_speechclip.index import kind
index = faiss.read_index(sys.argv[1], faiss.IO_FLAG_MMAP if sys.argv[4] == "1" else 0)
if int(sys.argv[5]):  # 0: an exact index
    faiss.extract_index_ivf(index).nprobe = int(sys.argv[5])
stored = np.load(sys.argv[2], mmap_mode="r")  # the shards' float16 embeddings, memory-mapped
for q in np.load(sys.argv[3]):
    kind.search(index, q[None], 10, lambda ids: stored[ids].astype(np.float32))
rss = [line for line in open("/proc/self/status") if line.startswith(("VmRSS", "VmHWM"))]
print(" ".join(line.split()[1] for line in rss))
"""


def serving_rss(
    index_file: Path, stored: Path, queries: np.ndarray, mmap: bool, nprobe: int
) -> Dict[str, float]:
    """Resident memory (MiB) of a fresh process that loads the index, memory-maps the stored float16
    embeddings and serves ``queries`` with re-scoring: at the end and at its peak."""
    with tempfile.TemporaryDirectory() as tmp:
        np.save(Path(tmp) / "q.npy", queries)
        out = subprocess.run(
            [
                sys.executable,
                "-c",
                _SERVE,
                str(index_file),
                str(stored),
                str(Path(tmp) / "q.npy"),
                str(int(mmap)),
                str(nprobe),
            ],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        ).stdout.split()
    return {"rss_mib": int(out[1]) / 1024, "peak_rss_mib": int(out[0]) / 1024}


def vector_search(n: int, dim: int, clusters: int, memory_gb: float, n_queries: int) -> Tuple[Dict, Callable]:
    """The vector-only figures, and the index's search function (for the end-to-end timing)."""
    import faiss

    from espnet_speechclip.index import kind

    report: Dict = {"n": n, "dim": dim, "clusters": clusters, "faiss_threads": faiss.omp_get_max_threads()}
    t = time.perf_counter()
    x = clip_like(n, dim, clusters)
    queries = clip_like(n_queries, dim, clusters, seed=7, query=True)
    report["draw_s"] = time.perf_counter() - t
    pairs = np.random.default_rng(0).choice(n, (1000, 2))
    report["mean_pair_cosine"] = float((x[pairs[:, 0]] * x[pairs[:, 1]]).sum(1).mean())
    flat = faiss.IndexFlatIP(dim)
    flat.add(x)
    truth = flat.search(queries, 10)[1]
    report["exact"] = time_queries(flat.search, queries[:50])
    report["nearest_cosine_of_queries"] = float(flat.search(queries, 1)[0].mean())
    del flat

    factory = kind.choose_factory(n, dim, int(memory_gb * 2**30))
    report["factory"] = factory
    t = time.perf_counter()
    index = kind.new_index(factory, dim)
    sample = x[np.random.default_rng(1).choice(n, min(n, kind.train_size(factory)), replace=False)]
    kind.train(index, sample)
    report["train_s"] = time.perf_counter() - t
    kind.add_all(index, [x[s : s + 100_000] for s in range(0, n, 100_000)])
    # the build's own nprobe choice, on queries made from the collection as the build makes them
    build_q = kind.recall_queries(x[np.random.default_rng(2).choice(n, kind.RECALL_QUERIES, replace=False)])
    x16 = x.astype(np.float16)  # what the shards store; candidates are re-scored with it

    def vectors(ids):
        return x16[ids].astype(np.float32)

    nprobe, build_recall = kind.tune_nprobe(index, build_q, kind.exact_topk(build_q, [x]), vectors)
    report["build_s"] = time.perf_counter() - t
    report.update(nprobe=nprobe, build_recall_at_10=build_recall)
    report["recall_at_10"] = kind.recall_at(kind.search(index, queries, 10, vectors)[1], truth)
    report["recall_at_10_without_rerank"] = kind.recall_at(index.search(queries, 10)[1], truth)
    report["search"] = time_queries(lambda q, k: kind.search(index, q, k, vectors), queries)
    with tempfile.TemporaryDirectory() as tmp:
        f = Path(tmp) / "bench.index"
        faiss.write_index(index, str(f))
        report["index_bytes"] = f.stat().st_size
        report["float32_bytes"] = n * dim * 4
        report["index_fraction"] = report["index_bytes"] / report["float32_bytes"]
        np.save(Path(tmp) / "stored.npy", x16)
        report["serving"] = serving_rss(f, Path(tmp) / "stored.npy", queries, False, nprobe or 0)
        report["serving_mmap"] = serving_rss(f, Path(tmp) / "stored.npy", queries, True, nprobe or 0)
    return report, lambda q, k: kind.search(index, q, k, vectors)


def end_to_end(model: str, search, repeats: int) -> Dict:
    """A 5 s recording -> the model's embedding -> ``search`` (the million-item index) top 10."""
    from espnet_speechclip.inference.speech2image import Speech2Image

    s2i = Speech2Image.from_pretrained(model)
    wav = (0.1 * np.random.default_rng(0).standard_normal(5 * 16000)).astype(np.float32)
    s2i(wav)  # warm-up
    ms = []
    for _ in range(repeats):
        t = time.perf_counter()
        q = s2i(wav)[s2i.branches[0]]
        search(np.pad(q, ((0, 0), (0, 512 - q.shape[1]))) if q.shape[1] < 512 else q, 10)
        ms.append((time.perf_counter() - t) * 1000)
    return {
        "model": model,
        "seconds": 5,
        "repeats": repeats,
        "model_dim": int(q.shape[1]),
        **_percentiles(ms),
    }


def throughput(batch: int, seconds: float) -> Dict[str, float]:
    """Images/s of CLIP's image tower (preprocessing included) for the stand-in CLIP and ViT-B/32 with
    random weights, on random 256x256 images."""
    import torch
    from PIL import Image

    from espnet_speechclip.models.clip import CLIPImageEncoder

    images = [
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (256, 256, 3), np.uint8))
        for i in range(batch)
    ]
    conf = {
        "stand-in CLIP": dict(
            model_name="synth-clip",
            pretrained=None,
            config_file=str(ROOT / "espnet_speechclip/clip_configs/synth-clip.json"),
        ),
        "ViT-B-32": dict(model_name="ViT-B-32", pretrained=None),
    }
    out = {}
    for name, c in conf.items():
        tower = CLIPImageEncoder.from_config(c)
        with torch.no_grad():
            tower.embed_images(images[:2], device=torch.device("cpu"))
            done, t = 0, time.perf_counter()
            while time.perf_counter() - t < seconds or done == 0:
                tower.embed_images(images, device=torch.device("cpu"))
                done += batch
        out[name] = done / (time.perf_counter() - t)
    return out


def main(cmd: Optional[List[str]] = None) -> Dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--clusters", type=int, default=1000)
    p.add_argument("--memory_gb", type=float, default=4.0, help="the build's memory budget")
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--model", default=None, help="a trained SpeechCLIP: also time the end-to-end query")
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--throughput", action="store_true", help="also time image embedding")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--json", default=None)
    args = p.parse_args(cmd)
    report: Dict = {}

    def show(part: str) -> None:  # each part as soon as it is measured: a later failure loses nothing
        print(json.dumps({part: report[part]}, indent=1), flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=1) + "\n")

    report["vector"], search = vector_search(args.n, args.dim, args.clusters, args.memory_gb, args.queries)
    show("vector")
    if args.model:
        report["end_to_end"] = end_to_end(args.model, search, args.repeats)
        show("end_to_end")
    if args.throughput:
        report["images_per_s"] = throughput(args.batch, 10.0)
        show("images_per_s")
    return report


if __name__ == "__main__":
    main()
