"""SpeechCLIP's speech branch as an ESPnet frontend (``frontend: speechclip``) for ASR and other tasks.

The frontend is the trained speech encoder of a SpeechCLIP model: the frozen s3prl upstream with its
learned layer weights (and projection, if the model has one), optionally followed by the transformer
layers of the model's branch (the parallel branch; the keyword attention of a cascaded-only model).
It maps 16 kHz waveforms (B, T) to frame features (B, T', D).

Where the weights come from (``frontend_conf``):

- ``packed_model: packed.zip`` (an archive of ``espnet_speechclip.bin.pack``), or
- ``config_file: exp/x/config.yaml`` + ``model_file: exp/x/valid.mean_r10.best.pth``, or
- ``config_file`` alone: the architecture with random trainable weights, for loading a SpeechCLIP
  checkpoint with ``--init_param`` (see the README).

``freeze: true`` (default) keeps the whole frontend fixed (no gradient, eval mode); ``freeze: false``
trains the layer weights, the projection and the branch layers. The s3prl upstream is always frozen,
and like in SpeechCLIP's own checkpoints it is kept out of the task's checkpoints (rebuilt from the
SpeechCLIP config when the frontend is built).
"""

from __future__ import annotations

from typing import List, Optional, Tuple, Union

import torch
from espnet2.asr.frontend.abs_frontend import AbsFrontend
from torch import nn

from espnet_speechclip.errors import InputError
from espnet_speechclip.inference.loader import resolve_model
from espnet_speechclip.inference.speech2image import Speech2Image
from espnet_speechclip.models.frozen import keep_frozen_out_of_state_dict
from espnet_speechclip.models.masks import padding_mask
from espnet_speechclip.models.parallel import ParallelBranch


class BranchLayers(nn.Module):
    """The CLS token(s) and transformer layers of a trained SpeechCLIP branch, as a frame encoder.

    The layers run exactly as inside the branch (CLS tokens prepended, padding masked), and the frame
    states are returned without the CLS positions: (B, T, D) -> (B, T, D).

    Args:
        branch: a trained :class:`ParallelBranch`, :class:`CascadedBranch` or :class:`CIFCascadedBranch`;
            its ``cls`` (None for cascaded+, whose attention sees the frames only) and ``layers`` are
            shared, not copied.
    """

    def __init__(self, branch: nn.Module):
        super().__init__()
        # (1, K, D): K = 1 (parallel, hybrid+) or the number of keywords (cascaded); None (cascaded+)
        self.cls = branch.cls
        self.layers = branch.layers
        # nn.TransformerEncoderLayer takes the mask by keyword, the cascaded AttentionBlock positionally
        self.parallel = isinstance(branch, ParallelBranch)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """feats (B, T, D), lengths (B,) -> frame states of the last layer (B, T, D)."""
        return self.layer_outputs(feats, lengths)[-1]

    def layer_outputs(self, feats: torch.Tensor, lengths: torch.Tensor) -> List[torch.Tensor]:
        """feats (B, T, D), lengths (B,) -> the frame states after each layer, N x (B, T, D)."""
        if self.cls is None:
            k, x = 0, feats
        else:
            k = self.cls.size(1)
            x = torch.cat([self.cls.expand(feats.size(0), -1, -1).to(feats.dtype), feats], dim=1)
        mask = padding_mask(lengths, feats.size(1), prefix=k)
        out = []
        for layer in self.layers:
            x = layer(x, src_key_padding_mask=mask) if self.parallel else layer(x, mask)
            out.append(x[:, k:])
        return out


class SpeechCLIPFrontend(AbsFrontend):
    """A trained SpeechCLIP speech branch: waveforms (B, T) -> frame features (B, T', D), lengths (B,).

    Args:
        packed_model: packed SpeechCLIP archive (.zip); exclusive with ``config_file`` / ``model_file``.
            (Not ``model``: ESPnet's ``--print_config`` hides frontend options named like task options.)
        config_file: SpeechCLIP training ``config.yaml``.
        model_file: SpeechCLIP weights (.pth) for ``config_file``; without it the trainable weights are
            random (to be loaded with ``--init_param``).
        branch_layers: also run the branch's transformer layers: the parallel branch's (parallel and
            hybrid models), the keyword attention's (cascaded models).
        freeze: keep every weight fixed (no gradient, always eval mode); ``false`` trains the layer
            weights, projection and branch layers (the s3prl upstream stays frozen either way).
        fs: sampling rate of the input (ESPnet's asr.sh passes it); SpeechCLIP takes 16 kHz only.
    """

    def __init__(
        self,
        packed_model: Optional[str] = None,
        config_file: Optional[str] = None,
        model_file: Optional[str] = None,
        branch_layers: bool = False,
        freeze: bool = True,
        fs: Union[int, str] = 16000,
    ):
        super().__init__()
        if isinstance(fs, str):
            import humanfriendly

            fs = humanfriendly.parse_size(fs)
        if fs != 16000:
            raise InputError(f"frontend speechclip takes 16 kHz audio, got fs={fs}: resample the data first")
        if packed_model is not None and (config_file is not None or model_file is not None):
            raise InputError(
                "frontend speechclip: give either packed_model (a .zip) or config_file "
                "[+ model_file], not both"
            )
        if packed_model is None and config_file is None:
            raise InputError(
                "frontend speechclip needs frontend_conf packed_model (a .zip) or config_file "
                "(SpeechCLIP config.yaml) [+ model_file]"
            )
        if model_file is not None and config_file is None:
            raise InputError("frontend speechclip: model_file needs the config_file it was trained with")
        if packed_model is not None:
            config_file, model_file = resolve_model(packed_model)
        self._source = (str(config_file), None if model_file is None else str(model_file))
        self.freeze = freeze
        self.speech_encoder, self.branch = self._build(branch_layers)
        self._branch_layers = branch_layers
        if freeze:
            self.requires_grad_(False)
        self.train(self.training)  # a frozen frontend starts (and stays) in eval mode
        keep_frozen_out_of_state_dict(self)

    def _build(self, branch_layers: bool) -> Tuple[nn.Module, Optional[BranchLayers]]:
        # the frozen CLIP towers are not part of a frontend: built with random weights, never loaded
        model = Speech2Image(*self._source, clip_weights=False).model
        encoder = model.speech_encoder
        # SpeechCLIP crops long training waveforms at random; for a task with transcripts or labels
        # that would cut speech away from its targets.
        encoder.max_train_samples = None
        branch = None
        if branch_layers:
            branch = BranchLayers(model.parallel if model.parallel is not None else model.cascaded)
        return encoder, branch

    def output_size(self) -> int:
        return self.speech_encoder.output_size()

    def train(self, mode: bool = True) -> SpeechCLIPFrontend:
        # ESPnet's Trainer calls model.train() every epoch: a frozen frontend keeps dropout off.
        return super().train(mode and not self.freeze)

    def forward(self, input: torch.Tensor, input_lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """input (B, T) 16 kHz waveforms, input_lengths (B,) -> feats (B, T', D), feats_lengths (B,)."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze):
            feats, lengths = self.speech_encoder(input, input_lengths)
            if self.branch is not None:
                feats = self.branch(feats, lengths)
        return feats, lengths

    def reload_pretrained_parameters(self) -> None:
        """Restore the SpeechCLIP weights (and the s3prl upstream's): ESPnet's ``--init`` re-initialises
        every parameter of the model, then calls this on ``model.frontend``."""
        encoder, branch = self._build(self._branch_layers)
        self.speech_encoder.load_state_dict(encoder.state_dict())
        if branch is not None:
            self.branch.load_state_dict(branch.state_dict())
