"""Frozen pretrained towers: no gradient, always in eval mode, never written into checkpoints.

HuBERT Large and CLIP ViT-L/14 together are ~750 M parameters that SpeechCLIP never updates. Writing
them into every epoch checkpoint would cost gigabytes per epoch, so they are rebuilt from the config
at load time instead; :func:`keep_frozen_out_of_state_dict` drops their keys on save and accepts their
absence on load, so ``load_state_dict(strict=True)`` still checks every trainable key.
"""

from __future__ import annotations

from typing import List

from torch import nn


class FrozenModule(nn.Module):
    """A module whose parameters never train. ``train()`` is a no-op so that ESPnet's Trainer,
    which calls ``model.train()`` every epoch, cannot switch dropout back on inside it."""

    def freeze(self) -> FrozenModule:
        self.requires_grad_(False)
        nn.Module.train(self, False)
        return self

    def train(self, mode: bool = True) -> FrozenModule:
        return nn.Module.train(self, False)


def frozen_prefixes(module: nn.Module) -> List[str]:
    """State-dict prefixes (``"a.b."``) of every :class:`FrozenModule` inside ``module``."""
    out = []
    for name, sub in module.named_modules():
        if isinstance(sub, FrozenModule) and not any(name.startswith(p) for p in out):
            out.append(name + "." if name else "")
    return out


def keep_frozen_out_of_state_dict(module: nn.Module) -> None:
    """Register hooks on ``module`` that omit the frozen weights inside it from its state dict.

    On load, the absent frozen keys are filled with the module's current (rebuilt) weights before
    PyTorch compares keys, so ``strict=True`` still checks every trainable key. Both hooks work with
    the prefix they are called with, so ``module`` may sit anywhere inside a larger model (an ESPnet
    ASR model holding a SpeechCLIP frontend, a DDP wrapper).
    """

    def drop_frozen(mod, state_dict, prefix, local_metadata):
        for p in frozen_prefixes(mod):
            for key in [k for k in state_dict if k.startswith(prefix + p)]:
                del state_dict[key]

    def restore_frozen(mod, state_dict, prefix, *args):
        for p in frozen_prefixes(mod):
            frozen = mod.get_submodule(p[:-1]) if p else mod
            for key, value in frozen.state_dict().items():
                state_dict.setdefault(prefix + p + key, value)

    module.register_state_dict_post_hook(drop_frozen)
    module.register_load_state_dict_pre_hook(restore_frozen)
