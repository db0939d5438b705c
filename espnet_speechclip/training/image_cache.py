"""Cache of CLIP image embeddings: the frozen image tower runs once per unique image.

SpeechCLIP applies no image augmentation, so an image's embedding is a constant; the authors' code
recomputes it every step (five times per image per epoch on Flickr8k). The cache lives in a folder named
after the CLIP model and a fingerprint of its weights, so a different CLIP never reuses stale
embeddings. Embeddings are written one ``.npy`` per image, so an interrupted run resumes where it
stopped.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from pathlib import Path
from typing import Dict, Optional

import numpy as np

from espnet_speechclip.data.datadir import read_kv
from espnet_speechclip.data.media import load_image
from espnet_speechclip.files import sha256_file

logger = logging.getLogger(__name__)


def clip_fingerprint(
    model_name: str, pretrained: Optional[str] = None, config_file: Optional[str] = None
) -> str:
    """A folder name identifying a CLIP: ``<model_name>__<pretrained tag or weights-file digest>``.

    A local weights file is identified by the hash of its bytes (and a config file by its content),
    not its path, so retraining a stand-in CLIP into the same path invalidates the cache.
    """
    if pretrained and os.path.isfile(pretrained):
        weights = "file-" + sha256_file(pretrained)[:12]
    else:
        weights = pretrained or "random"
    if config_file:
        weights += "-cfg" + hashlib.sha256(Path(config_file).read_bytes()).hexdigest()[:8]
    return re.sub(r"[^A-Za-z0-9._-]", "_", f"{model_name}__{weights}")


def cache_image_embeddings(
    img_scp: str | Path,
    clip_conf: dict,
    cache_root: str | Path,
    batch_size: int = 64,
    device: str = "cpu",
    progress: bool = True,
) -> Path:
    """Embed every image of ``img_scp`` (``key file`` lines) not yet in the cache.

    Returns the cache folder ``cache_root/<clip fingerprint>``, holding ``<key>.npy`` files (D_c,)
    float32, L2-normalised, and ``img_emb.scp`` (``key path`` for every image of every call so far).
    """
    images = read_kv(img_scp)
    folder = Path(cache_root) / clip_fingerprint(**clip_conf)
    folder.mkdir(parents=True, exist_ok=True)
    todo = [k for k in sorted(images) if not (folder / f"{k}.npy").is_file()]
    logger.info("image cache %s: %d images, %d to embed", folder, len(images), len(todo))
    if todo:  # torch and CLIP only when there is something to embed (a rerun or a second config)
        import torch

        from espnet_speechclip.models.clip import CLIPImageEncoder

        encoder = CLIPImageEncoder.from_config(clip_conf).to(device)
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(todo), desc="embedding images", unit="img")
        for i in range(0, len(todo), batch_size):
            keys = todo[i : i + batch_size]
            emb = encoder.embed_images([load_image(images[k]) for k in keys], device=torch.device(device))
            for k, e in zip(keys, emb.float().cpu().numpy()):
                tmp = folder / f"{k}.tmp.npy"
                np.save(tmp, e)
                os.replace(tmp, folder / f"{k}.npy")  # atomic: an interrupted run never leaves half a file
            if bar is not None:
                bar.update(len(keys))
        if bar is not None:
            bar.close()
    entries: Dict[str, str] = {}
    scp = folder / "img_emb.scp"
    if scp.is_file():
        entries.update(read_kv(scp))
    entries.update({k: str((folder / f"{k}.npy").resolve()) for k in images})
    with open(scp, "w", encoding="utf-8") as f:
        for k in sorted(entries):
            f.write(f"{k} {entries[k]}\n")
    return folder


def write_utt_emb_scp(utt2img: str | Path, img_emb_scp: str | Path, out: str | Path) -> Path:
    """Per-utterance scp (``utt path.npy``) for ESPnet's ``npy`` data type, pointing each utterance at
    its image's cached embedding."""
    u2i = read_kv(utt2img)
    emb = read_kv(img_emb_scp)
    missing = sorted({img for img in u2i.values() if img not in emb})
    if missing:
        raise KeyError(
            f"{img_emb_scp} lacks embeddings for {len(missing)} image(s) named in {utt2img}, "
            f"e.g. {missing[:3]}"
        )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
        for utt in sorted(u2i):
            f.write(f"{utt} {emb[u2i[utt]]}\n")
    return out
