"""Training data, checked and identified before the first step.

ESPnet reads data lazily, so a corrupt, 8 kHz, stereo, NaN or empty file would otherwise surface in the
middle of an epoch (as an opaque libsndfile error, or as a NaN gradient that ESPnet skips with a generic
warning). Before training starts, :func:`scan_training_data` reads every list of the run:

- audio (``sound`` / ``sound_16k``): every file is decoded and checked with the reader's own rules
  (:func:`espnet_speechclip.training.readers.check_waveform`) and its length compared with the shape file,
  except files that a check already passed and that have not changed since: the outputs of the format
  stage (its record, :func:`espnet_speechclip.data.format.vouched_audio`) and the files this experiment
  checked before (its record). A rerun on unchanged data decodes nothing.
- cached image embeddings (``npy``): every file loads as a finite vector of one width.

Every bad file is named, then training is refused (:class:`DataCheckError`); nothing is skipped silently.
The same pass returns the content identity of the data (hashes of every list and every file it names),
which the experiment folder records (:mod:`espnet_speechclip.training.experiment`).
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from espnet_speechclip.data.datadir import read_kv
from espnet_speechclip.data.media import MediaError
from espnet_speechclip.provenance import FileHashes, content_digest, file_entry

logger = logging.getLogger(__name__)

AUDIO_TYPES = ("sound", "sound_16k")
SPEECH_SHAPE_FILES = ("utt2num_samples", "speech_shape")
EMBEDDING_TYPES = ("npy",)
_SHOWN = 5  # bad files named in the error (all are logged)


class DataCheckError(MediaError):
    """Training data with unusable files; the message names them."""


def _check_audio(path: str, utt: str, expected_samples: Optional[int]) -> Tuple[Optional[str], int]:
    """-> (what is wrong with one audio file or None, its number of samples)."""
    import soundfile as sf

    from espnet_speechclip.training.readers import check_waveform

    try:
        wav, rate = sf.read(path, dtype="float32", always_2d=False)
    except Exception as e:  # libsndfile's errors do not always print; name the type at least
        return f"utterance {utt}: audio file {path} cannot be decoded: {type(e).__name__}: {e}", 0
    try:
        check_waveform(wav, rate, f"utterance {utt} ({path})")
    except MediaError as e:
        return str(e), len(wav)
    if expected_samples is not None and expected_samples != len(wav):
        return (
            f"utterance {utt}: {path} has {len(wav)} samples but the shape file says {expected_samples} "
            f"(the file changed after the lists were made: rerun the audio-format stage)",
            len(wav),
        )
    return None, len(wav)


def _check_embedding(path: str) -> Tuple[Optional[str], Optional[int]]:
    try:
        emb = np.load(path)
    except Exception as e:
        return f"cached embedding {path} cannot be read ({type(e).__name__}: {e})", None
    if emb.ndim != 1 or emb.size == 0:
        return f"cached embedding {path} has shape {emb.shape}, not (D,)", None
    if not np.isfinite(emb).all():
        return f"cached embedding {path} holds NaN or infinite values", None
    return None, int(emb.size)


def _raise_bad(what: str, list_file: str, bad: List[str], hint: str) -> None:
    for b in bad:
        logger.error("%s", b)
    shown = "; ".join(bad[:_SHOWN]) + (
        f"; ... ({len(bad) - _SHOWN} more in the log)" if len(bad) > _SHOWN else ""
    )
    raise DataCheckError(f"{list_file}: {len(bad)} {what}: {shown}. {hint}")


def scan_audio_list(
    wav_scp: str,
    shape_file: Optional[str],
    checked: FileHashes,
    vouched: Mapping[str, Mapping[str, Any]],
    threads: int = 4,
) -> str:
    """Check every file of ``wav_scp`` not vouched for; return the content digest of the list's audio.

    Args:
        checked: entries of files that passed (updated with the ones checked now).
        vouched: ``{absolute path: file entry}`` of files checked by an earlier stage.
    """
    from espnet_speechclip.data.format import vouched_audio

    scp = read_kv(wav_scp)
    shapes = {k: int(v.split(",")[0]) for k, v in read_kv(shape_file).items()} if shape_file else {}
    by_abs = {**{os.path.abspath(k): v for k, v in vouched_audio(wav_scp).items()}, **dict(vouched)}
    earlier = FileHashes(
        {p: by_abs[os.path.abspath(p)] for p in scp.values() if os.path.abspath(p) in by_abs}
    )
    todo: List[Tuple[str, str]] = []
    sha: Dict[str, str] = {}
    for utt, path in scp.items():
        # A file whose content is the content a check passed before is not decoded again; its hash is
        # reused while its stat is unchanged, else the file is read (much cheaper than decoding it).
        passed = {checked.recorded(path), earlier.recorded(path)} - {None}
        if passed and os.path.isfile(path):
            now = checked.known(path) or earlier.known(path) or checked.sha256(path)
            if now in passed:
                if str(path) not in checked.entries:
                    checked.add(path, earlier.entries.get(str(path)) or {"sha256": now})
                sha[utt] = now
                continue
        todo.append((utt, path))
    if todo:
        logger.info(
            "%s: checking %d of %d audio files (the rest were checked before)", wav_scp, len(todo), len(scp)
        )

        def one(job: Tuple[str, str]) -> Tuple[str, str, Optional[str], Optional[dict]]:
            utt, path = job
            if not os.path.isfile(path):
                return utt, path, f"utterance {utt}: audio file {path} does not exist", None
            error, _ = _check_audio(path, utt, shapes.get(utt))
            return utt, path, error, None if error else file_entry(path)

        # libsndfile and hashlib release the GIL: threads decode in parallel
        with ThreadPoolExecutor(max(1, threads)) as pool:
            results = list(pool.map(one, todo))
        bad = [error for _, _, error, _ in results if error]
        if bad:
            _raise_bad(
                "audio file(s) unusable for training",
                wav_scp,
                bad,
                "Fix or remove them and rerun the audio-format stage (stage 2), which converts rates and "
                "channels and refuses undecodable files",
            )
        for utt, path, _, entry in results:
            checked.add(path, entry)
            sha[utt] = entry["sha256"]
    return content_digest(sha.items())


def scan_embedding_list(
    npy_scp: str, checked: FileHashes, threads: int = 4, legacy: Optional[Dict[str, str]] = None
) -> str:
    """Check every cached embedding of ``npy_scp`` (``utt path.npy``); return the digest of what they
    are made from (:func:`espnet_speechclip.training.image_cache.embedding_identities`: the image and the
    CLIP for a cache's file, so that a repaired cache entry leaves it unchanged).

    ``legacy``: gets ``{npy_scp: digest of the files' bytes}``, the identity older records hold.
    """
    from espnet_speechclip.training.image_cache import embedding_identities

    scp = read_kv(npy_scp)
    paths = sorted(set(scp.values()))
    todo = [p for p in paths if checked.known(p) is None]
    widths = set()
    if todo:

        def one(path: str) -> Tuple[str, Optional[str], Optional[int]]:
            if not os.path.isfile(path):
                return path, f"cached embedding {path} does not exist", None
            error, width = _check_embedding(path)
            return path, error, width

        with ThreadPoolExecutor(max(1, threads)) as pool:
            results = list(pool.map(one, todo))
        bad = [error for _, error, _ in results if error]
        if bad:
            _raise_bad(
                "cached image embedding(s) unusable",
                npy_scp,
                bad,
                "Rerun the image-cache stage (stage 3), which rebuilds damaged entries",
            )
        widths = {w for _, _, w in results}
        if len(widths) > 1:
            raise DataCheckError(f"{npy_scp}: cached embeddings of different widths {sorted(widths)}")
        for path in todo:
            checked.sha256(path)
    if legacy is not None:
        legacy[npy_scp] = content_digest((utt, checked.sha256(p)) for utt, p in scp.items())
    made_of = embedding_identities(paths, checked)
    return content_digest((utt, made_of[p]) for utt, p in scp.items())


def scan_training_data(
    args: Any,
    checked: FileHashes,
    vouched: Optional[Mapping[str, Mapping]] = None,
    threads: int = 4,
    legacy: Optional[Dict[str, str]] = None,
) -> Dict[str, Dict[str, str]]:
    """Check the train and valid data of a run (parsed ESPnet arguments) and return its identity:
    ``{"train.speech": {"type", "list": sha256, "content": digest}, "train.image_id": ..., "valid...": ...}``
    (``content`` for audio lists: the hashes of every file they name; ``embeddings`` for embedding lists:
    what every file is made from, see :func:`scan_embedding_list`). ``legacy`` gets ``{"train.image_emb":
    the digest of the embedding files' bytes}``, as records of older versions hold it.

    Raises:
        DataCheckError: naming every unusable file of the first bad list.
    """
    identity: Dict[str, Dict[str, str]] = {}
    for mode in ("train", "valid"):
        triples: Sequence = getattr(args, f"{mode}_data_path_and_name_and_type", None) or []
        shape_files = [
            f
            for f in (getattr(args, f"{mode}_shape_file", None) or [])
            if str(f).endswith(SPEECH_SHAPE_FILES) and Path(f).is_file()
        ]
        for path, name, kind in triples:
            if not Path(path).is_file():
                continue  # ESPnet names a missing list itself
            entry = {"type": kind, "list": checked.sha256(path)}
            if kind in AUDIO_TYPES:
                shape = shape_files[0] if shape_files and name == "speech" else None
                entry["content"] = scan_audio_list(path, shape, checked, vouched or {}, threads)
            elif kind in EMBEDDING_TYPES:
                by_bytes: Dict[str, str] = {}
                entry["embeddings"] = scan_embedding_list(path, checked, threads, by_bytes)
                if legacy is not None:
                    legacy[f"{mode}.{name}"] = by_bytes[path]
            identity[f"{mode}.{name}"] = entry
    return identity
