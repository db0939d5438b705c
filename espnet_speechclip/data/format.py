"""Stage 2 of the recipe: bring every utterance's audio to 16 kHz mono, converting only what needs it.

A file that is already 16 kHz mono PCM wav/flac is referenced where it lies (no copy); any other file
is mixed to mono, resampled (:func:`espnet_speechclip.data.media.resample`) and written as 16-bit wav
under ``audio_dir``. The output data dir holds the same six lists as the input, with ``wav.scp``
pointing at the final files and ``utt2num_samples`` exact at 16 kHz, and a copy of the word alignment
``words.ctm`` when the input has one (resampling moves no word in time).

Idempotent: ``out_dir/.format_done.json`` records checksums of the input lists (plus size and mtime of
every input audio file) and of the written lists; a rerun whose fingerprint matches does no work.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from espnet_speechclip.data.datadir import WORD_ALIGNMENT, Utterance, read_datadir, write_datadir
from espnet_speechclip.data.media import SAMPLE_RATE, MediaError
from espnet_speechclip.files import sha256_file

logger = logging.getLogger(__name__)

LISTS = ("wav.scp", "text", "utt2spk", "utt2img", "img.scp", "utt2num_samples")
OPTIONAL_LISTS = (WORD_ALIGNMENT,)  # copied as they are when the input has them
MARKER = ".format_done.json"
# Bumped when the conversion itself changes, so old outputs are redone rather than trusted.
FORMAT_VERSION = 1
KEEP_FORMATS = ("WAV", "WAVEX", "FLAC")


def _audio_name(utt_id: str) -> str:
    # Utterance ids are single tokens but may in principle hold a path separator; escaping it keeps
    # every converted file directly under audio_dir and distinct per utterance.
    return utt_id.replace("%", "%25").replace("/", "%2F") + ".wav"


def _needs_conversion(path: str) -> Tuple[bool, int]:
    """-> (convert?, number of frames). Decodes the whole file (see probe_audio) to catch corruption."""
    import soundfile as sf

    from espnet_speechclip.data.media import probe_audio

    frames, rate, channels = probe_audio(path)
    info = sf.info(path)
    keep = (
        rate == SAMPLE_RATE
        and channels == 1
        and info.format in KEEP_FORMATS
        and info.subtype.startswith("PCM")
    )
    return not keep, frames


def _format_one(job: Tuple[str, str, str]) -> Tuple[str, Optional[str], int, Optional[str]]:
    """Worker: ``(utt_id, src, dst)`` -> ``(utt_id, final path or None on error, num_samples, error)``.

    Errors are returned, not raised, so that one run reports every bad file at once.
    """
    import numpy as np
    import soundfile as sf

    from espnet_speechclip.data.media import resample, write_wav

    utt, src, dst = job
    try:
        convert, frames = _needs_conversion(src)
        if not convert:
            return utt, src, frames, None
        data, rate = sf.read(src, dtype="float32", always_2d=True)  # (T, C)
        wav = resample(data.mean(axis=1), rate, SAMPLE_RATE)  # (T',) mono at 16 kHz
        # Write beside the target and rename, so an interrupted run never leaves a truncated file
        # under the final name.
        tmp = Path(dst).with_name(f".{Path(dst).stem}.partial.wav")
        write_wav(tmp, np.asarray(wav), SAMPLE_RATE)
        os.replace(tmp, dst)
        return utt, dst, len(wav), None
    except MediaError as e:
        return utt, None, 0, str(e)
    except Exception as e:  # anything else soundfile/scipy raise, still named by file
        return utt, None, 0, f"audio file {src}: {type(e).__name__}: {e}"


def _present(data_dir: Path) -> List[str]:
    """The lists of ``data_dir`` that formatting reads: the six, and the optional ones it has."""
    return list(LISTS) + [name for name in OPTIONAL_LISTS if (data_dir / name).is_file()]


def _fingerprint(data_dir: Path, utts: List[Utterance], audio_dir: Path) -> Dict:
    """What the output depends on: the input lists' checksums, every input audio file's size and
    mtime (a file replaced under the same name must be redone), and the target audio dir."""
    stats = hashlib.sha256()
    for u in utts:
        try:
            st = os.stat(u.wav_path)
            stats.update(f"{u.utt_id} {st.st_size} {st.st_mtime_ns}\n".encode())
        except OSError:
            stats.update(f"{u.utt_id} missing\n".encode())
    return dict(
        version=FORMAT_VERSION,
        inputs={name: sha256_file(data_dir / name) for name in _present(data_dir)},
        audio_stats=stats.hexdigest(),
        audio_dir=str(audio_dir.resolve()),
    )


def _up_to_date(out_dir: Path, fingerprint: Dict) -> Optional[Dict]:
    """The recorded counts when ``out_dir`` was made from exactly these inputs and is intact, else None."""
    marker = out_dir / MARKER
    if not marker.is_file():
        return None
    try:
        done = json.loads(marker.read_text(encoding="utf-8"))
    except ValueError:
        return None
    if done.get("fingerprint") != fingerprint:
        return None
    for name, digest in done.get("outputs", {}).items():
        if not (out_dir / name).is_file() or sha256_file(out_dir / name) != digest:
            return None
    # A converted file deleted since the last run (e.g. a cleaned dump/) means redoing the work.
    if any(not Path(p).is_file() for p in done.get("converted_files", [])):
        return None
    return done["counts"]


def format_datadir(data_dir: str | Path, out_dir: str | Path, audio_dir: str | Path, nj: int = 1) -> Dict:
    """Write ``out_dir``: ``data_dir`` with every utterance's audio at 16 kHz mono.

    Args:
        data_dir: input data dir (the six lists of :mod:`espnet_speechclip.data.datadir`).
        out_dir: output data dir; must differ from ``data_dir``.
        audio_dir: where converted wavs go (``<utt_id>.wav``); files needing no change stay in place.
        nj: parallel worker processes for probing/conversion.

    Returns:
        ``dict(total, kept, converted, written, up_to_date)``: ``kept`` files referenced in place,
        ``converted`` files that needed conversion, ``written`` files actually (re)written by this call
        (0 when ``up_to_date``, i.e. a rerun on unchanged input that did nothing).

    Raises:
        MediaError naming every utterance whose audio is missing or undecodable (nothing is written).
    """
    data_dir, out_dir, audio_dir = Path(data_dir), Path(out_dir), Path(audio_dir)
    if data_dir.resolve() == out_dir.resolve():
        raise ValueError(
            f"out_dir {out_dir} is the input data dir; formatting in place would overwrite its lists"
        )
    utts = read_datadir(data_dir)
    fingerprint = _fingerprint(data_dir, utts, audio_dir)
    counts = _up_to_date(out_dir, fingerprint)
    if counts is not None:
        logger.info(
            "%s is up to date with %s (%d kept, %d converted): nothing to do",
            out_dir,
            data_dir,
            counts["kept"],
            counts["converted"],
        )
        return dict(counts, written=0, up_to_date=True)

    # Drop the marker first: if this run is interrupted, the next one must not trust a half-written out_dir.
    (out_dir / MARKER).unlink(missing_ok=True)
    audio_dir.mkdir(parents=True, exist_ok=True)
    jobs = [(u.utt_id, u.wav_path, str(audio_dir / _audio_name(u.utt_id))) for u in utts]
    if nj > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=min(nj, len(jobs))) as pool:
            results = list(pool.map(_format_one, jobs, chunksize=max(1, min(64, len(jobs) // (4 * nj)))))
    else:
        results = [_format_one(j) for j in jobs]

    errors = [(utt, err) for utt, _, _, err in results if err is not None]
    if errors:
        shown = "; ".join(f"utterance {utt}: {err}" for utt, err in errors[:5])
        raise MediaError(
            f"{data_dir}: {len(errors)} utterance(s) with unusable audio: {shown}"
            f"{' ...' if len(errors) > 5 else ''}"
        )

    final = {utt: (path, n) for utt, path, n, _ in results}
    out_utts = [replace(u, wav_path=final[u.utt_id][0], num_samples=final[u.utt_id][1]) for u in utts]
    converted = [final[u.utt_id][0] for u in utts if final[u.utt_id][0] != u.wav_path]
    write_datadir(out_dir, out_utts)
    for name in OPTIONAL_LISTS:
        (out_dir / name).unlink(missing_ok=True)
        if (data_dir / name).is_file():
            shutil.copyfile(data_dir / name, out_dir / name)
    counts = dict(total=len(utts), kept=len(utts) - len(converted), converted=len(converted))
    marker = dict(
        fingerprint=fingerprint,
        counts=counts,
        converted_files=converted,
        outputs={name: sha256_file(out_dir / name) for name in _present(out_dir)},
    )
    (out_dir / MARKER).write_text(json.dumps(marker, indent=1), encoding="utf-8")
    logger.info(
        "%s -> %s: %d utterances, %d kept in place, %d converted to 16 kHz mono under %s",
        data_dir,
        out_dir,
        counts["total"],
        counts["kept"],
        counts["converted"],
        audio_dir,
    )
    return dict(counts, written=len(converted), up_to_date=False)
