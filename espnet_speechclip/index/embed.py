"""Embedding a collection's files with a trained SpeechCLIP, skipping the ones that cannot be read.

Images go through CLIP's image tower; recordings through the model's speech encoder into one branch's
space. A file that is missing, undecodable, empty or (speech) shorter than the encoder's minimum is left
out and reported with the reason; the rest of its batch is embedded as usual.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from espnet_speechclip.data.media import MediaError, load_audio, load_image
from espnet_speechclip.index.collection import IMAGE, Item

if TYPE_CHECKING:
    from espnet_speechclip.inference.speech2image import Speech2Image


def _load(s2i: Speech2Image, item: Item, modality: str) -> Any:
    """One file -> a PIL image / a checked 16 kHz waveform (T,). Raises MediaError naming it."""
    if modality == IMAGE:
        return load_image(item.path)
    from espnet_speechclip.models.speech_encoder import check_min_samples

    wav = load_audio(item.path)
    if not np.isfinite(wav).all():
        raise MediaError(f"audio file {item.path} contains NaN or infinite samples")
    check_min_samples(len(wav), s2i.model.speech_encoder.min_samples, f"audio file {item.path}")
    return wav


def embed_items(
    s2i: Speech2Image,
    items: Sequence[Item],
    modality: str,
    branch: Optional[str] = None,
    bar: Any = None,
) -> Tuple[np.ndarray, List[Item], List[Tuple[str, str]]]:
    """Embed ``items`` in batches of ``s2i.batch_size``.

    Returns:
        (n_ok, D) float32 normalised embeddings, the n_ok items they belong to (in order), and
        ``(path, reason)`` of every file left out. ``bar`` (a tqdm) advances by every item.
    """
    out: List[np.ndarray] = []
    ok: List[Item] = []
    failed: List[Tuple[str, str]] = []
    for start in range(0, len(items), s2i.batch_size):
        loaded: List[Any] = []
        for item in items[start : start + s2i.batch_size]:
            try:
                loaded.append(_load(s2i, item, modality))
                ok.append(item)
            except MediaError as e:
                failed.append((item.path, str(e)))
        if loaded:
            out.append(embed_loaded(s2i, loaded, modality, branch))
        if bar is not None:
            bar.update(len(items[start : start + s2i.batch_size]))
    dim = out[0].shape[1] if out else 0
    return (np.concatenate(out) if out else np.zeros((0, dim), np.float32)), ok, failed


def embed_loaded(s2i: Speech2Image, loaded: List[Any], modality: str, branch: Optional[str]) -> np.ndarray:
    """PIL images or 16 kHz waveforms -> (n, D) float32 embeddings (speech: in ``branch``'s space)."""
    if modality == IMAGE:
        return s2i.embed_images(loaded)
    out: Dict[str, np.ndarray] = s2i(loaded)
    return out[branch or s2i.branches[0]]
