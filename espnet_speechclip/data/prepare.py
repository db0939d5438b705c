"""Shared machinery for turning a spoken-caption corpus into data dirs.

Each corpus module (Flickr8k, SpokenCOCO) only parses its own listings into :class:`Candidate` records per
split; everything else lives here, once:

1. probe every distinct wav and image file (fully decoded, in a process pool of ``nj`` workers);
2. apply the drop rules (:func:`select_utterances`), counting drops by reason with :class:`DropLog`;
3. refuse to write anything if a split ends empty, otherwise write each split with :func:`write_datadir`
   plus a ``prep.log`` summary next to it.

Audio that is not 16 kHz mono is kept (the recipe's audio-format stage converts it) but counted as
"needs conversion"; its ``utt2num_samples`` entry is already expressed in 16 kHz samples so the shape
file agrees with the converted audio.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from espnet_speechclip.data.datadir import DropLog, Utterance, write_datadir
from espnet_speechclip.data.media import SAMPLE_RATE, MediaError, probe_audio, probe_image
from espnet_speechclip.errors import InputError, MissingFileError
from espnet_speechclip.naming import set_name

logger = logging.getLogger(__name__)

# Drop reasons, spelled once so logs, prep.log files and tests agree.
MISSING_WAV = "missing wav"
CORRUPT_WAV = "corrupt wav"
MISSING_IMAGE = "missing image"
CORRUPT_IMAGE = "corrupt image"
MISSING_CAPTION = "missing caption"
MISSING_SPEAKER = "missing speaker"
EMPTY_TRANSCRIPT = "empty transcript"
TOO_SHORT = "too short"
DUPLICATE_UTT = "duplicate utterance id"
# Not a drop: kept, converted later by the recipe's audio-format stage.
NEEDS_CONVERSION = "needs conversion"


@dataclass(frozen=True)
class Candidate:
    """One listed utterance before its files are checked.

    ``text``/``speaker`` are None when the corpus listing lacks them, so the drop rules (here, not in each
    corpus parser) decide what happens to such entries.
    """

    utt_id: str
    wav_path: str
    text: Optional[str]
    speaker: Optional[str]
    image_key: str
    image_path: str


@dataclass(frozen=True)
class Probe:
    """Outcome of checking one file: ``status`` is "ok", "missing" or "corrupt".

    For audio ``info`` is ``(num_frames, sample_rate, channels)``, for images ``(width, height)``.
    """

    status: str
    info: Tuple[int, ...] = ()
    detail: str = ""


def _probe_with(fn: Callable[[str], Tuple[int, ...]], path: str) -> Probe:
    # A missing file and an undecodable one are different drop reasons, so tell them apart here rather
    # than parsing MediaError messages.
    if not os.path.isfile(path):
        return Probe("missing", detail=f"{path} does not exist")
    try:
        return Probe("ok", tuple(fn(path)))
    except MediaError as e:
        return Probe("corrupt", detail=str(e))


def probe_audio_file(path: str) -> Probe:
    return _probe_with(probe_audio, path)


def probe_image_file(path: str) -> Probe:
    return _probe_with(probe_image, path)


def probe_files(
    paths: Iterable[str], fn: Callable[[str], Probe], nj: int = 1, what: str = "files"
) -> Dict[str, Probe]:
    """Probe each distinct path once with ``fn`` using ``nj`` worker processes (in-process when ``nj<=1``)."""
    unique = sorted(set(paths))
    out: Dict[str, Probe] = {}
    if not unique:
        return out
    # Progress every ~10% (at least 1000 files apart) so a 600k-file SpokenCOCO probe does not look hung.
    step = max(1000, len(unique) // 10)

    def collect(results: Iterable[Probe]) -> None:
        for i, (path, res) in enumerate(zip(unique, results), 1):
            out[path] = res
            if i % step == 0 or i == len(unique):
                logger.info("probed %d/%d %s", i, len(unique), what)

    if nj <= 1 or len(unique) < 2:
        collect(map(fn, unique))
    else:
        # Large chunks keep inter-process overhead small relative to decoding a short wav.
        chunksize = max(1, min(256, len(unique) // (nj * 8)))
        with ProcessPoolExecutor(max_workers=nj) as ex:
            collect(ex.map(fn, unique, chunksize=chunksize))
    return out


def num_samples_16k(num_frames: int, rate: int) -> int:
    """Length in 16 kHz samples of ``num_frames`` frames recorded at ``rate`` Hz (what conversion yields)."""
    if rate == SAMPLE_RATE:
        return num_frames
    return int(round(num_frames * SAMPLE_RATE / rate))


def select_utterances(
    name: str,
    candidates: Sequence[Candidate],
    audio: Mapping[str, Probe],
    images: Mapping[str, Probe],
    min_samples: int,
) -> Tuple[List[Utterance], DropLog, Counter]:
    """Apply the drop rules to probed candidates. Pure: no file access.

    Returns the kept utterances, the drop log (by reason) and a counter of non-drop notes
    (``needs conversion``). Checks run cheapest-first and an utterance is dropped for the first failure.
    """
    drops = DropLog(name)
    notes: Counter = Counter()
    kept: List[Utterance] = []
    seen: set = set()
    for c in candidates:
        if c.text is None:
            drops.drop(MISSING_CAPTION, c.utt_id, c.wav_path)
            continue
        if not c.text.strip():
            drops.drop(EMPTY_TRANSCRIPT, c.utt_id, c.wav_path)
            continue
        if c.speaker is None:
            drops.drop(MISSING_SPEAKER, c.utt_id, c.wav_path)
            continue
        if c.utt_id in seen:
            drops.drop(DUPLICATE_UTT, c.utt_id, c.wav_path)
            continue
        a = audio[c.wav_path]
        if a.status != "ok":
            drops.drop(MISSING_WAV if a.status == "missing" else CORRUPT_WAV, c.utt_id, a.detail)
            continue
        im = images[c.image_path]
        if im.status != "ok":
            drops.drop(MISSING_IMAGE if im.status == "missing" else CORRUPT_IMAGE, c.utt_id, im.detail)
            continue
        frames, rate, channels = a.info
        n = num_samples_16k(frames, rate)
        if n < min_samples:
            drops.drop(TOO_SHORT, c.utt_id, f"{n} samples at 16 kHz < {min_samples}")
            continue
        if rate != SAMPLE_RATE or channels != 1:
            notes[NEEDS_CONVERSION] += 1
            logger.info(
                "%s: %s is %d Hz, %d channel(s); kept, needs conversion to 16 kHz mono",
                name,
                c.wav_path,
                rate,
                channels,
            )
        seen.add(c.utt_id)
        kept.append(Utterance(c.utt_id, c.wav_path, c.text, c.speaker, c.image_key, c.image_path, n))
    return kept, drops, notes


def _check_path_token(path: str) -> None:
    # wav.scp / img.scp are "<key> <path>" lists: a path with white space cannot be represented.
    if any(ch.isspace() for ch in path):
        raise InputError(
            f"path {path!r} contains white space, which Kaldi-style lists cannot hold; "
            "move or link the corpus to a path without spaces"
        )


def prepare_corpus(
    corpus: str,
    splits: Mapping[str, Sequence[Candidate]],
    out_dir: str | Path,
    min_samples: int = 400,
    nj: int = 1,
    corpus_notes: Sequence[str] = (),
) -> Dict[str, Path]:
    """Probe, filter and write ``out_dir/<corpus>_<split>`` for every split in ``splits``.

    ``corpus_notes`` are corpus-level lines (e.g. how many entries were ignored as belonging to no split)
    that are logged and copied into each split's ``prep.log``. Raises ValueError, before writing
    anything, if a split ends empty.
    """
    out_dir = Path(out_dir)
    for cands in splits.values():
        for c in cands:
            _check_path_token(c.wav_path)
            _check_path_token(c.image_path)
    all_c = [c for cands in splits.values() for c in cands]
    audio = probe_files((c.wav_path for c in all_c), probe_audio_file, nj, what=f"{corpus} wavs")
    images = probe_files((c.image_path for c in all_c), probe_image_file, nj, what=f"{corpus} images")

    for line in corpus_notes:
        logger.info("%s: %s", corpus, line)
    results = {}
    for split, cands in splits.items():
        name = set_name(corpus, split)
        kept, drops, notes = select_utterances(name, cands, audio, images, min_samples)
        logger.info("%s", drops.summary())
        if notes[NEEDS_CONVERSION]:
            logger.info(
                "%s: %d kept utterances %s (not 16 kHz mono)", name, notes[NEEDS_CONVERSION], NEEDS_CONVERSION
            )
        results[split] = (name, cands, kept, drops, notes)
    # Check every split before writing any, so a failed run leaves no half-prepared corpus behind.
    for name, cands, kept, drops, _ in results.values():
        if not kept:
            raise InputError(
                f"{name} ends empty: {len(cands)} listed utterances, none usable "
                f"({drops.summary()}); check the corpus paths and files"
            )

    written: Dict[str, Path] = {}
    for split, (name, cands, kept, drops, notes) in results.items():
        path = write_datadir(out_dir / name, kept)
        n_images = len({u.image_key for u in kept})
        lines = [
            f"{name}: {len(cands)} listed, kept {len(kept)} utterances of {n_images} images",
            drops.summary(),
            f"{name}: {notes[NEEDS_CONVERSION]} kept utterances {NEEDS_CONVERSION} to 16 kHz mono "
            "(utt2num_samples already counts 16 kHz samples)",
            *(f"{corpus}: {line}" for line in corpus_notes),
        ]
        (path / "prep.log").write_text("\n".join(lines) + "\n", encoding="utf-8")
        logger.info("wrote %s (%d utterances, %d images)", path, len(kept), n_images)
        written[split] = path
    return written


def require_file(path: Path, env: str, what: str) -> Path:
    """Return ``path`` if it is a file, else raise FileNotFoundError naming it and the env variable to fix."""
    if not path.is_file():
        raise MissingFileError(f"{what} {path} not found; is ${env} set to the right directory?")
    return path


def read_lines(path: Path) -> List[str]:
    # utf-8-sig: some corpus text files carry a BOM that would otherwise stick to the first key.
    with open(path, encoding="utf-8-sig") as f:
        return f.read().splitlines()


def add_common_cli_args(parser) -> None:
    """The options every corpus preparation CLI shares."""
    parser.add_argument("--out_dir", default="data", help="where the data dirs go (default: data)")
    parser.add_argument(
        "--min_samples",
        type=int,
        default=400,
        help="drop utterances shorter than this many 16 kHz samples (default: 400)",
    )
    parser.add_argument("--nj", type=int, default=1, help="worker processes for probing files (default: 1)")
    parser.add_argument("--verbose", action="store_true", help="debug logging")


def setup_cli_logging(verbose: bool = False) -> None:
    # Per-file drop warnings are many on a real corpus; the summaries are INFO and always shown.
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
