"""Work-arounds for the pinned versions of s3prl, torchaudio and ESPnet.

s3prl 0.4.18 imports every hub entry when ``s3prl.nn`` / ``s3prl.hub`` is imported; two of them
(byol_s, mos_prediction) call torchaudio APIs that torchaudio >= 2.9 removed, so the whole import
fails (s3prl issue #575). Neither entry is used by SpeechCLIP, so empty stand-in modules are placed in
``sys.modules`` before s3prl is imported. This costs nothing and does not import s3prl itself.
"""

import contextlib
import sys
import types

_BROKEN_S3PRL_HUBCONFS = (
    "s3prl.upstream.byol_s.hubconf",
    "s3prl.upstream.mos_prediction.hubconf",
)


def patch_s3prl() -> None:
    for name in _BROKEN_S3PRL_HUBCONFS:
        if name not in sys.modules:
            sys.modules[name] = types.ModuleType(name)


def quiet_espnet_import() -> None:
    """Import ESPnet's attention module with stdout sent to stderr: it prints "Failed to import Flash
    Attention" to STDOUT, which would corrupt ``--print_config > conf.yaml``. Entry points that run an
    ESPnet task call this before importing it. (Only that module: AbsTask.print_config binds
    sys.stdout as a default argument at import time.)"""
    with contextlib.redirect_stdout(sys.stderr):
        import espnet.nets.pytorch_backend.transformer.attention  # noqa: F401
