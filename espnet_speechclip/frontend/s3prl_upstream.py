"""A trained SpeechCLIP's speech encoder as an s3prl upstream.

After ``import espnet_speechclip``, s3prl's hub knows these names (registered when ``s3prl.hub`` is
imported, see :mod:`espnet_speechclip.frontend.registration`), so ``S3PRLUpstream`` and ``Featurizer``,
SUPERB-style downstreams and ESPnet's ``S3prlFrontend`` take a SpeechCLIP like any upstream::

    import espnet_speechclip
    from s3prl.nn import Featurizer, S3PRLUpstream

    upstream = S3PRLUpstream("speechclip", path_or_url="exp/<tag>/packed/model.zip")  # or <namespace>/<name>
    featurizer = Featurizer(upstream)
    hs, hs_len = upstream(wavs, wavs_len)           # L x (B, T, D), L x (B,)

Names (s3prl's conventions: ``_local`` takes a local path, ``_custom`` a path or a download source):

- ``speechclip_local``: a packed archive (.zip), a packed folder or an experiment folder;
- ``speechclip_custom``: any of those, or a Hugging Face Hub repo id ``<namespace>/<name>[@revision]``;
- ``speechclip``: the same as ``speechclip_custom``, under the short name (``path_or_url`` is required:
  no SpeechCLIP checkpoint is registered by default).

``extra_conf``: ``revision`` (of a Hub repo), ``branch_layers`` (default true).

Hidden states, in order (frames only, never the branch's CLS tokens):

1. the frozen s3prl upstream's hidden states (HuBERT Base: 13), when they have the speech encoder's
   width and frame rate (the paper's configs feed the upstream straight to the branch);
2. the speech encoder's output: SpeechCLIP's learned weighted sum of those states (and, for models
   that project and subsample the upstream, such as the built-in fbank demo models, the projected
   features; their upstream's own states, at another width and rate, are then left out);
3. the output of each transformer layer of the model's branch (the parallel branch; the keyword
   attention of a cascaded-only model), the last one being the branch output.

All share one width and frame rate, as s3prl's Featurizer requires.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Union

import torch
from s3prl.upstream.interfaces import UpstreamBase
from torch.nn.utils.rnn import pad_sequence

from espnet_speechclip.errors import InputError, MissingFileError

NAMES = ("speechclip", "speechclip_local", "speechclip_custom")


class SpeechCLIPUpstream(UpstreamBase):
    """s3prl's upstream interface over :class:`SpeechCLIPFrontend` (the speech encoder + branch layers).

    Args:
        ckpt: anything :func:`espnet_speechclip.inference.loader.resolve_model` resolves.
        revision: branch, tag or commit of a Hub repo.
        branch_layers: append the branch's layer outputs to the hidden states.

    The s3prl upstream inside stays frozen (as in SpeechCLIP); the layer weights, projection and branch
    layers train when a downstream recipe trains the upstream.
    """

    def __init__(self, ckpt: str, revision: Optional[str] = None, branch_layers: bool = True, **kwargs):
        super().__init__(**kwargs)
        from espnet_speechclip.frontend.espnet_frontend import SpeechCLIPFrontend
        from espnet_speechclip.inference.loader import resolve_model

        config, weights = resolve_model(ckpt, revision=revision)
        self.frontend = SpeechCLIPFrontend(
            config_file=str(config), model_file=str(weights), branch_layers=branch_layers, freeze=False
        )
        encoder = self.frontend.speech_encoder
        # the upstream's own states join only when they share the encoder's width and frame rate
        self.with_upstream_states = encoder.projection is None
        self.downsample_rate = encoder.upstream.downsample_rate * encoder.subsampling

    def get_downsample_rates(self, key: str) -> int:
        return self.downsample_rate

    def forward(self, wavs: List[torch.Tensor]) -> Dict[str, Union[torch.Tensor, List[torch.Tensor]]]:
        """wavs: B x (T_i,) 16 kHz -> ``hidden_states``: L x (B, T', D) (see the module doc)."""
        lengths = torch.tensor([len(w) for w in wavs], device=wavs[0].device)
        padded = pad_sequence(wavs, batch_first=True)  # (B, T)
        encoder = self.frontend.speech_encoder
        hs, hs_lengths = encoder.hidden_states(padded, lengths)
        feats, feats_lengths = encoder.combine(hs, hs_lengths)
        hidden = (list(hs) if self.with_upstream_states else []) + [feats]
        if self.frontend.branch is not None:
            hidden += self.frontend.branch.layer_outputs(feats, feats_lengths)
        return {"hidden_states": hidden, "last_hidden_state": hidden[-1]}


def speechclip_local(ckpt: str, *args, **kwargs) -> SpeechCLIPUpstream:
    """A local SpeechCLIP: packed archive (.zip), packed folder or experiment folder."""
    if not Path(ckpt).exists():
        raise MissingFileError(
            f"speechclip_local: {ckpt} does not exist (a packed .zip or folder, or exp folder)"
        )
    return speechclip_custom(ckpt, *args, **kwargs)


def speechclip_custom(ckpt: str, *args, refresh: bool = False, **kwargs) -> SpeechCLIPUpstream:
    """A SpeechCLIP from a local path or the Hugging Face Hub (``<namespace>/<name>[@revision]``).
    ``refresh`` (s3prl's re-download flag) does not apply: the Hub's cache checks revisions itself."""
    return SpeechCLIPUpstream(ckpt, *args, **kwargs)


def speechclip(ckpt: Optional[str] = None, *args, **kwargs) -> SpeechCLIPUpstream:
    """``speechclip_custom`` under the short name; ``path_or_url`` names the model."""
    if ckpt is None:
        raise InputError(
            "s3prl upstream speechclip needs path_or_url: a packed SpeechCLIP (.zip or folder), an "
            "experiment folder, or a Hub repo id <namespace>/<name>"
        )
    return speechclip_custom(ckpt, *args, **kwargs)
