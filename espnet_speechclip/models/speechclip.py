"""SpeechCLIP as an ESPnet model: parallel, cascaded and hybrid.

The model owns the frozen towers (speech upstream inside the speech encoder, CLIP text and optionally
image towers) and one or two branches. Training pairs each utterance with its image, given either as
cached CLIP image embeddings (``image_emb``, the fast path) or as preprocessed pixels (``image``).
"""

from __future__ import annotations

import inspect
from typing import Dict, List, Optional, Sequence

import torch
from espnet2.torch_utils.device_funcs import force_gatherable
from espnet2.train.abs_espnet_model import AbsESPnetModel

from espnet_speechclip.models.cascaded import CascadedBranch
from espnet_speechclip.models.clip import CLIPImageEncoder, CLIPTextEncoder
from espnet_speechclip.models.codebook import full_codebook, read_codebook
from espnet_speechclip.models.frozen import keep_frozen_out_of_state_dict
from espnet_speechclip.models.loss import InfoNCELoss
from espnet_speechclip.models.parallel import ParallelBranch
from espnet_speechclip.models.speech_encoder import S3PRLSpeechEncoder

BRANCHES = ("parallel", "cascaded")
# The cascaded branch's keyword vocabulary unless cascaded_conf.codebook names a codebook file.
FULL_CODEBOOK = "full"


class SpeechCLIP(AbsESPnetModel):
    """Speech encoder + parallel and/or cascaded branch, trained with masked symmetric InfoNCE.

    Use :class:`ParallelSpeechCLIP`, :class:`CascadedSpeechCLIP` or :class:`HybridSpeechCLIP`; the task
    builds the frozen towers and passes them in, the model builds its branches from their confs.

    Args:
        speech_encoder: frozen upstream + learnable layer weights.
        text_encoder: frozen CLIP text tower (cascaded keywords, zero-shot text retrieval).
        image_encoder: frozen CLIP image tower, or None when images come as cached embeddings.
        parallel_conf: kwargs of :class:`ParallelBranch`, or None for no parallel branch.
        cascaded_conf: kwargs of :class:`CascadedBranch` plus ``codebook`` ("full" or a codebook
            file), or None for no cascaded branch.
        parallel_weight, cascaded_weight: hybrid loss weights w_p, w_c.
        temperature, learnable_temperature, max_scale: the InfoNCE temperature (shared by the
            branches). Paper: 0.07 fixed (Base), learnable from 0.07 (Large).
    """

    def __init__(
        self,
        speech_encoder: S3PRLSpeechEncoder,
        text_encoder: CLIPTextEncoder,
        image_encoder: Optional[CLIPImageEncoder],
        parallel_conf: Optional[dict] = None,
        cascaded_conf: Optional[dict] = None,
        parallel_weight: float = 1.0,
        cascaded_weight: float = 1.0,
        temperature: float = 0.07,
        learnable_temperature: bool = False,
        max_scale: float = 100.0,
    ):
        super().__init__()
        if parallel_conf is None and cascaded_conf is None:
            raise ValueError("SpeechCLIP needs a parallel or a cascaded branch")
        self.speech_encoder = speech_encoder
        self.text_encoder = text_encoder
        self.image_encoder = image_encoder
        width, embed_dim = speech_encoder.output_size(), text_encoder.embed_dim
        if image_encoder is not None and image_encoder.embed_dim != embed_dim:
            raise ValueError(f"CLIP image ({image_encoder.embed_dim}) and text ({embed_dim}) widths differ")
        self.parallel = None if parallel_conf is None else ParallelBranch(width, embed_dim, **parallel_conf)
        self.cascaded = None
        if cascaded_conf is not None:
            conf = dict(cascaded_conf)
            codebook = conf.pop("codebook", FULL_CODEBOOK)
            vocab = text_encoder.vocab_size
            ids = full_codebook(vocab) if codebook == FULL_CODEBOOK else read_codebook(codebook, vocab)
            self.cascaded = CascadedBranch(width, text_encoder, torch.tensor(ids), **conf)
        self.loss = InfoNCELoss(temperature, learnable_temperature, max_scale)
        self.weights = {"parallel": parallel_weight, "cascaded": cascaded_weight}
        keep_frozen_out_of_state_dict(self)

    @property
    def branches(self) -> List[str]:
        return [b for b in BRANCHES if getattr(self, b) is not None]

    # ---------------------------------------------------------------- inference helpers
    def encode_speech(
        self, speech: torch.Tensor, speech_lengths: torch.Tensor, keyword_attention: bool = False
    ) -> Dict[str, torch.Tensor]:
        """speech (B, T), lengths (B,) -> {"parallel": (B, D_c), "cascaded": (B, D_c),
        "keyword_ids": (B, K), "keyword_scores": (B, K)} for the branches the model has, and in eval mode
        "keyword_neighbour_ids" (B, K, 5): each keyword's nearest codebook subwords (the authors' keyword
        hit rate counts those).

        With ``keyword_attention`` (cascaded branch) also "keyword_attention" (B, K, T'), each keyword's
        attention over the speech frames (see :meth:`CascadedBranch.keywords`), and "frame_lengths"
        (B,); frames are :attr:`S3PRLSpeechEncoder.frame_rate` per second."""
        feats, lengths = self.speech_encoder(speech, speech_lengths)
        out: Dict[str, torch.Tensor] = {}
        if self.parallel is not None:
            out["parallel"] = self.parallel(feats, lengths)
        if self.cascaded is not None:
            c = self.cascaded(feats, lengths, return_attention=keyword_attention)
            out["cascaded"] = c["embedding"]
            out["keyword_ids"] = c["keyword_ids"]
            out["keyword_scores"] = c["keyword_scores"]
            if not self.training:
                out["keyword_neighbour_ids"] = self.cascaded.neighbour_ids(c["keyword_ids"])
            if keyword_attention:
                out["keyword_attention"] = c["attention"]
                out["frame_lengths"] = lengths
        return out

    def encode_image(
        self, image: Optional[torch.Tensor] = None, image_emb: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """Cached embeddings (B, D_c) are re-normalised; pixels (B, 3, H, W) go through the image tower."""
        if image_emb is not None:
            return torch.nn.functional.normalize(image_emb.float(), dim=-1)
        if image is None:
            raise ValueError("a batch needs image_emb (cached CLIP embeddings) or image (pixels)")
        if self.image_encoder is None:
            raise ValueError(
                "this model was built without the CLIP image tower (image_input: embedding), "
                "so it takes image_emb, not image pixels"
            )
        return self.image_encoder(image)

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        """Transcripts -> (N, D_c) normalised CLIP text embeddings."""
        return self.text_encoder.embed_texts(texts)

    # ---------------------------------------------------------------- training
    def forward(
        self,
        speech: torch.Tensor,
        speech_lengths: torch.Tensor,
        image_id: Optional[torch.Tensor] = None,
        image_emb: Optional[torch.Tensor] = None,
        image: Optional[torch.Tensor] = None,
        **kwargs,
    ):
        """speech (B, T), speech_lengths (B,), image_id (B,) or (B, 1) integer image identity,
        image_emb (B, D_c) or image (B, 3, H, W) -> (loss, stats, weight)."""
        if image_id is None:
            raise ValueError(
                "SpeechCLIP batches need image_id: captions of the same image must not be "
                "used as negatives of each other"
            )
        image_id = image_id.view(-1)
        img = self.encode_image(image, image_emb)
        speech_out = self.encode_speech(speech, speech_lengths)
        stats: Dict[str, torch.Tensor] = {}
        total = 0.0
        for branch in self.branches:
            emb = speech_out[branch]
            loss = self.loss(emb, img, image_id)
            total = total + self.weights[branch] * loss
            stats[f"loss_{branch}"] = loss.detach()
            stats[f"acc_{branch}"] = _in_batch_accuracy(emb.detach(), img, image_id)
        stats["loss"] = total.detach()
        stats["temperature"] = (1.0 / self.loss.scale()).detach()
        loss, stats, weight = force_gatherable((total, stats, speech.size(0)), total.device)
        return loss, stats, weight

    def collect_feats(self, speech: torch.Tensor, speech_lengths: torch.Tensor, **kwargs):
        return {"feats": speech, "feats_lengths": speech_lengths}


def _in_batch_accuracy(speech: torch.Tensor, image: torch.Tensor, image_id: torch.Tensor) -> torch.Tensor:
    """Share of utterances whose most similar in-batch image is their own image."""
    best = (speech.float() @ image.float().t()).argmax(dim=1)
    return (image_id[best] == image_id).float().mean()


class ParallelSpeechCLIP(SpeechCLIP):
    """Parallel SpeechCLIP: the CLS embedding is compared with the image."""

    def __init__(
        self,
        speech_encoder,
        text_encoder,
        image_encoder,
        parallel_conf: Optional[dict] = None,
        temperature: float = 0.07,
        learnable_temperature: bool = False,
        max_scale: float = 100.0,
    ):
        super().__init__(
            speech_encoder,
            text_encoder,
            image_encoder,
            parallel_conf=parallel_conf or {},
            temperature=temperature,
            learnable_temperature=learnable_temperature,
            max_scale=max_scale,
        )


class CascadedSpeechCLIP(SpeechCLIP):
    """Cascaded SpeechCLIP: K keywords through the CLIP text encoder are compared with the image."""

    def __init__(
        self,
        speech_encoder,
        text_encoder,
        image_encoder,
        cascaded_conf: Optional[dict] = None,
        temperature: float = 0.07,
        learnable_temperature: bool = False,
        max_scale: float = 100.0,
    ):
        super().__init__(
            speech_encoder,
            text_encoder,
            image_encoder,
            cascaded_conf=cascaded_conf or {},
            temperature=temperature,
            learnable_temperature=learnable_temperature,
            max_scale=max_scale,
        )


class HybridSpeechCLIP(SpeechCLIP):
    """Both branches on one speech encoder; loss w_p * L_parallel + w_c * L_cascaded."""

    def __init__(
        self,
        speech_encoder,
        text_encoder,
        image_encoder,
        parallel_conf: Optional[dict] = None,
        cascaded_conf: Optional[dict] = None,
        parallel_weight: float = 1.0,
        cascaded_weight: float = 1.0,
        temperature: float = 0.07,
        learnable_temperature: bool = False,
        max_scale: float = 100.0,
    ):
        super().__init__(
            speech_encoder,
            text_encoder,
            image_encoder,
            parallel_conf=parallel_conf or {},
            cascaded_conf=cascaded_conf or {},
            parallel_weight=parallel_weight,
            cascaded_weight=cascaded_weight,
            temperature=temperature,
            learnable_temperature=learnable_temperature,
            max_scale=max_scale,
        )


def branch_conf_defaults(model_class: type) -> Dict[str, dict]:
    """The options of the branches ``model_class`` builds, with their defaults:
    ``{"parallel_conf": {...}, "cascaded_conf": {...}}`` for the ``*_conf`` keywords it takes (what an
    empty or partial conf means; the widths and the towers come from the model, not the conf)."""
    takes = inspect.signature(model_class.__init__).parameters
    out: Dict[str, dict] = {}
    for key, branch in (("parallel_conf", ParallelBranch), ("cascaded_conf", CascadedBranch)):
        if key not in takes:
            continue
        params = inspect.signature(branch.__init__).parameters.values()
        out[key] = {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}
        if key == "cascaded_conf":
            out[key]["codebook"] = FULL_CODEBOOK
    return out
