"""What the web page searches: an image set and, from a data dir, its spoken captions, embedded once.

``--images`` is either

- a folder of image files (keys are the file names): speech and text find images; there are no
  utterances to find, so the page hides its utterance searches; or
- a Kaldi-style data dir: ``img.scp`` gives the images; with ``wav.scp`` the utterances too (found by
  text and by image), ``text`` their transcripts and ``utt2img`` the image each describes (the page
  marks it).

Relative paths in the lists are read from the current directory, as everywhere in the recipe. Every
listed file is checked to exist before anything is embedded; embedding shows progress bars.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Union

import numpy as np

from espnet_speechclip.data.datadir import read_kv
from espnet_speechclip.errors import InputError, MissingFileError
from espnet_speechclip.index.search import EmbeddingIndex
from espnet_speechclip.inference.inputs import list_images
from espnet_speechclip.inference.result_types import Hit, Keyword, keywords_of, rank
from espnet_speechclip.inference.speech2image import Speech2Image

logger = logging.getLogger(__name__)

PathLike = Union[str, Path]


@dataclass
class MediaLists:
    """The files of an image folder or data dir, before embedding (keys sorted)."""

    source: Path
    images: Dict[str, str]  # image key -> file
    utterances: Dict[str, str] = field(default_factory=dict)  # utterance id -> audio file
    transcripts: Dict[str, str] = field(default_factory=dict)
    utt2img: Dict[str, str] = field(default_factory=dict)


def read_media_lists(source: PathLike, max_utterances: Optional[int] = None) -> MediaLists:
    """The images (and utterances) of an image folder or a data dir, every file checked to exist.

    Args:
        source: a folder of image files, or a data dir with ``img.scp`` (and ``wav.scp``, ``text``,
            ``utt2img``).
        max_utterances: keep only the first N utterances (sorted by id); None keeps all.

    Raises:
        FileNotFoundError: no such folder, or a listed file that does not exist (the first one named).
        MediaError: a folder without image files.
        ValueError: a wav.scp entry that is a command, not a file.
    """
    source = Path(source)
    if not source.is_dir():
        raise MissingFileError(f"--images {source} is neither an image folder nor a data dir")
    if not (source / "img.scp").is_file():
        if (source / "wav.scp").is_file():
            raise MissingFileError(f"data dir {source} has wav.scp but no img.scp: the page needs images")
        return MediaLists(source, {p.name: str(p) for p in list_images(source)})
    images = dict(sorted(read_kv(source / "img.scp").items()))
    if not images:
        raise MissingFileError(f"{source}/img.scp lists no image")
    _check_files(images, source / "img.scp", "image")
    lists = MediaLists(source, images)
    if (source / "wav.scp").is_file():
        utts = dict(sorted(read_kv(source / "wav.scp").items()))
        commands = [u for u, path in utts.items() if path.endswith("|")]
        if commands:
            raise InputError(
                f"{source}/wav.scp: utterance {commands[0]} is a command, not a file; the page reads audio "
                f"files (run the recipe's audio format stage, which writes dump/raw/<set>)"
            )
        if max_utterances is not None:
            utts = dict(list(utts.items())[:max_utterances])
        _check_files(utts, source / "wav.scp", "audio")
        lists.utterances = utts
        if (source / "text").is_file():
            text = read_kv(source / "text")
            lists.transcripts = {u: text[u] for u in utts if u in text}
        if (source / "utt2img").is_file():
            utt2img = read_kv(source / "utt2img")
            lists.utt2img = {u: utt2img[u] for u in utts if u in utt2img}
    return lists


def _check_files(table: Dict[str, str], listed_in: Path, kind: str) -> None:
    missing = [key for key, path in table.items() if not Path(path).is_file()]
    if missing:
        key = missing[0]
        raise MissingFileError(
            f"{listed_in}: {kind} file {table[key]} of {key} does not exist ({len(missing)} of "
            f"{len(table)} missing; relative paths are read from the current directory, {Path.cwd()})"
        )


@dataclass
class SearchIndex:
    """The page's searchable set, embedded once by one :class:`Speech2Image`.

    Attributes:
        lists: the files (see :class:`MediaLists`).
        image_keys: M image keys, the rows of ``image_emb`` (M, D_c).
        utt_ids: N utterance ids, the rows of each ``utt_emb[branch]`` (N, D_c); empty for a folder.
        keywords: per utterance, its keywords (cascaded and hybrid models).
    """

    lists: MediaLists
    image_keys: List[str]
    image_emb: np.ndarray
    utt_ids: List[str] = field(default_factory=list)
    utt_emb: Dict[str, np.ndarray] = field(default_factory=dict)
    keywords: Dict[str, List[Keyword]] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        s2i: Speech2Image,
        source: PathLike,
        max_utterances: Optional[int] = None,
        progress: bool = True,
    ) -> SearchIndex:
        """Read ``source`` (see :func:`read_media_lists`) and embed its images and utterances."""
        lists = read_media_lists(source, max_utterances)
        keys = list(lists.images)
        logger.info("embedding %d images of %s", len(keys), lists.source)
        image_emb = s2i.embed_images([lists.images[k] for k in keys], progress=progress)
        index = cls(lists, keys, image_emb)
        if lists.utterances:
            utts = list(lists.utterances)
            logger.info("embedding %d utterances of %s", len(utts), lists.source)
            out = s2i(
                [lists.utterances[u] for u in utts], names=[f"utterance {u}" for u in utts], progress=progress
            )
            index.utt_ids = utts
            index.utt_emb = {b: out[b] for b in s2i.branches}
            if "keyword_ids" in out:
                index.keywords = dict(zip(utts, keywords_of(out)))
        return index

    @property
    def has_utterances(self) -> bool:
        return bool(self.utt_ids)

    def image_path(self, key: str) -> str:
        return self.lists.images[key]

    def utterance_path(self, utt: str) -> str:
        return self.lists.utterances[utt]

    def images_for(self, query: np.ndarray, topk: Optional[int]) -> List[Hit]:
        """The images closest to a query embedding (D_c,), best first; hits carry image keys."""
        return rank(query, self.image_emb, self.image_keys, topk)

    def utterances_for(self, query: np.ndarray, branch: str, topk: Optional[int]) -> List[Hit]:
        """The utterances closest to a query embedding in ``branch``'s space; hits carry utterance ids."""
        if not self.has_utterances:
            raise InputError(f"{self.lists.source} is an image folder: it has no utterances to search")
        return rank(query, self.utt_emb[branch], self.utt_ids, topk)

    def folders(self) -> List[str]:
        """The folders holding the set's files (the page may serve files from these only)."""
        files = list(self.lists.images.values()) + list(self.lists.utterances.values())
        return sorted({str(Path(f).resolve().parent) for f in files})


# How many images a speech search through a prebuilt index ranks (the page shows the first topk).
INDEXED_RANKING = 100


class _SameKey(Mapping):
    """``{path: path}`` over an index's files without listing them: hits carry paths, cards look them up."""

    def __init__(self, n: int):
        self._n = n

    def __getitem__(self, key: str) -> str:
        return key

    def __iter__(self):
        return iter(())

    def __len__(self) -> int:
        return self._n


class _IndexedKeys(Sequence):
    """The first files of an index, read from its metadata only when asked for (the page's pick list)."""

    def __init__(self, index: EmbeddingIndex):
        self._index = index

    def __len__(self) -> int:
        return len(self._index)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self._index.item(j) for j in range(*i.indices(len(self)))]
        return self._index.item(i)


class IndexedImages(SearchIndex):
    """The page's search set from a prebuilt image index (``demo --index IDX``): nothing is embedded at
    start-up; searches go through the index (hits carry file paths, the keys shown on the page)."""

    def __init__(self, index: EmbeddingIndex):
        if index.modality != "image":
            raise InputError(
                f"{index.root} indexes recordings; the page's --index takes an image index (recordings are "
                f"searched with python -m espnet_speechclip.bin.query --index)"
            )
        lists = MediaLists(index.root, _SameKey(len(index)))  # type: ignore[arg-type]
        super().__init__(lists, _IndexedKeys(index), np.zeros((0, index.dim), np.float32))  # type: ignore[arg-type]
        self.embedding_index = index

    def images_for(self, query: np.ndarray, topk: Optional[int]) -> List[Hit]:
        return self.embedding_index.search(query, topk or INDEXED_RANKING)[0]

    def folders(self) -> List[str]:
        return self.embedding_index.folders
