"""Cascaded SpeechCLIP branch: speech -> K keywords (CLIP subwords) -> frozen CLIP text encoder.

K CLS tokens attend over the speech features; each becomes a keyword vector in the CLIP token-embedding
space, is snapped to its nearest codebook subword by cosine similarity (straight-through softmax at
train time), and the sequence [SOT, kw_1..kw_K, EOT] runs through the frozen CLIP text transformer.

Where in the utterance a keyword was heard is read off the attention of its CLS query over the speech
frames, on request only (inference): see :meth:`CascadedBranch.forward` ``return_attention``.
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from espnet_speechclip.errors import InputError
from espnet_speechclip.models.clip import EOT_ID, SOT_ID, CLIPTextEncoder
from espnet_speechclip.models.masks import padding_mask
from espnet_speechclip.models.outputs import KeywordOutput

# The authors' keyword hit rate counts a slot as a hit when any of the 5 nearest codebook subwords (cosine)
# of its quantised keyword occurs in the caption (their detokenized_K_neighbors: 5).
KEYWORD_NEIGHBOURS = 5
# keyword_cosines' passes hold at most about this many attention weights per head (rows x (K + T)^2):
# all of an 8 s HuBERT utterance's stretches in one pass, three at a time for a 60 s one
OCCLUSION_BUDGET = 2**25


class AttentionBlock(nn.Module):
    """Post-norm self-attention with residual, ``LayerNorm(MHA(x) + x)``, and an optional feed-forward
    (the paper has none).

    ``dropout`` acts inside the attention (on its weights) and in the feed-forward, not on the attention
    output before the residual: the authors' block has no such dropout, and it would change training.
    """

    def __init__(self, width: int, nhead: int, dim_feedforward: int, dropout: float):
        super().__init__()
        self.attn = nn.MultiheadAttention(width, nhead, dropout=dropout, batch_first=True)
        self.norm = nn.LayerNorm(width)
        self.ff = None
        if dim_feedforward > 0:
            self.ff = nn.Sequential(
                nn.Linear(width, dim_feedforward),
                nn.GELU(),
                nn.Dropout(dropout),
                nn.Linear(dim_feedforward, width),
                nn.Dropout(dropout),
            )
            self.ff_norm = nn.LayerNorm(width)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x (B, T, D), mask (B, T) True at padding -> (B, T, D)."""
        attn, _ = self.attn(x, x, x, key_padding_mask=mask, need_weights=False)
        x = self.norm(x + attn)
        if self.ff is not None:
            x = self.ff_norm(x + self.ff(x))
        return x

    def query_attention(self, x: torch.Tensor, mask: torch.Tensor, num_queries: int) -> torch.Tensor:
        """Attention weights of the first ``num_queries`` positions of x (B, S, D) over all S keys, mean
        over heads: (B, num_queries, S), each row summing to 1, 0 at padded keys (mask (B, S) True).

        A second, small attention call (queries are computed row by row, so these are exactly the
        weights :meth:`forward` uses); :meth:`forward` itself keeps ``need_weights=False`` and its fast
        path. Call it in eval mode: in train mode the weights carry attention dropout.
        """
        _, weights = self.attn(
            x[:, :num_queries], x, x, key_padding_mask=mask, need_weights=True, average_attn_weights=True
        )
        return weights


class CosineVectorQuantizer(nn.Module):
    """Snap keyword vectors to codebook rows by cosine similarity.

    Train: straight-through softmax at temperature ``tau`` (forward = the hard argmax row exactly,
    backward = gradient of the softmax mixture). Eval: hard argmax.

    Args:
        codebook: (V, D_t) frozen codebook rows (CLIP token embeddings of the allowed subwords).
    """

    def __init__(self, tau: float = 0.1):
        super().__init__()
        if tau <= 0:
            raise InputError(f"vq temperature must be positive, got {tau}")
        self.tau = tau

    def forward(self, z: torch.Tensor, codebook: torch.Tensor) -> Dict[str, torch.Tensor]:
        """z (B, K, D_t) -> dict(quantized (B, K, D_t), index (B, K), score (B, K) cosine)."""
        # fp32 under autocast too: the authors' F.cosine_similarity runs in fp32 there, and a
        # half-precision matmul over tens of thousands of rows could flip the argmax of a near-tie
        with torch.autocast(z.device.type, enabled=False):
            sim = F.normalize(z.float(), dim=-1) @ F.normalize(codebook.float(), dim=-1).t()  # (B, K, V)
            score, index = sim.max(dim=-1)
            hard = codebook[index]  # (B, K, D_t): exactly a codebook row
            if self.training:
                soft = F.softmax(sim / self.tau, dim=-1) @ codebook.float()
                # hard + (soft - soft) is bitwise `hard` in the forward pass and carries soft's gradient
                quantized = hard + (soft - soft.detach()).to(hard.dtype)
            else:
                quantized = hard
        return {"quantized": quantized, "index": index, "score": score, "similarity": sim}


@torch.no_grad()
def init_keyword_norm(norm: nn.BatchNorm1d, codebook_rows: torch.Tensor) -> None:
    """Initialise a keyword BatchNorm so keywords start in the codebook's distribution: feature
    ``k * D_t + d`` (any number k of D_t-wide slots) gets the per-dimension std (gamma) and mean (beta)
    of dim d of the codebook rows (V, D_t)."""
    rows = codebook_rows.float()
    slots = norm.num_features // rows.size(1)
    norm.weight.copy_(rows.std(dim=0).repeat(slots))
    norm.bias.copy_(rows.mean(dim=0).repeat(slots))


@torch.no_grad()
def codebook_neighbours(
    codebook: torch.Tensor, codebook_ids: torch.Tensor, keyword_ids: torch.Tensor, k: int = KEYWORD_NEIGHBOURS
) -> torch.Tensor:
    """codebook (V, D_t) rows, codebook_ids (V,) their CLIP ids, keyword_ids (B, K) CLIP ids of codebook
    subwords, -1 in unused slots (CIF models' shorter keyword sequences) -> (B, K, k) CLIP ids of the
    ``k`` codebook subwords nearest to each keyword by cosine, nearest first (a keyword is its own
    nearest); -1 in unused slots."""
    rows = F.normalize(codebook.float(), dim=-1)  # (V, D_t)
    used = keyword_ids >= 0
    # each distinct keyword once: a batch uses few of the V subwords
    unique, inverse = torch.unique(torch.where(used, keyword_ids, codebook_ids[0]), return_inverse=True)
    match = unique.unsqueeze(1) == codebook_ids.unsqueeze(0)  # (U, V)
    if not bool(match.any(dim=1).all()):
        raise InputError("neighbour_ids: a keyword id is not in the codebook")
    with torch.autocast(rows.device.type, enabled=False):  # fp32, as the quantiser's cosine
        cos = rows[match.float().argmax(dim=1)] @ rows.t()  # (U, V)
    nearest = codebook_ids[cos.topk(min(k, rows.size(0)), dim=-1).indices]  # (U, k)
    return torch.where(used.unsqueeze(-1), nearest[inverse], -1)  # (B, K, k)


def projection(input_size: int, output_size: int, hidden: Optional[int], dropout: float) -> nn.Module:
    """Linear(input, output), or with ``hidden`` the MLP Linear(input, H) -> ReLU -> Dropout -> Linear(H,
    output) of SpeechCLIP+ Large (its MLPLayers: the linear layers sit at indices 0 and 3)."""
    if hidden is None:
        return nn.Linear(input_size, output_size)
    return nn.Sequential(
        nn.Linear(input_size, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, output_size)
    )


class CascadedBranch(nn.Module):
    """Keyword head + vector quantiser + CLIP text encoder over the K+2 keyword positions.

    Args:
        input_size: D_a, the speech feature width.
        text_encoder: the frozen CLIP text tower (shared with the model, not owned).
        codebook_ids: (V,) CLIP vocabulary ids a keyword may take.
        num_keywords: K (paper: 8).
        num_layers, nhead, dim_feedforward: the attention layer(s); paper: 1 layer, 1 head, no
            feed-forward (dim_feedforward 0).
        vq_temperature: straight-through softmax temperature (paper: 0.1).
        projection_hidden: None: the keyword projection is Linear(D_a, D_t); a width H: an MLP
            Linear(D_a, H) -> ReLU -> Dropout(projection_dropout) -> Linear(H, D_t) (SpeechCLIP+ Large).
        parallel_dim: SpeechCLIP+'s hybrid: D_c, and one parallel CLS token goes in front of the K keyword
            tokens through the SAME attention layer(s); its output, projected (``parallel_projection_hidden``
            as for the keywords), is a parallel utterance embedding. None: keywords only (SpeechCLIP).
        final_norm: a LayerNorm after the last layer (SpeechCLIP+'s hybrid built on a TransformerEncoder).
    """

    def __init__(
        self,
        input_size: int,
        text_encoder: CLIPTextEncoder,
        codebook_ids: torch.Tensor,
        num_keywords: int = 8,
        num_layers: int = 1,
        nhead: int = 1,
        dim_feedforward: int = 0,
        dropout: float = 0.1,
        vq_temperature: float = 0.1,
        projection_hidden: Optional[int] = None,
        projection_dropout: float = 0.1,
        parallel_dim: Optional[int] = None,
        parallel_projection_hidden: Optional[int] = None,
        final_norm: bool = False,
    ):
        super().__init__()
        if input_size % nhead:
            raise InputError(f"cascaded branch: width {input_size} is not divisible by nhead {nhead}")
        if num_keywords + 2 > text_encoder.context_length:
            raise InputError(
                f"{num_keywords} keywords + SOT/EOT exceed CLIP's context {text_encoder.context_length}"
            )
        self.num_keywords = num_keywords
        # The text encoder is a frozen tower owned by the model; keep it out of this module's children.
        self._text = (text_encoder,)
        self.register_buffer("codebook_ids", codebook_ids.long().clone())
        self.cls = nn.Parameter(torch.randn(1, num_keywords, input_size))
        self.parallel_cls = None
        self.parallel_projection = None
        if parallel_dim is not None:
            self.parallel_cls = nn.Parameter(torch.randn(1, 1, input_size))
            self.parallel_projection = projection(
                input_size, parallel_dim, parallel_projection_hidden, projection_dropout
            )
        self.layers = nn.ModuleList(
            AttentionBlock(input_size, nhead, dim_feedforward, dropout) for _ in range(num_layers)
        )
        self.final_norm = nn.LayerNorm(input_size) if final_norm else None
        width = text_encoder.width
        self.projection = projection(input_size, width, projection_hidden, projection_dropout)
        self.norm = nn.BatchNorm1d(num_keywords * width)
        self.quantizer = CosineVectorQuantizer(vq_temperature)
        self.reset_norm()

    @property
    def text_encoder(self) -> CLIPTextEncoder:
        return self._text[0]

    def codebook(self) -> torch.Tensor:
        """(V, D_t) rows of CLIP's token-embedding table for the codebook ids."""
        return self.text_encoder.token_embedding.weight[self.codebook_ids]

    def reset_norm(self) -> None:
        """Keywords start in the codebook's distribution (see :func:`init_keyword_norm`)."""
        init_keyword_norm(self.norm, self.codebook())

    def neighbour_ids(self, keyword_ids: torch.Tensor, k: int = KEYWORD_NEIGHBOURS) -> torch.Tensor:
        """keyword_ids (B, K) CLIP ids of codebook subwords -> (B, K, k) CLIP ids of the ``k`` codebook
        subwords nearest to each by cosine (see :func:`codebook_neighbours`)."""
        return codebook_neighbours(self.codebook(), self.codebook_ids, keyword_ids, k)

    def keywords(
        self, feats: torch.Tensor, lengths: torch.Tensor, return_attention: bool = False
    ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """feats (B, T, D_a), lengths (B,) -> continuous keyword vectors (B, K, D_t), and with
        ``return_attention`` each keyword's attention over the T frames (B, K, T), else None.

        The attention is the LAST layer's, averaged over its heads: that layer's CLS outputs are what
        the projection turns into keywords, so its weights say which frames each keyword is read from
        (with the paper's one layer and one head it is exactly the model's attention). Earlier layers
        only mix frames with each other. The weights on the K CLS keys are dropped and each row is
        renormalised over the utterance's frames (0 at padding).
        """
        z, attention, _ = self._attend(feats, lengths, return_attention)
        return z, attention

    def keyword_cosines(
        self, feats: torch.Tensor, keyword_ids: torch.Tensor, hidden: torch.Tensor
    ) -> torch.Tensor:
        """One utterance's feats (T, D_a), its keywords' CLIP ids (K,) and W frame masks hidden (W, T)
        bool -> (W, K) float32: the cosine between each keyword read with row w's frames hidden from
        every layer's attention and the codebook row of its id.

        The occlusion behind :func:`espnet_speechclip.evaluation.keyword_spans.occlusion_spans`: hide
        everything but a stretch to ask what it says about a keyword alone, hide the stretch to ask
        what the utterance loses without it. The keyword tokens always stay visible, so even a row
        hiding every frame is defined. Evaluate in eval mode: BatchNorm's running statistics keep the
        W rows independent of each other.
        """
        rows = F.normalize(self.text_encoder.token_embedding.weight[keyword_ids].float(), dim=-1)
        hidden = hidden.to(feats.device)
        # a long utterance has many stretches, each a pass over (K + T)^2 attention weights: bound the
        # rows per pass so that memory grows with T, not with T^3
        per_pass = max(1, OCCLUSION_BUDGET // (self.num_keywords + 1 + feats.size(0)) ** 2)
        out = []
        for start in range(0, hidden.size(0), per_pass):
            mask = hidden[start : start + per_pass]
            x = feats.unsqueeze(0).expand(mask.size(0), -1, -1)
            lengths = torch.full((mask.size(0),), feats.size(0), dtype=torch.long, device=feats.device)
            z, _, _ = self._attend(x, lengths, False, hidden=mask)
            out.append((F.normalize(z.float(), dim=-1) * rows.to(z.device)).sum(-1))
        return torch.cat(out)

    def _attend(
        self,
        feats: torch.Tensor,
        lengths: torch.Tensor,
        return_attention: bool,
        hidden: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, Optional[torch.Tensor], Optional[torch.Tensor]]:
        """-> keywords (B, K, D_t), attention (B, K, T) or None, parallel embedding (B, D_c) normalised
        or None (see :meth:`keywords`). The parallel CLS (SpeechCLIP+'s hybrid) sits in front of the K
        keyword tokens: [P, CLS_1..CLS_K, frames]. ``hidden`` (B, T) bool: frames no token attends to,
        as padding (:meth:`keyword_cosines`)."""
        b, k = feats.size(0), self.num_keywords
        tokens = self.cls.expand(b, -1, -1)
        if self.parallel_cls is not None:
            tokens = torch.cat([self.parallel_cls.expand(b, -1, -1), tokens], dim=1)
        p = tokens.size(1) - k  # 1 with a parallel CLS, else 0
        x = torch.cat([tokens.to(feats.dtype), feats], dim=1)
        mask = padding_mask(lengths, feats.size(1), prefix=p + k)
        if hidden is not None:
            mask = mask | F.pad(hidden.bool(), (p + k, 0), value=False)
        attention = None
        for i, layer in enumerate(self.layers):
            if return_attention and i == len(self.layers) - 1:
                frames = layer.query_attention(x, mask, p + k)[:, p:, p + k :].float()  # (B, K, T)
                attention = frames / frames.sum(dim=-1, keepdim=True).clamp_min(1e-12)
            x = layer(x, mask)
        if self.final_norm is not None:
            x = self.final_norm(x)
        parallel = None
        if self.parallel_projection is not None:
            parallel = F.normalize(self.parallel_projection(x[:, 0]), dim=-1)
        z = self.projection(x[:, p : p + k])  # (B, K, D_t)
        return self.norm(z.reshape(b, -1)).view(b, k, -1), attention, parallel

    def forward(
        self, feats: torch.Tensor, lengths: torch.Tensor, return_attention: bool = False
    ) -> KeywordOutput:
        """feats (B, T, D_a), lengths (B,) -> embedding, keyword ids, scores and similarity, plus the
        keywords' attention with ``return_attention`` (see :meth:`keywords`; training never asks, so it
        never pays for it) and, with a parallel CLS (SpeechCLIP+'s hybrid), the parallel embedding."""
        z, attention, parallel = self._attend(feats, lengths, return_attention)
        codebook = self.codebook()
        vq = self.quantizer(z, codebook)
        text = self.text_encoder
        ends = text.token_embedding.weight[torch.tensor([SOT_ID, EOT_ID], device=z.device)]
        b = z.size(0)
        seq = torch.cat(
            [ends[0].expand(b, 1, -1), vq["quantized"].to(ends.dtype), ends[1].expand(b, 1, -1)], dim=1
        )
        return KeywordOutput(
            embedding=text.encode_embeddings(seq),
            keyword_ids=self.codebook_ids[vq["index"]],
            keyword_scores=vq["score"],
            similarity=vq["similarity"],
            attention=attention,
            parallel_embedding=parallel,
        )
