"""What a derived artifact was made from: one JSON record beside it, written last, checked before reuse.

Every stage output that a later run may reuse or build on (the formatted audio lists, the image-embedding
cache, the stand-in CLIP, an experiment folder, decode folders, results) carries a record::

    {"format": 1, "kind": "decode", "made_from": {...}, "outputs": {name: file entry}, "hashes": {...}}

- ``made_from``: what changes the artifact: content hashes of its inputs, the model or CLIP fingerprint,
  the options. A rerun compares it with what it would make now; any difference means rebuild (or, for
  an experiment folder, refuse), and :func:`explain` names the differences.
- ``outputs``: the files the artifact consists of, each with its sha256, so that a truncated, altered
  or deleted file is noticed rather than trusted.
- ``hashes``: content hashes of the inputs, kept for the next run (see :class:`FileHashes`).

The record is written atomically after every output. An artifact rewritten in place either has its
record removed first (its readers then rebuild or refuse it) or keeps the old record until the new one
replaces it (the results pages: the old record's sha256 no longer match the new files). Either way an
interrupted writer (``kill -9``, a full disk) leaves an artifact without a valid record, which is rebuilt
or refused, never trusted.

Hashing cost. Content hashes of a large corpus (SpokenCOCO: about 600k wavs and 123k images) are computed
once: :class:`FileHashes` reuses a recorded hash while a file's size, mtime and ctime are unchanged (the
test git uses; ctime cannot be set back by ``touch`` or ``rsync -t``), and rehashes files modified within
two seconds of their last hashing, whose timestamps cannot tell a quick rewrite apart. A rerun on
unchanged data therefore costs one ``stat`` per file.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Union

from espnet_speechclip.errors import MissingFileError, RunError
from espnet_speechclip.files import sha256_file, write_text_atomic

PathLike = Union[str, Path]
RECORD_FORMAT = 1
RECORD_NAME = ".made_from.json"
# A file modified this close to its hashing may change again within one timestamp tick unnoticed.
_RACY_NS = 2_000_000_000


class ProvenanceError(RunError):
    """An artifact that does not match what it must be made from (stale, incomplete or altered), where
    the stage refuses rather than rebuilds. The message says what differs and what to run."""


def record_path(artifact: PathLike) -> Path:
    """Where the record of ``artifact`` lives: ``<dir>/.made_from.json`` for a folder,
    ``<parent>/.<name>.made_from.json`` for a file (a folder is recognised by an existing directory or
    a trailing ``/``)."""
    s = str(artifact)
    p = Path(artifact)
    if s.endswith(("/", os.sep)) or p.is_dir():
        return p / RECORD_NAME
    return p.with_name(f".{p.name}{RECORD_NAME}")


def digest(obj: Any) -> str:
    """sha256 of a JSON-able object in canonical form (sorted keys): a short identity for a dict."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


# ------------------------------------------------------------------------------------------ hashing
def _stat_key(path: PathLike) -> Optional[List[int]]:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def file_entry(path: PathLike, sha256: Optional[str] = None) -> Dict[str, Any]:
    """``{"sha256", "stat", "hashed_ns"}`` of an existing file (hashing it unless ``sha256`` is given)."""
    stat = _stat_key(path)
    if stat is None:
        raise MissingFileError(f"{path} does not exist")
    return {"sha256": sha256 or sha256_file(path), "stat": stat, "hashed_ns": time.time_ns()}


def _entry_still_valid(entry: Mapping[str, Any], stat: Optional[List[int]]) -> bool:
    if stat is None or not isinstance(entry, Mapping) or entry.get("stat") != stat:
        return False
    # racy: modified within _RACY_NS of its hashing; a same-size rewrite in the same tick looks unchanged
    return int(entry.get("hashed_ns", 0)) - stat[1] >= _RACY_NS


class FileHashes:
    """Content hashes of files, reusing earlier ones while a file's stat is unchanged.

    Args:
        *previous: ``{path: file entry}`` maps from earlier records (later ones win).

    Example::

        hashes = FileHashes(old_record.get("hashes", {}))
        sha = hashes.sha256("dump/audio/x.wav")          # hashed only if it changed
        record["hashes"] = hashes.entries                 # for the next run
    """

    def __init__(self, *previous: Optional[Mapping[str, Any]]):
        self._old: Dict[str, Any] = {}
        for p in previous:
            if isinstance(p, Mapping):
                self._old.update(p)
        self.entries: Dict[str, Dict[str, Any]] = {}
        self.hashed = 0  # files actually read by this object (the rest were reused)

    def known(self, path: PathLike) -> Optional[str]:
        """The hash of ``path`` if it can be reused without reading the file, else None."""
        key = str(path)
        if key in self.entries:
            return self.entries[key]["sha256"]
        old = self._old.get(key)
        if old is not None and _entry_still_valid(old, _stat_key(path)):
            self.entries[key] = dict(old)
            return old["sha256"]
        return None

    def recorded(self, path: PathLike) -> Optional[str]:
        """The hash an earlier record gave ``path``, whatever the file is now (compare it with
        :meth:`sha256` to learn whether the content is still the recorded one)."""
        old = self._old.get(str(path))
        return old.get("sha256") if isinstance(old, Mapping) else None

    def sha256(self, path: PathLike) -> str:
        """sha256 of ``path``'s bytes. Raises FileNotFoundError naming a missing file."""
        sha = self.known(path)
        if sha is None:
            self.entries[str(path)] = file_entry(path)
            self.hashed += 1
            sha = self.entries[str(path)]["sha256"]
        return sha

    def sha256_many(self, paths: Iterable[PathLike], threads: int = 4) -> Dict[str, str]:
        """``{path: sha256}``; files that changed are hashed in ``threads`` threads (hashlib releases
        the GIL). Raises FileNotFoundError naming the first missing file."""
        paths = [str(p) for p in paths]
        todo = sorted({p for p in paths if self.known(p) is None})
        if todo:
            with ThreadPoolExecutor(max(1, threads)) as pool:
                for p, entry in zip(todo, pool.map(file_entry, todo)):
                    self.entries[p] = entry
            self.hashed += len(todo)
        return {p: self.entries[p]["sha256"] for p in paths}

    def add(self, path: PathLike, entry: Mapping[str, Any]) -> None:
        """Record an entry computed elsewhere (e.g. by a worker process that read the file anyway)."""
        self.entries[str(path)] = dict(entry)


def content_digest(pairs: Iterable[tuple]) -> str:
    """One hash for ``(name, sha256)`` pairs, e.g. every utterance's audio: order-independent."""
    h = hashlib.sha256()
    for name, sha in sorted(pairs):
        h.update(f"{name} {sha}\n".encode())
    return h.hexdigest()


# ------------------------------------------------------------------------------------------ records
def read_record(path: PathLike) -> Optional[Dict[str, Any]]:
    """The record at ``path`` (see :func:`record_path`), or None when missing, unreadable or not a record."""
    try:
        record = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("format") != RECORD_FORMAT or "made_from" not in record:
        return None
    return record


def clear_record(path: PathLike) -> None:
    """Remove a record before its artifact is rewritten: an interrupted rewrite then has none."""
    Path(path).unlink(missing_ok=True)


def write_record(
    path: PathLike,
    kind: str,
    made_from: Mapping[str, Any],
    outputs: Optional[Mapping[str, PathLike]] = None,
    hashes: Optional[Mapping[str, Any]] = None,
    extra: Optional[Mapping[str, Any]] = None,
    known: Optional[FileHashes] = None,
    output_entries: Optional[Mapping[str, Mapping[str, Any]]] = None,
) -> Dict[str, Any]:
    """Write the record of a finished artifact, atomically. Call it after every output is in place.

    Args:
        path: the record file (see :func:`record_path`).
        kind: what the artifact is (``"decode"``, ``"image-cache"``, ...); a record of another kind
            never matches.
        made_from: JSON-able inputs, fingerprints and options.
        outputs: ``{name: file}`` of the artifact's files; each is hashed (or taken from ``known``).
        output_entries: ``{name: file entry}`` of outputs hashed elsewhere (e.g. by the worker that
            wrote them), taken as they are.
        hashes: input hashes to keep for the next run (:attr:`FileHashes.entries`).
        extra: anything else worth keeping (counts); never compared.
    """
    out_entries = {}
    for name, f in (outputs or {}).items():
        sha = known.known(f) if known is not None else None
        out_entries[name] = file_entry(f, sha)
    out_entries.update({name: dict(e) for name, e in (output_entries or {}).items()})
    record = {
        "format": RECORD_FORMAT,
        "kind": kind,
        "made_from": made_from,
        "outputs": out_entries,
        "hashes": dict(hashes or {}),
        "extra": dict(extra or {}),
    }
    write_text_atomic(path, json.dumps(record, indent=1, sort_keys=True) + "\n")
    return record


def explain(old: Any, new: Any, prefix: str = "", limit: int = 5) -> List[str]:
    """Human-readable differences between two ``made_from`` values: ``["steps: 100 -> 400", ...]``."""
    out: List[str] = []

    def short(v: Any) -> str:
        s = json.dumps(v, sort_keys=True) if not isinstance(v, str) else v
        return s if len(s) <= 60 else s[:28] + "..." + s[-28:]

    def walk(a: Any, b: Any, where: str) -> None:
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            for k in sorted(set(a) | set(b), key=str):
                walk(a.get(k, "<absent>"), b.get(k, "<absent>"), f"{where}.{k}" if where else str(k))
        elif a != b:
            out.append(f"{where or 'value'}: {short(a)} -> {short(b)}")

    walk(old, new, prefix)
    if len(out) > limit:
        out = out[:limit] + [f"... ({len(out) - limit} more)"]
    return out


def outputs_intact(record: Mapping[str, Any], base: Optional[PathLike] = None) -> Optional[str]:
    """None when every output file of ``record`` is as recorded; else what is wrong with the first
    that is not (missing, or changed since it was written). Relative names resolve against ``base``."""
    outputs = record.get("outputs", {})
    hashes = FileHashes({_resolve(n, base): e for n, e in outputs.items()})
    for name, entry in outputs.items():
        f = _resolve(name, base)
        if not os.path.isfile(f):
            return f"{f} is missing"
        if hashes.sha256(f) != entry.get("sha256"):
            return f"{f} changed since it was written (truncated or altered)"
    return None


def _resolve(name: str, base: Optional[PathLike]) -> str:
    return name if base is None or os.path.isabs(name) else str(Path(base) / name)


def check_record(
    path: PathLike,
    kind: str,
    made_from: Mapping[str, Any],
    base: Optional[PathLike] = None,
    keys: Optional[Iterable[str]] = None,
) -> Optional[str]:
    """Why the artifact recorded at ``path`` cannot be reused as made from ``made_from``; None if it can.

    ``keys`` restricts the comparison to those top-level keys of ``made_from`` (for a checker that
    knows only part of the inputs, e.g. scoring knows the model and data, not the image cache path).
    Output names resolve against ``base`` (default: the record's folder).
    """
    record = read_record(path)
    if record is None:
        return "has no record of a finished run (never finished, interrupted, or written by an older version)"
    if record.get("kind") != kind:
        return f"is a {record.get('kind')} record, not {kind}"
    old = record["made_from"]
    if keys is not None:
        keys = list(keys)
        old = {k: old.get(k, "<absent>") for k in keys}
        made_from = {k: made_from.get(k, "<absent>") for k in keys}
    if old != made_from:
        return "was made from other inputs (" + "; ".join(explain(old, made_from)) + ")"
    broken = outputs_intact(record, base if base is not None else Path(path).parent)
    if broken:
        return f"is damaged: {broken}"
    return None
