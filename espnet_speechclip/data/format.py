"""Stage 2 of the recipe: bring every utterance's audio to 16 kHz mono, converting only what needs it.

A file that is already 16 kHz mono PCM wav/flac is referenced where it lies (no copy); any other file
is mixed to mono, resampled (:func:`espnet_speechclip.data.media.resample`) and written as 16-bit wav
under ``audio_dir``. The output data dir holds the same six lists as the input, with ``wav.scp``
pointing at the final files and ``utt2num_samples`` exact at 16 kHz, and a copy of the word alignment
``words.ctm`` when the input has one (resampling moves no word in time).

Idempotent: ``out_dir/.made_from.json`` (:mod:`espnet_speechclip.provenance`) records the content hashes
of the input lists and of every input audio file, and every output (the lists and each final audio file,
kept or converted); a rerun on unchanged, intact input and output does no work. Training trusts the files
this record vouches for (they were fully decoded and checked here) and decodes the others before it
starts (:mod:`espnet_speechclip.training.data_check`).
"""

from __future__ import annotations

import logging
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from espnet_speechclip.data.datadir import WORD_ALIGNMENT, Utterance, read_datadir, write_datadir
from espnet_speechclip.data.media import SAMPLE_RATE, MediaError
from espnet_speechclip.errors import InputError
from espnet_speechclip.files import atomic_path, sha256_file
from espnet_speechclip.provenance import (
    RECORD_NAME,
    FileHashes,
    check_record,
    clear_record,
    content_digest,
    file_entry,
    read_record,
    write_record,
)

logger = logging.getLogger(__name__)

LISTS = ("wav.scp", "text", "utt2spk", "utt2img", "img.scp", "utt2num_samples")
OPTIONAL_LISTS = (WORD_ALIGNMENT,)  # copied as they are when the input has them
RECORD_KIND = "audio-format"
# Bumped when the conversion itself changes, so old outputs are redone rather than trusted.
FORMAT_VERSION = 2
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


def _format_one(job: Tuple[str, str, str]) -> Tuple[str, Optional[str], int, Optional[str], Optional[Dict]]:
    """Worker: ``(utt_id, src, dst)`` -> ``(utt_id, final path or None on error, num_samples, error,
    file entry of a converted file)``.

    Errors are returned, not raised, so that one run reports every bad file at once.
    """
    import numpy as np
    import soundfile as sf

    from espnet_speechclip.data.media import resample, write_wav

    utt, src, dst = job
    try:
        convert, frames = _needs_conversion(src)
        if not convert:
            return utt, src, frames, None, None
        data, rate = sf.read(src, dtype="float32", always_2d=True)  # (T, C)
        wav = resample(data.mean(axis=1), rate, SAMPLE_RATE)  # (T',) mono at 16 kHz
        # an interrupted run never leaves a truncated file under the final name
        with atomic_path(dst, keep_suffix=True) as tmp:
            write_wav(tmp, np.asarray(wav), SAMPLE_RATE)
        return utt, dst, len(wav), None, file_entry(dst)
    except MediaError as e:
        return utt, None, 0, str(e), None
    except Exception as e:  # anything else soundfile/scipy raise, still named by file
        return utt, None, 0, f"audio file {src}: {type(e).__name__}: {e}", None


def _present(data_dir: Path) -> List[str]:
    """The lists of ``data_dir`` that formatting reads: the six, and the optional ones it has."""
    return list(LISTS) + [name for name in OPTIONAL_LISTS if (data_dir / name).is_file()]


def _made_from(data_dir: Path, utts: List[Utterance], audio_dir: Path, hashes: FileHashes, nj: int) -> Dict:
    """What the output depends on: the input lists (the optional ones it has too), every input audio
    file's content (a file replaced under the same name must be redone), and the target audio dir."""
    audio = hashes.sha256_many([u.wav_path for u in utts], threads=nj)
    return dict(
        version=FORMAT_VERSION,
        lists={name: sha256_file(data_dir / name) for name in _present(data_dir)},
        audio=content_digest((u.utt_id, audio[u.wav_path]) for u in utts),
        audio_dir=str(audio_dir.resolve()),
    )


def vouched_audio(wav_scp: str | Path) -> Dict[str, Dict]:
    """``{absolute audio path: file entry}`` of the files the format stage decoded, checked and recorded
    for ``wav_scp`` (empty when ``wav_scp`` is not the intact output of a finished format stage). A file
    whose entry still matches its stat is the one that passed the checks; see
    :mod:`espnet_speechclip.training.data_check`."""
    wav_scp = Path(wav_scp)
    record = read_record(wav_scp.parent / RECORD_NAME)
    if record is None or record.get("kind") != RECORD_KIND:
        return {}
    listed = record.get("outputs", {}).get(wav_scp.name)
    if listed is None or FileHashes({str(wav_scp): listed}).sha256(wav_scp) != listed.get("sha256"):
        return {}
    return {name: entry for name, entry in record["outputs"].items() if os.path.isabs(name)}


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
        raise InputError(
            f"out_dir {out_dir} is the input data dir; formatting in place would overwrite its lists"
        )
    utts = read_datadir(data_dir)
    record_file = out_dir / RECORD_NAME
    old = read_record(record_file) or {}
    hashes = FileHashes(old.get("hashes"))
    try:
        made_from = _made_from(data_dir, utts, audio_dir, hashes, nj)
    except FileNotFoundError:
        made_from = None  # a missing input file: the checks below name every one
    if made_from is not None:
        stale = check_record(record_file, RECORD_KIND, made_from, base=out_dir)
        if stale is None:
            counts = old["extra"]["counts"]
            logger.info(
                "%s is up to date with %s (%d kept, %d converted): nothing to do",
                out_dir,
                data_dir,
                counts["kept"],
                counts["converted"],
            )
            return dict(counts, written=0, up_to_date=True)
        if old:
            logger.info("%s: redoing the audio format: the output %s", out_dir, stale)

    # Drop the record first: if this run is interrupted, the next one must not trust a half-written out_dir.
    clear_record(record_file)
    audio_dir.mkdir(parents=True, exist_ok=True)
    jobs = [(u.utt_id, u.wav_path, str(audio_dir / _audio_name(u.utt_id))) for u in utts]
    if nj > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=min(nj, len(jobs))) as pool:
            results = list(pool.map(_format_one, jobs, chunksize=max(1, min(64, len(jobs) // (4 * nj)))))
    else:
        results = [_format_one(j) for j in jobs]

    errors = [(utt, err) for utt, _, _, err, _ in results if err is not None]
    if errors:
        shown = "; ".join(f"utterance {utt}: {err}" for utt, err in errors[:5])
        raise MediaError(
            f"{data_dir}: {len(errors)} utterance(s) with unusable audio: {shown}"
            f"{' ...' if len(errors) > 5 else ''}"
        )

    final = {utt: (path, n) for utt, path, n, _, _ in results}
    out_utts = [replace(u, wav_path=final[u.utt_id][0], num_samples=final[u.utt_id][1]) for u in utts]
    converted = [final[u.utt_id][0] for u in utts if final[u.utt_id][0] != u.wav_path]
    write_datadir(out_dir, out_utts)
    for name in OPTIONAL_LISTS:
        (out_dir / name).unlink(missing_ok=True)
        if (data_dir / name).is_file():
            shutil.copyfile(data_dir / name, out_dir / name)
    counts = dict(total=len(utts), kept=len(utts) - len(converted), converted=len(converted))
    # Every final audio file is an output, by absolute path: the kept ones with the hash of the input
    # they are, the converted ones with the entry their worker took after writing them.
    outputs = {name: out_dir / name for name in _present(out_dir)}
    audio_entries = {}
    for _, path, _, _, entry in results:
        audio_entries[os.path.abspath(path)] = entry or hashes.entries[path]
    write_record(
        record_file,
        RECORD_KIND,
        made_from,
        outputs=outputs,
        hashes=hashes.entries,
        extra=dict(counts=counts, converted_files=converted),
        output_entries=audio_entries,
    )
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
