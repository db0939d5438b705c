"""Building an index folder (see :mod:`.layout`): embed the collection shard by shard, then index it.

- Resumable: every shard is written atomically and then recorded (``progress/shard_<j>.json``, with
  what it was made from and its files' hashes); a rerun skips the shards whose record matches and whose
  files are intact, so a build killed at any point continues from the last finished shard.
- Shardable: with ``part = (i, N)`` only the shards ``j % N == i - 1`` are embedded and nothing is
  indexed; the same command without ``part`` (the merge step) finds every shard done and builds the
  FAISS index, exactly as one process would have.
- Growable: :func:`add_items` embeds only files the index does not hold yet into new shards and adds
  them to the FAISS index as it is.

The manifest (``index.json``) is removed before the FAISS index is (re)written and written last: a
folder without one is not an index, and queries say so.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from espnet_speechclip.index import kind, layout
from espnet_speechclip.index.collection import Item, chunks, folders, mine
from espnet_speechclip.provenance import check_record, digest, explain, read_record, write_record

logger = logging.getLogger(__name__)

PathLike = Union[str, Path]
SHARD_KIND = "index-shard"
DEFAULT_SHARD_SIZE = 10_000
DEFAULT_MEMORY = 4 * 2**30


@dataclass
class BuildResult:
    """What a build did: shards embedded now / found done, files left out, and (merge) the manifest."""

    embedded: List[int] = field(default_factory=list)
    reused: List[int] = field(default_factory=list)
    unreadable: List[Tuple[str, str]] = field(default_factory=list)
    manifest: Optional[Dict[str, Any]] = None


def _rel(root: PathLike, f: Path) -> str:
    return str(f.relative_to(root))


def shard_made_from(base: Dict[str, Any], items: Sequence[Item]) -> Dict[str, Any]:
    """A shard's record: the index's ``made_from`` and its items (keys and paths, by digest)."""
    return {**base, "items": digest([[it.key, it.path] for it in items])}


def shard_done(root: PathLike, shard: int, made_from: Dict[str, Any]) -> bool:
    """Whether shard ``shard`` was finished from ``made_from`` and its files are intact."""
    return check_record(layout.record_file(root, shard), SHARD_KIND, made_from, base=root) is None


def embed_shards(
    root: PathLike,
    base: Dict[str, Any],
    plan: Sequence[Tuple[int, List[Item]]],
    embed: Callable[[List[Item], Any], Tuple[np.ndarray, List[Item], List[Tuple[str, str]]]],
    progress: bool = True,
) -> BuildResult:
    """Embed every shard of ``plan`` that is not done yet (``embed(items, bar)`` -> embeddings, the
    items embedded, the files left out) and record it; returns what was embedded and reused."""
    from tqdm import tqdm

    result = BuildResult()
    todo = []
    for shard, items in plan:
        if shard_done(root, shard, shard_made_from(base, items)):
            result.reused.append(shard)
        else:
            todo.append((shard, items))
    if result.reused:
        logger.info("%d shard(s) already finished in %s: continuing after them", len(result.reused), root)
    unit = "img" if base["modality"] == "image" else "utt"
    total = sum(len(items) for _, items in todo)
    with tqdm(total=total, desc=f"embedding {base['modality']}", unit=unit, disable=not progress) as bar:
        for shard, items in todo:
            record = layout.record_file(root, shard)
            record.unlink(missing_ok=True)  # a shard being rewritten has no valid record meanwhile
            emb, ok, failed = embed(items, bar)
            emb = emb.astype(base["dtype"])
            files = layout.write_shard(
                root, base["modality"], shard, emb, [i.key for i in ok], [i.path for i in ok]
            )
            write_record(
                record,
                SHARD_KIND,
                shard_made_from(base, items),
                outputs={_rel(root, f): f for f in files},
                extra={"rows": len(ok), "unreadable": failed},
            )
            result.embedded.append(shard)
    for shard, _ in plan:
        rec = read_record(layout.record_file(root, shard))
        if rec is not None:
            result.unreadable += [tuple(x) for x in rec.get("extra", {}).get("unreadable", [])]
    return result


def check_same_index(root: PathLike, base: Dict[str, Any]) -> None:
    """Refuse to build into a folder indexed with another model, CLIP, branch or dtype."""
    manifest = layout.read_manifest(root)
    if manifest is not None and manifest["made_from"] != base:
        raise layout.IndexFolderError(
            f"{root} holds an index made otherwise ({'; '.join(explain(manifest['made_from'], base))}): "
            f"give another --out, or remove it"
        )


def build(
    root: PathLike,
    base: Dict[str, Any],
    items: Sequence[Item],
    embed: Callable,
    shard_size: int = DEFAULT_SHARD_SIZE,
    part: Optional[Tuple[int, int]] = None,
    memory_bytes: int = DEFAULT_MEMORY,
    progress: bool = True,
) -> BuildResult:
    """Embed ``items`` into ``root`` (only part ``part`` = (i, N) of the shards when given) and, without
    ``part``, index them; ``base`` is what the index is made from (model, CLIP, modality, branch, dtype)."""
    check_same_index(root, base)
    plan = chunks(items, shard_size)
    mine_plan = [(j, its) for j, its in plan if part is None or mine(j, part)]
    result = embed_shards(root, base, mine_plan, embed, progress)
    if part is None:
        extra = {
            "folders": folders([it.path for it in items]),
            "unreadable": len(result.unreadable),
            "shard_size": shard_size,
        }
        result.manifest = write_index(root, base, [j for j, _ in plan], memory_bytes, extra)
    return result


def _rows(root: PathLike, shard: int) -> int:
    rec = read_record(layout.record_file(root, shard))
    if rec is None:
        raise layout.IndexFolderError(
            f"{layout.record_file(root, shard)} is missing: shard {shard} is not finished (rerun the build)"
        )
    return int(rec["extra"]["rows"])


def _shard_arrays(root: PathLike, modality: str, shards: Sequence[int]):
    for j in shards:
        yield layout.read_embeddings(root, modality, j, mmap=True)


def _sample(root: PathLike, modality: str, shards: Sequence[int], rows: Sequence[int], m: int, seed: int = 0):
    """``m`` rows drawn uniformly from the shards (float32), reading only the shards' memory maps."""
    total = sum(rows)
    pick = np.sort(np.random.default_rng(seed).choice(total, min(m, total), replace=False))
    out, offset = [], 0
    for j, n in zip(shards, rows):
        local = pick[(pick >= offset) & (pick < offset + n)] - offset
        if len(local):
            out.append(np.asarray(layout.read_embeddings(root, modality, j, mmap=True)[local], np.float32))
        offset += n
    return np.concatenate(out)


def write_index(
    root: PathLike,
    base: Dict[str, Any],
    shards: Sequence[int],
    memory_bytes: int,
    extra: Dict[str, Any],
) -> Dict[str, Any]:
    """Build the FAISS index over ``shards`` (all finished), measure its recall, write the manifest
    (with ``extra``: the folders the files live in, the unreadable count, the shard size)."""
    modality = base["modality"]
    rows = [_rows(root, j) for j in shards]
    n = sum(rows)
    if n == 0:
        raise layout.IndexFolderError(f"{root}: no file of the collection could be read (see unreadable.tsv)")
    dim = layout.read_embeddings(root, modality, shards[0], mmap=True).shape[1]
    (Path(root) / layout.MANIFEST).unlink(missing_ok=True)
    factory = kind.choose_factory(n, dim, memory_bytes)
    logger.info("indexing %d embeddings of dimension %d with FAISS %s", n, dim, factory)
    index = kind.new_index(factory, dim)
    if kind.train_size(factory):
        kind.train(index, _sample(root, modality, shards, rows, kind.train_size(factory)))
    kind.add_all(index, _shard_arrays(root, modality, shards))
    manifest = _finish(root, base, index, list(zip(shards, rows)), factory, memory_bytes)
    manifest.update(extra)
    _write_unreadable(root, shards)
    layout.write_manifest(root, manifest)
    return manifest


def _finish(root, base, index, shard_rows, factory, memory_bytes) -> Dict[str, Any]:
    """Tune nprobe on recall queries, write the FAISS file atomically; the manifest's fields."""
    import faiss

    modality = base["modality"]
    shards, rows = [j for j, _ in shard_rows], [n for _, n in shard_rows]
    queries = kind.recall_queries(_sample(root, modality, shards, rows, kind.RECALL_QUERIES, seed=1))
    truth = kind.exact_topk(queries, _shard_arrays(root, modality, shards), min(kind.RECALL_K, sum(rows)))
    vectors = layout.ShardVectors(root, modality, shard_rows)
    nprobe, recall = kind.tune_nprobe(index, queries, truth, vectors.__getitem__)
    f = layout.faiss_file(root, modality)
    f.parent.mkdir(parents=True, exist_ok=True)
    tmp = f.with_name(f".{f.name}.{os.getpid()}")
    faiss.write_index(index, str(tmp))
    os.replace(tmp, f)
    return {
        "format": layout.MANIFEST_FORMAT,
        "made_from": base,
        "shards": [[j, n] for j, n in shard_rows],
        "count": int(index.ntotal),
        "dim": int(index.d),
        "factory": factory,
        "nprobe": nprobe,
        "memory_budget": memory_bytes,
        "recall_at_10": recall,
        "recall_queries": len(queries),
        "rerank": None if nprobe is None else kind.RERANK,
        "index_bytes": f.stat().st_size,
    }


def _write_unreadable(root: PathLike, shards: Sequence[int]) -> None:
    from espnet_speechclip.files import write_text_atomic

    lines = []
    for j in shards:
        rec = read_record(layout.record_file(root, j)) or {}
        lines += [
            f"{path}\t{' '.join(why.split())}\n" for path, why in rec.get("extra", {}).get("unreadable", [])
        ]
    write_text_atomic(Path(root) / "unreadable.tsv", "".join(lines))


def add_items(
    root: PathLike,
    base: Dict[str, Any],
    items: Sequence[Item],
    embed: Callable,
    progress: bool = True,
) -> BuildResult:
    """Embed the files of ``items`` that the index does not hold into new shards and add them to its
    FAISS index (no old embedding is recomputed; the index kind stays). Resumable like :func:`build`."""
    import faiss

    manifest = layout.read_manifest(root)
    if manifest is None:
        raise layout.IndexFolderError(f"{root} has no {layout.MANIFEST}: build the index first")
    check_same_index(root, base)
    shard_size = int(manifest.get("shard_size", DEFAULT_SHARD_SIZE))
    indexed = [j for j, _ in manifest["shards"]]
    on_disk = sorted(int(p.stem.split("_")[1]) for p in (Path(root) / "progress").glob("shard_*.json"))
    # shards finished after the last index update (an add that was killed) are indexed now, not re-embedded
    pending = [
        j for j in on_disk if j not in indexed and read_record(layout.record_file(root, j)) is not None
    ]
    known = set()
    for j in indexed + pending:
        known.update(layout.read_metadata(root, base["modality"], j)["path"])
    new = [it for it in items if it.path not in known]
    first = max(indexed + pending) + 1
    plan = chunks(new, shard_size, first=first) if new else []
    result = embed_shards(root, base, plan, embed, progress)
    added = pending + [j for j, _ in plan]
    if not added:
        result.manifest = manifest
        return result
    index = faiss.read_index(str(layout.faiss_file(root, base["modality"])))
    (Path(root) / layout.MANIFEST).unlink(missing_ok=True)
    kind.add_all(index, _shard_arrays(root, base["modality"], added))
    shard_rows = [tuple(x) for x in manifest["shards"]] + [(j, _rows(root, j)) for j in added]
    out = _finish(root, base, index, shard_rows, manifest["factory"], manifest["memory_budget"])
    out.update(
        folders=sorted(set(manifest["folders"]) | set(folders([it.path for it in new]))),
        unreadable=manifest["unreadable"] + len(result.unreadable),
        shard_size=shard_size,
    )
    _write_unreadable(root, [j for j, _ in shard_rows])
    layout.write_manifest(root, out)
    result.manifest = out
    return result
