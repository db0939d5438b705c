"""s3prl's Kaldi filterbank baseline (log-mel, deltas, per-utterance CMVN) for a whole batch at once.

s3prl's baseline expert (``fbank``) runs torchaudio's Kaldi ``fbank``, then its deltas and CMVN, one
waveform at a time: with the small branches of a CPU-sized model that loop is about half of a training
step (128 utterances of 2 s). Nothing in the pipeline needs the loop. Every Kaldi step works on one
25 ms frame alone (DC offset, pre-emphasis, window, power spectrum, mel energies, log; dither is off),
the deltas read an utterance's neighbouring frames (repeating its own first and last frame at the
edges), and CMVN uses the utterance's own mean and standard deviation. So all frames of a padded batch
go through the same matrix operations, and the per-utterance parts use each utterance's frame count.

:meth:`BatchedKaldiFbank.from_expert` reads the s3prl expert's own config and returns ``None`` for
what it does not reproduce (other feature types, dither, Kaldi options it does not implement), and
checks itself against the expert on two waveforms before it is used: the expert stays the reference,
this is only a faster way to compute its numbers.
"""

from __future__ import annotations

import logging
from typing import Optional, Tuple

import torch
from torch import nn

from espnet_speechclip.data.media import SAMPLE_RATE
from espnet_speechclip.errors import InputError
from espnet_speechclip.models.masks import valid_mask

logger = logging.getLogger(__name__)

# Kaldi fbank options (torchaudio.compliance.kaldi.fbank) reproduced here; any other key, or another
# value of the fixed ones, keeps s3prl's per-utterance path.
_OPTIONS = {
    "num_mel_bins",
    "frame_length",
    "frame_shift",
    "low_freq",
    "high_freq",
    "preemphasis_coefficient",
    "remove_dc_offset",
    "use_log_fbank",
    "use_power",
}
_FIXED = {
    "dither": 0.0,
    "window_type": "povey",
    "snip_edges": True,
    "round_to_power_of_two": True,
    "use_energy": False,
    "subtract_mean": False,
    "htk_compat": False,
    "vtln_warp": 1.0,
    "min_duration": 0.0,
}

# frames computed together in forward(): ~3 MB of windows, ~16 utterances of 2 s
_CHUNK_FRAMES = 3200


class BatchedKaldiFbank(nn.Module):
    """Kaldi log-mel filterbanks (snip_edges, povey window, no dither), ``delta_order`` orders of deltas
    and per-utterance CMVN, computed for a padded batch.

    Args:
        num_mel_bins, frame_length, frame_shift, low_freq, high_freq, preemphasis_coefficient,
        remove_dc_offset, use_log_fbank, use_power: as in ``torchaudio.compliance.kaldi.fbank``.
        delta_order: deltas appended (s3prl ``delta.order``; 0: none).
        delta_win_length: window of the deltas (torchaudio ``ComputeDeltas``; odd, >= 3).
        cmvn: normalise every feature to zero mean and unit (unbiased) standard deviation over each
            utterance's frames, as s3prl's ``CMVN``.
        cmvn_eps: added to the standard deviation.

    Example::

        >>> fbank = BatchedKaldiFbank(num_mel_bins=80, delta_order=2, cmvn=True)
        >>> feats, frames = fbank(torch.randn(2, 16000), torch.tensor([16000, 8000]))
        >>> feats.shape, frames.tolist()  # (B, F, 80 * 3), Kaldi frame counts 1 + (n - 400) // 160
        (torch.Size([2, 98, 240]), [98, 48])
    """

    def __init__(
        self,
        num_mel_bins: int = 23,
        frame_length: float = 25.0,
        frame_shift: float = 10.0,
        low_freq: float = 20.0,
        high_freq: float = 0.0,
        preemphasis_coefficient: float = 0.97,
        remove_dc_offset: bool = True,
        use_log_fbank: bool = True,
        use_power: bool = True,
        delta_order: int = 0,
        delta_win_length: int = 5,
        cmvn: bool = False,
        cmvn_eps: float = 1e-10,
    ):
        super().__init__()
        from torchaudio.compliance.kaldi import get_mel_banks

        if delta_win_length < 3 or delta_win_length % 2 == 0:
            raise InputError(f"delta_win_length must be odd and >= 3, got {delta_win_length}")
        self.window_size = int(SAMPLE_RATE * frame_length * 0.001)
        self.window_shift = int(SAMPLE_RATE * frame_shift * 0.001)
        self.padded_size = 1 << (self.window_size - 1).bit_length()
        self.preemphasis = preemphasis_coefficient
        self.remove_dc_offset = remove_dc_offset
        self.use_log = use_log_fbank
        self.use_power = use_power
        self.delta_order = delta_order
        self.delta_reach = (delta_win_length - 1) // 2
        self.cmvn = cmvn
        self.cmvn_eps = cmvn_eps
        # Kaldi's povey window; torchaudio builds it in the waveform's dtype (float32)
        self.register_buffer(
            "window", torch.hann_window(self.window_size, periodic=False).pow(0.85), persistent=False
        )
        banks, _ = get_mel_banks(
            num_mel_bins, self.padded_size, float(SAMPLE_RATE), low_freq, high_freq, 100.0, -500.0, 1.0
        )
        # (bins, K = padded/2 + 1): the Nyquist bin has weight 0, as in torchaudio. For power spectra each
        # weight is repeated for the bin's (re, im) pair, (bins, 2K): see forward().
        banks = nn.functional.pad(banks.float(), (0, 1))
        if use_power:
            banks = banks.repeat_interleave(2, dim=1)
        self.register_buffer("mel_banks", banks, persistent=False)

    @classmethod
    def from_expert(cls, expert: nn.Module) -> Optional[BatchedKaldiFbank]:
        """The batched equivalent of an s3prl baseline expert (``s3prl.upstream.baseline``), checked
        against it; ``None`` where its config asks for something not reproduced here."""
        config = getattr(expert, "config", None)
        kaldi = (config or {}).get("kaldi") if isinstance(config, dict) else None
        if not kaldi or kaldi.get("feat_type", "fbank") != "fbank":
            return None
        options = dict(kaldi.get("fbank") or {})
        for key, value in _FIXED.items():
            if options.pop(key, value) != value:
                return None
        if set(options) - _OPTIONS or set(config) - {"kaldi", "delta", "cmvn"}:
            return None
        delta, cmvn = config.get("delta") or {}, config.get("cmvn") or {}
        if set(delta) - {"order", "win_length"} or set(cmvn) - {"use_cmvn", "eps"}:
            return None
        batched = cls(
            **options,
            delta_order=int(delta.get("order", 0)) if delta else 0,
            delta_win_length=int(delta.get("win_length", 5)),
            cmvn=bool(cmvn.get("use_cmvn", False)),
            cmvn_eps=float(cmvn.get("eps", 1e-10)),
        )
        return batched if batched.matches(expert) else None

    def matches(self, expert: nn.Module, atol: float = 1e-3) -> bool:
        """Whether this gives the expert's features (to ``atol``) on two waveforms of different length,
        computed in one batch."""
        gen = torch.Generator().manual_seed(0)
        lengths = torch.tensor([SAMPLE_RATE, 5 * self.window_size + 123])
        wavs = torch.randn(2, SAMPLE_RATE, generator=gen) * 0.1
        with torch.no_grad():
            feats, frames = self(wavs, lengths)
            for i, n in enumerate(lengths.tolist()):
                alone = expert([wavs[i, :n]])["hidden_states"][0][0]
                if alone.shape != feats[i, : frames[i]].shape or not torch.allclose(
                    alone, feats[i, : frames[i]], atol=atol, rtol=atol
                ):
                    logger.warning(
                        "batched filterbank differs from s3prl's: computing one utterance at a time"
                    )
                    return False
        return True

    def num_frames(self, lengths: torch.Tensor) -> torch.Tensor:
        """(B,) samples -> (B,) Kaldi frames (snip_edges: whole windows only)."""
        n = torch.div(lengths.long() - self.window_size, self.window_shift, rounding_mode="floor") + 1
        return n.clamp(min=0)

    def forward(self, wavs: torch.Tensor, lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """wavs (B, N) zero-padded, lengths (B,) samples -> features (B, F, D), frames (B,).

        Frames past an utterance's own count are computed over padding and hold no meaning; every
        utterance needs at least one window (``window_size`` samples)."""
        frames = self.num_frames(lengths)
        if int(frames.min()) < 1:
            raise InputError(f"every utterance needs at least {self.window_size} samples")
        wavs = wavs[:, : int(lengths.max())]
        # A few utterances at a time: the frame and spectrum tensors of a whole batch (tens of MB) do
        # not stay in the CPU's caches, and the same work then takes up to twice as long.
        step = max(1, _CHUNK_FRAMES // max(1, int(frames.max())))
        chunks = [
            self._features(wavs[i : i + step], frames[i : i + step]) for i in range(0, wavs.size(0), step)
        ]
        return torch.cat(chunks) if len(chunks) > 1 else chunks[0], frames

    def _features(self, wavs: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """forward() of a few utterances: wavs (b, N), frames (b,) -> (b, F, D)."""
        raw = wavs.unfold(1, self.window_size, self.window_shift)  # (B, F, W), a view
        c = self.preemphasis
        offset = raw.mean(dim=-1, keepdim=True) if self.remove_dc_offset else raw.new_zeros(1)
        # Kaldi pre-emphasises each frame after removing its DC offset m: y[j] = (x[j] - m) - c (x[j-1] - m)
        # with x[-1] = x[0]. That is the waveform's x[j] - c x[j-1] less (1 - c) m, so the difference is
        # taken once over the waveform instead of over every (overlapping) frame; j = 0 is set apart.
        emphasised = torch.cat([wavs[:, :1], wavs[:, 1:] - c * wavs[:, :-1]], dim=1)
        x = emphasised.unfold(1, self.window_size, self.window_shift) - (1 - c) * offset  # (B, F, W)
        x[..., 0] = (1 - c) * (raw[..., 0] - offset[..., 0])
        x.mul_(self.window)
        spectrum = torch.fft.rfft(x, n=self.padded_size)  # zero-padded to the FFT size: (B, F, K)
        if self.use_power:
            # |X|^2 = re^2 + im^2: the (re, im) pairs squared, each weighted by its bin's mel weight
            pairs = torch.view_as_real(spectrum).square_().flatten(2)  # (B, F, 2K)
            feats = torch.matmul(pairs, self.mel_banks.T)  # (B, F, bins)
        else:
            feats = torch.matmul(spectrum.abs(), self.mel_banks.T)
        if self.use_log:
            feats = torch.clamp(feats, min=torch.finfo(feats.dtype).eps).log()
        orders = [feats]
        for _ in range(self.delta_order):
            orders.append(self._deltas(orders[-1], frames))
        feats = torch.cat(orders, dim=-1)
        if self.cmvn:
            feats = self._cmvn(feats, frames)
        return feats

    def _deltas(self, x: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """(B, F, D) -> (B, F, D): sum_k k (x[t+k] - x[t-k]) / sum_k 2k^2, k = 1..reach, with each
        utterance's first and last frame repeated beyond its edges (torchaudio's replicate padding)."""
        n, num = self.delta_reach, x.size(1)
        t = torch.arange(num, device=x.device)
        last = torch.gather(x, 1, (frames - 1).view(-1, 1, 1).expand(-1, 1, x.size(-1)))  # (B, 1, D)
        x = torch.where((t < frames.unsqueeze(1)).unsqueeze(-1), x, last)
        x = torch.cat([x[:, :1].expand(-1, n, -1), x, last.expand(-1, n, -1)], dim=1)  # (B, F + 2n, D)
        out = x[:, n + 1 : n + 1 + num] - x[:, n - 1 : n - 1 + num]
        for k in range(2, n + 1):
            out += k * (x[:, n + k : n + k + num] - x[:, n - k : n - k + num])
        return out / (n * (n + 1) * (2 * n + 1) / 3)

    def _cmvn(self, x: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """Per utterance and feature: (x - mean) / (eps + std), std unbiased, over its own frames (the
        frames after them come out as 0)."""
        valid = valid_mask(frames, x.size(1)).unsqueeze(-1)  # (B, F, 1)
        valid = valid.to(x.dtype)
        n = frames.to(x.dtype).view(-1, 1, 1)
        mean = (x * valid).sum(dim=1, keepdim=True) / n
        centred = (x - mean).mul_(valid)
        std = torch.linalg.vector_norm(centred, dim=1, keepdim=True) / (n - 1).sqrt()
        return centred.div_(self.cmvn_eps + std)
