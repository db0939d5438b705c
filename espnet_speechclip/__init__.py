"""SpeechCLIP for ESPnet: speech encoders aligned with CLIP through images.

Importing the package is cheap and silent: it makes s3prl importable under torchaudio >= 2.9, keeps
ESPnet's import of g2p_en from trying NLTK downloads (see :mod:`espnet_speechclip.compat`), makes
``frontend: speechclip`` a choice of ESPnet's speech tasks, and makes the ``speechclip`` upstreams known
to s3prl's hub, when (or if) those are imported (see :mod:`espnet_speechclip.frontend.registration`;
no ESPnet or s3prl module is imported here). The other ESPnet registrations (data types) happen where
ESPnet itself is imported.
"""

from espnet_speechclip.compat import defer_espnet_text_imports, patch_s3prl
from espnet_speechclip.frontend.registration import install as _install_registration
from espnet_speechclip.version import __version__

patch_s3prl()
defer_espnet_text_imports()
_install_registration()

__all__ = ["__version__"]
