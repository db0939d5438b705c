"""What an index is made from: the model, the CLIP and the space its embeddings live in.

``{"model": {"weights", "options"}, "clip": <CLIP fingerprint>, "modality", "branch", "dtype"}``: the
model by content (:func:`espnet_speechclip.identity.model_identity`: the same model from an
experiment folder, a packed archive or the Hub is the same), the CLIP by name and weights' hash
(:func:`espnet_speechclip.training.image_cache.clip_fingerprint`). Queries compare ``model`` and
``clip``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Mapping, Optional, Union

if TYPE_CHECKING:
    from espnet_speechclip.inference.speech2image import Speech2Image

PathLike = Union[str, Path]


def made_from(
    config: Union[PathLike, Mapping],
    model_file: Optional[PathLike],
    modality: str,
    branch: Optional[str] = None,
    dtype: str = "float16",
) -> Dict[str, Any]:
    """The record of an index embedded by the model ``(config, model_file)`` (no model is loaded;
    ``model_file`` None: random trainable weights). ``branch`` matters for speech collections only."""
    from espnet_speechclip.config import read_config
    from espnet_speechclip.identity import model_identity
    from espnet_speechclip.training.image_cache import clip_fingerprint

    cfg = read_config(config)
    model = model_identity(cfg, model_file) if model_file is not None else {"weights": "random"}
    return {
        "model": model,
        "clip": clip_fingerprint(**cfg["clip_conf"]),
        "modality": modality,
        "branch": branch if modality == "speech" else None,
        "dtype": dtype,
    }


def made_from_of(s2i: Speech2Image, modality: str, branch: Optional[str] = None, dtype: str = "float16"):
    """:func:`made_from` of a loaded :class:`Speech2Image`."""
    return made_from(s2i.config, getattr(s2i, "model_file", None), modality, branch, dtype)
