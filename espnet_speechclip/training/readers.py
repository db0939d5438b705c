"""Data types SpeechCLIP adds to ESPnet's dataset (``espnet2.train.dataset.DATA_TYPES``).

- ``image``: ``<key> <image file>`` lines; each value is the decoded RGB image as float32 (H, W, 3)
  in 0..255 (ESPnet rejects uint8 arrays); the task's preprocessor applies CLIP's transform.
- ``sound_16k``: like ``sound`` but every file must be 16 kHz mono with finite, non-empty samples
  (:func:`check_waveform`, the rules the start-up scan of :mod:`espnet_speechclip.training.data_check`
  applies too). ESPnet's ``sound`` only checks that rates agree with each other, so a corpus at 8 kHz
  would train silently on wrong features, and a NaN file would only show as a skipped NaN gradient.

ESPnet resolves a type name by the first table key that ``re.match``-es it, and ``sound`` matches
``sound_16k``: :func:`register_data_types` therefore puts SpeechCLIP's types first in the table (no
ESPnet type name starts with ``sound_16k`` or ``image``, so the order changes nothing for them).
"""

from __future__ import annotations

import collections.abc

import numpy as np

from espnet_speechclip.data.datadir import read_kv
from espnet_speechclip.data.media import SAMPLE_RATE, MediaError, load_image


class ImageReader(collections.abc.Mapping):
    """Maps a key to its decoded image (H, W, 3) float32."""

    def __init__(self, path: str):
        self.path = path
        self.data = read_kv(path)

    def __getitem__(self, key: str) -> np.ndarray:
        try:
            image = load_image(self.data[key])
        except MediaError as e:
            raise MediaError(f"{self.path}: {key}: {e}") from e
        return np.asarray(image, dtype=np.float32)

    def __iter__(self):
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)


def check_waveform(wav: np.ndarray, rate: int, where: str) -> None:
    """Raise :class:`MediaError` starting with ``where`` unless ``wav`` is a usable SpeechCLIP input:
    16 kHz, mono (T,), not empty, every sample finite."""
    if rate != SAMPLE_RATE:
        raise MediaError(
            f"{where} is {rate} Hz; SpeechCLIP needs {SAMPLE_RATE} Hz (the audio-format stage converts it)"
        )
    if wav.ndim != 1:
        channels = wav.shape[1] if wav.ndim == 2 else wav.shape
        raise MediaError(
            f"{where} has {channels} channels; SpeechCLIP needs mono (the audio-format stage mixes it)"
        )
    if wav.size == 0:
        raise MediaError(f"{where} is empty")
    if not np.isfinite(wav).all():
        raise MediaError(f"{where} contains NaN or infinite samples")


class Sound16kReader(collections.abc.Mapping):
    """Maps a key to its waveform (T,) float32, checked by :func:`check_waveform`."""

    def __init__(self, path: str, float_dtype: str = "float32"):
        from espnet2.fileio.sound_scp import SoundScpReader

        self.path = path
        self.reader = SoundScpReader(path, always_2d=False, dtype=float_dtype)

    def __getitem__(self, key: str) -> np.ndarray:
        path = self.reader.get_path(key)
        try:
            rate, wav = self.reader[key]
        except Exception as e:  # libsndfile errors may fail to print: name the type
            raise MediaError(f"{self.path}: utterance {key}: cannot read {path}: {_describe(e)}") from e
        check_waveform(np.asarray(wav), rate, f"{self.path}: utterance {key} ({path})")
        return wav

    def __iter__(self):
        return iter(self.reader)

    def __len__(self) -> int:
        return len(self.reader)


def _describe(e: BaseException) -> str:
    try:
        text = str(e)
    except Exception:
        text = ""
    return f"{type(e).__name__}: {text}" if text else f"{type(e).__name__} (no message)"


def register_data_types() -> None:
    """Put SpeechCLIP's types first in ESPnet's table (idempotent; see the module doc for why first)."""
    from espnet2.train.dataset import DATA_TYPES

    ours = {
        "image": dict(
            func=ImageReader,
            kwargs=[],
            help="Image files decoded as RGB float arrays:\n\n   key_a a.jpg\n   key_b b.png\n   ...",
        ),
        "sound_16k": dict(
            func=Sound16kReader,
            kwargs=["float_dtype"],
            help="Like 'sound', but every file must be 16 kHz mono with finite samples.",
        ),
    }
    if list(DATA_TYPES)[: len(ours)] == list(ours):
        return
    rest = {k: v for k, v in DATA_TYPES.items() if k not in ours}
    DATA_TYPES.clear()  # the same dict object: ESPnet's modules hold a reference to it
    DATA_TYPES.update(ours)
    DATA_TYPES.update(rest)
