"""The SpeechCLIP speech encoder: a frozen S3PRL upstream and a learnable weighted sum of its layers.

Any s3prl upstream works by name (``hubert``, ``hubert_large_ll60k``, ``wavlm_base_plus``, ``wav2vec2``,
the weight-free ``fbank``/``mfcc`` baselines, ...) or as a local checkpoint (``hubert_local`` +
``path_or_url``). Only the hub entry that defines the name is imported: importing ``s3prl.hub`` pulls in
every upstream (and ESPnet, nltk, ...) and costs 12-20 s per process.
"""

from __future__ import annotations

import importlib
import logging
import math
import re
from functools import lru_cache
from pathlib import Path
from typing import Callable, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from espnet_speechclip.compat import patch_s3prl
from espnet_speechclip.frozen import FrozenModule

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000


@lru_cache(maxsize=None)
def _hub_entry(name: str) -> Callable:
    """Find the s3prl hub entry ``name`` by reading the hubconf sources, then import only that one."""
    patch_s3prl()
    import s3prl

    pattern = re.compile(rf"^def {re.escape(name)}\(", re.MULTILINE)
    root = Path(s3prl.__file__).parent / "upstream"
    for hubconf in sorted(root.glob("*/hubconf.py")):
        if pattern.search(hubconf.read_text(encoding="utf-8")):
            module = importlib.import_module(f"s3prl.upstream.{hubconf.parent.name}.hubconf")
            return getattr(module, name)
    # Not a plain upstream entry (an alias defined by assignment, say): fall back to the full hub.
    from s3prl import hub

    if not hasattr(hub, name):
        raise ValueError(
            f"unknown s3prl upstream {name!r}; names are e.g. hubert, hubert_large_ll60k, wavlm_base_plus, "
            f"wav2vec2, fbank, mfcc, or hubert_local with path_or_url (see s3prl.hub.options())"
        )
    return getattr(hub, name)


class Upstream(FrozenModule):
    """A frozen s3prl upstream returning all hidden states with exact lengths.

    Args:
        name: s3prl hub entry.
        path_or_url: local checkpoint for ``*_local`` entries (or an explicit download URL).
    """

    def __init__(self, name: str, path_or_url: Optional[str] = None):
        super().__init__()
        if name.endswith("_local") and not path_or_url:
            raise ValueError(f"s3prl upstream {name} needs path_or_url pointing to a local checkpoint")
        if path_or_url and "://" not in path_or_url and not Path(path_or_url).is_file():
            raise FileNotFoundError(f"checkpoint {path_or_url} of s3prl upstream {name} does not exist")
        kwargs = {"ckpt": path_or_url} if path_or_url else {}
        self.name = name
        self.expert = _hub_entry(name)(**kwargs)
        self.freeze()
        # One dry run tells the number of hidden states and their widths, as s3prl does.
        with torch.no_grad():
            hs = self.expert([torch.zeros(SAMPLE_RATE)])["hidden_states"]
        self.num_layers = len(hs)
        self.hidden_sizes = [h.size(-1) for h in hs]
        rates = self.expert.get_downsample_rates("hidden_states")
        self.downsample_rates = [rates] * self.num_layers if isinstance(rates, int) else list(rates)
        if len(set(self.hidden_sizes)) != 1 or len(set(self.downsample_rates)) != 1:
            raise ValueError(f"s3prl upstream {name}: hidden states differ in width or rate, cannot be summed")
        self.min_samples = _receptive_field(self.expert)
        self.per_utterance = type(self.expert).__module__.startswith("s3prl.upstream.baseline")

    @property
    def hidden_size(self) -> int:
        return self.hidden_sizes[0]

    @property
    def downsample_rate(self) -> int:
        return self.downsample_rates[0]

    def forward(self, wavs: torch.Tensor, lengths: torch.Tensor) -> Tuple[List[torch.Tensor], torch.Tensor]:
        """wavs (B, T) padded, lengths (B,) -> hidden states L x (B, T', D), frame lengths (B,).

        The expert applies the upstream's own waveform normalisation (HuBERT Large's task config has
        ``normalize: True``) to each unpadded waveform.
        """
        wav_list = [w[: int(n)] for w, n in zip(wavs, lengths)]
        rate = self.downsample_rate
        out_lengths = torch.div(lengths - 1, rate, rounding_mode="floor") + 1
        t_max = int(out_lengths.max())
        if self.per_utterance:
            # Filterbank experts compute each waveform alone anyway and emit fewer frames than the
            # s3prl length convention ((n-1)//rate + 1); padding each one with its own last frame keeps
            # an utterance's features independent of its batch-mates.
            per = [self.expert([w])["hidden_states"] for w in wav_list]
            return [_stack_fit([p[layer] for p in per], out_lengths, t_max)
                    for layer in range(self.num_layers)], out_lengths
        hs = self.expert(wav_list)["hidden_states"]
        return [_fit(h, t_max) for h in hs], out_lengths


def _fit(h: torch.Tensor, length: int) -> torch.Tensor:
    """Cut or extend (B, T, D) to ``length`` frames, repeating the last frame (as s3prl does)."""
    if h.size(1) < length:
        h = torch.cat([h, h[:, -1:].expand(-1, length - h.size(1), -1)], dim=1)
    return h[:, :length]


def _stack_fit(hs: List[torch.Tensor], lengths: torch.Tensor, t_max: int) -> torch.Tensor:
    """Per-utterance (1, T_i, D) -> (B, t_max, D): each fitted to its own length, zero-padded after."""
    out = hs[0].new_zeros(len(hs), t_max, hs[0].size(-1))
    for i, (h, n) in enumerate(zip(hs, lengths.tolist())):
        out[i, :n] = _fit(h, n)[0]
    return out


def _receptive_field(expert: nn.Module) -> int:
    """Samples needed for one output frame: from the conv feature extractor of wav2vec2-style models,
    else one 25 ms analysis window (filterbank baselines)."""
    convs = [m for m in expert.modules() if isinstance(m, nn.Conv1d)]
    extractor = [m for name, m in expert.named_modules() if name.endswith("feature_extractor")]
    if extractor:
        convs = [m for m in extractor[0].modules() if isinstance(m, nn.Conv1d)]
        field, stride = 1, 1
        for conv in convs:
            field += (conv.kernel_size[0] - 1) * stride
            stride *= conv.stride[0]
        return field
    return int(0.025 * SAMPLE_RATE)


def _frame_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """(B, T) True at valid frames."""
    return torch.arange(max_len, device=lengths.device).unsqueeze(0) < lengths.unsqueeze(1)


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
    ):
        super().__init__()
        self.upstream = Upstream(upstream, path_or_url)
        self.layer_norm = layer_norm
        self.max_train_samples = max_train_samples
        self.layer_weights = nn.Parameter(torch.zeros(self.upstream.num_layers))
        if (subsampling != 1 or positional) and projection_dim is None:
            raise ValueError("subsampling and positional need a projection_dim")
        if subsampling not in (1, 2, 4, 8):
            raise ValueError(f"subsampling must be 1, 2, 4 or 8, got {subsampling}")
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
        """Shortest waveform (samples at 16 kHz) that yields one frame of the upstream."""
        return self.upstream.min_samples

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

    def forward(self, speech: torch.Tensor, speech_lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """speech (B, T) 16 kHz waveforms, speech_lengths (B,) -> features (B, T', D), lengths (B,)."""
        if speech.dim() == 3:  # ESPnet's sound loader may give (B, T, 1)
            speech = speech.squeeze(-1)
        too_short = speech_lengths < self.min_samples
        if bool(too_short.any()):
            raise ValueError(
                f"{int(too_short.sum())} waveform(s) shorter than the {self.min_samples}-sample receptive field "
                f"of upstream {self.upstream.name} (lengths {speech_lengths[too_short].tolist()})"
            )
        speech, speech_lengths = self.crop(speech, speech_lengths)
        with torch.no_grad():  # frozen: no activations kept for backward
            hs, lengths = self.upstream(speech, speech_lengths)
        stacked = torch.stack(hs, dim=0)  # (L, B, T', D)
        if self.layer_norm:
            stacked = F.layer_norm(stacked, stacked.shape[-1:])
        weights = F.softmax(self.layer_weights, dim=0).to(stacked.dtype)
        feats = torch.einsum("l,lbtd->btd", weights, stacked)
        if self.projection is not None:
            x = feats.transpose(1, 2)  # (B, D, T')
            for conv, act in zip(self.convs[::2], self.convs[1::2]):
                # zero the padding before each conv so a frame never depends on its batch-mates
                x = x * _frame_mask(lengths, x.size(2)).unsqueeze(1).to(x.dtype)
                x = act(conv(x))
                lengths = torch.div(lengths - 1, 2, rounding_mode="floor") + 1
            feats = self.projection(x.transpose(1, 2))
            if self.positions is not None:
                feats = self.positions(feats)
        return feats, lengths
