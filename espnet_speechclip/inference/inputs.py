"""What Speech2Image accepts, decoded and checked: speech as file paths, 16 kHz waveforms or
``(waveform, sample_rate)``; images as file paths or PIL images; an image folder's files.

Every error names the input (its path, or the label the caller gave it) before any model runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from espnet_speechclip.data.media import MediaError, load_audio, load_image, resample
from espnet_speechclip.errors import InputError, MissingFileError
from espnet_speechclip.models.speech_encoder import check_min_samples

PathLike = Union[str, Path]
# A file path, a 16 kHz waveform (T,), or a waveform at any rate as (waveform, sample_rate).
SpeechInput = Union[PathLike, np.ndarray, torch.Tensor, Tuple[Any, int]]
ImageInput = Any  # a file path or a PIL image


def list_images(folder: PathLike) -> List[Path]:
    """Image files (by extension PIL knows) directly inside ``folder``, sorted by name."""
    from PIL import Image

    folder = Path(folder)
    if not folder.is_dir():
        raise MissingFileError(f"image folder {folder} does not exist")
    extensions = {ext.lower() for ext in Image.registered_extensions()}
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in extensions)
    if not files:
        raise MediaError(f"image folder {folder} holds no image files")
    return files


def is_one_speech(x: Any) -> bool:
    """A single utterance (path, waveform, (waveform, rate)) rather than a list of them."""
    if isinstance(x, (str, Path, np.ndarray, torch.Tensor)):
        return True
    return (
        isinstance(x, tuple)
        and len(x) == 2
        and isinstance(x[1], (int, np.integer))
        and not isinstance(x[0], (str, Path))
    )


def is_one_image(x: Any) -> bool:
    """A single image (path or PIL image) rather than a list of them."""
    from PIL import Image

    return isinstance(x, (str, Path, Image.Image))


def as_list(x: Any, one: bool) -> List[Any]:
    """``[x]`` for one input, else the inputs as a list."""
    return [x] if one else list(x)


def load_speech(item: SpeechInput, name: str, min_samples: int = 1) -> np.ndarray:
    """One input -> mono float32 16 kHz waveform (T,), checked (not empty, finite, at least
    ``min_samples`` long: the speech encoder's minimum); errors start with ``name``."""
    if isinstance(item, (str, Path)):
        try:
            wav = load_audio(item)  # resamples; names the file on any failure
        except MediaError as e:
            raise MediaError(str(e) if name == str(item) else f"{name}: {e}") from e
    elif isinstance(item, tuple):
        wav, rate = item
        if int(rate) <= 0:
            raise InputError(f"{name}: sample rate must be positive, got {rate}")
        wav = mono(wav, name)
        if wav.size:
            wav = resample(wav, int(rate))
    elif isinstance(item, (np.ndarray, torch.Tensor)):
        wav = mono(item, name)
    else:
        raise TypeError(
            f"{name}: expected a file path, a 16 kHz waveform or "
            f"(waveform, sample_rate), got {type(item).__name__}"
        )
    if wav.size == 0:
        raise MediaError(f"{name} is empty")
    if not np.isfinite(wav).all():
        raise MediaError(f"{name} contains NaN or infinite samples")
    check_min_samples(len(wav), min_samples, name)
    return wav


def mono(wav: Any, name: str) -> np.ndarray:
    """A waveform (T,) as float32 numpy; errors start with ``name``."""
    if isinstance(wav, torch.Tensor):
        wav = wav.detach().cpu().numpy()
    wav = np.asarray(wav, dtype=np.float32)
    if wav.ndim != 1:
        raise InputError(
            f"{name}: expected a mono waveform (T,), got shape {wav.shape}; give several utterances as a list"
        )
    return wav


def load_image_input(item: ImageInput, name: str):
    """A file path or PIL image -> an RGB PIL image; errors name the file or ``name``."""
    from PIL import Image

    if isinstance(item, (str, Path)):
        return load_image(item)  # names the file when missing or undecodable
    if isinstance(item, Image.Image):
        return item.convert("RGB")
    raise TypeError(f"image input {name}: expected a file path or a PIL image, got {type(item).__name__}")


def load_speech_inputs(
    speech: Union[SpeechInput, Sequence[SpeechInput]], names: Optional[Sequence[str]], min_samples: int = 1
) -> List[np.ndarray]:
    """One or a list of inputs -> their checked 16 kHz waveforms (see :func:`load_speech`); errors name
    the input (``names``: one label per input, e.g. utterance ids)."""
    items = as_list(speech, is_one_speech(speech))
    if not items:
        raise InputError("Speech2Image needs at least one utterance")
    if names is not None and len(names) != len(items):
        raise InputError(f"{len(names)} names for {len(items)} utterances")
    labels = (
        list(names)
        if names is not None
        else [str(x) if isinstance(x, (str, Path)) else f"speech input #{i}" for i, x in enumerate(items)]
    )
    return [load_speech(x, n, min_samples) for x, n in zip(items, labels)]
