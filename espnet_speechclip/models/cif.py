"""Continuous integrate-and-fire (CIF) for the cascaded branch of SpeechCLIP+ (Wang et al., 2024).

SpeechCLIP+ replaces the K fixed keyword CLS tokens of cascaded SpeechCLIP by a variable number of
word-like units: every speech frame t gets a weight alpha_t >= 0, the weights are accumulated left to
right, and each time the accumulation reaches the threshold beta (1.0) a unit "fires"; its vector is the
alpha-weighted sum of the frames it covers. The frame that crosses the threshold is split: the part of
its weight that completes the unit goes into it, the rest starts the next unit (a frame with alpha >
beta can complete several units). Each unit then becomes one keyword, and the sequence
[SOT, kw_1..kw_N, EOT] of variable N goes through the frozen CLIP text transformer
(:func:`encode_variable_keywords`).

Exact formulation used here (the "interval" view of CIF). With c_t = alpha_0 + ... + alpha_t
(c_{-1} = 0), frame t holds the accumulated-weight interval [c_{t-1}, c_t) and unit j holds
[j * beta, (j + 1) * beta). The weight of frame t in unit j is the length of the intersection::

    w[j, t] = max(0, min(c_t, (j + 1) * beta) - max(c_{t-1}, j * beta))

This is the sequential integrate-and-fire rule written in closed form: it needs no loop over frames,
it is exact (complete units get weights summing to beta, the crossing frame is split between
neighbours, a frame may feed several units), and it is differentiable w.r.t. the alphas (piecewise
linear in the cumulative sums) and the features (units = w @ feats).
"""

from __future__ import annotations

from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import nn

from espnet_speechclip.errors import InputError
from espnet_speechclip.models.clip import EOT_ID, PAD_ID, SOT_ID, CLIPTextEncoder
from espnet_speechclip.models.masks import valid_mask

__all__ = ["CIFDownsampler", "cif", "encode_variable_keywords"]


def _no_autocast(device: torch.device):
    """Integration runs in fp32/fp64 even under AMP: fp16 cumulative sums over hundreds of frames would
    misplace unit boundaries by whole frames."""
    if device.type in ("cpu", "cuda"):
        return torch.autocast(device_type=device.type, enabled=False)
    return nullcontext()


def cif(
    alphas: torch.Tensor,
    feats: torch.Tensor,
    lengths: torch.Tensor,
    threshold: float = 1.0,
    tail_threshold: float | None = None,
    max_units: int | None = None,
    at_least_one: bool = True,
    fire_tolerance: float = 1e-5,
) -> dict[str, torch.Tensor]:
    """Integrate-and-fire ``feats`` with weights ``alphas`` into a variable number of units.

    Args:
        alphas: (B, T) non-negative frame weights. Frames at or beyond ``lengths`` are treated as 0
            whatever they hold, so padding never feeds a unit.
        feats: (B, T, D) frame features.
        lengths: (B,) valid frames per utterance.
        threshold: beta, the weight a unit must integrate to fire (SpeechCLIP+: 1.0).
        tail_threshold: what to do with the remainder r = sum(alpha) - n * beta left after the last
            complete unit. ``None`` (SpeechCLIP+ at training time): it is dropped. A number (SpeechCLIP+ at
            inference: 0.5): if r >= tail_threshold it fires one more unit whose vector is rescaled by
            beta / r, i.e. as if the remainder had been a complete unit. The comparison is absolute, as in
            SpeechCLIP+ (where beta = 1), and forgives a rounding error of 1e-9 * beta.
        max_units: keep at most this many units per utterance (the later ones are dropped).
            SpeechCLIP+ caps at 75 = CLIP's context 77 minus SOT and EOT.
        at_least_one: an utterance with positive total weight that completes no unit keeps its
            remainder as one unit, NOT rescaled (even if it would pass ``tail_threshold``). This is what
            SpeechCLIP+ does (it clips the unit count to >= 1), so that no keyword sequence is empty. An
            utterance whose alphas are all zero still gets no unit.
        fire_tolerance: a unit whose integrated weight falls short of beta by less than
            ``fire_tolerance * beta`` after the LAST frame still counts as complete. Alphas scaled to
            sum to an integer target (training) can miss it by a rounding error; SpeechCLIP+ adds 1e-5
            to the target sum for the same reason.

    Returns:
        dict with, N = the largest unit count in the batch:

        - ``units`` (B, N, D): unit vectors, zero beyond ``unit_lengths``; fp32 (fp64 if ``feats`` is).
        - ``unit_lengths`` (B,) long: units per utterance.
        - ``weights`` (B, N, T): how much of each frame's alpha went into each unit (the raw integration
          weights, before the tail's rescaling): a complete unit's row sums to beta, a tail or lone
          partial unit's row to the remainder r. ``units[b, j] = weights[b, j] @ feats[b]``, times
          beta / r for a rescaled tail unit.
        - ``spans`` (B, N, 2) float64: each unit's (start, end) in frames, fractional: frame t covers
          [t, t + 1) and its weight is spread uniformly over it, so a unit starts where its first weight
          enters and ends where it fires (for a tail/partial unit, at the end of its last weighted frame).
          Zero beyond ``unit_lengths``; seconds = frames / frame rate (+ the upstream's offset).
        - ``fire_frames`` (B, N) long: the frame whose weight completed each unit, the one its end lies
          in (for a tail/partial unit: its last weighted frame); -1 beyond ``unit_lengths``.
        - ``tail_fired`` (B,) bool: the utterance's last unit is a rescaled tail unit.

    Why shapes (B, N, T) for the weights: the whole integration is the one batched product
    ``weights @ feats``, and the same matrix gives the boundaries and the unit spans for evaluation.
    Memory is B * N * T (256 x 17 x 320 at SpeechCLIP+ training, a few MB).
    """
    if alphas.dim() != 2 or feats.dim() != 3 or feats.shape[:2] != alphas.shape:
        raise InputError(
            f"cif: alphas (B, T) and feats (B, T, D) expected, got {tuple(alphas.shape)} and "
            f"{tuple(feats.shape)}"
        )
    if threshold <= 0:
        raise InputError(f"cif: threshold must be positive, got {threshold}")
    b, t_max = alphas.shape
    device = alphas.device
    work = torch.float64 if feats.dtype == torch.float64 else torch.float32
    lengths = lengths.to(device=device, dtype=torch.long)
    with _no_autocast(device):
        valid = valid_mask(lengths, t_max)  # (B, T)
        # Decisions (counts, boundaries) come from fp64 cumulative sums of the alphas as given, so
        # they do not depend on the working precision of the weights.
        a64 = torch.where(valid, alphas.detach().double(), 0.0)
        if bool((a64 < 0).any()) or not bool(torch.isfinite(a64).all()):
            raise InputError("cif: alphas must be finite and non-negative")
        c64 = torch.cumsum(a64, dim=1)  # (B, T)
        total = c64[:, -1] if t_max else c64.new_zeros(b)  # (B,)
        n_complete = torch.floor(total / threshold + fire_tolerance).long()  # (B,)
        remainder = (total - n_complete.double() * threshold).clamp_min(0.0)
        partial = (
            (n_complete == 0) & (total > 0) if at_least_one else torch.zeros_like(total, dtype=torch.bool)
        )
        if tail_threshold is None:
            tail = torch.zeros_like(partial)
        else:
            # (a remainder that misses the tail threshold by a rounding error, < 1e-9 beta, still fires)
            tail = (remainder >= tail_threshold - 1e-9 * threshold) & (remainder > 0) & ~partial
        counts = n_complete + (partial | tail).long()
        if max_units is not None:
            counts = counts.clamp(max=max_units)
        n_max = int(counts.max()) if b else 0

        j = torch.arange(n_max, device=device)  # unit index
        keep = j.unsqueeze(0) < counts.unsqueeze(1)  # (B, N)
        tail_slot = keep & tail.unsqueeze(1) & (j.unsqueeze(0) == n_complete.unsqueeze(1))  # (B, N)

        # Integration weights with gradient, in the working precision.
        a = torch.where(valid, alphas.to(work), torch.zeros((), dtype=work, device=device))
        c = torch.cumsum(a, dim=1)  # (B, T)
        c_prev = F.pad(c, (1, 0))[:, :-1]  # c_{t-1}
        lo = (j.to(work) * threshold).view(1, -1, 1)  # (1, N, 1) unit start level
        weights = torch.minimum(c.unsqueeze(1), lo + threshold) - torch.maximum(c_prev.unsqueeze(1), lo)
        weights = weights.clamp_min(0.0) * keep.unsqueeze(-1)  # (B, N, T)
        # A tail unit is rescaled to a full unit's weight; its raw weights sum to the remainder (>= the
        # tail threshold > 0, so the division is safe).
        row_sum = weights.sum(-1)
        scale = torch.where(
            tail_slot,
            threshold / row_sum.clamp_min(torch.finfo(work).tiny),
            torch.ones((), dtype=work, device=device),
        )
        units = torch.bmm(weights, feats.to(work)) * scale.unsqueeze(-1)  # (B, N, D)

        spans, fire_frames = _unit_spans(c64, total, keep, threshold)
    return {
        "units": units,
        "unit_lengths": counts,
        "weights": weights,
        "spans": spans,
        "fire_frames": fire_frames,
        "tail_fired": tail & (counts > n_complete),
    }


def _unit_spans(
    c64: torch.Tensor, total: torch.Tensor, keep: torch.Tensor, threshold: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fractional (start, end) frame positions of each kept unit and its firing frame, from the fp64
    cumulative sums c64 (B, T). Unit j starts where the accumulation passes j * beta and ends where it
    reaches min((j + 1) * beta, total).

    A level reached to within 1e-9 * beta counts as reached: a crossing that the cumulative sum misses
    by a rounding error (6 * fl(1/3) < 2) must not move a boundary across the silent (alpha = 0) frames
    that may follow it.
    """
    b, n_max = keep.shape
    t_max = c64.size(1)
    if n_max == 0 or t_max == 0:
        return c64.new_zeros(b, n_max, 2), torch.full((b, n_max), -1, dtype=torch.long, device=c64.device)
    eps = 1e-9 * threshold
    level = torch.arange(n_max, device=c64.device, dtype=torch.float64).unsqueeze(0) * threshold  # (1, N)
    start_level = level.expand(b, -1).contiguous()
    end_level = torch.minimum(level + threshold, total.unsqueeze(1)).contiguous()
    # the first frame whose cumulative sum passes the start level / reaches the end level
    t_start = torch.searchsorted(c64, start_level + eps, right=True).clamp(max=t_max - 1)
    t_end = torch.searchsorted(c64, end_level - eps, right=False).clamp(max=t_max - 1)
    c_prev = F.pad(c64, (1, 0))[:, :-1]
    alpha = c64 - c_prev

    def position(frame: torch.Tensor, lvl: torch.Tensor) -> torch.Tensor:
        a = alpha.gather(1, frame)
        # a > 0 at the frames found for kept units; the guard only protects the discarded entries
        frac = (lvl - c_prev.gather(1, frame)) / torch.where(a > 0, a, torch.ones_like(a))
        return frame.double() + frac.clamp(0.0, 1.0)

    spans = torch.stack([position(t_start, start_level), position(t_end, end_level)], dim=-1)
    spans = spans * keep.unsqueeze(-1)
    fire_frames = torch.where(keep, t_end, torch.full_like(t_end, -1))
    return spans, fire_frames


class CIFDownsampler(nn.Module):
    """SpeechCLIP+'s CIF module: frame features -> alphas -> variable-length units + quantity loss.

    Alpha network (SpeechCLIP+ ``avssl/module/cif.py``, produce_weight_type "conv"): ``num_layers`` x
    [Conv1d(D, D, kernel_size, "same" zero padding) -> Dropout -> ReLU], then Dropout -> Linear(D, 1) ->
    Sigmoid. Their Dropout layers are built as ``nn.Dropout()``, i.e. p = 0.5 (the config's
    ``conv_cif_dropout: 0.1`` is never used), hence the default here. Unlike SpeechCLIP+, padded frames
    are zeroed before each convolution, so an utterance's alphas do not depend on what it is batched with.

    Training (``self.training``): the alphas are rescaled so that each utterance's sum equals its target
    length exactly (during the first ``scaling_steps`` training forwards only, as SpeechCLIP+'s
    ``scaling_step: 5000``), no tail unit fires. Inference: no scaling, the tail rule fires a last unit if
    the remainder is >= ``tail_threshold``.

    Targets: ``target_lengths`` when given (e.g. the caption's CLIP BPE token count, SpeechCLIP+'s
    ``using_gt_len``); otherwise round(frames / ``frames_per_unit``), which is what every released
    SpeechCLIP+ config actually trains with (one unit per 20 HuBERT frames = 0.4 s).

    Args:
        input_size: D, the frame feature width.
        kernel_size: odd convolution width (SpeechCLIP+: 3; 5 for Large SpokenCOCO cascaded+).
        num_layers: convolution layers (SpeechCLIP+: 1; 2 for Large SpokenCOCO cascaded+).
        dropout: dropout after each convolution and before the weight head.
        threshold, tail_threshold, max_units, at_least_one: see :func:`cif`.
        frames_per_unit: frames per target unit when no ``target_lengths`` are given; None = no target
            (no scaling, no quantity loss).
        scaling_steps: number of training forwards during which the alphas are scaled to the targets;
            None = always. Counted in a buffer, so it survives checkpoint resumption. Note that it counts
            forwards, not optimiser updates: with gradient accumulation a, use a * 5000.
    """

    def __init__(
        self,
        input_size: int,
        kernel_size: int = 3,
        num_layers: int = 1,
        dropout: float = 0.5,
        threshold: float = 1.0,
        tail_threshold: float | None = 0.5,
        frames_per_unit: float | None = 20.0,
        scaling_steps: int | None = 5000,
        max_units: int | None = 75,
        at_least_one: bool = True,
    ):
        super().__init__()
        if kernel_size % 2 != 1:
            raise InputError(f"CIF kernel_size must be odd to keep one alpha per frame, got {kernel_size}")
        if frames_per_unit is not None and frames_per_unit <= 0:
            raise InputError(f"frames_per_unit must be positive, got {frames_per_unit}")
        self.convs = nn.ModuleList(
            nn.Conv1d(input_size, input_size, kernel_size, padding=kernel_size // 2)
            for _ in range(num_layers)
        )
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(input_size, 1)
        self.threshold = threshold
        self.tail_threshold = tail_threshold
        self.frames_per_unit = frames_per_unit
        self.scaling_steps = scaling_steps
        self.max_units = max_units
        self.at_least_one = at_least_one
        self.register_buffer("num_forwards", torch.zeros((), dtype=torch.long))

    def compute_alphas(self, feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """feats (B, T, D), lengths (B,) -> alphas (B, T) in fp32, in (0, 1) on valid frames, 0 on padding."""
        valid = valid_mask(lengths, feats.size(1))
        frame_mask = valid.unsqueeze(1)  # (B, 1, T), channels-first
        x = feats.transpose(1, 2)  # (B, D, T)
        for conv in self.convs:
            # zero the padding before every convolution: valid frames then see the same zero border
            # as an unpadded utterance would
            x = F.relu(self.dropout(conv(x.masked_fill(~frame_mask, 0.0))))
        logits = self.head(self.dropout(x.transpose(1, 2))).squeeze(-1)  # (B, T)
        return torch.sigmoid(logits.float()).masked_fill(~valid, 0.0)

    def scaling_active(self) -> bool:
        return self.scaling_steps is None or int(self.num_forwards) < self.scaling_steps

    def forward(
        self, feats: torch.Tensor, lengths: torch.Tensor, target_lengths: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor | None]:
        """feats (B, T, D), lengths (B,), target_lengths (B,) optional ->

        dict(units (B, N, D) fp32, unit_lengths (B,), weights (B, N, T), spans (B, N, 2), fire_frames
        (B, N), tail_fired (B,) as in :func:`cif`; alphas (B, T) the weights integrated (scaled when
        scaling applied); alpha_sum (B,) the UNSCALED sum, the predicted quantity; target_lengths (B,)
        or None; quantity_loss: mean over the batch of |alpha_sum - target| (SpeechCLIP+'s L1Loss), or
        None without targets).
        """
        lengths = lengths.to(feats.device)
        alphas = self.compute_alphas(feats, lengths)
        alpha_sum = alphas.sum(dim=1)
        targets = target_lengths
        if targets is None and self.frames_per_unit is not None:
            # torch.round: half to even, as SpeechCLIP+'s (audio_feat_len / 20).round()
            targets = torch.round(lengths.double() / self.frames_per_unit).long()
        if targets is not None:
            targets = targets.to(device=feats.device)

        integrated = alphas
        if self.training:
            if targets is not None and self.scaling_active():
                # fp64, so that the scaled sum equals the integer target to ~1e-15 and the unit count
                # is exactly the target
                a64 = alphas.double()
                total = a64.sum(dim=1, keepdim=True)
                ratio = targets.double().unsqueeze(1) * self.threshold / total.clamp_min(1e-300)
                integrated = torch.where(total > 0, a64 * ratio, a64)
            self.num_forwards += 1
        out = cif(
            integrated,
            feats,
            lengths,
            threshold=self.threshold,
            tail_threshold=None if self.training else self.tail_threshold,
            max_units=self.max_units,
            at_least_one=self.at_least_one,
        )
        out["alphas"] = integrated
        out["alpha_sum"] = alpha_sum
        out["target_lengths"] = targets
        out["quantity_loss"] = (
            None if targets is None else (alpha_sum - targets.to(alpha_sum.dtype)).abs().mean()
        )
        return out


def encode_variable_keywords(
    text_encoder: CLIPTextEncoder, keywords: torch.Tensor, lengths: torch.Tensor
) -> torch.Tensor:
    """Run [SOT, kw_1..kw_n, EOT, pad...] through the frozen CLIP text tower, n varying per utterance.

    Args:
        text_encoder: the frozen CLIP text tower (its token_embedding, positional_embedding, transformer,
            attn_mask, ln_final and text_projection are used).
        keywords: (B, N_max, D_t) keyword vectors in CLIP's token-embedding space (quantised keywords).
        lengths: (B,) n, the keywords of each utterance (0 <= n <= N_max); rows beyond n are ignored.

    Returns:
        (B, D_c) L2-normalised embeddings, taken at each utterance's EOT position n + 1.

    Fed the token embeddings of CLIP ids, this equals open_clip's ``encode_text(ids, normalize=True)``
    on ``[SOT, ids..., EOT, 0, ...]``: the pad positions after EOT hold the embedding of id 0 (what
    open_clip's tokenizer pads with), and under the causal mask they cannot influence EOT anyway, so only
    max(n) + 2 positions are run. A sequence longer than the context minus 2 (75 for CLIP's 77) is
    truncated to its first 75 keywords, with EOT kept last, as open_clip's tokenizer truncates text.
    """
    if keywords.dim() != 3:
        raise InputError(f"keywords must be (B, N, D_t), got {tuple(keywords.shape)}")
    b, n_max, _ = keywords.shape
    device = keywords.device
    lengths = lengths.to(device=device, dtype=torch.long)
    if bool((lengths < 0).any()) or bool((lengths > n_max).any()):
        raise InputError(f"keyword lengths must lie in [0, {n_max}], got {lengths.tolist()}")
    ctx = text_encoder.context_length
    n = lengths.clamp(max=ctx - 2)
    seq_len = (int(n.max()) if b else 0) + 2
    table = text_encoder.token_embedding.weight
    special = table[torch.tensor([SOT_ID, EOT_ID, PAD_ID], device=table.device)].to(device)
    sot, eot, pad = special[0], special[1], special[2]
    # keywords moved one position right (after SOT); positions beyond n are overwritten below
    body = F.pad(keywords[:, : seq_len - 2].to(table.dtype), (0, 0, 1, 1))  # (B, L, D_t)
    pos = torch.arange(seq_len, device=device).unsqueeze(0)  # (1, L)
    n_col = n.unsqueeze(1)
    x = torch.where(((pos >= 1) & (pos <= n_col)).unsqueeze(-1), body, pad)
    x = torch.where((pos == 0).unsqueeze(-1), sot, x)
    x = torch.where((pos == n_col + 1).unsqueeze(-1), eot, x)
    x = x + text_encoder.positional_embedding[:seq_len].to(x.dtype)
    x = text_encoder.transformer(x, attn_mask=text_encoder.attn_mask[:seq_len, :seq_len])
    x = text_encoder.ln_final(x[torch.arange(b, device=device), n + 1])  # (B, D_t) at EOT
    proj = text_encoder.text_projection
    x = proj(x) if isinstance(proj, nn.Linear) else x @ proj
    return F.normalize(x, dim=-1)
