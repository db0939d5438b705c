"""Make SpeechCLIP known to ESPnet and s3prl on ``import espnet_speechclip``, without importing them.

- ``frontend: speechclip`` in ESPnet's speech tasks. ESPnet has no plugin registry: a task's choices
  are module-level :class:`ClassChoices` objects that must hold the class before the task builds its
  argument parser.
- The s3prl upstreams ``speechclip``, ``speechclip_local`` and ``speechclip_custom`` in ``s3prl.hub``,
  where ``S3PRLUpstream(name)`` (and ESPnet's ``S3prlFrontend``) look names up (see
  :mod:`espnet_speechclip.frontend.s3prl_upstream`).

Importing ``espnet2.tasks.asr`` costs ~13 s and ``s3prl.hub`` 12-20 s, so :func:`install` (called on
``import espnet_speechclip``) imports neither. It registers into the modules that are already imported,
and installs a finder on ``sys.meta_path`` that registers into the others right after they are
executed, whoever imports them and whenever.

Only the frontend choices that build a waveform frontend as ``cls(**frontend_conf)`` are extended
(``espnet2.tasks.mt``'s frontends embed tokens; ``gan_svs``'s post-frontend takes an extra ``input_fs``).
"""

from __future__ import annotations

import sys
from types import ModuleType
from typing import Dict, Tuple

from espnet_speechclip.compat import ModuleExecHook

FRONTEND_NAME = "speechclip"

# task module -> its ClassChoices attributes that take a waveform AbsFrontend
SPEECH_FRONTEND_CHOICES: Dict[str, Tuple[str, ...]] = {
    f"espnet2.tasks.{task}": ("frontend_choices",)
    for task in (
        "asr",
        "asr_transducer",
        "asvspoof",
        "cls",
        "diar",
        "hubert",
        "lid",
        "s2st",
        "s2t",
        "s2t_ctc",
        "slu",
        "spk",
        "ssl",
        "st",
        "uasr",
    )
}
# enh_s2t reuses asr's frontend_choices object and deep-copies diar's before the hook could see it
SPEECH_FRONTEND_CHOICES["espnet2.tasks.enh_s2t"] = ("frontend_choices", "diar_frontend_choices")


# where s3prl's S3PRLUpstream finds upstream names
S3PRL_HUB = "s3prl.hub"


def register_frontend(module: ModuleType) -> None:
    """Add ``speechclip`` to the frontend choices of an imported task module."""
    from espnet_speechclip.frontend.espnet_frontend import SpeechCLIPFrontend

    for attr in SPEECH_FRONTEND_CHOICES[module.__name__]:
        choices = getattr(module, attr, None)
        if choices is not None:
            choices.classes[FRONTEND_NAME] = SpeechCLIPFrontend


def register_upstreams(hub: ModuleType) -> None:
    """Add the SpeechCLIP upstream entries to an imported ``s3prl.hub``."""
    from espnet_speechclip.frontend import s3prl_upstream

    for name in s3prl_upstream.NAMES:
        setattr(hub, name, getattr(s3prl_upstream, name))


def _register(module: ModuleType) -> None:
    if module.__name__ == S3PRL_HUB:
        register_upstreams(module)
    else:
        register_frontend(module)


def _exec_and_register(exec_module, module: ModuleType) -> None:
    exec_module(module)
    _register(module)


class _TaskImportHook(ModuleExecHook):
    """Registers into the task modules of :data:`SPEECH_FRONTEND_CHOICES` and into ``s3prl.hub`` right
    after they execute."""

    def __init__(self):
        super().__init__(_HookedModules(), _exec_and_register)


class _HookedModules:
    """The module names the hook watches, read at each import (:data:`SPEECH_FRONTEND_CHOICES` may grow)."""

    def __contains__(self, name: object) -> bool:
        return name in SPEECH_FRONTEND_CHOICES or name == S3PRL_HUB


def install() -> None:
    """Register into the modules imported so far and hook the ones imported later (idempotent)."""
    for name in [*SPEECH_FRONTEND_CHOICES, S3PRL_HUB]:
        module = sys.modules.get(name)
        if module is not None:
            _register(module)
    if not any(isinstance(f, _TaskImportHook) for f in sys.meta_path):
        sys.meta_path.insert(0, _TaskImportHook())
