"""Reading and checking audio and image files. Every failure names the file.

torchaudio 2.11 has no load backend here, so audio goes through soundfile; resampling uses
scipy's polyphase filter.
"""

from __future__ import annotations

from math import gcd
from pathlib import Path
from typing import Tuple

import numpy as np

from espnet_speechclip.errors import InputError

SAMPLE_RATE = 16000


class MediaError(InputError):
    """A missing, unreadable or unusable audio or image file."""


def probe_audio(path: str | Path) -> Tuple[int, int, int]:
    """Return ``(num_frames, sample_rate, channels)`` of an audio file, decoding it fully.

    Decoding the whole file (not only the header) catches truncated or corrupt data.
    """
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise MediaError(f"audio file {path} does not exist")
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as e:  # soundfile raises several types for bad data
        raise MediaError(f"audio file {path} cannot be decoded: {e}") from e
    if data.shape[0] == 0:
        raise MediaError(f"audio file {path} is empty")
    if not np.isfinite(data).all():
        raise MediaError(f"audio file {path} contains NaN or infinite samples")
    return data.shape[0], rate, data.shape[1]


def load_audio(path: str | Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Load an audio file as mono float32 at ``sample_rate``: (T,)."""
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise MediaError(f"audio file {path} does not exist")
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as e:
        raise MediaError(f"audio file {path} cannot be decoded: {e}") from e
    if data.shape[0] == 0:
        raise MediaError(f"audio file {path} is empty")
    return resample(data.mean(axis=1), rate, sample_rate)


def resample(wav: np.ndarray, rate: int, target: int = SAMPLE_RATE) -> np.ndarray:
    """Polyphase resampling of a mono signal (T,) from ``rate`` to ``target`` Hz, float32."""
    if rate == target:
        return wav.astype(np.float32, copy=False)
    from scipy.signal import resample_poly

    g = gcd(rate, target)
    return resample_poly(wav, target // g, rate // g).astype(np.float32)


def write_wav(path: str | Path, wav: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """Write a mono float signal as 16-bit PCM wav."""
    import soundfile as sf

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.clip(wav, -1.0, 1.0), sample_rate, subtype="PCM_16")


def probe_image(path: str | Path) -> Tuple[int, int]:
    """Return ``(width, height)`` of an image file after fully decoding it."""
    from PIL import Image

    path = Path(path)
    if not path.is_file():
        raise MediaError(f"image file {path} does not exist")
    try:
        with Image.open(path) as im:
            im.load()
            return im.size
    except Exception as e:
        raise MediaError(f"image file {path} cannot be decoded: {e}") from e


def load_image(path: str | Path):
    """Load an image file as an RGB PIL image."""
    from PIL import Image

    path = Path(path)
    if not path.is_file():
        raise MediaError(f"image file {path} does not exist")
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except Exception as e:
        raise MediaError(f"image file {path} cannot be decoded: {e}") from e
