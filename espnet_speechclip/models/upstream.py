"""A frozen S3PRL upstream that returns all its hidden states with exact frame lengths.

Any s3prl upstream works by name (``hubert``, ``hubert_large_ll60k``, ``wavlm_base_plus``, ``wav2vec2``,
the weight-free ``fbank``/``mfcc`` baselines, ...) or as a local checkpoint (``hubert_local`` +
``path_or_url``). Only the hub entry that defines the name is imported: importing ``s3prl.hub`` pulls in
every upstream (and ESPnet, nltk, ...) and costs 12-20 s per process.

Frame lengths (:meth:`Upstream.frame_lengths`, the one rule): an utterance has the frames the upstream
makes of its own samples. For models with a convolutional feature extractor (HuBERT, wav2vec 2.0, WavLM)
that is the extractor's output length, ``(n - 400) // 320 + 1`` for HuBERT; the upstream's padding mask
marks the later frames of a padded batch, and they are never attended. So an utterance's frames and
lengths do not depend on its batch-mates, and a batch of one equals the authors' SpeechCLIP framing
(their ``min(round(n / 320), frames of the batch)`` attends one frame computed over padding for most
shorter utterances of a batch). The filterbank baselines compute each waveform alone and keep s3prl's
``(n - 1) // rate + 1`` frames (each padded with its own last frame); s3prl's Kaldi ``fbank`` is
computed for the whole batch at once with the same numbers (:mod:`.batched_fbank`).
"""

from __future__ import annotations

import contextlib
import importlib
import math
import re
from functools import cache
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import torch
from torch import nn

from espnet_speechclip.compat import patch_s3prl
from espnet_speechclip.data.media import SAMPLE_RATE
from espnet_speechclip.errors import InputError, MissingFileError
from espnet_speechclip.models.batched_fbank import BatchedKaldiFbank
from espnet_speechclip.models.frozen import FrozenModule


@cache
def hub_entry(name: str) -> Callable:
    """Find the s3prl hub entry ``name`` by reading the hubconf sources, then import only that one.

    Raises:
        InputError: no s3prl upstream has that name.
    """
    patch_s3prl()
    import s3prl

    defined = re.compile(rf"^def {re.escape(name)}\(", re.MULTILINE)
    mentioned = re.compile(rf"\b{re.escape(name)}\b")
    root = Path(s3prl.__file__).parent
    sources = {path: path.read_text(encoding="utf-8") for path in sorted(root.glob("upstream/*/hubconf.py"))}
    for hubconf, source in sources.items():
        if defined.search(source):
            module = importlib.import_module(f"s3prl.upstream.{hubconf.parent.name}.hubconf")
            return getattr(module, name)
    # A name no hub source mentions is unknown: said at once, without importing the full hub (10-20 s)
    sources[root / "hub.py"] = (root / "hub.py").read_text(encoding="utf-8")
    if not any(mentioned.search(source) for source in sources.values()):
        raise InputError(_unknown_upstream(name))
    # Not a plain upstream entry (an alias defined by assignment, say): fall back to the full hub.
    from s3prl import hub

    if not hasattr(hub, name):
        raise InputError(_unknown_upstream(name))
    return getattr(hub, name)


def _unknown_upstream(name: str) -> str:
    return (
        f"unknown s3prl upstream {name!r}; names are e.g. hubert, hubert_large_ll60k, wavlm_base_plus, "
        f"wav2vec2, fbank, mfcc, or hubert_local with path_or_url (see s3prl.hub.options())"
    )


class Upstream(FrozenModule):
    """A frozen s3prl upstream returning all hidden states with exact lengths.

    Args:
        name: s3prl hub entry.
        path_or_url: local checkpoint for ``*_local`` entries (or an explicit download URL).
        raw_last_layer: make the last hidden state the raw output of the last transformer layer. s3prl's
            last state is the encoder's output, which for pre-norm models (HuBERT Large, WavLM Large)
            is the encoder's final LayerNorm of that output; the authors' SpeechCLIP weights the raw
            one. Post-norm models (HuBERT Base) have no final LayerNorm: there it changes nothing.

    Example::

        >>> upstream = Upstream("fbank")
        >>> hs, lengths = upstream(torch.randn(2, 16000), torch.tensor([16000, 8000]))
        >>> len(hs), hs[0].shape, lengths.tolist()  # L x (B, T', D), frame lengths (B,)
        (1, torch.Size([2, 100, 240]), [100, 50])
    """

    def __init__(self, name: str, path_or_url: Optional[str] = None, raw_last_layer: bool = False):
        super().__init__()
        if name.endswith("_local") and not path_or_url:
            raise InputError(f"s3prl upstream {name} needs path_or_url pointing to a local checkpoint")
        if path_or_url and "://" not in path_or_url and not Path(path_or_url).is_file():
            raise MissingFileError(f"checkpoint {path_or_url} of s3prl upstream {name} does not exist")
        kwargs = {"ckpt": path_or_url} if path_or_url else {}
        self.name = name
        entry = hub_entry(name)
        # s3prl's baselines (fbank, mfcc, ...): weight-free, each waveform computed alone
        self.per_utterance = entry.__module__.startswith("s3prl.upstream.baseline")
        # A baseline is built on CPU even inside ``with torch.device("meta")`` (a parameter count): it has
        # no weights to spare, and its dry run and the batched fbank's check below compute on data.
        with torch.device("cpu") if self.per_utterance else contextlib.nullcontext():
            self._build(entry(**kwargs), raw_last_layer)

    def _build(self, expert: nn.Module, raw_last_layer: bool) -> None:
        """Freeze ``expert`` and read its layout: hidden states, widths, rates, frame rule."""
        name = self.name
        self.expert = expert
        self.freeze()
        self.raw_last_layer = raw_last_layer
        if raw_last_layer:
            _last_transformer_layer(self.expert, name).register_forward_hook(_keep_raw_output)
        # One dry run tells the number of hidden states and their widths, as s3prl does; built on the meta
        # device (a parameter count), the expert has no data to compute with: shapes only.
        weights = {**dict(self.expert.named_parameters()), **dict(self.expert.named_buffers())}
        hs = self._dry_run(weights if any(t.is_meta for t in weights.values()) else None)
        self.num_layers = len(hs)
        self.hidden_sizes = [h.size(-1) for h in hs]
        rates = self.expert.get_downsample_rates("hidden_states")
        self.downsample_rates = [rates] * self.num_layers if isinstance(rates, int) else list(rates)
        if len(set(self.hidden_sizes)) != 1 or len(set(self.downsample_rates)) != 1:
            raise InputError(
                f"s3prl upstream {name}: hidden states differ in width or rate, cannot be summed"
            )
        convs = _extractor_convs(self.expert)
        self.receptive_field = _receptive_field(convs)  # samples of one frame
        self.min_samples = self.receptive_field  # samples an utterance needs
        config = getattr(self.expert, "config", None)
        if self.per_utterance and isinstance(config, dict) and (config.get("cmvn") or {}).get("use_cmvn"):
            # per-utterance CMVN divides by the standard deviation over the frames: one frame has none
            # (NaN features), so two frames are the least an utterance needs
            self.min_samples += self.downsample_rate
        # s3prl's Kaldi fbank computed for the whole batch (same numbers, checked against the expert)
        self.batched = BatchedKaldiFbank.from_expert(self.expert) if self.per_utterance else None
        # (kernel, stride, padding, dilation) of the feature extractor, when its strides make the
        # upstream's frame rate (every wav2vec2-style model); else s3prl's length convention applies
        self._convs = None
        if convs and math.prod(c.stride[0] for c in convs) == self.downsample_rate:
            self._convs = [(c.kernel_size[0], c.stride[0], c.padding[0], c.dilation[0]) for c in convs]

    @property
    def hidden_size(self) -> int:
        return self.hidden_sizes[0]

    @property
    def downsample_rate(self) -> int:
        return self.downsample_rates[0]

    def frame_lengths(self, num_samples: torch.Tensor) -> torch.Tensor:
        """(B,) waveform lengths (16 kHz samples) -> (B,) number of frames of each utterance.

        Conv feature extractors: their output length, layer by layer (HuBERT: ``(n - 400) // 320 + 1``).
        Others: s3prl's convention ``(n - 1) // rate + 1``. Shorter than :attr:`min_samples` -> 0.
        """
        n = num_samples.long()
        if self._convs is None:
            return (torch.div(n - 1, self.downsample_rate, rounding_mode="floor") + 1).clamp(min=0)
        for kernel, stride, padding, dilation in self._convs:
            n = torch.div(n + 2 * padding - dilation * (kernel - 1) - 1, stride, rounding_mode="floor") + 1
            n = n.clamp(min=0)
        return n

    def _dry_run(self, meta_weights: Optional[Dict[str, torch.Tensor]] = None) -> List[torch.Tensor]:
        """The hidden states L x (1, T', D) of one second of silence.

        An expert built on the meta device (``meta_weights``: its parameters and buffers by name) has no
        data to run on: it runs on data-free stand-ins of its weights (FakeTensorMode), which give the
        same shapes without any arithmetic or memory.
        """
        with torch.no_grad():
            if meta_weights is None:
                return self._hidden_states([torch.zeros(SAMPLE_RATE, device="cpu")])
            from torch._subclasses.fake_tensor import FakeTensorMode

            with FakeTensorMode(allow_non_fake_inputs=True):
                stand_ins = {name: torch.empty_like(t, device="cpu") for name, t in meta_weights.items()}
                return self._hidden_states([torch.zeros(SAMPLE_RATE, device="cpu")], stand_ins)

    def _hidden_states(
        self, wav_list: List[torch.Tensor], weights: Optional[Dict[str, torch.Tensor]] = None
    ) -> List[torch.Tensor]:
        """The expert's hidden states L x (B, T', D) of ``wav_list``, run on ``weights`` (name ->
        tensor) in place of its own when given."""
        if weights is None:
            out = self.expert(wav_list)
        else:
            out = torch.func.functional_call(self.expert, weights, (wav_list,))
        hs = list(out["hidden_states"])
        if self.raw_last_layer:
            layer = _last_transformer_layer(self.expert, self.name)
            raw = layer.__dict__.pop("_speechclip_raw_output")  # (T, B, D), padded to the layer's multiple
            hs[-1] = raw.transpose(0, 1)[:, : hs[-1].size(1)]
        return hs

    def forward(self, wavs: torch.Tensor, lengths: torch.Tensor) -> Tuple[List[torch.Tensor], torch.Tensor]:
        """wavs (B, T) padded, lengths (B,) -> hidden states L x (B, T', D), frame lengths (B,), with
        T' the largest frame length.

        The expert applies the upstream's own waveform normalisation (HuBERT Large's task config has
        ``normalize: True``) to each unpadded waveform.
        """
        out_lengths = self.frame_lengths(lengths)
        t_max = int(out_lengths.max())
        if self.batched is not None and int(lengths.min()) >= self.batched.window_size:
            feats, frames = self.batched(wavs, lengths)
            return [_fit_frames(feats, frames, out_lengths, t_max)], out_lengths
        wav_list = [w[: int(n)] for w, n in zip(wavs, lengths)]
        if self.per_utterance:
            # Filterbank experts compute each waveform alone anyway and emit fewer frames than the
            # s3prl length convention ((n-1)//rate + 1); padding each one with its own last frame keeps
            # an utterance's features independent of its batch-mates.
            per = [self._hidden_states([w]) for w in wav_list]
            return [
                _stack_fit([p[layer] for p in per], out_lengths, t_max) for layer in range(self.num_layers)
            ], out_lengths
        hs = self._hidden_states(wav_list)
        if self._convs is not None:
            # The padded batch has the frames of its longest utterance; never invent more.
            out_lengths = out_lengths.clamp(max=hs[0].size(1))
            t_max = int(out_lengths.max())
            return [h[:, :t_max] for h in hs], out_lengths
        return [_fit(h, t_max) for h in hs], out_lengths


def _fit(h: torch.Tensor, length: int) -> torch.Tensor:
    """Cut or extend (B, T, D) to ``length`` frames, repeating the last frame (as s3prl does)."""
    if h.size(1) < length:
        h = torch.cat([h, h[:, -1:].expand(-1, length - h.size(1), -1)], dim=1)
    return h[:, :length]


def _fit_frames(h: torch.Tensor, frames: torch.Tensor, lengths: torch.Tensor, t_max: int) -> torch.Tensor:
    """(B, F, D) with ``frames`` (B,) valid -> (B, t_max, D): utterance b's frames extended to
    ``lengths[b]`` by repeating its own last frame, zeros after (what :func:`_stack_fit` makes of the
    utterances one by one)."""
    t = torch.arange(t_max, device=h.device)
    index = torch.minimum(t, (frames - 1).unsqueeze(1))  # (B, t_max)
    out = torch.gather(h, 1, index.unsqueeze(-1).expand(-1, -1, h.size(-1)))
    return out.masked_fill((t >= lengths.unsqueeze(1)).unsqueeze(-1), 0.0)


def _stack_fit(hs: List[torch.Tensor], lengths: torch.Tensor, t_max: int) -> torch.Tensor:
    """Per-utterance (1, T_i, D) -> (B, t_max, D): each fitted to its own length, zero-padded after."""
    out = hs[0].new_zeros(len(hs), t_max, hs[0].size(-1))
    for i, (h, n) in enumerate(zip(hs, lengths.tolist())):
        out[i, :n] = _fit(h, n)[0]
    return out


def _extractor_convs(expert: nn.Module) -> List[nn.Conv1d]:
    """The Conv1d layers of a wav2vec2-style model's feature extractor, in order; [] for other experts."""
    extractor = [m for name, m in expert.named_modules() if name.endswith("feature_extractor")]
    if not extractor:
        return []
    return [m for m in extractor[0].modules() if isinstance(m, nn.Conv1d)]


def _receptive_field(convs: List[nn.Conv1d]) -> int:
    """Samples needed for one output frame: from the conv feature extractor of wav2vec2-style models,
    else one 25 ms analysis window (filterbank baselines)."""
    if not convs:
        return int(0.025 * SAMPLE_RATE)
    field, stride = 1, 1
    for conv in convs:
        field += (conv.kernel_size[0] * conv.dilation[0] - conv.dilation[0]) * stride
        stride *= conv.stride[0]
    return field


def _last_transformer_layer(expert: nn.Module, name: str) -> nn.Module:
    layers = getattr(getattr(getattr(expert, "model", None), "encoder", None), "layers", None)
    if not isinstance(layers, nn.ModuleList) or len(layers) == 0:
        raise InputError(
            f"raw_last_layer needs an upstream with transformer layers (model.encoder.layers: hubert, "
            f"wav2vec2, wavlm, ...); s3prl upstream {name} has none"
        )
    return layers[-1]


def _keep_raw_output(module: nn.Module, inputs, output) -> None:
    """Forward hook of the last transformer layer: keeps its output (T, B, D) for the upstream to take
    (returning None leaves the forward unchanged)."""
    module.__dict__["_speechclip_raw_output"] = output[0]
