"""What Speech2Image gives back: hits, keywords and their timing, a query's result, and how outputs
of several batches are padded and joined.

A leaf of the inference layer: the decode folder, the web page and the CLIs use these types without
loading a model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import torch

from espnet_speechclip.errors import InputError


class Hit(NamedTuple):
    """One retrieved candidate: its position in the candidate list, the candidate as given, the
    cosine similarity to the query."""

    index: int
    item: Any
    score: float


class Keyword(NamedTuple):
    """One cascaded keyword: the CLIP subword, its vocabulary id, its cosine score to the codebook,
    and, when timing was asked for, the span of the utterance it was heard in (seconds; None without
    timing, and where the keyword's attention has no confident peak)."""

    token: str
    id: int
    score: float
    start: Optional[float] = None
    end: Optional[float] = None


@dataclass
class KeywordTiming:
    """Where in one utterance each keyword was heard.

    Attributes:
        keywords: the K keywords, with their spans, cut to the utterance: for K-token cascaded models
            the stretch of three signal segments the model reads the keyword from (kept alone and
            removed, :func:`espnet_speechclip.evaluation.keyword_spans.occlusion_spans`), no span
            (``start`` and ``end`` None) where no stretch stands out of the others; for CIF models
            (cascaded+ / hybrid+, K varies with the utterance) the stretch its unit integrated (from the
            firing boundary before it to its own, see :func:`espnet_speechclip.models.cif.cif`) snapped
            onto the signal's segments
            (:func:`espnet_speechclip.evaluation.keyword_spans.unit_segment_spans`).
        attention: (K, T) float32, each keyword's weight on each of the utterance's T frames, rows
            summing to 1; for K-token cascaded models, the attention of the keyword's CLS query in the
            branch's last layer (mean over heads; see
            :meth:`espnet_speechclip.models.cascaded.CascadedBranch.keywords`); for CIF models, the
            share of each frame's weight its unit integrated (see
            :meth:`espnet_speechclip.models.cif_branch.CIFCascadedBranch.forward`).
        frame_rate: frames per second; frame t covers [t, t + 1) / frame_rate + frame_offset seconds.
        duration: the utterance's length in seconds (at 16 kHz).
        frame_offset: seconds by which the frames are shifted (see
            :attr:`espnet_speechclip.models.speech_encoder.S3PRLSpeechEncoder.frame_offset`).
    """

    keywords: List[Keyword]
    attention: np.ndarray
    frame_rate: float
    duration: float
    frame_offset: float = 0.0


# Outputs of Speech2Image.__call__ whose keyword axis (axis 1) varies with the utterances of CIF models,
# and the value that pads it: -1 is no CLIP id; a padded slot has no time span.
KEYWORD_PADDING = {
    "keyword_ids": -1,
    "keyword_scores": 0.0,
    "keyword_spans": np.nan,
    "keyword_neighbour_ids": -1,
}


def concat_padded(arrays: Sequence[np.ndarray], fill: Any = None) -> np.ndarray:
    """Concatenate (B_i, K_i, ...) arrays along axis 0, padding axis 1 to the largest K_i with ``fill``
    (``None``: no padding, the arrays must agree)."""
    arrays = list(arrays)
    if fill is not None and arrays and arrays[0].ndim > 1:
        width = max(a.shape[1] for a in arrays)
        arrays = [
            np.pad(a, [(0, 0), (0, width - a.shape[1])] + [(0, 0)] * (a.ndim - 2), constant_values=fill)
            for a in arrays
        ]
    return np.concatenate(arrays)


@dataclass
class QueryResult:
    """What :meth:`espnet_speechclip.inference.speech2image.Speech2Image.query` found for one utterance;
    ``embedding`` (D_c,) is the utterance's in ``branch``'s space (rank other precomputed candidates
    with :func:`rank`)."""

    branch: str
    embedding: np.ndarray
    images: List[Hit]
    texts: List[Hit]
    keywords: Optional[List[Keyword]]
    timing: Optional[KeywordTiming] = None


def rank(query: np.ndarray, candidates: np.ndarray, items: Sequence[Any], topk: Optional[int]) -> List[Hit]:
    """query (D,), candidates (M, D) normalised -> the ``topk`` (None: all) hits by cosine similarity,
    best first; ties keep the candidates' order. ``items`` (M) are what the hits carry."""
    if topk is not None and topk < 1:
        raise InputError(f"topk must be at least 1, got {topk}")
    if len(items) != len(candidates):
        raise InputError(f"{len(items)} items for {len(candidates)} candidate embeddings")
    scores = candidates @ query
    order = np.argsort(-scores, kind="stable")[:topk]
    return [Hit(int(i), items[i], float(scores[i])) for i in order]


def keywords_of(out: Dict[str, np.ndarray]) -> List[List[Keyword]]:
    """:meth:`espnet_speechclip.inference.speech2image.Speech2Image.__call__`'s output (``keyword_ids``,
    ``keyword_scores``) -> per utterance, its keywords (no spans; a CIF model's padding left out), as the
    inference entry writes them."""
    from espnet_speechclip.models.clip import decode_token

    return [
        [Keyword(decode_token(int(i)), int(i), float(s)) for i, s in zip(ids, scores) if i >= 0]
        for ids, scores in zip(out["keyword_ids"], out["keyword_scores"])
    ]


def pad_batch(wavs: List[np.ndarray]) -> Tuple[torch.Tensor, torch.Tensor]:
    """List of (T_i,) -> zero-padded (B, T_max), lengths (B,)."""
    lengths = torch.tensor([len(w) for w in wavs])
    out = torch.zeros(len(wavs), int(lengths.max()))
    for i, w in enumerate(wavs):
        out[i, : len(w)] = torch.from_numpy(w)
    return out, lengths
