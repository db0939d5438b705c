"""Length masks: which positions of a padded batch hold data. The one place the expression is written."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def valid_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """lengths (B,) -> (B, max_len) bool, True at the first lengths[b] positions of row b (on the
    lengths' device)."""
    return torch.arange(max_len, device=lengths.device).unsqueeze(0) < lengths.unsqueeze(1)


def padding_mask(lengths: torch.Tensor, max_len: int, prefix: int = 0) -> torch.Tensor:
    """(B, prefix + max_len) bool, True at padded frames, as attention's ``key_padding_mask`` wants; the
    first ``prefix`` slots (CLS tokens) are always valid."""
    return F.pad(~valid_mask(lengths, max_len), (prefix, 0), value=False)
