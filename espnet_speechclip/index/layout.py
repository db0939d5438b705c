"""The folder an index lives in: clip-retrieval's layout plus a manifest.

::

    IDX/
      img_emb/img_emb_00000.npy          (n_0, D) float16 (float32: small), normalised (speech_emb/...)
      metadata/metadata_00000.parquet    n_0 rows: key, image_path (speech: audio_path), row for row
      index/image.index                  the FAISS index over every shard, in shard order
      index.json                         the manifest: model, CLIP, shards, the index kind and its recall
      unreadable.tsv                     files that could not be read: path <TAB> why
      progress/shard_00000.json          each finished shard's record (what it was made from, hashes)

The embeddings and metadata are what clip-retrieval's ``clip_inference`` writes, so autofaiss
(``autofaiss build_index --embeddings IDX/img_emb``) and clip-retrieval's back end read them; row ``r`` of
shard ``j`` is FAISS id ``sum(n_0..n_{j-1}) + r``. Shard numbers have five digits so that a sort by name
is the numeric order those tools use.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np

from espnet_speechclip.errors import InputError
from espnet_speechclip.files import write_text_atomic

PathLike = Union[str, Path]
MANIFEST = "index.json"
MANIFEST_FORMAT = 1
PATH_COLUMN = {"image": "image_path", "speech": "audio_path"}
EMB_PREFIX = {"image": "img_emb", "speech": "speech_emb"}


class IndexFolderError(InputError):
    """A damaged, incomplete or mismatched index folder; the message names the file."""


def emb_file(root: PathLike, modality: str, shard: int) -> Path:
    prefix = EMB_PREFIX[modality]
    return Path(root) / prefix / f"{prefix}_{shard:05d}.npy"


def metadata_file(root: PathLike, shard: int) -> Path:
    return Path(root) / "metadata" / f"metadata_{shard:05d}.parquet"


def record_file(root: PathLike, shard: int) -> Path:
    return Path(root) / "progress" / f"shard_{shard:05d}.json"


def faiss_file(root: PathLike, modality: str) -> Path:
    return Path(root) / "index" / f"{modality}.index"


def write_shard(
    root: PathLike, modality: str, shard: int, emb: np.ndarray, keys: Sequence[str], paths: Sequence[str]
) -> List[Path]:
    """Write shard ``shard``: embeddings (n, D) in their dtype and the metadata, each atomically.
    Returns the two files."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if len(emb) != len(keys) or len(keys) != len(paths):
        raise InputError(f"shard {shard}: {len(emb)} embeddings for {len(keys)} keys and {len(paths)} paths")
    npy, meta = emb_file(root, modality, shard), metadata_file(root, shard)
    for f in (npy, meta):
        f.parent.mkdir(parents=True, exist_ok=True)
    tmp = npy.with_name(f".{npy.stem}.{os.getpid()}.npy")
    np.save(tmp, emb)
    os.replace(tmp, npy)
    table = pa.table({"key": list(keys), PATH_COLUMN[modality]: list(paths)})
    tmp = meta.with_name(f".{meta.stem}.{os.getpid()}.parquet")
    pq.write_table(table, tmp)
    os.replace(tmp, meta)
    return [npy, meta]


def read_embeddings(root: PathLike, modality: str, shard: int, mmap: bool = False) -> np.ndarray:
    """Shard ``shard``'s embeddings (n, D). Raises IndexFolderError naming a missing or damaged file."""
    f = emb_file(root, modality, shard)
    try:
        emb = np.load(f, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise IndexFolderError(f"{f} is missing or damaged ({e}); rerun the build to rewrite it") from e
    if emb.ndim != 2:
        raise IndexFolderError(f"{f} holds an array of shape {emb.shape}, not (n, D)")
    return emb


def read_metadata(root: PathLike, modality: str, shard: int) -> Dict[str, List[str]]:
    """Shard ``shard``'s ``{"key": [...], "path": [...]}``. Raises IndexFolderError naming a bad file."""
    import pyarrow.parquet as pq

    f = metadata_file(root, shard)
    try:
        table = pq.read_table(f)
        return {
            "key": table.column("key").to_pylist(),
            "path": table.column(PATH_COLUMN[modality]).to_pylist(),
        }
    except (OSError, KeyError, ValueError) as e:  # pyarrow's ArrowInvalid is a ValueError
        raise IndexFolderError(f"{f} is missing or damaged ({e}); rerun the build to rewrite it") from e


def read_manifest(root: PathLike) -> Optional[Dict[str, Any]]:
    """The manifest of ``root``, None when there is none. Raises IndexFolderError when it is damaged."""
    f = Path(root) / MANIFEST
    if not f.is_file():
        return None
    try:
        manifest = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise IndexFolderError(f"{f} is damaged ({e}); rerun the build's merge step to rewrite it") from e
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise IndexFolderError(f"{f} is not an index manifest of this version (format {MANIFEST_FORMAT})")
    return manifest


def write_manifest(root: PathLike, manifest: Dict[str, Any]) -> Path:
    return write_text_atomic(Path(root) / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True) + "\n")


class ShardVectors:
    """The stored embeddings by FAISS id, read through memory maps of the shards (opened when first
    needed): what re-scores an approximate index's candidates exactly.

    Args:
        root, modality: the index folder.
        shard_rows: ``[(shard number, rows)]`` in FAISS id order.
    """

    def __init__(self, root: PathLike, modality: str, shard_rows: Sequence[Sequence[int]]):
        self.root, self.modality = Path(root), modality
        self._shards = [int(j) for j, _ in shard_rows]
        self._offsets = np.cumsum([0] + [int(n) for _, n in shard_rows])
        self._maps: Dict[int, np.ndarray] = {}

    def locate(self, i: int) -> tuple:
        """FAISS id -> (position of its shard in the list, row in the shard)."""
        position = int(np.searchsorted(self._offsets, i, side="right")) - 1
        return position, i - int(self._offsets[position])

    def shard_number(self, position: int) -> int:
        return self._shards[position]

    def __getitem__(self, ids: np.ndarray) -> np.ndarray:
        """(n,) FAISS ids -> (n, D) float32 embeddings."""
        out = []
        for i in np.asarray(ids).ravel():
            position, row = self.locate(int(i))
            if position not in self._maps:
                self._maps[position] = read_embeddings(
                    self.root, self.modality, self._shards[position], mmap=True
                )
            out.append(self._maps[position][row])
        return np.asarray(out, dtype=np.float32)
