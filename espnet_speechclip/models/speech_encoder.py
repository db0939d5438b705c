"""The SpeechCLIP speech encoder: a frozen S3PRL upstream and a learnable weighted sum of its layers.

The encoder also owns the rule every entry point applies to speech length: a waveform shorter than
the upstream's minimum (:attr:`S3PRLSpeechEncoder.min_samples`: its receptive field, two frames for a
filterbank with per-utterance CMVN) is refused with :func:`check_min_samples`'s message, naming the
utterance.
"""

from __future__ import annotations

import math
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from espnet_speechclip.data.media import SAMPLE_RATE, MediaError
from espnet_speechclip.errors import InputError
from espnet_speechclip.models.masks import valid_mask
from espnet_speechclip.models.upstream import Upstream


def check_min_samples(num_samples: int, min_samples: int, what: str) -> None:
    """Refuse a waveform of ``num_samples`` (16 kHz) that the upstream cannot turn into one frame.

    Raises:
        MediaError: naming ``what`` (an utterance id or a file).
    """
    if num_samples < min_samples:
        raise MediaError(
            f"{what}: {num_samples} samples at 16 kHz, shorter than the speech encoder's minimum of "
            f"{min_samples} samples"
        )


class WeightedLayerSum(nn.Module):
    """Softmax-weighted sum of ALL hidden states of an upstream, one learnable scalar per state.

    The scalars start at 0 (uniform weights). With ``layer_norm`` each state is first layer-normalised
    without affine parameters (the paper's Large models). An upstream with a single state (s3prl's
    filterbank baselines) passes it through: its one softmax weight is exactly 1 and can never learn,
    so it is kept (same state dict) but frozen, and no gradient is computed for the frozen features.

    Example::

        >>> layer_sum = WeightedLayerSum(13)
        >>> layer_sum([torch.randn(2, 50, 768) for _ in range(13)]).shape  # L x (B, T, D) -> (B, T, D)
        torch.Size([2, 50, 768])
    """

    def __init__(self, num_layers: int, layer_norm: bool = False):
        super().__init__()
        self.weights = nn.Parameter(torch.zeros(num_layers), requires_grad=num_layers > 1)
        self.layer_norm = layer_norm

    def forward(self, hidden_states: List[torch.Tensor]) -> torch.Tensor:
        """hidden_states L x (B, T, D) -> (B, T, D)."""
        if len(hidden_states) == 1:
            h = hidden_states[0]
            return F.layer_norm(h, h.shape[-1:]) if self.layer_norm else h
        stacked = torch.stack(hidden_states, dim=0)  # (L, B, T, D)
        if self.layer_norm:
            stacked = F.layer_norm(stacked, stacked.shape[-1:])
        weights = F.softmax(self.weights, dim=0).to(stacked.dtype)
        return torch.einsum("l,lbtd->btd", weights, stacked)


class SinusoidalPositions(nn.Module):
    """Adds fixed sinusoidal positions (any length) to (B, T, D) features."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = torch.arange(x.size(1), device=x.device, dtype=torch.float32).unsqueeze(1)
        freq = torch.exp(torch.arange(0, self.dim, 2, device=x.device) * (-math.log(10000.0) / self.dim))
        pe = torch.zeros(x.size(1), self.dim, device=x.device)
        pe[:, 0::2] = torch.sin(t * freq)
        pe[:, 1::2] = torch.cos(t * freq[: self.dim // 2])
        return x + pe.to(x.dtype)


class S3PRLSpeechEncoder(nn.Module):
    """Frozen S3PRL upstream + softmax-weighted sum of ALL its hidden states (+ optional projection).

    Args:
        upstream: s3prl hub name (``hubert`` = HuBERT Base LS960, ``hubert_large_ll60k``, ``fbank``...).
        path_or_url: local checkpoint for ``hubert_local`` and similar entries.
        layer_norm: layer-normalise each hidden state (no affine) before the sum (paper: Large).
        max_train_samples: random crop of each waveform at train time (paper: 102400 = 6.4 s); no crop
            at eval. ``None`` disables cropping.
        projection_dim: if set, a learnable projection to this width after the weighted sum, for
            upstreams whose width does not suit the branch (s3prl's fbank is 240-dim).
        subsampling: frame subsampling factor of the projection (1, 2, 4, 8: stride-2 convolutions).
        positional: add sinusoidal positions after the projection (for position-free features
            such as filterbanks; HuBERT features already encode position).
        raw_last_layer: weight the raw output of the upstream's last transformer layer instead of s3prl's
            last state, which for pre-norm models (HuBERT Large) has the encoder's final LayerNorm
            applied. The authors' SpeechCLIP weights the raw one (paper Large configs and imported
            checkpoints set it); for post-norm HuBERT Base both are the same.
    """

    def __init__(
        self,
        upstream: str = "hubert",
        path_or_url: Optional[str] = None,
        layer_norm: bool = False,
        max_train_samples: Optional[int] = 102400,
        projection_dim: Optional[int] = None,
        subsampling: int = 1,
        positional: bool = False,
        raw_last_layer: bool = False,
    ):
        super().__init__()
        self.upstream = Upstream(upstream, path_or_url, raw_last_layer)
        self.max_train_samples = max_train_samples
        self.layer_sum = WeightedLayerSum(self.upstream.num_layers, layer_norm)
        if (subsampling != 1 or positional) and projection_dim is None:
            raise InputError("subsampling and positional need a projection_dim")
        if subsampling not in (1, 2, 4, 8):
            raise InputError(f"subsampling must be 1, 2, 4 or 8, got {subsampling}")
        self.subsampling = subsampling
        self.projection = None
        if projection_dim is not None:
            layers: List[nn.Module] = []
            width = self.upstream.hidden_size
            for _ in range(int(math.log2(subsampling))):
                layers += [nn.Conv1d(width, projection_dim, 5, stride=2, padding=2), nn.GELU()]
                width = projection_dim
            self.convs = nn.Sequential(*layers)
            self.projection = nn.Linear(width, projection_dim)
            self.positions = SinusoidalPositions(projection_dim) if positional else None

    @property
    def min_samples(self) -> int:
        """Shortest waveform (samples at 16 kHz) the upstream makes valid features of: one frame's
        receptive field, two frames for filterbanks normalised per utterance (CMVN)."""
        return self.upstream.min_samples

    @property
    def frame_shift(self) -> int:
        """Samples (16 kHz) between two output frames: the upstream's downsampling times the
        projection's subsampling (HuBERT: 320, i.e. 20 ms; fbank with subsampling 4: 640)."""
        return self.upstream.downsample_rate * self.subsampling

    @property
    def frame_rate(self) -> float:
        """Output frames per second; frame t covers [t, t + 1) / frame_rate + :attr:`frame_offset` seconds."""
        return SAMPLE_RATE / self.frame_shift

    @property
    def frame_offset(self) -> float:
        """Seconds by which output frame t's interval [t, t + 1) / frame_rate is shifted: frame t is
        centred where the upstream's t-th window is, half a receptive field after its start (12.5 ms for
        HuBERT's 400 samples and for a 25 ms filterbank window), so its interval starts half a shift
        before that (2.5 ms for HuBERT). The stride-2 subsampling convolutions are centred on every other
        frame, so the centre stays put. Keyword time spans use this."""
        return self.upstream.receptive_field / 2 / SAMPLE_RATE - self.frame_shift / SAMPLE_RATE / 2

    def output_size(self) -> int:
        return self.projection.out_features if self.projection is not None else self.upstream.hidden_size

    def crop(self, speech: torch.Tensor, lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Random crop of every waveform longer than ``max_train_samples`` (train mode only)."""
        limit = self.max_train_samples
        if not self.training or limit is None or int(lengths.max()) <= limit:
            return speech, lengths
        out = speech.new_zeros(speech.size(0), limit)
        new_lengths = lengths.clamp(max=limit)
        for i, n in enumerate(lengths.tolist()):
            start = int(torch.randint(0, n - limit + 1, ())) if n > limit else 0
            out[i, : new_lengths[i]] = speech[i, start : start + int(new_lengths[i])]
        return out, new_lengths

    def forward(
        self, speech: torch.Tensor, speech_lengths: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """speech (B, T) 16 kHz waveforms, speech_lengths (B,) -> features (B, T', D), lengths (B,)."""
        return self.combine(*self.hidden_states(speech, speech_lengths))

    def hidden_states(
        self, speech: torch.Tensor, speech_lengths: torch.Tensor
    ) -> Tuple[List[torch.Tensor], torch.Tensor]:
        """speech (B, T), speech_lengths (B,) -> the frozen upstream's hidden states L x (B, T', D_up) and
        their frame lengths (B,): checked, cropped at train time, without gradient."""
        if speech.dim() == 3:  # ESPnet's sound loader may give (B, T, 1)
            speech = speech.squeeze(-1)
        shortest = int(speech_lengths.min())
        check_min_samples(
            shortest,
            self.min_samples,
            f"a batch of {speech.size(0)} waveform(s) for upstream "
            f"{self.upstream.name} (lengths {speech_lengths.tolist()})",
        )
        speech, speech_lengths = self.crop(speech, speech_lengths)
        with torch.no_grad():  # frozen: no activations kept for backward
            return self.upstream(speech, speech_lengths)

    def combine(self, hs: List[torch.Tensor], lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Hidden states L x (B, T', D_up), lengths (B,) -> the learned weighted sum (+ projection):
        features (B, T'', D), lengths (B,) (T'' = T' / subsampling)."""
        feats = self.layer_sum(hs)  # (B, T', D)
        if self.projection is not None:
            x = feats.transpose(1, 2)  # (B, D, T')
            for conv, act in zip(self.convs[::2], self.convs[1::2]):
                # zero the padding before each conv so a frame never depends on its batch-mates
                x = x * valid_mask(lengths, x.size(2)).unsqueeze(1).to(x.dtype)
                x = act(conv(x))
                lengths = torch.div(lengths - 1, 2, rounding_mode="floor") + 1
            feats = self.projection(x.transpose(1, 2))
            if self.positions is not None:
                feats = self.positions(feats)
        return feats, lengths
