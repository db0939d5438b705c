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
from typing import List, Optional, Sequence, Tuple

import numpy as np

from espnet_speechclip.data.media import SAMPLE_RATE, resample, write_wav

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
    _POS_CHARACTER = 1
    _CHARS_UTF8 = 1

    def __init__(self) -> None:
        try:
            import espeakng_loader
        except ImportError as e:
            raise RuntimeError(_MISSING_ESPEAK) from e
        lib_path = espeakng_loader.get_library_path()
        try:
            lib = ctypes.CDLL(lib_path)
        except OSError as e:
            raise RuntimeError(f"cannot load espeak-ng library {lib_path}: {e}") from e
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
            self._AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path.encode(), self._INITIALIZE_DONT_EXIT
        )
        if self.sample_rate <= 0:
            raise RuntimeError(f"espeak_Initialize failed with data path {data_path}")
        self._chunks: List[np.ndarray] = []
        callback_type = ctypes.CFUNCTYPE(
            ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
        )

        def collect(wav, n: int, events) -> int:  # called by espeak with each block of int16 samples
            if n > 0:
                self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
            return 0  # 0 = continue synthesis

        self._callback = callback_type(collect)  # keep a reference: espeak holds only the pointer
        lib.espeak_SetSynthCallback(self._callback)
        self._lib = lib
        self._libc = ctypes.CDLL(None)  # the process's own symbols: the libc whose rand() espeak calls
        self._libc.srand.argtypes = [ctypes.c_uint]

    def synth(self, text: str, voice: str, variant: str, rate: int, pitch: int, seed: int) -> np.ndarray:
        """Speak ``text``; returns int16 samples (T,) at :attr:`sample_rate` (22050 Hz).

        ``seed`` (0 <= seed < 2**31) fixes the breath noise.
        """
        name = f"{_ESPEAK_NAME.get(voice, voice)}+{variant}"
        if self._lib.espeak_SetVoiceByName(name.encode()) != 0:
            raise RuntimeError(f"espeak-ng has no voice {name!r}")
        self._lib.espeak_SetParameter(self._RATE, rate, 0)
        self._lib.espeak_SetParameter(self._PITCH, pitch, 0)
        self._libc.srand(seed)
        self._lib.espeak_ng_SetRandSeed(seed)
        self._chunks = []
        data = text.encode("utf-8") + b"\0"
        err = self._lib.espeak_Synth(data, len(data), 0, self._POS_CHARACTER, 0, self._CHARS_UTF8, None, None)
        if err != 0:
            raise RuntimeError(f"espeak_Synth failed ({err}) on {text!r} with voice {name}")
        self._lib.espeak_Synchronize()
        if not self._chunks:
            raise RuntimeError(f"espeak-ng produced no audio for {text!r} with voice {name}")
        return np.concatenate(self._chunks)


def trim_silence(
    wav: np.ndarray, sample_rate: int = SAMPLE_RATE, threshold_db: float = -40.0, margin_s: float = 0.03
) -> np.ndarray:
    """Cut leading and trailing 10 ms frames quieter than ``threshold_db`` below the loudest one, keeping
    a margin.

    wav: (T,) float. Returns a view (T',).
    """
    hop = sample_rate // 100
    n = len(wav) // hop
    if n == 0:
        return wav
    rms = np.sqrt(np.mean(wav[: n * hop].reshape(n, hop) ** 2, axis=1))
    loud = np.nonzero(rms > rms.max() * 10 ** (threshold_db / 20))[0]
    if len(loud) == 0:
        return wav
    margin = int(margin_s * sample_rate)
    return wav[max(0, loud[0] * hop - margin) : min(len(wav), (loud[-1] + 1) * hop + margin)]


_ENGINE: Optional[Espeak] = None


def _synth_shard(jobs: Sequence[Tuple[str, str, str, str, int, int, int]]) -> List[int]:
    """Worker: synthesise ``(wav_path, text, voice, variant, rate, pitch, seed)`` jobs in order and write
    16 kHz wavs.

    Returns the number of samples of each wav. Runs in a fresh process per shard (see :class:`Espeak`).
    """
    global _ENGINE
    if _ENGINE is None:
        _ENGINE = Espeak()
    out = []
    for path, text, voice, variant, rate, pitch, seed in jobs:
        raw = _ENGINE.synth(text, voice, variant, rate, pitch, seed)
        wav = trim_silence(resample(raw.astype(np.float32) / 32768.0, _ENGINE.sample_rate, SAMPLE_RATE))
        write_wav(path, wav, SAMPLE_RATE)
        out.append(len(wav))
    return out
