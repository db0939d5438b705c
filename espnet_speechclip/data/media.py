"""Reading and checking audio and image files. Every failure names the file.

torchaudio 2.11 has no load backend here, so audio goes through soundfile; resampling uses
scipy's polyphase filter.
"""

from __future__ import annotations

import contextlib
from math import gcd
from pathlib import Path
from typing import Iterator, Optional, Tuple

import numpy as np

from espnet_speechclip.errors import InputError

SAMPLE_RATE = 16000


class MediaError(InputError):
    """A missing, unreadable or unusable audio or image file."""


@contextlib.contextmanager
def _decoding(path: Path, kind: str) -> Iterator[None]:
    """Refuse a missing ``kind`` (audio, image) file, then turn any failure of the block into a
    :class:`MediaError` naming the file (a MediaError raised in the block passes as it is)."""
    if not path.is_file():
        raise MediaError(f"{kind} file {path} does not exist")
    try:
        yield
    except MediaError:
        raise
    except Exception as e:  # the decoders raise several types for bad data
        raise MediaError(f"{kind} file {path} cannot be decoded: {e}") from e


def probe_audio(path: str | Path) -> Tuple[int, int, int]:
    """Return ``(num_frames, sample_rate, channels)`` of an audio file, decoding it fully.

    Decoding the whole file (not only the header) catches truncated or corrupt data.
    """
    import soundfile as sf

    path = Path(path)
    with _decoding(path, "audio"):
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    if data.shape[0] == 0:
        raise MediaError(f"audio file {path} is empty")
    if not np.isfinite(data).all():
        raise MediaError(f"audio file {path} contains NaN or infinite samples")
    return data.shape[0], rate, data.shape[1]


def read_audio_header(path: str | Path) -> Tuple[int, int, int]:
    """``(num_frames, sample_rate, channels)`` from an audio file's header, without decoding it: a
    quick check that every file of a set opens at all, before a model is loaded to decode them
    (:func:`probe_audio` decodes fully, to catch damaged data as well)."""
    import soundfile as sf

    path = Path(path)
    with _decoding(path, "audio"):
        info = sf.info(str(path))
    return info.frames, info.samplerate, info.channels


class TooLongError(MediaError):
    """An audio file longer than the caller takes; ``seconds`` is its length when known (else None)."""

    def __init__(self, message: str, seconds: Optional[float]):
        super().__init__(message)
        self.seconds = seconds


def load_audio(
    path: str | Path, sample_rate: int = SAMPLE_RATE, max_seconds: Optional[float] = None
) -> np.ndarray:
    """Load an audio file as mono float32 at ``sample_rate``: (T,).

    With ``max_seconds``, a longer file is refused (:class:`TooLongError`) from its header's length
    before any decoding, and decoding stops once past the limit when the header is wrong or silent
    (some MP3 or OGG files): memory stays bounded by the limit, whatever the file's real length (a
    small FLAC of hours of silence decodes to gigabytes).
    """
    import soundfile as sf

    path = Path(path)
    with _decoding(path, "audio"), sf.SoundFile(str(path)) as f:
        rate = f.samplerate
        limit = None if max_seconds is None else int(max_seconds * rate) + 1
        if limit is not None and 0 < f.frames < (1 << 62) and f.frames >= limit:
            raise TooLongError(
                f"audio file {path} is {f.frames / rate:.1f} s long, more than {max_seconds:g} s",
                f.frames / rate,
            )
        if limit is None:
            data = f.read(dtype="float32", always_2d=True)
        else:
            data = _read_at_most(f, limit)
            if data.shape[0] >= limit:
                raise TooLongError(
                    f"audio file {path} is longer than {max_seconds:g} s (decoding stopped there)", None
                )
    if data.shape[0] == 0:
        raise MediaError(f"audio file {path} is empty")
    return resample(data.mean(axis=1), rate, sample_rate)


def _read_at_most(f, frames: int, block: int = 1 << 16) -> np.ndarray:
    """Up to ``frames`` frames of an open ``soundfile.SoundFile``, (T, C) float32, read in blocks."""
    parts, total = [], 0
    while total < frames:
        part = f.read(min(block, frames - total), dtype="float32", always_2d=True)
        if part.shape[0] == 0:
            break
        parts.append(part)
        total += part.shape[0]
    return np.concatenate(parts) if parts else np.zeros((0, f.channels), np.float32)


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
    with _decoding(path, "image"), Image.open(path) as im:
        im.load()
        return im.size


def load_image(path: str | Path):
    """Load an image file as an RGB PIL image."""
    from PIL import Image

    path = Path(path)
    with _decoding(path, "image"), Image.open(path) as im:
        return im.convert("RGB")


# log_mel's analysis: 25 ms windows every 10 ms, 40 mel bands (16 kHz input)
MEL_HOP = 160
_MEL_BANDS = 40
_mel = None


def log_mel(wav: np.ndarray) -> np.ndarray:
    """16 kHz waveform (S,) -> (S // MEL_HOP + 1, 40) float64 log mel spectrum, row j centred at
    j * MEL_HOP samples (what keyword spans segment an utterance on)."""
    global _mel
    import torch
    import torchaudio

    if _mel is None:  # built once: its filterbank is the same for every utterance
        _mel = torchaudio.transforms.MelSpectrogram(
            SAMPLE_RATE, n_fft=400, hop_length=MEL_HOP, n_mels=_MEL_BANDS
        )
    with torch.no_grad():
        spec = _mel(torch.as_tensor(np.asarray(wav), dtype=torch.float32))
    return torch.log(spec + 1e-6).T.double().numpy()
