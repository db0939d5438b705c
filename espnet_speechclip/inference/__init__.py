"""Inference: the one door to a trained model (:class:`Speech2Image`), its input and output types, the
resolver of model sources, the decode folder, the packed format and packing, the Hub.

The names below are imported on first use: the light modules of the package (the packed format, the
Hub) serve commands such as ``hub_download`` without importing torch (seconds per process).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from espnet_speechclip.inference.result_types import Hit, Keyword, KeywordTiming, QueryResult
    from espnet_speechclip.inference.speech2image import Speech2Image

_EXPORTS = {
    "Speech2Image": "espnet_speechclip.inference.speech2image",
    "Hit": "espnet_speechclip.inference.result_types",
    "Keyword": "espnet_speechclip.inference.result_types",
    "KeywordTiming": "espnet_speechclip.inference.result_types",
    "QueryResult": "espnet_speechclip.inference.result_types",
}
__all__ = ["Speech2Image", "Hit", "Keyword", "KeywordTiming", "QueryResult"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
