"""Speech of the spoken-shapes corpus: espeak-ng voices driven through ctypes.

Captions are spoken by espeak-ng (the PyPI package ``espeakng-loader``): 6 English voices x 10 variants
are the speakers; 12 voice+variant pairs are held out of training and speak every other dev and test
utterance. espeak-ng is GPL-3.0, so it is an optional dependency (the ``demo`` extra) imported only
when speech is synthesised; scene sampling and rendering never need it.
"""

from __future__ import annotations

import ctypes
import random
from dataclasses import dataclass
from typing import List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from espnet_speechclip.data.media import SAMPLE_RATE, resample, write_wav
from espnet_speechclip.errors import RunError

VOICES: Tuple[str, ...] = ("en-us", "en-gb", "en-gb-scotland", "en-029", "en-gb-x-rp", "en-us-nyc")
VARIANTS: Tuple[str, ...] = ("m1", "m3", "m5", "m7", "f1", "f2", "f3", "f4", "klatt", "klatt3")
# espeak-ng's SetVoiceByName knows British English by its file name "en", not by the tag "en-gb".
_ESPEAK_NAME = {"en-gb": "en"}
N_HELD_OUT_SPEAKERS = 12  # of the 60 voice+variant pairs; they speak half of dev and test, none of train
RATE_RANGE = (140, 200)  # words per minute
PITCH_RANGE = (30, 70)  # espeak's 0-100 scale
_MISSING_ESPEAK = (
    "speech synthesis for the spoken-shapes corpus needs espeak-ng from the package "
    "'espeakng-loader' (GPL-3.0): pip install espnet-speechclip[demo]"
)


@dataclass(frozen=True)
class Speaker:
    """A voice+variant pair with its own speaking rate and pitch."""

    voice: str
    variant: str
    rate: int
    pitch: int

    @property
    def name(self) -> str:
        """Single-token speaker id, e.g. ``en-gb-scotland+f2``."""
        return f"{self.voice}+{self.variant}"


def make_speakers(seed: int) -> Tuple[List[Speaker], List[Speaker]]:
    """All 60 speakers split into (training speakers, held-out speakers), both deterministic for ``seed``."""
    rng = random.Random(f"{seed}-speakers")
    speakers = [
        Speaker(
            v,
            var,
            rng.randint(RATE_RANGE[0] + 10, RATE_RANGE[1] - 10),
            rng.randint(PITCH_RANGE[0] + 5, PITCH_RANGE[1] - 5),
        )
        for v in VOICES
        for var in VARIANTS
    ]
    held = set(rng.sample(range(len(speakers)), N_HELD_OUT_SPEAKERS))
    return (
        [s for i, s in enumerate(speakers) if i not in held],
        [s for i, s in enumerate(speakers) if i in held],
    )


class WordTime(NamedTuple):
    """One spoken word and where it lies in the audio, in seconds."""

    word: str
    start: float
    end: float


# espeak_EVENT_TYPE values used here
_EVENT_WORD, _EVENT_PHONEME = 1, 7


class _Event(ctypes.Structure):
    """espeak-ng's ``espeak_EVENT`` (speak_lib.h); ``id`` is the union of a number, a name pointer and
    an 8-byte string (a phoneme mnemonic in phoneme events)."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", ctypes.c_char * 8),
    ]


# espeak-ng speaks some function words as one word with the word before ("on the", "in the", "of a"):
# it reports a word event for the first only, and the phonemes of both under its text position. The
# joined word then takes this many phonemes from the end of the group (espeak's English phonemes).
_JOINED_PHONEMES = {"a": 1, "an": 2, "the": 2}


def word_times(
    text: str, events: Sequence[Tuple[int, int, int, int, str]], num_samples: int, sample_rate: int
) -> List[WordTime]:
    """Every word of ``text`` (``text.split()``, in order) with its time span, from espeak-ng's events.

    Args:
        text: what was spoken.
        events: ``(type, text_position, length, sample, phoneme)`` of the synthesis events in output
            order; word and phoneme events are used, others ignored. ``text_position`` is 1-based in
            characters, ``sample`` the output sample at which the event happens, ``phoneme`` the
            mnemonic of a phoneme event (pauses start with ``_``).
        num_samples: samples of the synthesised audio.
        sample_rate: its rate.

    A word starts at its first phoneme and ends where the next phoneme (the next word's, or a pause) or
    the end of the audio begins. Phoneme events carry their word's text position. A word that espeak
    joined to the one before (no word event of its own) takes the last phonemes of that group (see
    ``_JOINED_PHONEMES``; an unknown joined word takes one). A group without phoneme events spans from
    its word event to the next one, shared equally by its words.
    """
    positions, i = [], 0  # 1-based character position of each text word
    words = text.split()
    for w in words:
        i = text.index(w, i)
        positions.append(i + 1)
        i += len(w)
    word_events = {pos: sample for kind, pos, _, sample, _ in events if kind == _EVENT_WORD}
    phonemes = [(pos, sample, name) for kind, pos, _, sample, name in events if kind == _EVENT_PHONEME]
    # groups of word indices: a word with its own event, then the words espeak joined to it
    groups: List[List[int]] = []
    for k, pos in enumerate(positions):
        if pos in word_events or not groups:
            groups.append([k])
        else:
            groups[-1].append(k)
    starts: List[float] = [0.0] * len(words)
    ends: List[float] = [0.0] * len(words)
    for g, group in enumerate(groups):
        pos = positions[group[0]]
        mine = [j for j, (p, _, name) in enumerate(phonemes) if p == pos and not name.startswith("_")]
        if mine:
            last = mine[-1]
            end = phonemes[last + 1][1] if last + 1 < len(phonemes) else num_samples
            # the joined words take phonemes from the end, the first word keeps at least one
            cut = [mine[0]]
            taken = 0
            for k in reversed(group[1:]):
                taken += _JOINED_PHONEMES.get(words[k], 1)
                cut.insert(1, mine[max(1, len(mine) - taken)] if len(mine) > 1 else mine[0])
            bounds = [phonemes[j][1] for j in cut] + [end]
        else:
            first = word_events.get(pos, 0)
            nxt = [word_events[positions[h[0]]] for h in groups[g + 1 :] if positions[h[0]] in word_events]
            end = nxt[0] if nxt else num_samples
            bounds = [first + (end - first) * n / len(group) for n in range(len(group) + 1)]
        for n, k in enumerate(group):
            starts[k], ends[k] = bounds[n], max(bounds[n + 1], bounds[n])
    return [
        WordTime(w, min(s, num_samples) / sample_rate, min(e, num_samples) / sample_rate)
        for w, s, e in zip(words, starts, ends)
    ]


class Espeak:
    """One espeak-ng engine in synchronous mode. Not thread-safe and global per process: make one per process.

    Two things make the samples vary from run to run, and both are pinned down here and in :func:`generate`:
    breath noise (voices like f2/f3) draws from libc ``rand()`` and espeak's own generator, whose states
    other code in the process also moves, so :meth:`synth` seeds both before each utterance; and the
    engine keeps state from one utterance to the next (e.g. its pitch-flutter phase), which neither
    re-initialising nor the seeds reset, so the corpus writer synthesises fixed shards, each in a fresh
    process.
    """

    _RATE, _PITCH = 1, 3  # espeak_PARAMETER values
    _AUDIO_OUTPUT_SYNCHRONOUS = 2
    _INITIALIZE_DONT_EXIT = 0x8000
    _INITIALIZE_PHONEME_EVENTS = 0x0001  # report phonemes too (word timing); the audio is the same
    _POS_CHARACTER = 1
    _CHARS_UTF8 = 1

    def __init__(self) -> None:
        try:
            import espeakng_loader
        except ImportError as e:
            raise RunError(_MISSING_ESPEAK) from e
        lib_path = espeakng_loader.get_library_path()
        try:
            lib = ctypes.CDLL(lib_path)
        except OSError as e:
            raise RunError(f"cannot load espeak-ng library {lib_path}: {e}") from e
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        lib.espeak_Synth.argtypes = [
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        data_path = espeakng_loader.get_data_path()
        self.sample_rate = lib.espeak_Initialize(
            self._AUDIO_OUTPUT_SYNCHRONOUS,
            0,
            data_path.encode(),
            self._INITIALIZE_DONT_EXIT | self._INITIALIZE_PHONEME_EVENTS,
        )
        if self.sample_rate <= 0:
            raise RunError(f"espeak_Initialize failed with data path {data_path}")
        self._chunks: List[np.ndarray] = []
        self._events: List[Tuple[int, int, int, int, str]] = []
        callback_type = ctypes.CFUNCTYPE(
            ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event)
        )

        def collect(wav, n: int, events) -> int:  # called by espeak with each block of int16 samples
            if n > 0:
                self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
            i = 0
            while events and events[i].type != 0:  # the list ends with espeakEVENT_LIST_TERMINATED
                e = events[i]
                name = e.id.decode("ascii", "replace") if e.type == _EVENT_PHONEME else ""
                self._events.append((e.type, e.text_position, e.length, e.sample, name))
                i += 1
            return 0  # 0 = continue synthesis

        self._callback = callback_type(collect)  # keep a reference: espeak holds only the pointer
        lib.espeak_SetSynthCallback(self._callback)
        self._lib = lib
        self._libc = ctypes.CDLL(None)  # the process's own symbols: the libc whose rand() espeak calls
        self._libc.srand.argtypes = [ctypes.c_uint]

    def synth(
        self, text: str, voice: str, variant: str, rate: int, pitch: int, seed: int
    ) -> Tuple[np.ndarray, List[WordTime]]:
        """Speak ``text``; returns int16 samples (T,) at :attr:`sample_rate` (22050 Hz) and the spoken
        words' time spans in seconds (see :func:`word_times`).

        ``seed`` (0 <= seed < 2**31) fixes the breath noise.
        """
        name = f"{_ESPEAK_NAME.get(voice, voice)}+{variant}"
        if self._lib.espeak_SetVoiceByName(name.encode()) != 0:
            raise RunError(f"espeak-ng has no voice {name!r}")
        self._lib.espeak_SetParameter(self._RATE, rate, 0)
        self._lib.espeak_SetParameter(self._PITCH, pitch, 0)
        self._libc.srand(seed)
        self._lib.espeak_ng_SetRandSeed(seed)
        self._chunks = []
        self._events = []
        data = text.encode("utf-8") + b"\0"
        err = self._lib.espeak_Synth(data, len(data), 0, self._POS_CHARACTER, 0, self._CHARS_UTF8, None, None)
        if err != 0:
            raise RunError(f"espeak_Synth failed ({err}) on {text!r} with voice {name}")
        self._lib.espeak_Synchronize()
        if not self._chunks:
            raise RunError(f"espeak-ng produced no audio for {text!r} with voice {name}")
        wav = np.concatenate(self._chunks)
        return wav, word_times(text, self._events, len(wav), self.sample_rate)


def speech_bounds(
    wav: np.ndarray, sample_rate: int = SAMPLE_RATE, threshold_db: float = -40.0, margin_s: float = 0.03
) -> Tuple[int, int]:
    """(start, end) samples of ``wav`` (T,) without its leading and trailing 10 ms frames quieter than
    ``threshold_db`` below the loudest one, keeping a margin; (0, T) when there is nothing to cut."""
    hop = sample_rate // 100
    n = len(wav) // hop
    if n == 0:
        return 0, len(wav)
    rms = np.sqrt(np.mean(wav[: n * hop].reshape(n, hop) ** 2, axis=1))
    loud = np.nonzero(rms > rms.max() * 10 ** (threshold_db / 20))[0]
    if len(loud) == 0:
        return 0, len(wav)
    margin = int(margin_s * sample_rate)
    return max(0, loud[0] * hop - margin), min(len(wav), (loud[-1] + 1) * hop + margin)


def trim_silence(wav: np.ndarray, sample_rate: int = SAMPLE_RATE, **kwargs) -> np.ndarray:
    """``wav`` (T,) cut to :func:`speech_bounds` (a view)."""
    start, end = speech_bounds(wav, sample_rate, **kwargs)
    return wav[start:end]


def _moved(words: Sequence[WordTime], shift: float, duration: float) -> List[WordTime]:
    """Word times in an audio whose first ``shift`` seconds were cut, clipped to its ``duration``."""

    def clip(t: float) -> float:
        return min(max(t - shift, 0.0), duration)

    return [WordTime(w.word, clip(w.start), clip(w.end)) for w in words]


_ENGINE: Optional[Espeak] = None


def _synth_shard(
    jobs: Sequence[Tuple[str, str, str, str, int, int, int]],
) -> List[Tuple[int, List[WordTime]]]:
    """Worker: synthesise ``(wav_path, text, voice, variant, rate, pitch, seed)`` jobs in order and write
    16 kHz wavs.

    Returns, per wav, its number of samples and its words' time spans in it (seconds, after the silence
    trimming; clipped to the audio). Runs in a fresh process per shard (see :class:`Espeak`).
    """
    global _ENGINE
    if _ENGINE is None:
        _ENGINE = Espeak()
    out = []
    for path, text, voice, variant, rate, pitch, seed in jobs:
        raw, words = _ENGINE.synth(text, voice, variant, rate, pitch, seed)
        full = resample(raw.astype(np.float32) / 32768.0, _ENGINE.sample_rate, SAMPLE_RATE)
        start, end = speech_bounds(full)
        wav = full[start:end]
        write_wav(path, wav, SAMPLE_RATE)
        # resampling keeps times; trimming moves them by its start and cuts them at its end
        out.append((len(wav), _moved(words, start / SAMPLE_RATE, len(wav) / SAMPLE_RATE)))
    return out
