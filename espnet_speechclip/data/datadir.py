"""Kaldi-style data directories shared by every corpus.

A data dir ``data/<set>/`` holds, one ``<key> <value>`` line each, sorted by key:

- ``wav.scp``          utterance -> audio file
- ``text``             utterance -> transcript
- ``utt2spk``          utterance -> speaker
- ``utt2img``          utterance -> image key
- ``img.scp``          image key -> image file
- ``utt2num_samples``  utterance -> number of audio samples (ESPnet's speech shape file)

Optional, where a corpus knows where its words are spoken (the built-in synthetic corpus):

- ``words.ctm``        word alignments, Kaldi/NIST CTM lines ``<utt> 1 <start> <duration> <word>``
                       (seconds), in utterance and time order (:func:`write_ctm`, :func:`read_ctm`)

Every corpus preparation (synth, Flickr8k, SpokenCOCO) builds a list of :class:`Utterance` and hands it
to :func:`write_datadir`, so every later stage is corpus-agnostic.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from espnet_speechclip.errors import InputError, MissingFileError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Utterance:
    utt_id: str
    wav_path: str
    text: str
    speaker: str
    image_key: str
    image_path: str
    num_samples: int


def _check_token(kind: str, value: str) -> None:
    if not value or any(c.isspace() for c in value):
        raise InputError(
            f"{kind} {value!r} is empty or contains white space; Kaldi-style lists need single tokens"
        )


def write_datadir(path: str | Path, utts: Iterable[Utterance]) -> Path:
    """Write ``utts`` as a data dir at ``path`` (created if needed). Returns the path.

    Raises ValueError on duplicate utterance ids, an image key mapped to two files, an empty
    transcript, or an empty list (a split that ends empty is an error, never a silent empty set).
    """
    path = Path(path)
    utts = sorted(utts, key=lambda u: u.utt_id)
    if not utts:
        raise InputError(f"refusing to write an empty data dir {path}")
    seen: set = set()
    images: Dict[str, str] = {}
    for u in utts:
        _check_token("utterance id", u.utt_id)
        _check_token("speaker", u.speaker)
        _check_token("image key", u.image_key)
        if u.utt_id in seen:
            raise InputError(f"duplicate utterance id {u.utt_id} in {path}")
        seen.add(u.utt_id)
        if not u.text.strip():
            raise InputError(f"utterance {u.utt_id} has an empty transcript")
        old = images.setdefault(u.image_key, u.image_path)
        if old != u.image_path:
            raise InputError(f"image key {u.image_key} names two files: {old} and {u.image_path}")
    path.mkdir(parents=True, exist_ok=True)

    def dump(name: str, rows: Iterable[tuple]) -> None:
        with open(path / name, "w", encoding="utf-8") as f:
            for key, value in rows:
                f.write(f"{key} {value}\n")

    dump("wav.scp", ((u.utt_id, u.wav_path) for u in utts))
    dump("text", ((u.utt_id, " ".join(u.text.split())) for u in utts))
    dump("utt2spk", ((u.utt_id, u.speaker) for u in utts))
    dump("utt2img", ((u.utt_id, u.image_key) for u in utts))
    dump("img.scp", sorted(images.items()))
    dump("utt2num_samples", ((u.utt_id, u.num_samples) for u in utts))
    return path


def read_kv(path: str | Path) -> Dict[str, str]:
    """Read a ``<key> <value>`` list (value may contain spaces). Raises on a duplicate or value-less key."""
    out: Dict[str, str] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line.strip():
                continue
            key, _, value = line.partition(" ")
            if key in out:
                raise InputError(f"{path}:{lineno}: duplicate key {key}")
            out[key] = value.strip()
    return out


WORD_ALIGNMENT = "words.ctm"

# (word, start, end) in seconds
WordSpan = Tuple[str, float, float]


def write_ctm(path: str | Path, alignments: Mapping[str, Sequence[WordSpan]]) -> Path:
    """Write word alignments ``{utt: [(word, start, end), ...]}`` (seconds) as a CTM file, channel 1,
    times to the millisecond, sorted by utterance then start time."""
    path = Path(path)
    with open(path, "w", encoding="utf-8") as f:
        for utt in sorted(alignments):
            for word, start, end in sorted(alignments[utt], key=lambda w: (w[1], w[2])):
                _check_token("word", word)
                if not 0 <= start <= end:
                    raise InputError(f"utterance {utt}: word {word!r} has a bad span ({start}, {end})")
                # start and end to the millisecond, so that adjacent words still touch when read back
                start_ms, end_ms = round(start * 1000), round(end * 1000)
                f.write(f"{utt} 1 {start_ms / 1000:.3f} {(end_ms - start_ms) / 1000:.3f} {word}\n")
    return path


def read_ctm(path: str | Path) -> Dict[str, List[WordSpan]]:
    """A CTM file (``<utt> <channel> <start> <duration> <word> [<confidence>]``) as ``{utt: [(word, start,
    end), ...]}`` in time order. Raises ValueError naming the line on a malformed one."""
    out: Dict[str, List[WordSpan]] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            fields = line.split()
            if not fields or fields[0].startswith(";;"):  # blank lines and NIST comments
                continue
            try:
                if len(fields) not in (5, 6):
                    raise InputError(f"{len(fields)} fields")
                start, duration = float(fields[2]), float(fields[3])
                if start < 0 or duration < 0:
                    raise InputError("negative time")
            except ValueError as e:
                raise InputError(
                    f"{path}:{lineno}: not a CTM line '<utt> <channel> <start> <duration> <word>' ({e})"
                ) from None
            out.setdefault(fields[0], []).append((fields[4], start, start + duration))
    for words in out.values():
        words.sort(key=lambda w: (w[1], w[2]))
    return out


def read_datadir(path: str | Path) -> List[Utterance]:
    """Read a data dir back into utterances, checking the lists agree with each other."""
    path = Path(path)
    lists = {}
    for name in ("wav.scp", "text", "utt2spk", "utt2img", "img.scp", "utt2num_samples"):
        f = path / name
        if not f.exists():
            raise MissingFileError(f"data dir {path} has no {name}")
        lists[name] = read_kv(f)
    utt_ids = sorted(lists["wav.scp"])
    for name in ("text", "utt2spk", "utt2img", "utt2num_samples"):
        if set(lists[name]) != set(utt_ids):
            diff = sorted(set(lists[name]) ^ set(utt_ids))
            raise InputError(f"{path}/{name} and wav.scp disagree on utterances, e.g. {diff[:3]}")
    out = []
    for u in utt_ids:
        key = lists["utt2img"][u]
        if key not in lists["img.scp"]:
            raise InputError(f"{path}: utterance {u} names image {key}, which img.scp lacks")
        out.append(
            Utterance(
                u,
                lists["wav.scp"][u],
                lists["text"][u],
                lists["utt2spk"][u],
                key,
                lists["img.scp"][key],
                int(lists["utt2num_samples"][u]),
            )
        )
    return out


class DropLog:
    """Counts dropped items by reason and logs each drop, so a preparation can report what it filtered."""

    def __init__(self, name: str):
        self.name = name
        self.counts: Counter = Counter()

    def drop(self, reason: str, item: str, detail: Optional[str] = None) -> None:
        self.counts[reason] += 1
        logger.warning("%s: dropped %s (%s)%s", self.name, item, reason, f": {detail}" if detail else "")

    def summary(self) -> str:
        if not self.counts:
            return f"{self.name}: nothing dropped"
        parts = ", ".join(f"{n} {reason}" for reason, n in sorted(self.counts.items()))
        return f"{self.name}: dropped {sum(self.counts.values())} ({parts})"
