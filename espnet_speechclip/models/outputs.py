"""What a SpeechCLIP model gives for a batch of speech: :class:`SpeechEmbeddings` (inference and
training), and :class:`UnitCount` (training only: SpeechCLIP+'s unit-count loss).

A leaf module (torch only), so that every caller can name the types without importing the model.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Dict, Optional, Tuple

import torch

from espnet_speechclip.errors import MissingKeyError

# The utterance embeddings a model can give, in this order (a model has one or both).
BRANCHES: Tuple[str, ...] = ("parallel", "cascaded")


@dataclass
class SpeechEmbeddings:
    """The output of :meth:`SpeechCLIP.encode_speech` for B utterances; fields of a branch or an option
    the model or the call does not have are None.

    Shapes: D = CLIP's joint width; K = keywords per utterance (the cascaded branch's fixed K, or for
    SpeechCLIP+'s CIF models the batch's largest count, slots beyond an utterance's own holding id -1,
    score 0, frames 0); T' = speech frames (:attr:`S3PRLSpeechEncoder.frame_rate` per second, frame t
    starting at :attr:`S3PRLSpeechEncoder.frame_offset` + t / frame_rate seconds).

    Attributes:
        parallel: (B, D) L2-normalised parallel embedding (parallel, hybrid, hybrid+, hybrid_shared).
        cascaded: (B, D) L2-normalised cascaded embedding (cascaded, hybrid, cascaded+, hybrid+).
        keyword_ids: (B, K) CLIP vocabulary ids of the keywords (cascaded branch).
        keyword_scores: (B, K) cosine of each keyword vector with its codebook subword.
        keyword_neighbour_ids: (B, K, 5) each keyword's nearest codebook subwords by cosine, nearest
            first (what the authors' keyword hit rate counts; -1 beyond an utterance's keywords). Eval
            mode only.
        keyword_lengths: (B,) keywords per utterance (CIF models only).
        keyword_frames: (B, K, 2) fractional (start, end) frames each CIF unit integrated (its firing
            boundaries; CIF models only).
        keyword_attention: (B, K, T') each keyword's weight over the speech frames, rows summing to 1
            over an utterance's frames (``encode_speech(..., keyword_attention=True)``, cascaded branch):
            a K-token keyword's attention (:meth:`CascadedBranch.keywords`), a CIF keyword's integration
            weights (:meth:`CIFCascadedBranch.forward`).
        frame_features: (B, T', D_a) the speech encoder's frames the keywords are read from (with
            ``keyword_attention``): what :meth:`CascadedBranch.keyword_cosines` hides stretches of to
            find where a K-token keyword was heard.
        frame_lengths: (B,) T'_i, the frames of each utterance (with ``keyword_attention``).
    """

    parallel: Optional[torch.Tensor] = None
    cascaded: Optional[torch.Tensor] = None
    keyword_ids: Optional[torch.Tensor] = None
    keyword_scores: Optional[torch.Tensor] = None
    keyword_neighbour_ids: Optional[torch.Tensor] = None
    keyword_lengths: Optional[torch.Tensor] = None
    keyword_frames: Optional[torch.Tensor] = None
    keyword_attention: Optional[torch.Tensor] = None
    frame_features: Optional[torch.Tensor] = None
    frame_lengths: Optional[torch.Tensor] = None

    def branch(self, name: str) -> torch.Tensor:
        """The (B, D) embedding of branch ``name`` (one of :data:`BRANCHES`); KeyError if the model has
        no such branch."""
        if name not in BRANCHES or getattr(self, name) is None:
            raise MissingKeyError(f"no {name} embedding: the model gives {self.branches()}")
        return getattr(self, name)

    def branches(self) -> Dict[str, torch.Tensor]:
        """``{branch: (B, D)}`` for the branches present, in :data:`BRANCHES` order."""
        return {b: getattr(self, b) for b in BRANCHES if getattr(self, b) is not None}

    def per_utterance(self) -> Dict[str, torch.Tensor]:
        """The present fields indexed by utterance with a fixed width per batch: the embeddings and
        keyword fields, without the frame-level ``keyword_attention``, ``frame_features``,
        ``keyword_frames`` and ``frame_lengths`` (whose T' differs between batches)."""
        frame_level = ("keyword_attention", "frame_features", "keyword_frames", "frame_lengths")
        return {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if f.name not in frame_level and getattr(self, f.name) is not None
        }


@dataclass
class UnitCount:
    """SpeechCLIP+'s unit-count (quantity) loss for B utterances: training and validation only.

    Attributes:
        loss: () mean over the batch of |sum(alpha) - target|.
        targets: (B,) the target unit counts.
        units: (B,) the units (keywords) each utterance got.
    """

    loss: torch.Tensor
    targets: torch.Tensor
    units: torch.Tensor

    def stats(self) -> Dict[str, torch.Tensor]:
        """``loss_quantity`` (detached loss), ``units`` (mean keywords per utterance) and ``unit_error``
        (mean |units - target|; 0 in training while the alphas are scaled to the targets)."""
        return {
            "loss_quantity": self.loss.detach(),
            "units": self.units.float().mean(),
            "unit_error": (self.units - self.targets).abs().float().mean(),
        }


@dataclass
class KeywordOutput:
    """What a cascaded branch (:class:`CascadedBranch`, or SpeechCLIP+'s :class:`CIFCascadedBranch`) gives
    for B utterances; K, D, T' as in :class:`SpeechEmbeddings`, V the codebook size, D_t CLIP's token
    width.

    Attributes:
        embedding: (B, D) L2-normalised cascaded embedding.
        keyword_ids: (B, K) CLIP vocabulary ids (CIF: -1 beyond an utterance's units).
        keyword_scores: (B, K) cosine of each keyword vector with its codebook subword (CIF: 0 beyond).
        similarity: (B, K, V) cosine of each keyword vector with every codebook row (K-token branch).
        attention: (B, K, T') each keyword's weight over the frames (``return_attention`` only).
        parallel_embedding: (B, D) L2-normalised parallel embedding of the shared attention (hybrid+,
            hybrid_shared).
        keyword_lengths: (B,) units per utterance (CIF).
        unit_spans: (B, K, 2) fractional (start, end) frames of each unit, 0 beyond (CIF).
        alpha_sum: (B,) the predicted quantity, the unscaled sum of the CIF weights (CIF).
        unit_count: the unit-count loss when the units have a target (CIF), else None.
    """

    embedding: torch.Tensor
    keyword_ids: torch.Tensor
    keyword_scores: torch.Tensor
    similarity: Optional[torch.Tensor] = None
    attention: Optional[torch.Tensor] = None
    parallel_embedding: Optional[torch.Tensor] = None
    keyword_lengths: Optional[torch.Tensor] = None
    unit_spans: Optional[torch.Tensor] = None
    alpha_sum: Optional[torch.Tensor] = None
    unit_count: Optional[UnitCount] = None
