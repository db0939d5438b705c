"""Symmetric InfoNCE between speech and image embeddings, as SpeechCLIP trains it.

Other captions of the same image in the batch are neither positives nor negatives: they are removed
from both softmax denominators. Under DDP the embeddings (and image ids) of every rank are all-gathered
*with gradient* so negatives span the global batch; every rank then computes the same global loss and
DDP's gradient averaging gives exactly the single-process gradient of the concatenated batch.
"""

from __future__ import annotations

import math
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import nn

from espnet_speechclip.errors import InputError


def gather_with_grad(*tensors: torch.Tensor) -> Tuple[torch.Tensor, ...]:
    """Concatenate each tensor over all ranks along dim 0, keeping the autograd graph.

    Outside an initialised process group (or with one rank) the tensors are returned unchanged.
    Every rank must pass the same per-rank batch size.
    """
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return tensors
    if torch.distributed.get_world_size() == 1:
        return tensors
    import torch.distributed.nn as dist_nn

    out = []
    for t in tensors:
        if t.requires_grad:
            out.append(torch.cat(dist_nn.all_gather(t), dim=0))
        else:  # ids and frozen embeddings need no backward
            parts = [torch.empty_like(t) for _ in range(torch.distributed.get_world_size())]
            torch.distributed.all_gather(parts, t.contiguous())
            out.append(torch.cat(parts, dim=0))
    return tuple(out)


def masked_infonce(
    speech: torch.Tensor, image: torch.Tensor, image_ids: torch.Tensor, scale: torch.Tensor
) -> torch.Tensor:
    """Symmetric InfoNCE over one (already gathered) batch.

    Args:
        speech: (B, D) L2-normalised speech embeddings.
        image: (B, D) L2-normalised image embeddings; row i is the image of utterance i.
        image_ids: (B,) integer image identity; equal ids mean the same image.
        scale: scalar logit scale (1 / temperature).
    Returns:
        scalar loss, mean of the speech->image and image->speech cross entropies.
    """
    # fp32 whatever the autocast dtype: logits up to 100 and logsumexp need the range.
    speech = speech.float()
    image = image.float()
    logits = scale.float() * speech @ image.t()  # (B, B)
    same = image_ids.view(-1, 1) == image_ids.view(1, -1)
    same.fill_diagonal_(False)
    logits = logits.masked_fill(same, float("-inf"))
    target = torch.arange(logits.size(0), device=logits.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))


class InfoNCELoss(nn.Module):
    """Masked symmetric InfoNCE with a fixed or learnable, clamped temperature.

    Args:
        temperature: initial temperature (paper: 0.07, i.e. scale 1/0.07).
        learnable: learn log(scale) (Large configs) instead of keeping it fixed (Base configs).
        max_scale: upper clamp of the scale (CLIP's 100), keeps a learnable scale from diverging.
    The fixed scale is recomputed from the constructor argument, not stored, so the state dict holds
    only the learnable parameter (and nothing whose shape depends on the batch size).

    The learnable scale is capped as CLIP caps its ``logit_scale``: the PARAMETER is clamped in place to
    [0, log(max_scale)] (scale in [1, max_scale]) before every use, outside autograd, and the scale is
    ``exp(log_scale)``. Its gradient is therefore never zeroed: at the cap a step that pushes the scale
    up is undone by the next clamp, and a step that pulls it down takes effect at once. Clamping
    ``exp(log_scale)`` instead would zero the gradient above the cap and let the parameter sit above it,
    unseen, for as many steps as it took to get there. (CLIP clamps after each optimiser step; clamping
    before each use is the same within ESPnet's Trainer, which owns the optimiser step, and also covers
    a checkpoint saved right after a step.)
    """

    def __init__(self, temperature: float = 0.07, learnable: bool = False, max_scale: float = 100.0):
        super().__init__()
        if not 0 < temperature:
            raise InputError(f"temperature must be positive, got {temperature}")
        if 1.0 / temperature > max_scale:
            raise InputError(f"initial scale 1/{temperature} exceeds max_scale {max_scale}")
        if max_scale < 1.0:
            raise InputError(f"max_scale must be at least 1, got {max_scale}")
        self.learnable = learnable
        self.max_scale = max_scale
        self._log_scale_init = math.log(1.0 / temperature)
        if learnable:
            self.log_scale = nn.Parameter(torch.tensor(self._log_scale_init))

    @torch.no_grad()
    def clamp_(self) -> None:
        """Clamp the learnable ``log_scale`` in place to [0, log(max_scale)] (a no-op for a fixed scale)."""
        if self.learnable:
            self.log_scale.clamp_(0.0, math.log(self.max_scale))

    def scale(self) -> torch.Tensor:
        """The logit scale (a scalar tensor): 1/temperature, or the clamped learnable ``exp(log_scale)``."""
        if self.learnable:
            # exp saves only its output for backward, so a later in-place clamp (the hybrid model's
            # second branch loss) does not disturb a graph that already used the scale.
            self.clamp_()
            return self.log_scale.exp()
        return torch.tensor(math.exp(self._log_scale_init))

    def forward(self, speech: torch.Tensor, image: torch.Tensor, image_ids: torch.Tensor) -> torch.Tensor:
        """speech, image: (B, D) normalised; image_ids: (B,). Gathers across ranks under DDP."""
        speech, image, image_ids = gather_with_grad(speech, image, image_ids)
        return masked_infonce(speech, image, image_ids, self.scale().to(speech.device))
