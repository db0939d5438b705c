"""What a data dir holds, by content: the identity decode folders record of the data they embedded.

Kept apart from :mod:`espnet_speechclip.data.datadir` (reading and writing data dirs) because it reads
the format stage's record (:func:`espnet_speechclip.data.format.vouched_audio`), and the format stage
itself writes data dirs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict

from espnet_speechclip.data.datadir import WORD_ALIGNMENT, read_kv
from espnet_speechclip.data.format import vouched_audio
from espnet_speechclip.provenance import FileHashes, content_digest


def datadir_identity(path: str | Path, hashes=None) -> Dict[str, str]:
    """What a data dir holds, by content: its lists and every audio and image file they name.

    ``hashes``: a :class:`espnet_speechclip.provenance.FileHashes` (earlier hashes are reused while a
    file is unchanged); the format stage's record of ``path`` seeds it, so its outputs are not reread.
    """
    path = Path(path)
    vouched = {str(p): e for p, e in vouched_audio(path / "wav.scp").items()}
    hashes = hashes if hashes is not None else FileHashes()
    seeded = FileHashes(vouched)
    identity = {
        name: hashes.sha256(path / name)
        # the word alignment too: keyword timing is scored against it
        for name in ("wav.scp", "utt2img", "img.scp", "text", WORD_ALIGNMENT)
        if (path / name).is_file()
    }
    wavs = read_kv(path / "wav.scp")
    audio = {}
    for utt, wav in wavs.items():
        audio[utt] = hashes.known(wav) or seeded.known(os.path.abspath(wav)) or hashes.sha256(wav)
    identity["audio"] = content_digest(audio.items())
    images = read_kv(path / "img.scp") if (path / "img.scp").is_file() else {}
    image_sha = hashes.sha256_many(images.values())
    identity["images"] = content_digest((k, image_sha[p]) for k, p in images.items())
    return identity
