"""The decode folder: what inference writes for a data dir, and the one reader of it.

Layout of ``output_dir`` (written by :func:`embed_datadir`, or by :func:`embed_utterances` in parallel
parts joined by :func:`merge_utterance_parts`, then :func:`embed_images_of_datadir`):

- ``utt_list`` (N utterance ids, sorted), ``speech_<branch>.npy`` (N, D_c) per branch;
- ``image_list`` (M unique image keys), ``image.npy`` (M, D_c), ``utt2img`` (utterance -> image key);
- ``text`` (utterance -> transcript) and ``text.npy`` (N, D_c) CLIP text embeddings of the transcripts
  (zero-shot side), when the data dir has ``text``;
- cascaded: ``keyword_ids.npy`` (N, K) CLIP ids, ``keyword_scores.npy`` (N, K) cosine, ``keywords``
  (``utt kw_1 ... kw_K`` subword strings), ``keyword_neighbour_ids.npy`` (N, K, 5) CLIP ids of each
  keyword's 5 nearest codebook subwords (cosine, nearest first: the authors' keyword hit rate),
  ``keyword_spans.npy`` (N, K, 2) float32: where in the utterance each keyword was heard, start and end
  in seconds (a CIF keyword's unit between its firing boundaries, a K-token keyword's frames around its
  attention peak, NaN where that has no confident peak; see
  :class:`espnet_speechclip.inference.result_types.KeywordTiming`; the attention itself is not kept:
  K x T floats per utterance would outweigh everything else in the folder);
- variable-length keywords (cascaded+ / hybrid+): also ``keyword_lengths.npy`` (N,) keywords per
  utterance; K is the largest, and the slots beyond an utterance's own keywords hold id -1, score 0,
  neighbour ids -1 and span NaN (``keywords`` lists only the utterance's own);
- ``words.ctm``: the data dir's word alignment, when it has one (keyword timing is scored against it).

- ``scores.json`` (written by the inference entry point) and ``.made_from.json``, the record
  (:mod:`espnet_speechclip.provenance`) of the model (weights and options), the data dir (lists, audio and
  image files, by content) and the image cache it was made from, written last.

Scoring, the results page, its picture and the acceptance check read it through :class:`DecodeDir`;
whoever reads a decode folder as the result of a model first calls :func:`require_current`, which refuses
a folder without a record (an inference that was interrupted or failed) or with a record of another model
or other data.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

import numpy as np
import torch

from espnet_speechclip.data.datadir import WORD_ALIGNMENT, WordSpan, read_ctm, read_kv
from espnet_speechclip.data.identity import datadir_identity
from espnet_speechclip.errors import InputError, MissingFileError, MissingKeyError
from espnet_speechclip.inference.result_types import KEYWORD_PADDING, concat_padded
from espnet_speechclip.models.outputs import BRANCHES
from espnet_speechclip.provenance import (
    RECORD_NAME,
    FileHashes,
    ProvenanceError,
    check_record,
    clear_record,
    read_record,
    write_record,
)

logger = logging.getLogger(__name__)

PathLike = Union[str, Path]
PER_UTTERANCE_ARRAYS = tuple(f"speech_{b}.npy" for b in BRANCHES) + (
    "keyword_ids.npy",
    "keyword_scores.npy",
    "keyword_spans.npy",
    "keyword_lengths.npy",
    "keyword_neighbour_ids.npy",
    "text.npy",
)
# Every file inference writes into a decode folder (or a part of one).
OUTPUT_FILES = PER_UTTERANCE_ARRAYS + (
    "utt_list",
    "keywords",
    "image.npy",
    "image_list",
    "utt2img",
    "text",
    WORD_ALIGNMENT,
    "scores.json",
)
RECORD_KIND = "decode"
PART_RECORD_KIND = "decode-part"


# ------------------------------------------------------------------------------------------ provenance
def decode_made_from(
    model: dict, data_dir: PathLike, image_emb_scp: Optional[PathLike] = None, hashes=None
) -> Dict:
    """What a decode folder is made from: ``model``
    (:func:`espnet_speechclip.identity.model_identity`), the data dir by content
    (:func:`espnet_speechclip.data.identity.datadir_identity`) and the image cache list (its entries point
    at content-addressed embeddings), if one was used."""
    hashes = hashes if hashes is not None else FileHashes()
    return {
        "model": model,
        "data": datadir_identity(data_dir, hashes),
        "image_cache": hashes.sha256(image_emb_scp) if image_emb_scp is not None else None,
    }


def reset_decode_dir(output_dir: PathLike) -> None:
    """Remove a decode folder's record and every output of an earlier run, before writing it anew: an
    interrupted run then leaves a folder that is refused, and no file of another model stays behind."""
    output_dir = Path(output_dir)
    clear_record(output_dir / RECORD_NAME)
    for name in OUTPUT_FILES:
        (output_dir / name).unlink(missing_ok=True)


def write_decode_record(output_dir: PathLike, made_from: Dict, hashes=None, part: Optional[Tuple] = None):
    """The record of a finished decode folder (or of part ``(j, n)`` of one); call it last."""
    output_dir = Path(output_dir)
    outputs = {name: output_dir / name for name in OUTPUT_FILES if (output_dir / name).is_file()}
    kind, made_from = (
        (RECORD_KIND, made_from) if part is None else (PART_RECORD_KIND, {**made_from, "part": list(part)})
    )
    return write_record(
        output_dir / RECORD_NAME, kind, made_from, outputs=outputs, hashes=getattr(hashes, "entries", None)
    )


def part_is_current(part_dir: PathLike, made_from: Dict, part: Tuple[int, int]) -> Optional[str]:
    """None when ``part_dir`` is part ``part`` of a decode made from ``made_from``, else why not."""
    return check_record(Path(part_dir) / RECORD_NAME, PART_RECORD_KIND, {**made_from, "part": list(part)})


def require_current(
    decode_dir: PathLike,
    model: dict,
    data_dir: Optional[PathLike] = None,
) -> None:
    """Refuse a decode folder that is not the finished inference of ``model`` (and of ``data_dir``, as it
    is now, when given).

    Raises:
        ProvenanceError: naming the folder, what differs, and the stage to rerun.
    """
    decode_dir = Path(decode_dir)
    record = read_record(decode_dir / RECORD_NAME) or {}
    hashes = FileHashes(record.get("hashes"))
    expected = {"model": model}
    if data_dir is not None:
        expected["data"] = datadir_identity(data_dir, hashes)
    why = check_record(decode_dir / RECORD_NAME, RECORD_KIND, expected, keys=list(expected))
    if why is not None:
        raise ProvenanceError(
            f"decode folder {decode_dir} {why}: it does not hold the inference of the current model"
            f"{' and data' if data_dir is not None else ''}. Rerun the inference stage (stage 6) first."
        )


# ------------------------------------------------------------------------------------------------ read
@dataclass
class DecodeDir:
    """A decode folder, read once: lists eagerly, arrays on demand (see the module doc for the files).

    Example::

        d = DecodeDir.read("exp/synth_cascaded/decode_synth_test")
        sim = d.speech("cascaded") @ d.image().T     # (N, M)
        d.image_index()                              # (N,) index into d.images of each utterance's image
    """

    path: Path
    utts: List[str]
    images: List[str]
    utt2img: Dict[str, str]
    transcripts: Optional[Dict[str, str]] = None
    keywords: Optional[Dict[str, str]] = None
    _arrays: Dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    @classmethod
    def read(cls, path: PathLike) -> DecodeDir:
        d = Path(path)
        for name in ("utt_list", "image_list", "utt2img"):
            if not (d / name).is_file():
                raise MissingFileError(
                    f"{d} is not a finished decode folder (no {name}): run inference first"
                )
        utts = (d / "utt_list").read_text(encoding="utf-8").split()
        images = (d / "image_list").read_text(encoding="utf-8").split()
        utt2img = read_kv(d / "utt2img")
        missing = [u for u in utts if u not in utt2img]
        if missing:
            raise InputError(f"{d}/utt2img lacks {len(missing)} utterance(s) of utt_list, e.g. {missing[:3]}")
        transcripts = read_kv(d / "text") if (d / "text").is_file() else None
        keywords = read_kv(d / "keywords") if (d / "keywords").is_file() else None
        return cls(d, utts, images, utt2img, transcripts, keywords)

    def has(self, name: str) -> bool:
        return (self.path / name).is_file()

    def array(self, name: str) -> np.ndarray:
        """``<name>.npy``, loaded once."""
        if name not in self._arrays:
            f = self.path / f"{name}.npy"
            if not f.is_file():
                raise MissingFileError(f"{f} does not exist")
            self._arrays[name] = np.load(f)
        return self._arrays[name]

    @property
    def branches(self) -> List[str]:
        """The branches whose speech embeddings the folder holds."""
        return [b for b in BRANCHES if self.has(f"speech_{b}.npy")]

    def speech(self, branch: str) -> np.ndarray:
        """(N, D_c) speech embeddings of ``branch``."""
        return self.array(f"speech_{branch}")

    def image(self) -> np.ndarray:
        """(M, D_c) image embeddings, in :attr:`images` order."""
        return self.array("image")

    def text(self) -> Optional[np.ndarray]:
        """(N, D_c) CLIP text embeddings of the transcripts, or None."""
        return self.array("text") if self.has("text.npy") else None

    def keyword_spans(self) -> Optional[np.ndarray]:
        """(N, K, 2) start and end (seconds) of each keyword, or None (no cascaded branch, or a folder
        written before keyword timing existed); NaN beyond an utterance's own keywords (CIF)."""
        return self.array("keyword_spans") if self.has("keyword_spans.npy") else None

    @property
    def variable_keywords(self) -> bool:
        """The keywords come from a CIF model: each utterance has its own number of them."""
        return self.has("keyword_lengths.npy")

    def keyword_lists(self) -> Tuple[List[np.ndarray], Optional[List[np.ndarray]]]:
        """Per utterance, its keyword ids (n,) and, when the folder has them, its keyword spans (n, 2)
        in seconds: the padding of variable-length keywords removed."""
        ids = self.array("keyword_ids")
        n = self.array("keyword_lengths") if self.variable_keywords else np.full(len(ids), ids.shape[1])
        spans = self.keyword_spans()
        return (
            [row[:k] for row, k in zip(ids, n)],
            None if spans is None else [row[:k] for row, k in zip(spans, n)],
        )

    def word_alignment(self) -> Optional[Dict[str, List[WordSpan]]]:
        """``{utt: [(word, start, end), ...]}`` from ``words.ctm``, or None when the data had none."""
        return read_ctm(self.path / WORD_ALIGNMENT) if self.has(WORD_ALIGNMENT) else None

    def image_index(self) -> torch.Tensor:
        """(N,) long: index into :attr:`images` of each utterance's image."""
        index = {k: i for i, k in enumerate(self.images)}
        unknown = [u for u in self.utts if self.utt2img[u] not in index]
        if unknown:
            raise InputError(f"{self.path}: image of {unknown[0]} is not in image_list")
        return torch.tensor([index[self.utt2img[u]] for u in self.utts])


# ----------------------------------------------------------------------------------------------- write
def _utterances(data_dir: Path) -> Tuple[List[str], Dict[str, str], Dict[str, str]]:
    wav_scp = read_kv(data_dir / "wav.scp")
    utt2img = read_kv(data_dir / "utt2img")
    utts = sorted(wav_scp)
    missing = [u for u in utts if u not in utt2img]
    if missing:
        raise MissingKeyError(f"{data_dir}/utt2img lacks {len(missing)} utterance(s), e.g. {missing[:3]}")
    return utts, wav_scp, utt2img


def _share(utts: List[str], split: Optional[Tuple[int, int]]) -> List[str]:
    """The utterances of part ``split = (j, n)`` (1-based; every n-th from the j-th), or all of them."""
    if split is None:
        return utts
    j, n = split
    if not 1 <= j <= n:
        raise InputError(f"split {j} of {n} does not exist")
    return utts[j - 1 :: n]


def check_utterance_audio(data_dir: PathLike, split: Optional[Tuple[int, int]] = None) -> int:
    """Open the header of every audio file that :func:`embed_utterances` would decode (the same part
    with ``split``), so that a missing or undecodable file is named before a model is loaded for it.
    Returns how many were checked.

    Raises:
        MediaError: naming the utterance and its file.
    """
    from espnet_speechclip.data.media import MediaError, read_audio_header

    data_dir = Path(data_dir)
    utts, wav_scp, _ = _utterances(data_dir)
    share = _share(utts, split)
    for u in share:
        try:
            read_audio_header(wav_scp[u])
        except MediaError as e:
            raise MediaError(f"utterance {u} of {data_dir}/wav.scp: {e}") from None
    return len(share)


def embed_utterances(
    s2i, data_dir: PathLike, output_dir: PathLike, split: Optional[Tuple[int, int]] = None
) -> Path:
    """The per-utterance outputs (speech of every branch, keywords, transcript embeddings) of the
    utterances of ``data_dir``, or of part ``split = (j, n)`` (1-based) of them for parallel jobs.

    Args:
        s2i: a :class:`espnet_speechclip.inference.speech2image.Speech2Image`.
    """
    from espnet_speechclip.models.cascaded import KEYWORD_NEIGHBOURS
    from espnet_speechclip.models.clip import decode_token

    data_dir, output_dir = Path(data_dir), Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    utts, wav_scp, _ = _utterances(data_dir)
    utts = _share(utts, split)
    logger.info("embedding %d utterances of %s", len(utts), data_dir)
    model = s2i.model
    timing = model.cascaded is not None
    out = (
        s2i([wav_scp[u] for u in utts], names=[f"utterance {u}" for u in utts], timing=timing) if utts else {}
    )
    (output_dir / "utt_list").write_text("".join(f"{u}\n" for u in utts), encoding="utf-8")
    for branch in model.branches:
        np.save(output_dir / f"speech_{branch}.npy", out.get(branch, np.zeros((0, 0), np.float32)))
    if model.cascaded is not None:
        width = 0 if model.variable_keywords else model.cascaded.num_keywords
        ids = out.get("keyword_ids", np.zeros((0, width), np.int64))
        np.save(output_dir / "keyword_ids.npy", ids)
        np.save(output_dir / "keyword_scores.npy", out.get("keyword_scores", np.zeros(ids.shape, np.float32)))
        np.save(
            output_dir / "keyword_spans.npy", out.get("keyword_spans", np.zeros((*ids.shape, 2), np.float32))
        )
        np.save(
            output_dir / "keyword_neighbour_ids.npy",
            out.get("keyword_neighbour_ids", np.zeros((*ids.shape, KEYWORD_NEIGHBOURS), np.int64)),
        )
        if model.variable_keywords:
            np.save(output_dir / "keyword_lengths.npy", out.get("keyword_lengths", np.zeros(0, np.int64)))
        with open(output_dir / "keywords", "w", encoding="utf-8") as f:
            for u, row in zip(utts, ids):
                f.write(" ".join([u] + [decode_token(int(i)) for i in row if i >= 0]) + "\n")
    if (data_dir / "text").is_file():
        text = read_kv(data_dir / "text")
        np.save(
            output_dir / "text.npy",
            s2i.embed_texts([text[u] for u in utts]) if utts else np.zeros((0, 0), np.float32),
        )
    return output_dir


def merge_utterance_parts(parts: List[Path], output_dir: PathLike, made_from: Optional[Dict] = None) -> Path:
    """Join the per-utterance outputs of parallel jobs (:func:`embed_utterances` with ``split``) into
    ``output_dir``, in sorted utterance order as a single job writes them. With ``made_from``, every part
    must carry the record of that decode (its job finished, with this model on this data)."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    for j, part in enumerate(parts, 1):
        if made_from is not None:
            why = part_is_current(part, made_from, (j, len(parts)))
            if why is not None:
                raise ProvenanceError(f"inference part {part} {why}: rerun its job (--split {j})")
        if not (part / "utt_list").is_file():
            raise MissingFileError(f"inference part {part} is incomplete (no utt_list): rerun its job")
    utts = [u for part in parts for u in (part / "utt_list").read_text(encoding="utf-8").split()]
    order = np.argsort(np.array(utts), kind="stable")
    (output_dir / "utt_list").write_text("".join(f"{utts[i]}\n" for i in order), encoding="utf-8")
    for name in PER_UTTERANCE_ARRAYS:
        found = [(part / name).is_file() for part in parts]
        if not any(found):
            continue
        if not all(found):
            raise MissingFileError(f"only some inference parts have {name}: rerun the jobs")
        arrays = [np.load(part / name) for part in parts]
        fill = KEYWORD_PADDING.get(name[: -len(".npy")])  # parts of a CIF model differ in keyword width
        np.save(output_dir / name, concat_padded([a for a in arrays if a.size] or arrays[:1], fill)[order])
    if all((part / "keywords").is_file() for part in parts):
        lines = [
            line for part in parts for line in (part / "keywords").read_text(encoding="utf-8").splitlines()
        ]
        (output_dir / "keywords").write_text("".join(f"{lines[i]}\n" for i in order), encoding="utf-8")
    return output_dir


def read_image_cache(image_keys: List[str], image_emb_scp: PathLike) -> np.ndarray:
    """(M, D_c) L2-normalised cached CLIP embeddings of ``image_keys`` (``key path.npy`` lines)."""
    cache = read_kv(image_emb_scp)
    missing = [k for k in image_keys if k not in cache]
    if missing:
        raise MissingKeyError(
            f"image embedding cache {image_emb_scp} lacks {len(missing)} image(s), e.g. {missing[:3]}"
        )
    rows = []
    for k in image_keys:
        try:
            row = np.load(cache[k])
        except Exception as e:
            raise InputError(
                f"cached embedding {cache[k]} of image {k} (from {image_emb_scp}) cannot be read "
                f"({type(e).__name__}: {e}): rerun the image-cache stage, which rebuilds damaged entries"
            ) from None
        if row.ndim != 1 or (rows and row.shape != rows[0].shape) or not np.isfinite(row).all():
            raise InputError(
                f"cached embedding {cache[k]} of image {k} (from {image_emb_scp}) has shape {row.shape} "
                f"or non-finite values: rerun the image-cache stage"
            )
        rows.append(row)
    emb = torch.from_numpy(np.stack(rows))
    return torch.nn.functional.normalize(emb.float(), dim=-1).numpy()


def embed_images_of_datadir(
    data_dir: PathLike, output_dir: PathLike, image_emb_scp: Optional[PathLike] = None, s2i=None
) -> Path:
    """The image side of ``data_dir``: unique images, their embeddings, and the utterance lists. The
    embeddings come from the cache ``image_emb_scp`` when given (no model needed), else from ``s2i``'s
    CLIP image tower."""
    data_dir, output_dir = Path(data_dir), Path(output_dir)
    utts, _, utt2img = _utterances(data_dir)
    image_keys = sorted(set(utt2img[u] for u in utts))
    if image_emb_scp is not None:
        emb = read_image_cache(image_keys, image_emb_scp)
    else:
        if s2i is None:
            raise InputError("embedding images without a cache (image_emb_scp) needs the model")
        img_scp = read_kv(data_dir / "img.scp")
        emb = s2i.embed_images([img_scp[k] for k in image_keys])
    np.save(output_dir / "image.npy", emb)
    (output_dir / "image_list").write_text("".join(f"{k}\n" for k in image_keys), encoding="utf-8")
    shutil.copyfile(data_dir / "utt2img", output_dir / "utt2img")
    for name in ("text", WORD_ALIGNMENT):
        if (data_dir / name).is_file():
            shutil.copyfile(data_dir / name, output_dir / name)
    return output_dir


def embed_datadir(
    s2i, data_dir: PathLike, output_dir: PathLike, image_emb_scp: Optional[PathLike] = None
) -> Path:
    """Embed every utterance, image and transcript of ``data_dir``; see the module doc for outputs."""
    embed_utterances(s2i, data_dir, output_dir)
    embed_images_of_datadir(data_dir, output_dir, image_emb_scp, s2i)
    logger.info("wrote embeddings to %s", output_dir)
    return Path(output_dir)
