"""The cascaded branch of SpeechCLIP+ (Wang et al., 2024): speech -> a VARIABLE number of keywords by
continuous integrate-and-fire (CIF) -> frozen CLIP text encoder.

Instead of K fixed keyword CLS tokens, an attention layer runs over the frames, :class:`CIFDownsampler`
integrates them into word-like units (one every time the frame weights add up to 1), and each unit
becomes one keyword: projected into the CLIP token-embedding space, batch-normalised, snapped to a
codebook subword (the cosine quantiser of :mod:`.cascaded`), and the sequence [SOT, kw_1..kw_n, EOT]
of each utterance's own length n runs through the frozen CLIP text tower
(:func:`.cif.encode_variable_keywords`). A quantity loss ties the number of units to a target length.

With ``parallel_dim`` the branch is SpeechCLIP+'s hybrid+ branch: a CLS token goes through the SAME
attention layer in front of the frames and its output, projected by a plain Linear, is a parallel
utterance embedding.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from espnet_speechclip.errors import InputError
from espnet_speechclip.models.cascaded import (
    KEYWORD_NEIGHBOURS,
    AttentionBlock,
    CosineVectorQuantizer,
    codebook_neighbours,
    init_keyword_norm,
    projection,
)
from espnet_speechclip.models.cif import CIFDownsampler, encode_variable_keywords
from espnet_speechclip.models.clip import CLIPTextEncoder
from espnet_speechclip.models.masks import padding_mask, valid_mask
from espnet_speechclip.models.outputs import KeywordOutput, UnitCount

UNIT_TARGETS = ("frames", "caption")


class CIFCascadedBranch(nn.Module):
    """Attention over the frames + CIF + keyword projection, BatchNorm and quantiser + CLIP text encoder.

    Args:
        input_size: D_a, the speech feature width.
        text_encoder: the frozen CLIP text tower (shared with the model, not owned).
        codebook_ids: (V,) CLIP vocabulary ids a keyword may take.
        parallel_dim: D_c for hybrid+ (a CLS token shares the attention layer; Linear(D_a, D_c) of its
            output is the parallel embedding); None for cascaded+.
        num_layers, nhead, dim_feedforward, dropout: the attention layer(s) over the frames. SpeechCLIP+:
            one layer, no feed-forward, attention dropout 0.1; 1 head (Base cascaded+) or 8 (hybrid+,
            every Large model).
        projection_hidden: None: the keyword projection is Linear(D_a, D_t) (SpeechCLIP+ Base); a width H:
            Linear(D_a, H) -> ReLU -> Dropout(projection_dropout) -> Linear(H, D_t) (Large: H = D_a).
        vq_temperature: straight-through softmax temperature of the quantiser (0.1).
        unit_target: what the number of units is trained towards. ``frames``: round(frames /
            ``cif_conf.frames_per_unit``), one unit per 20 frames (0.4 s of HuBERT), which is what every
            released SpeechCLIP+ config trains with; ``caption``: the caption's number of CLIP BPE tokens
            (needs the transcripts in the batch, ``text`` in the training and validation data; the random
            training crop, ``speech_encoder_conf.max_train_samples``, cuts speech but not its caption,
            so keep it above the longest utterance).
        norm_padding: the keyword BatchNorm takes its statistics over every unit slot of the batch,
            padded ones included, as SpeechCLIP+ does (``False``: over the units that exist only).
        cif_conf: keyword arguments of :class:`CIFDownsampler` (kernel_size, num_layers, dropout,
            threshold, tail_threshold, frames_per_unit, scaling_steps, max_units, at_least_one).
    """

    def __init__(
        self,
        input_size: int,
        text_encoder: CLIPTextEncoder,
        codebook_ids: torch.Tensor,
        parallel_dim: Optional[int] = None,
        num_layers: int = 1,
        nhead: int = 1,
        dim_feedforward: int = 0,
        dropout: float = 0.1,
        projection_hidden: Optional[int] = None,
        projection_dropout: float = 0.1,
        vq_temperature: float = 0.1,
        unit_target: str = "frames",
        norm_padding: bool = False,
        cif_conf: Optional[dict] = None,
    ):
        super().__init__()
        if input_size % nhead:
            raise InputError(f"cascaded+ branch: width {input_size} is not divisible by nhead {nhead}")
        if unit_target not in UNIT_TARGETS:
            raise InputError(f"cascaded_conf.unit_target must be one of {UNIT_TARGETS}, got {unit_target!r}")
        cif_conf = dict(cif_conf or {})
        max_units = cif_conf.setdefault("max_units", text_encoder.context_length - 2)
        if max_units is None or max_units + 2 > text_encoder.context_length:
            raise InputError(
                f"cif_conf.max_units {max_units}: the keywords + SOT/EOT must fit CLIP's context "
                f"{text_encoder.context_length} (at most {text_encoder.context_length - 2})"
            )
        if unit_target == "caption":
            # the targets come with the batch; without transcripts there is no target (no quantity loss)
            cif_conf["frames_per_unit"] = None
        self.unit_target = unit_target
        self.norm_padding = norm_padding
        # The text encoder is a frozen tower owned by the model; keep it out of this module's children.
        self._text = (text_encoder,)
        self.register_buffer("codebook_ids", codebook_ids.long().clone())
        self.cls = None
        self.parallel_projection = None
        if parallel_dim is not None:
            self.cls = nn.Parameter(torch.randn(1, 1, input_size))
            self.parallel_projection = nn.Linear(input_size, parallel_dim)
        self.layers = nn.ModuleList(
            AttentionBlock(input_size, nhead, dim_feedforward, dropout) for _ in range(num_layers)
        )
        self.cif = CIFDownsampler(input_size, **cif_conf)
        width = text_encoder.width
        self.projection = projection(input_size, width, projection_hidden, projection_dropout)
        # one BatchNorm shared by every unit position (their number varies)
        self.norm = nn.BatchNorm1d(width)
        self.quantizer = CosineVectorQuantizer(vq_temperature)
        init_keyword_norm(self.norm, self.codebook())

    @property
    def text_encoder(self) -> CLIPTextEncoder:
        return self._text[0]

    @property
    def max_units(self) -> int:
        return self.cif.max_units

    def codebook(self) -> torch.Tensor:
        """(V, D_t) rows of CLIP's token-embedding table for the codebook ids."""
        return self.text_encoder.token_embedding.weight[self.codebook_ids]

    def neighbour_ids(self, keyword_ids: torch.Tensor, k: int = KEYWORD_NEIGHBOURS) -> torch.Tensor:
        """keyword_ids (B, N) CLIP ids, -1 beyond an utterance's units -> (B, N, k) CLIP ids of the ``k``
        codebook subwords nearest to each (see :func:`.cascaded.codebook_neighbours`), -1 beyond."""
        return codebook_neighbours(self.codebook(), self.codebook_ids, keyword_ids, k)

    def unit_targets(self, text_lengths: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        """(B,) target unit counts for ``unit_target: caption`` from the lengths of the [SOT, ..., EOT]
        caption ids the preprocessor makes; None otherwise (the downsampler counts frames itself)."""
        if self.unit_target != "caption":
            return None
        if text_lengths is None:
            if self.training:
                raise InputError(
                    "cascaded_conf.unit_target is caption, but the batch has no transcripts: list the text "
                    "file in the training data (--train_data_path_and_name_and_type <dir>/text,text,text)"
                )
            return None
        return (text_lengths.view(-1).long() - 2).clamp(min=0, max=self.max_units)

    def _normalize(self, z: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
        """z (B, N, D_t), n (B,) units per utterance -> BatchNorm of every unit with one set of statistics."""
        b, n_max, d = z.shape
        valid = valid_mask(n, n_max)  # (B, N)
        # statistics in fp32 whatever the autocast dtype of the projection
        rows = (z.reshape(-1, d) if self.norm_padding else z[valid]).float()
        if self.training and rows.size(0) < 2:
            # batch statistics of a single value do not exist: use the running ones for this batch
            normed = F.batch_norm(
                rows,
                self.norm.running_mean,
                self.norm.running_var,
                self.norm.weight,
                self.norm.bias,
                training=False,
                eps=self.norm.eps,
            )
        else:
            normed = self.norm(rows)
        if self.norm_padding:
            return normed.view(b, n_max, d)
        out = z.new_zeros(b, n_max, d, dtype=normed.dtype)
        out[valid] = normed
        return out

    def forward(
        self,
        feats: torch.Tensor,
        lengths: torch.Tensor,
        text_lengths: Optional[torch.Tensor] = None,
        return_attention: bool = False,
    ) -> KeywordOutput:
        """feats (B, T, D_a), lengths (B,), text_lengths (B,) optional lengths of the [SOT, ..., EOT]
        caption ids (``unit_target: caption``) -> the keywords of each utterance's units (ids -1 and
        scores 0 beyond them), their spans, the predicted quantity, the unit-count loss (None without a
        target), hybrid+'s parallel embedding, and with ``return_attention`` where each keyword comes
        from: its unit's integration weights over the frames renormalised to sum to 1 (0 beyond the
        units and at padding), the CIF counterpart of a K-token keyword's attention.
        """
        b, t = feats.shape[:2]
        prefix = 0 if self.cls is None else 1
        x = feats if self.cls is None else torch.cat([self.cls.expand(b, -1, -1).to(feats.dtype), feats], 1)
        mask = padding_mask(lengths, t, prefix=prefix)
        for layer in self.layers:
            x = layer(x, mask)
        parallel = None
        if self.parallel_projection is not None:
            parallel = F.normalize(self.parallel_projection(x[:, 0]), dim=-1)

        c = self.cif(x[:, prefix:], lengths, self.unit_targets(text_lengths))
        n = c["unit_lengths"]
        z = self._normalize(self.projection(c["units"].to(x.dtype)), n)  # (B, N, D_t)
        vq = self.quantizer(z, self.codebook())
        valid = valid_mask(n, z.size(1))
        attention = None
        if return_attention:
            w = c["weights"].float()
            attention = w / w.sum(dim=-1, keepdim=True).clamp_min(1e-12)
        count = None
        if c["quantity_loss"] is not None:
            count = UnitCount(loss=c["quantity_loss"], targets=c["target_lengths"], units=n)
        return KeywordOutput(
            embedding=encode_variable_keywords(self.text_encoder, vq["quantized"], n),
            keyword_ids=torch.where(valid, self.codebook_ids[vq["index"]], -1),
            keyword_scores=torch.where(valid, vq["score"], 0.0),
            attention=attention,
            parallel_embedding=parallel,
            keyword_lengths=n,
            unit_spans=c["spans"],
            alpha_sum=c["alpha_sum"],
            unit_count=count,
        )
