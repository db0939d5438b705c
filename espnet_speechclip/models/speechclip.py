"""SpeechCLIP as an ESPnet model: parallel, cascaded and hybrid, and SpeechCLIP+'s cascaded+ and hybrid+
(keywords by continuous integrate-and-fire, :mod:`.cif_branch`).

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
from espnet_speechclip.models.cif import CIFDownsampler
from espnet_speechclip.models.cif_branch import CIFCascadedBranch
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

    Use :class:`ParallelSpeechCLIP`, :class:`CascadedSpeechCLIP`, :class:`HybridSpeechCLIP`,
    :class:`CascadedPlusSpeechCLIP` or :class:`HybridPlusSpeechCLIP`; the task builds the frozen towers
    and passes them in, the model builds its branches from their confs.

    Args:
        speech_encoder: frozen upstream + learnable layer weights.
        text_encoder: frozen CLIP text tower (cascaded keywords, zero-shot text retrieval).
        image_encoder: frozen CLIP image tower, or None when images come as cached embeddings.
        parallel_conf: kwargs of :class:`ParallelBranch`, or None for no parallel branch.
        cascaded_conf: kwargs of :class:`CascadedBranch` (of :class:`CIFCascadedBranch` with ``cif``)
            plus ``codebook`` ("full" or a codebook file), or None for no cascaded branch.
        parallel_weight, cascaded_weight: hybrid loss weights w_p, w_c.
        cif: the cascaded branch is SpeechCLIP+'s, with a variable number of keywords.
        cif_parallel: hybrid+: the CIF branch also gives the parallel embedding (shared attention).
        shared_parallel: SpeechCLIP+'s hybrid: the K-keyword branch also gives the parallel embedding, from a
            parallel CLS token in the same attention block as the keyword tokens.
        quantity_weight: weight of the CIF quantity loss (SpeechCLIP+: 0.25).
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
        cif: bool = False,
        cif_parallel: bool = False,
        quantity_weight: float = 0.0,
        shared_parallel: bool = False,
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
            ids = torch.tensor(
                full_codebook(vocab) if codebook == FULL_CODEBOOK else read_codebook(codebook, vocab)
            )
            if cif:
                parallel_dim = embed_dim if cif_parallel else None
                self.cascaded = CIFCascadedBranch(width, text_encoder, ids, parallel_dim=parallel_dim, **conf)
            else:
                parallel_dim = embed_dim if shared_parallel else None
                self.cascaded = CascadedBranch(width, text_encoder, ids, parallel_dim=parallel_dim, **conf)
        shared = (cif and cif_parallel) or (not cif and shared_parallel)
        has_parallel = self.parallel is not None or (shared and self.cascaded is not None)
        self._branches = [
            b for b in BRANCHES if (has_parallel if b == "parallel" else self.cascaded is not None)
        ]
        self.loss = InfoNCELoss(temperature, learnable_temperature, max_scale)
        self.weights = {"parallel": parallel_weight, "cascaded": cascaded_weight}
        self.quantity_weight = quantity_weight
        keep_frozen_out_of_state_dict(self)

    @property
    def branches(self) -> List[str]:
        """The utterance embeddings the model gives (``parallel``, ``cascaded``)."""
        return list(self._branches)

    @property
    def variable_keywords(self) -> bool:
        """The cascaded branch emits a variable number of keywords per utterance (SpeechCLIP+'s CIF)."""
        return isinstance(self.cascaded, CIFCascadedBranch)

    # ---------------------------------------------------------------- inference helpers
    def encode_speech(
        self,
        speech: torch.Tensor,
        speech_lengths: torch.Tensor,
        text_lengths: Optional[torch.Tensor] = None,
        keyword_attention: bool = False,
    ) -> Dict[str, torch.Tensor]:
        """speech (B, T), lengths (B,) -> dict, for the branches the model has, of

        - ``parallel``, ``cascaded``: (B, D_c) normalised utterance embeddings;
        - ``keyword_ids`` (B, K) CLIP ids and ``keyword_scores`` (B, K) cosine scores (cascaded; with
          variable-length keywords K is the batch's largest count, -1 / 0 beyond an utterance's own);
        - in eval mode ``keyword_neighbour_ids`` (B, K, 5): each keyword's nearest codebook subwords (the
          authors' keyword hit rate counts those; -1 beyond an utterance's own keywords);
        - CIF only: ``keyword_lengths`` (B,) keywords per utterance, ``keyword_frames`` (B, K, 2)
          fractional (start, end) frames each keyword's unit integrated (firing boundaries), and, when
          the unit count has a target (``text_lengths`` (B,) of the [SOT, ..., EOT] caption ids for
          ``unit_target: caption``), ``quantity_loss`` (scalar) and ``unit_targets`` (B,);
        - with ``keyword_attention`` (cascaded branch): ``keyword_attention`` (B, K, T'), each keyword's
          weight over the speech frames (a K-token keyword's attention, see
          :meth:`CascadedBranch.keywords`; a CIF keyword's integration weights, see
          :meth:`CIFCascadedBranch.forward`), and ``frame_lengths`` (B,).

        Frames are :attr:`S3PRLSpeechEncoder.frame_rate` per second, frame t starting at
        :attr:`S3PRLSpeechEncoder.frame_offset` + t / frame_rate seconds.
        """
        feats, lengths = self.speech_encoder(speech, speech_lengths)
        out: Dict[str, torch.Tensor] = {}
        if self.parallel is not None:
            out["parallel"] = self.parallel(feats, lengths)
        if self.cascaded is None:
            return out
        if self.variable_keywords:
            c = self.cascaded(feats, lengths, text_lengths, return_attention=keyword_attention)
            out["keyword_lengths"] = c["keyword_lengths"]
            out["keyword_frames"] = c["unit_spans"]
            if c["quantity_loss"] is not None:
                out["quantity_loss"] = c["quantity_loss"]
                out["unit_targets"] = c["unit_targets"]
        else:
            c = self.cascaded(feats, lengths, return_attention=keyword_attention)
        if "parallel_embedding" in c:  # hybrid+ and SpeechCLIP+'s hybrid: one block gives both
            out["parallel"] = c["parallel_embedding"]
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
        text_lengths: Optional[torch.Tensor] = None,
        **kwargs,
    ):
        """speech (B, T), speech_lengths (B,), image_id (B,) or (B, 1) integer image identity,
        image_emb (B, D_c) or image (B, 3, H, W), text_lengths (B,) of the transcripts' CLIP ids when the
        data has ``text`` -> (loss, stats, weight)."""
        if image_id is None:
            raise ValueError(
                "SpeechCLIP batches need image_id: captions of the same image must not be "
                "used as negatives of each other"
            )
        image_id = image_id.view(-1)
        img = self.encode_image(image, image_emb)
        speech_out = self.encode_speech(speech, speech_lengths, text_lengths)
        stats: Dict[str, torch.Tensor] = {}
        total = 0.0
        for branch in self.branches:
            emb = speech_out[branch]
            loss = self.loss(emb, img, image_id)
            total = total + self.weights[branch] * loss
            stats[f"loss_{branch}"] = loss.detach()
            stats[f"acc_{branch}"] = _in_batch_accuracy(emb.detach(), img, image_id)
        if "quantity_loss" in speech_out:
            total = total + self.quantity_weight * speech_out["quantity_loss"]
            stats.update(unit_stats(speech_out))
        stats["loss"] = total.detach()
        stats["temperature"] = (1.0 / self.loss.scale()).detach()
        loss, stats, weight = force_gatherable((total, stats, speech.size(0)), total.device)
        return loss, stats, weight

    def collect_feats(self, speech: torch.Tensor, speech_lengths: torch.Tensor, **kwargs):
        return {"feats": speech, "feats_lengths": speech_lengths}


def unit_stats(speech_out: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """CIF statistics of an :meth:`SpeechCLIP.encode_speech` output with a unit target: ``loss_quantity``
    (mean |sum(alpha) - target|), ``units`` (mean keywords per utterance) and ``unit_error`` (mean
    |units - target|; 0 in training while the alphas are scaled to the targets)."""
    n = speech_out["keyword_lengths"]
    return {
        "loss_quantity": speech_out["quantity_loss"].detach(),
        "units": n.float().mean(),
        "unit_error": (n - speech_out["unit_targets"]).abs().float().mean(),
    }


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


class CascadedPlusSpeechCLIP(SpeechCLIP):
    """SpeechCLIP+ cascaded+: keywords by continuous integrate-and-fire, as many as the speech has units,
    through the CLIP text encoder, compared with the image; loss L_cascaded + w_q * L_quantity.

    Args:
        cascaded_conf: kwargs of :class:`CIFCascadedBranch` plus ``codebook``.
        quantity_weight: w_q (SpeechCLIP+: 0.25).
    """

    def __init__(
        self,
        speech_encoder,
        text_encoder,
        image_encoder,
        cascaded_conf: Optional[dict] = None,
        quantity_weight: float = 0.25,
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
            cif=True,
            quantity_weight=quantity_weight,
        )


class HybridPlusSpeechCLIP(SpeechCLIP):
    """SpeechCLIP+ hybrid+: ONE attention layer runs over [CLS, frames]; the CLS output, projected by a
    Linear, is the parallel embedding, the frames go on into the CIF keywords (cascaded embedding). Loss
    w_p * L_parallel + w_c * L_cascaded + w_q * L_quantity.

    Args:
        cascaded_conf: kwargs of :class:`CIFCascadedBranch` plus ``codebook``.
        parallel_weight, cascaded_weight: w_p, w_c (SpeechCLIP+: 1 / 1; Large Flickr8k 0.5 / 1.5).
        quantity_weight: w_q (SpeechCLIP+: 0.25).
    """

    def __init__(
        self,
        speech_encoder,
        text_encoder,
        image_encoder,
        cascaded_conf: Optional[dict] = None,
        parallel_weight: float = 1.0,
        cascaded_weight: float = 1.0,
        quantity_weight: float = 0.25,
        temperature: float = 0.07,
        learnable_temperature: bool = False,
        max_scale: float = 100.0,
    ):
        super().__init__(
            speech_encoder,
            text_encoder,
            image_encoder,
            cascaded_conf=cascaded_conf or {},
            parallel_weight=parallel_weight,
            cascaded_weight=cascaded_weight,
            temperature=temperature,
            learnable_temperature=learnable_temperature,
            max_scale=max_scale,
            cif=True,
            cif_parallel=True,
            quantity_weight=quantity_weight,
        )


class SharedHybridSpeechCLIP(SpeechCLIP):
    """SpeechCLIP+'s hybrid: ONE attention block runs over [parallel CLS, K keyword CLS, frames]; the
    parallel CLS output, projected, is the parallel embedding, the K keyword outputs go on through the
    cascaded keyword path (not this package's two-branch ``hybrid``). Loss w_p * L_parallel + w_c *
    L_cascaded.

    Args:
        cascaded_conf: kwargs of :class:`CascadedBranch` (``parallel_projection_hidden``, ``final_norm``
            among them) plus ``codebook``.
        parallel_weight, cascaded_weight: w_p, w_c.
    """

    def __init__(
        self,
        speech_encoder,
        text_encoder,
        image_encoder,
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
            cascaded_conf=cascaded_conf or {},
            parallel_weight=parallel_weight,
            cascaded_weight=cascaded_weight,
            temperature=temperature,
            learnable_temperature=learnable_temperature,
            max_scale=max_scale,
            shared_parallel=True,
        )


def branch_conf_defaults(model_class: type) -> Dict[str, dict]:
    """The options of the branches ``model_class`` builds, with their defaults:
    ``{"parallel_conf": {...}, "cascaded_conf": {...}}`` for the ``*_conf`` keywords it takes (what an
    empty or partial conf means; the widths and the towers come from the model, not the conf)."""
    takes = inspect.signature(model_class.__init__).parameters
    cif = issubclass(model_class, (CascadedPlusSpeechCLIP, HybridPlusSpeechCLIP))
    cascaded = CIFCascadedBranch if cif else CascadedBranch
    out: Dict[str, dict] = {}
    for key, branch in (("parallel_conf", ParallelBranch), ("cascaded_conf", cascaded)):
        if key not in takes:
            continue
        params = inspect.signature(branch.__init__).parameters.values()
        # parallel_dim: hybrid+ / hybrid_shared set it from CLIP's width, it is no option of the conf; the
        # shared parallel CLS's projection is an option of hybrid_shared only
        hidden = set() if issubclass(model_class, SharedHybridSpeechCLIP) else {"parallel_projection_hidden"}
        out[key] = {
            p.name: p.default
            for p in params
            if p.default is not inspect.Parameter.empty and p.name not in {"parallel_dim", *hidden}
        }
        if key == "cascaded_conf":
            out[key]["codebook"] = FULL_CODEBOOK
            if cif:  # the CIF downsampler's options (its input width comes from the model)
                params = inspect.signature(CIFDownsampler.__init__).parameters.values()
                out[key]["cif_conf"] = {
                    p.name: p.default for p in params if p.default is not inspect.Parameter.empty
                }
    return out
