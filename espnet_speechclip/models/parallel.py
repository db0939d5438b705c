"""Parallel SpeechCLIP branch: a CLS token summarises the speech features into a CLIP-space vector."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from espnet_speechclip.errors import InputError
from espnet_speechclip.models.masks import padding_mask


class ParallelBranch(nn.Module):
    """CLS + post-norm transformer layer(s) + final LayerNorm + Linear(D_a, D_c), L2-normalised.

    Paper defaults (Base): one layer, 8 heads, feed-forward 3072 (Large: 4096), dropout 0.1, GELU.

    Args:
        input_size: D_a, the speech feature width.
        embed_dim: D_c, the CLIP joint embedding width.
    """

    def __init__(
        self,
        input_size: int,
        embed_dim: int,
        num_layers: int = 1,
        nhead: int = 8,
        dim_feedforward: int = 3072,
        dropout: float = 0.1,
    ):
        super().__init__()
        if input_size % nhead:
            raise InputError(f"parallel branch: width {input_size} is not divisible by nhead {nhead}")
        self.cls = nn.Parameter(torch.randn(1, 1, input_size))
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(
                input_size,
                nhead,
                dim_feedforward,
                dropout,
                activation="gelu",
                batch_first=True,
                norm_first=False,
            )
            for _ in range(num_layers)
        )
        self.final_norm = nn.LayerNorm(input_size)
        self.projection = nn.Linear(input_size, embed_dim)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """feats (B, T, D_a), lengths (B,) -> normalised utterance embedding (B, D_c)."""
        x = torch.cat([self.cls.expand(feats.size(0), -1, -1).to(feats.dtype), feats], dim=1)
        mask = padding_mask(lengths, feats.size(1), prefix=1)
        for layer in self.layers:
            x = layer(x, src_key_padding_mask=mask)
        return F.normalize(self.projection(self.final_norm(x[:, 0])), dim=-1)
