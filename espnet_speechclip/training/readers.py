"""Data types SpeechCLIP adds to ESPnet's dataset (``espnet2.train.dataset.DATA_TYPES``).

- ``image``: ``<key> <image file>`` lines; each value is the decoded RGB image as float32 (H, W, 3)
  in 0..255 (ESPnet rejects uint8 arrays); the task's preprocessor applies CLIP's transform.
- ``sound_16k``: like ``sound`` but every file must be 16 kHz, the rate all s3prl upstreams expect.
  ESPnet's ``sound`` only checks that rates agree with each other, so a corpus at 8 kHz would train
  silently on wrong features.
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


class Sound16kReader(collections.abc.Mapping):
    """Maps a key to its waveform (T,) float32, refusing any rate but 16 kHz."""

    def __init__(self, path: str, float_dtype: str = "float32"):
        from espnet2.fileio.sound_scp import SoundScpReader

        self.path = path
        self.reader = SoundScpReader(path, always_2d=False, dtype=float_dtype)

    def __getitem__(self, key: str) -> np.ndarray:
        try:
            rate, wav = self.reader[key]
        except Exception as e:
            raise MediaError(
                f"{self.path}: utterance {key}: cannot read {self.reader.get_path(key)}: {e}"
            ) from e
        if rate != SAMPLE_RATE:
            raise MediaError(
                f"{self.path}: utterance {key} is {rate} Hz ({self.reader.get_path(key)}); "
                f"SpeechCLIP needs {SAMPLE_RATE} Hz (run the recipe's audio-format stage)"
            )
        if wav.ndim == 2:
            raise MediaError(
                f"{self.path}: utterance {key} has {wav.shape[1]} channels; SpeechCLIP needs mono"
            )
        return wav

    def __iter__(self):
        return iter(self.reader)

    def __len__(self) -> int:
        return len(self.reader)


def register_data_types() -> None:
    """Add the types to ESPnet's table (idempotent)."""
    from espnet2.train.dataset import DATA_TYPES

    DATA_TYPES.setdefault(
        "image",
        dict(
            func=ImageReader,
            kwargs=[],
            help="Image files decoded as RGB float arrays:\n\n   key_a a.jpg\n   key_b b.png\n   ...",
        ),
    )
    DATA_TYPES.setdefault(
        "sound_16k",
        dict(
            func=Sound16kReader,
            kwargs=["float_dtype"],
            help="Like 'sound', but every file must be 16 kHz mono.",
        ),
    )
