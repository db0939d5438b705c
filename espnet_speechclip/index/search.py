"""An index folder opened for queries: :class:`EmbeddingIndex`, what every door searches through.

    from espnet_speechclip.index.search import EmbeddingIndex
    from espnet_speechclip.inference import Speech2Image

    s2i = Speech2Image.from_pretrained("exp/synth_parallel")
    index = EmbeddingIndex("photos.idx")              # nothing is embedded; large indexes memory-mapped
    s2i.search(index, speech="a.wav", topk=10)        # [Hit(index=id, item=path, score=cosine), ...]
    index.search(embeddings, k=10)                     # (Q, D) queries -> Q lists of hits

Opening reads the manifest and the FAISS index only; each hit's path comes from its shard's metadata,
read when a hit first lands in that shard. A query is refused unless it comes from the model and CLIP
the collection was embedded with (see :meth:`EmbeddingIndex.check`).
"""

from __future__ import annotations

import os
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Union

import numpy as np

from espnet_speechclip.errors import InputError
from espnet_speechclip.index import kind, layout
from espnet_speechclip.index.identity import made_from_of
from espnet_speechclip.inference.result_types import Hit

if TYPE_CHECKING:
    from espnet_speechclip.inference.speech2image import Speech2Image

PathLike = Union[str, Path]


class IndexMismatchError(InputError):
    """A query from another model or CLIP than the one the collection was embedded with."""


def _available_memory() -> int:
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 1 << 62


class EmbeddingIndex:
    """A built index folder (see :mod:`espnet_speechclip.index.layout`), ready to search.

    Args:
        root: the folder ``python -m espnet_speechclip.bin.index build`` wrote.
        mmap: memory-map the FAISS index instead of reading it into memory; None: when the file is
            larger than half the memory available now.

    Raises:
        IndexFolderError: no manifest, or a damaged / mismatched index file (the file named).
    """

    def __init__(self, root: PathLike, mmap: Optional[bool] = None):
        import faiss

        self.root = Path(root)
        manifest = layout.read_manifest(self.root)
        if manifest is None:
            raise layout.IndexFolderError(
                f"{self.root} is not a finished index (no {layout.MANIFEST}): run "
                f"python -m espnet_speechclip.bin.index build"
            )
        self.manifest = manifest
        self.modality: str = manifest["made_from"]["modality"]
        f = layout.faiss_file(self.root, self.modality)
        if not f.is_file():
            raise layout.IndexFolderError(f"{f} is missing: rerun the build to write it")
        self.mmap = f.stat().st_size > _available_memory() // 2 if mmap is None else bool(mmap)
        flags = faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY if self.mmap else 0
        try:
            self.faiss = faiss.read_index(str(f), flags)
        except RuntimeError as e:  # FAISS's message is a C++ trace; ours names the file
            raise layout.IndexFolderError(
                f"{f} is not a readable FAISS index (truncated or damaged): rerun the build's merge step "
                f"to rewrite it"
            ) from e
        if self.faiss.ntotal != manifest["count"] or self.faiss.d != manifest["dim"]:
            raise layout.IndexFolderError(
                f"{f} holds {self.faiss.ntotal} vectors of dimension {self.faiss.d}, but {layout.MANIFEST} "
                f"says {manifest['count']} of {manifest['dim']}: rerun the build's merge step"
            )
        if manifest.get("nprobe"):
            faiss.extract_index_ivf(self.faiss).nprobe = int(manifest["nprobe"])
        self.vectors = layout.ShardVectors(self.root, self.modality, manifest["shards"])
        self._metadata: Dict[int, List[str]] = {}
        self._checked: weakref.WeakSet[Any] = weakref.WeakSet()

    def __len__(self) -> int:
        return int(self.manifest["count"])

    @property
    def dim(self) -> int:
        return int(self.manifest["dim"])

    @property
    def made_from(self) -> Dict[str, Any]:
        return dict(self.manifest["made_from"])

    @property
    def folders(self) -> List[str]:
        """The folders holding the indexed files."""
        return list(self.manifest.get("folders", []))

    def describe(self) -> str:
        m = self.manifest
        recall = f", recall@10 {m['recall_at_10']:.3f}" if m.get("nprobe") else " (exact)"
        return f"{len(self)} {self.modality} embeddings in {self.root}, FAISS {m['factory']}{recall}"

    # ------------------------------------------------------------------------------------ checks
    def check_made_from(self, query_from: Dict[str, Any]) -> None:
        """Refuse queries embedded by another model / CLIP (``query_from``: :func:`made_from_of`)."""
        mine = self.manifest["made_from"]
        if query_from["clip"] != mine["clip"]:
            raise IndexMismatchError(
                f"{self.root} was embedded with CLIP {mine['clip']}, the query model uses CLIP "
                f"{query_from['clip']}: their embeddings are not comparable; build an index with this model"
            )
        if query_from["model"] != mine["model"]:
            built = str(mine["model"].get("weights", "?"))[:12]
            query = str(query_from["model"].get("weights", "?"))[:12]
            raise IndexMismatchError(
                f"{self.root} was embedded with another SpeechCLIP model (weights sha256 {built}..., the "
                f"query model's {query}...): build an index with this model"
            )

    def check(self, s2i: Speech2Image) -> None:
        """Refuse ``s2i`` unless the collection was embedded with it (the same weights and options,
        the same CLIP); remembered per model, so checking again costs nothing."""
        if s2i in self._checked:
            return
        self.check_made_from(made_from_of(s2i, self.modality, self.manifest["made_from"].get("branch")))
        self._checked.add(s2i)

    # ------------------------------------------------------------------------------------ search
    def item(self, i: int) -> str:
        """The path of the file with FAISS id ``i`` (its shard's metadata is read once, when first needed)."""
        position, row = self.vectors.locate(i)
        if position not in self._metadata:
            shard = self.vectors.shard_number(position)
            self._metadata[position] = layout.read_metadata(self.root, self.modality, shard)["path"]
        return self._metadata[position][row]

    def search(self, embeddings: np.ndarray, k: int = 10) -> List[List[Hit]]:
        """(Q, D) or (D,) query embeddings -> per query its ``k`` best hits (id, file path, cosine), best
        first. An exact index gives the same items and scores as a full ranking of the embeddings; an
        approximate one the stored embeddings' exact scores of the candidates it finds."""
        if k < 1:
            raise InputError(f"k must be at least 1, got {k}")
        q = np.asarray(embeddings, dtype=np.float32)
        q = q[None] if q.ndim == 1 else q
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise InputError(f"{self.root} holds {self.dim}-d embeddings, the query is {tuple(q.shape)}")
        # an approximate index's candidates are re-scored with the stored embeddings (see kind.search)
        scores, ids = kind.search(self.faiss, q, min(k, len(self)), self.vectors.__getitem__)
        return [
            [Hit(int(i), self.item(int(i)), float(s)) for s, i in zip(row_s, row_i) if i >= 0]
            for row_s, row_i in zip(scores, ids)
        ]
