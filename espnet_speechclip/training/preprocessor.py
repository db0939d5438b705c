"""Per-utterance preprocessing inside ESPnet's dataset: checks and conversions with the utterance named."""

from __future__ import annotations

import hashlib
from typing import Callable, Dict, Optional

import numpy as np

from espnet_speechclip.errors import InputError
from espnet_speechclip.models.speech_encoder import check_min_samples


def image_id_to_int(key: str) -> int:
    """A stable 63-bit integer for an image key (only equality matters; Python's hash() is salted
    per process, so it would differ between DDP ranks and data-loader workers)."""
    return int.from_bytes(hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest(), "little") >> 1


class SpeechCLIPPreprocessor:
    """Turns one loaded example into arrays the model takes.

    - ``speech`` (T,): must be mono and at least ``min_samples`` long;
    - ``image_id`` (str image key) -> (1,) int64;
    - ``image`` (H, W, 3) float -> CLIP-preprocessed (3, S, S) float32 via ``image_transform``;
    - ``image_emb`` (D,) float: must be finite;
    - ``text`` (transcript) -> CLIP token ids [SOT, ..., EOT] (L,) int64, for zero-shot validation.

    Args:
        min_samples: the fewest samples the speech encoder takes (its ``min_samples``).
        image_transform: PIL -> (3, S, S) tensor, the CLIP model's eval transform (pixels input only).
        text_context: the CLIP text context length (transcripts are truncated to it, EOT kept).
    """

    def __init__(self, min_samples: int, image_transform: Optional[Callable] = None, text_context: int = 77):
        self.min_samples = min_samples
        self.image_transform = image_transform
        self.text_context = text_context

    def __call__(self, uid: str, data: Dict[str, object]) -> Dict[str, np.ndarray]:
        out: Dict[str, np.ndarray] = {}
        for name, value in data.items():
            if name == "speech":
                wav = np.asarray(value, dtype=np.float32)
                if wav.ndim != 1:
                    raise InputError(f"utterance {uid}: speech must be mono, got shape {wav.shape}")
                check_min_samples(wav.shape[0], self.min_samples, f"utterance {uid}")
                out[name] = wav
            elif name == "image_id":
                key = str(value).strip()
                if not key:
                    raise InputError(f"utterance {uid}: empty image id")
                out[name] = np.array([image_id_to_int(key)], dtype=np.int64)
            elif name == "image":
                if self.image_transform is None:
                    raise InputError(
                        "image pixels given but the task was configured with image_input: embedding"
                    )
                from PIL import Image

                pil = Image.fromarray(np.asarray(value).clip(0, 255).astype(np.uint8))
                out[name] = self.image_transform(pil).numpy().astype(np.float32)
            elif name == "image_emb":
                emb = np.asarray(value, dtype=np.float32).reshape(-1)
                if not np.isfinite(emb).all():
                    raise InputError(f"utterance {uid}: cached image embedding has NaN/inf values")
                out[name] = emb
            elif name == "text":
                from espnet_speechclip.models.clip import EOT_ID, tokenize

                if not str(value).strip():
                    raise InputError(f"utterance {uid}: empty transcript")
                ids = tokenize([str(value)], self.text_context)[0].numpy()
                out[name] = ids[: int((ids == EOT_ID).argmax()) + 1].astype(np.int64)
            else:
                out[name] = value
        return out
