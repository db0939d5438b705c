"""Make ``frontend: speechclip`` a choice of ESPnet's speech tasks, without importing them.

ESPnet has no plugin registry: a task's choices are module-level :class:`ClassChoices` objects that
must hold the class before the task builds its argument parser. Importing ``espnet2.tasks.asr`` costs
~13 s, so :func:`install` (called on ``import espnet_speechclip``) does not import any task. It
registers into the task modules that are already imported, and installs a finder on ``sys.meta_path``
that registers into the others right after they are executed, whoever imports them and whenever.

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


def register_frontend(module: ModuleType) -> None:
    """Add ``speechclip`` to the frontend choices of an imported task module."""
    from espnet_speechclip.frontend.espnet_frontend import SpeechCLIPFrontend

    for attr in SPEECH_FRONTEND_CHOICES[module.__name__]:
        choices = getattr(module, attr, None)
        if choices is not None:
            choices.classes[FRONTEND_NAME] = SpeechCLIPFrontend


def _exec_and_register(exec_module, module: ModuleType) -> None:
    exec_module(module)
    register_frontend(module)


class _TaskImportHook(ModuleExecHook):
    """Registers into the task modules of :data:`SPEECH_FRONTEND_CHOICES` right after they execute."""

    def __init__(self):
        super().__init__(SPEECH_FRONTEND_CHOICES, _exec_and_register)


def install() -> None:
    """Register into the task modules imported so far and hook the ones imported later (idempotent)."""
    for name in SPEECH_FRONTEND_CHOICES:
        module = sys.modules.get(name)
        if module is not None:
            register_frontend(module)
    if not any(isinstance(f, _TaskImportHook) for f in sys.meta_path):
        sys.meta_path.insert(0, _TaskImportHook())
