"""SpeechCLIP for ESPnet: speech encoders aligned with CLIP through images.

Importing the package is cheap and silent: it only makes s3prl importable under torchaudio >= 2.9.
The ESPnet registrations (data types, frontend choices) happen where ESPnet itself is imported.
"""

from espnet_speechclip.compat import patch_s3prl

patch_s3prl()

__version__ = "0.1.0"
