"""What a collection is and how it is cut into shards.

A collection is a list of files, given as

- a folder: every image (or audio) file under it, recursively, by extension, sorted by path;
- a Kaldi-style list ``img.scp`` / ``wav.scp`` (any file ending in ``.scp``): ``key path`` lines;
- a list file: one path per line.

Keys are the scp keys, else the paths. The sorted list is cut into consecutive chunks of ``shard_size``
items; chunk ``j`` becomes shard ``j``, and with ``--shard i/N`` process ``i`` (1-based) embeds the chunks
``j`` with ``j % N == i - 1``. The cut depends only on the list, so N processes write exactly the shards
one process would.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import List, Sequence, Tuple, Union

from espnet_speechclip.errors import InputError, MissingFileError

PathLike = Union[str, Path]
IMAGE, SPEECH = "image", "speech"
# soundfile's usual containers; PIL's registered extensions for images
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".opus", ".aiff", ".aif")


@dataclass(frozen=True)
class Item:
    """One file of a collection: its key (scp key, else the path) and its path."""

    key: str
    path: str


def _extensions(modality: str) -> Tuple[str, ...]:
    if modality == SPEECH:
        return AUDIO_EXTENSIONS
    from PIL import Image

    return tuple(sorted({e.lower() for e in Image.registered_extensions()}))


def read_collection(source: PathLike, modality: str) -> List[Item]:
    """The items of ``source`` (folder, ``.scp`` list or list file), sorted by key.

    Raises:
        MissingFileError: no such folder or file.
        InputError: an empty collection, a malformed or duplicated scp line, a piped command.
    """
    source = Path(source)
    if source.is_dir():
        exts = _extensions(modality)
        items = [
            Item(str(p), str(p))
            for p in sorted(source.rglob("*"))
            if p.suffix.lower() in exts and p.is_file()
        ]
    elif source.is_file():
        items = _read_list(source, keyed=source.suffix == ".scp")
    else:
        raise MissingFileError(f"collection {source} is neither a folder nor a list file")
    if not items:
        raise InputError(f"collection {source} holds no {modality} files")
    return sorted(items, key=lambda it: it.key)


def _read_list(path: Path, keyed: bool) -> List[Item]:
    items, seen = [], set()
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        if keyed:
            key, _, file = line.partition(" ")
            file = file.strip()
            if not file:
                raise InputError(f"{path}:{n}: expected 'key path', got {line!r}")
        else:
            key = file = line
        if file.endswith("|"):
            raise InputError(f"{path}:{n}: {key} is a command, not a file; list files")
        if key in seen:
            raise InputError(f"{path}:{n}: {key} is listed twice")
        seen.add(key)
        items.append(Item(key, file))
    return items


def parse_part(text: str) -> Tuple[int, int]:
    """``"i/N"`` (1 <= i <= N) -> (i, N). Raises InputError otherwise."""
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise InputError(f"--shard takes i/N (e.g. 2/8), got {text!r}") from None
    if not 1 <= i <= n:
        raise InputError(f"--shard {text}: need 1 <= i <= N")
    return i, n


def chunks(items: Sequence[Item], shard_size: int, first: int = 0) -> List[Tuple[int, List[Item]]]:
    """``[(shard number, items)]``: consecutive runs of ``shard_size``, numbered from ``first``."""
    if shard_size < 1:
        raise InputError(f"shard size must be at least 1, got {shard_size}")
    return [
        (first + j, list(items[s : s + shard_size])) for j, s in enumerate(range(0, len(items), shard_size))
    ]


def mine(shard: int, part: Tuple[int, int]) -> bool:
    """Whether process ``part`` = (i, N) embeds ``shard``."""
    i, n = part
    return shard % n == i - 1


def folders(paths: Sequence[str]) -> List[str]:
    """The fewest folders that hold every path (absolute; a folder inside another listed one is dropped):
    what a web page may serve files from."""
    parents = sorted({os.path.dirname(os.path.abspath(p)) for p in paths})
    out: List[str] = []
    for p in parents:
        if not out or not (p == out[-1] or p.startswith(out[-1].rstrip(os.sep) + os.sep)):
            out.append(p)
    return out
