"""What the tests build for themselves, by concern:

- :mod:`helpers.stand_ins`: random tiny HuBERT and CLIP checkpoints in the real formats, a tiny trained
  SpeechCLIP;
- :mod:`helpers.corpora`: corpora and media files (tone-caption corpora, a miniature Flickr8k, the
  synth corpus, broken files) and checks of what a data dir or caption holds;
- :mod:`helpers.recipe`: copies of the recipe and running it (``run.sh``, the reuse example);
- :mod:`helpers.hub`: a Hugging Face Hub on 127.0.0.1 and a Hub cache laid out as downloads leave it.

This module holds only the paths they share.
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
TINY = ROOT / "conf" / "tiny"
TINY_CLIP_CONFIG = ROOT / "conf" / "clip" / "tiny-clip.json"
RECIPE = ROOT / "egs2" / "speechclip" / "sc1"
