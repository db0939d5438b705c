"""Inference: the one door to a trained model (:class:`Speech2Image`), the decode folder, packing."""

from espnet_speechclip.inference.outputs import Hit, Keyword, KeywordTiming, QueryResult
from espnet_speechclip.inference.speech2image import Speech2Image

__all__ = ["Speech2Image", "Hit", "Keyword", "KeywordTiming", "QueryResult"]
