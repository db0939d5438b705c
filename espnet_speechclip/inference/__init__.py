"""Inference: the one door to a trained model (:class:`Speech2Image`), its input and output types, the
resolver of model sources, the decode folder, the packed format and packing, the Hub."""

from espnet_speechclip.inference.result_types import Hit, Keyword, KeywordTiming, QueryResult
from espnet_speechclip.inference.speech2image import Speech2Image

__all__ = ["Speech2Image", "Hit", "Keyword", "KeywordTiming", "QueryResult"]
