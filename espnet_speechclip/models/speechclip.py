"""SpeechCLIP as an ESPnet model: parallel, cascaded and hybrid, and SpeechCLIP+'s cascaded+ and hybrid+
(keywords by continuous integrate-and-fire, :mod:`.cif_branch`).

The model owns the frozen towers (speech upstream inside the speech encoder, CLIP text and optionally
image towers) and one or two branches. Training pairs each utterance with its image, given either as
cached CLIP image embeddings (``image_emb``, the fast path) or as preprocessed pixels (``image``).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from espnet2.torch_utils.device_funcs import force_gatherable
from espnet2.train.abs_espnet_model import AbsESPnetModel

from espnet_speechclip.errors import InputError
from espnet_speechclip.models.cascaded import CascadedBranch
from espnet_speechclip.models.cif import CIFDownsampler
from espnet_speechclip.models.cif_branch import CIFCascadedBranch
from espnet_speechclip.models.clip import CLIPImageEncoder, CLIPTextEncoder
from espnet_speechclip.models.codebook import full_codebook, read_codebook
from espnet_speechclip.models.frozen import keep_frozen_out_of_state_dict
from espnet_speechclip.models.loss import InfoNCELoss
from espnet_speechclip.models.outputs import BRANCHES, SpeechEmbeddings, UnitCount
from espnet_speechclip.models.parallel import ParallelBranch
from espnet_speechclip.models.speech_encoder import S3PRLSpeechEncoder

# The cascaded branch's keyword vocabulary unless cascaded_conf.codebook names a codebook file.
FULL_CODEBOOK = "full"
TEMPERATURE_OPTIONS = {"temperature": 0.07, "learnable_temperature": False, "max_scale": 100.0}


@dataclass(frozen=True)
class Variant:
    """Which branches a model variant builds; its ``model_conf`` options follow from them.

    Attributes:
        parallel: a :class:`ParallelBranch` (parallel, hybrid).
        cascaded: the cascaded branch's class, :class:`CascadedBranch` (K keywords) or SpeechCLIP+'s
            :class:`CIFCascadedBranch` (a variable number), or None.
        shared_parallel: the cascaded branch also gives the parallel embedding from a CLS token in its
            own attention (hybrid+ with the CIF branch; SpeechCLIP+'s hybrid, ``hybrid_shared``, with the
            K-keyword branch).
    """

    parallel: bool = False
    cascaded: Optional[type] = None
    shared_parallel: bool = False

    @property
    def cif(self) -> bool:
        return self.cascaded is CIFCascadedBranch

    def options(self) -> Dict[str, Any]:
        """The ``model_conf`` keys the variant takes, with their defaults (a branch conf defaults to None,
        which means all of the branch's defaults)."""
        out: Dict[str, Any] = {}
        if self.parallel:
            out["parallel_conf"] = None
        if self.cascaded is not None:
            out["cascaded_conf"] = None
        if (self.parallel or self.shared_parallel) and self.cascaded is not None:
            out.update(parallel_weight=1.0, cascaded_weight=1.0)
        if self.cif:
            out["quantity_weight"] = 0.25
        out.update(TEMPERATURE_OPTIONS)
        return out


class SpeechCLIP(AbsESPnetModel):
    """Speech encoder + parallel and/or cascaded branch, trained with masked symmetric InfoNCE.

    One subclass per :class:`Variant` (:class:`ParallelSpeechCLIP`, :class:`CascadedSpeechCLIP`,
    :class:`HybridSpeechCLIP`, :class:`CascadedPlusSpeechCLIP`, :class:`HybridPlusSpeechCLIP`,
    :class:`SharedHybridSpeechCLIP`); each takes
    the options of :meth:`Variant.options` as keywords (``model_conf``), and its signature says which
    (ESPnet's ``--print_config`` reads it). The task builds the frozen towers and passes them in, the
    model builds its branches from their confs.

    Args:
        speech_encoder: frozen upstream + learnable layer weights.
        text_encoder: frozen CLIP text tower (cascaded keywords, zero-shot text retrieval).
        image_encoder: frozen CLIP image tower, or None when images come as cached embeddings.
        parallel_conf: kwargs of :class:`ParallelBranch` (None: its defaults).
        cascaded_conf: kwargs of the variant's cascaded branch (:class:`CascadedBranch` or
            :class:`CIFCascadedBranch`) plus ``codebook`` ("full" or a codebook file; None: defaults).
        parallel_weight, cascaded_weight: hybrid loss weights w_p, w_c (SpeechCLIP+: 1 / 1; Large
            Flickr8k hybrid+ 0.5 / 1.5).
        quantity_weight: weight w_q of SpeechCLIP+'s CIF quantity loss (0.25).
        temperature, learnable_temperature, max_scale: the InfoNCE temperature (shared by the
            branches). Paper: 0.07 fixed (Base), learnable from 0.07 (Large).
    """

    variant: Optional[Variant] = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.variant is not None:
            # what inspect.signature(cls) (ESPnet's --print_config, its argument check) reports
            towers = [
                inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD)
                for name in ("speech_encoder", "text_encoder", "image_encoder")
            ]
            options = [
                inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default)
                for name, default in cls.variant.options().items()
            ]
            cls.__signature__ = inspect.Signature(towers + options)

    def __init__(
        self,
        speech_encoder: S3PRLSpeechEncoder,
        text_encoder: CLIPTextEncoder,
        image_encoder: Optional[CLIPImageEncoder],
        **model_conf: Any,
    ):
        variant = self.variant
        if variant is None:
            raise TypeError("build a SpeechCLIP variant (ParallelSpeechCLIP, ...), not SpeechCLIP itself")
        options = variant.options()
        unknown = sorted(set(model_conf) - set(options))
        if unknown:
            raise TypeError(f"{type(self).__name__} got unexpected keyword argument(s) {unknown}")
        conf = {**options, **model_conf}
        super().__init__()
        self.speech_encoder = speech_encoder
        self.text_encoder = text_encoder
        self.image_encoder = image_encoder
        width, embed_dim = speech_encoder.output_size(), text_encoder.embed_dim
        if image_encoder is not None and image_encoder.embed_dim != embed_dim:
            raise InputError(f"CLIP image ({image_encoder.embed_dim}) and text ({embed_dim}) widths differ")
        self.parallel = None
        if variant.parallel:
            self.parallel = ParallelBranch(width, embed_dim, **(conf["parallel_conf"] or {}))
        self.cascaded = None
        if variant.cascaded is not None:
            branch_conf = dict(conf["cascaded_conf"] or {})
            codebook = branch_conf.pop("codebook", FULL_CODEBOOK)
            vocab = text_encoder.vocab_size
            ids = torch.tensor(
                full_codebook(vocab) if codebook == FULL_CODEBOOK else read_codebook(codebook, vocab)
            )
            if variant.shared_parallel:
                branch_conf["parallel_dim"] = embed_dim
            self.cascaded = variant.cascaded(width, text_encoder, ids, **branch_conf)
        has_parallel = variant.parallel or variant.shared_parallel
        self._branches = [
            b for b in BRANCHES if (has_parallel if b == "parallel" else self.cascaded is not None)
        ]
        self.loss = InfoNCELoss(conf["temperature"], conf["learnable_temperature"], conf["max_scale"])
        self.weights = {
            "parallel": conf.get("parallel_weight", 1.0),
            "cascaded": conf.get("cascaded_weight", 1.0),
        }
        self.quantity_weight = conf.get("quantity_weight", 0.0)
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
        self, speech: torch.Tensor, speech_lengths: torch.Tensor, keyword_attention: bool = False
    ) -> SpeechEmbeddings:
        """speech (B, T), speech_lengths (B,) -> the utterances' embeddings and keywords (see
        :class:`SpeechEmbeddings` for the fields and their shapes). ``keyword_attention`` (cascaded
        branch) adds where each keyword was read from; the neighbour ids come in eval mode only."""
        return self.forward_speech(speech, speech_lengths, keyword_attention=keyword_attention)[0]

    def forward_speech(
        self,
        speech: torch.Tensor,
        speech_lengths: torch.Tensor,
        text_lengths: Optional[torch.Tensor] = None,
        keyword_attention: bool = False,
    ) -> Tuple[SpeechEmbeddings, Optional[UnitCount]]:
        """The training (and validation) path of :meth:`encode_speech`: also SpeechCLIP+'s unit-count loss,
        when the model is a CIF one and its unit count has a target (``text_lengths`` (B,) of the [SOT,
        ..., EOT] caption ids for ``unit_target: caption``), else None."""
        feats, lengths = self.speech_encoder(speech, speech_lengths)
        out = SpeechEmbeddings()
        if self.parallel is not None:
            out.parallel = self.parallel(feats, lengths)
        if self.cascaded is None:
            return out, None
        if self.variable_keywords:
            c = self.cascaded(feats, lengths, text_lengths, return_attention=keyword_attention)
            out.keyword_lengths = c.keyword_lengths
            out.keyword_frames = c.unit_spans
        else:
            c = self.cascaded(feats, lengths, return_attention=keyword_attention)
        if c.parallel_embedding is not None:  # hybrid+ and SpeechCLIP+'s hybrid: one block gives both
            out.parallel = c.parallel_embedding
        out.cascaded = c.embedding
        out.keyword_ids = c.keyword_ids
        out.keyword_scores = c.keyword_scores
        if not self.training:
            out.keyword_neighbour_ids = self.cascaded.neighbour_ids(c.keyword_ids)
        if keyword_attention:
            out.keyword_attention = c.attention
            out.frame_lengths = lengths
            out.frame_features = feats
        return out, c.unit_count

    def encode_image(
        self, image: Optional[torch.Tensor] = None, image_emb: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """Cached embeddings (B, D_c) are re-normalised; pixels (B, 3, H, W) go through the image tower."""
        if image_emb is not None:
            return torch.nn.functional.normalize(image_emb.float(), dim=-1)
        if image is None:
            raise InputError("a batch needs image_emb (cached CLIP embeddings) or image (pixels)")
        if self.image_encoder is None:
            raise InputError(
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
            raise InputError(
                "SpeechCLIP batches need image_id: captions of the same image must not be "
                "used as negatives of each other"
            )
        image_id = image_id.view(-1)
        img = self.encode_image(image, image_emb)
        speech_out, unit_count = self.forward_speech(speech, speech_lengths, text_lengths)
        stats: Dict[str, torch.Tensor] = {}
        total = 0.0
        for branch in self.branches:
            emb = speech_out.branch(branch)
            loss = self.loss(emb, img, image_id)
            total = total + self.weights[branch] * loss
            stats[f"loss_{branch}"] = loss.detach()
            stats[f"acc_{branch}"] = _in_batch_accuracy(emb.detach(), img, image_id)
        if unit_count is not None:
            total = total + self.quantity_weight * unit_count.loss
            stats.update(unit_count.stats())
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

    variant = Variant(parallel=True)


class CascadedSpeechCLIP(SpeechCLIP):
    """Cascaded SpeechCLIP: K keywords through the CLIP text encoder are compared with the image."""

    variant = Variant(cascaded=CascadedBranch)


class HybridSpeechCLIP(SpeechCLIP):
    """Both branches on one speech encoder; loss w_p * L_parallel + w_c * L_cascaded."""

    variant = Variant(parallel=True, cascaded=CascadedBranch)


class CascadedPlusSpeechCLIP(SpeechCLIP):
    """SpeechCLIP+ cascaded+: keywords by continuous integrate-and-fire, as many as the speech has units,
    through the CLIP text encoder, compared with the image; loss L_cascaded + w_q * L_quantity."""

    variant = Variant(cascaded=CIFCascadedBranch)


class HybridPlusSpeechCLIP(SpeechCLIP):
    """SpeechCLIP+ hybrid+: ONE attention layer runs over [CLS, frames]; the CLS output, projected by a
    Linear, is the parallel embedding, the frames go on into the CIF keywords (cascaded embedding). Loss
    w_p * L_parallel + w_c * L_cascaded + w_q * L_quantity."""

    variant = Variant(cascaded=CIFCascadedBranch, shared_parallel=True)


class SharedHybridSpeechCLIP(SpeechCLIP):
    """SpeechCLIP+'s hybrid: ONE attention block runs over [parallel CLS, K keyword CLS, frames]; the
    parallel CLS output, projected, is the parallel embedding, the K keyword outputs go on through the
    cascaded keyword path (not this package's two-branch ``hybrid``). Loss w_p * L_parallel + w_c *
    L_cascaded."""

    variant = Variant(cascaded=CascadedBranch, shared_parallel=True)


def branch_conf_defaults(model_class: type) -> Dict[str, dict]:
    """The options of the branches ``model_class`` builds, with their defaults:
    ``{"parallel_conf": {...}, "cascaded_conf": {...}}`` for the ``*_conf`` keywords it takes (what an
    empty or partial conf means; the widths and the towers come from the model, not the conf)."""
    variant = model_class.variant
    out: Dict[str, dict] = {}
    for key, branch in (("parallel_conf", ParallelBranch), ("cascaded_conf", variant.cascaded)):
        if key not in variant.options():
            continue
        params = inspect.signature(branch.__init__).parameters.values()
        # parallel_dim: hybrid+ / hybrid_shared set it from CLIP's width, it is no option of the conf; the
        # shared parallel CLS's projection is an option of hybrid_shared only
        hidden = set() if variant.shared_parallel else {"parallel_projection_hidden"}
        out[key] = {
            p.name: p.default
            for p in params
            if p.default is not inspect.Parameter.empty and p.name not in {"parallel_dim", *hidden}
        }
        if key == "cascaded_conf":
            out[key]["codebook"] = FULL_CODEBOOK
            if variant.cif:  # the CIF downsampler's options (its input width comes from the model)
                params = inspect.signature(CIFDownsampler.__init__).parameters.values()
                out[key]["cif_conf"] = {
                    p.name: p.default for p in params if p.default is not inspect.Parameter.empty
                }
    return out
