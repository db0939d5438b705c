"""File helpers shared by every stage: content hashes and atomic writes."""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path
from typing import Iterator


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks (checkpoints and archives can be GBs)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@contextlib.contextmanager
def atomic_path(path: str | Path, keep_suffix: bool = False, unique: bool = False) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; when the block ends it is renamed onto ``path`` (one
    atomic step: a crash never leaves half a file under the final name, a reader never sees one), and
    when the block raises it is removed.

    Args:
        path: the final name (its folder must exist).
        keep_suffix: the temporary name ends with ``path``'s suffix, for writers that pick the format
            from it (``.x.partial.wav`` rather than ``.x.wav.partial``).
        unique: the temporary name holds the process id, for files that several processes may write
            at once.

    Example::

        with atomic_path(out_zip) as tmp:
            with zipfile.ZipFile(tmp, "w") as zf:
                ...
    """
    path = Path(path)
    tag = f".partial.{os.getpid()}" if unique else ".partial"
    tmp = path.with_name(f".{path.stem}{tag}{path.suffix}" if keep_suffix else f".{path.name}{tag}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` beside ``path`` and rename it into place (see :func:`atomic_path`), creating the
    folder if needed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path
