"""Cache of CLIP image embeddings: the frozen image tower runs once per unique image.

SpeechCLIP applies no image augmentation, so an image's embedding is a constant; the authors' code
recomputes it every step (five times per image per epoch on Flickr8k).

Layout of ``<cache_root>/<clip fingerprint>/`` (the folder is named after the CLIP model and the hash of
its weights, so a different or retrained CLIP never reuses embeddings):

- ``emb/<image sha256>.npy``: one (D_c,) float32 L2-normalised embedding per image CONTENT: an image
  file replaced under the same name (a regenerated corpus) is a new image, embedded anew;
- ``index.json``: each image file's content hash (reused while its size, mtime and ctime are unchanged,
  see :class:`espnet_speechclip.provenance.FileHashes`) and each embedding file's hash, so that a truncated
  or altered ``.npy`` is noticed and recomputed, never trusted;
- ``journal.tsv``: embeddings finished since the index was last written (an interrupted run resumes
  where it stopped);
- ``img_emb.scp`` (image key -> npy) and ``<set>.scp`` (utterance -> npy, ESPnet's ``npy`` type).
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Dict, Iterable, Optional

import numpy as np

from espnet_speechclip.data.datadir import read_kv
from espnet_speechclip.data.media import load_image
from espnet_speechclip.errors import MissingFileError, MissingKeyError
from espnet_speechclip.files import atomic_path, sha256_file, write_text_atomic
from espnet_speechclip.locks import folder_lock
from espnet_speechclip.provenance import FileHashes, file_entry

logger = logging.getLogger(__name__)

INDEX_VERSION = 1


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
        weights += "-cfg" + sha256_file(config_file)[:8]
    return re.sub(r"[^A-Za-z0-9._-]", "_", f"{model_name}__{weights}")


def _read_index(folder: Path) -> Dict:
    """The index of ``folder`` merged with its journal; empty parts when missing or unreadable."""
    try:
        index = json.loads((folder / "index.json").read_text(encoding="utf-8"))
        if index.get("version") != INDEX_VERSION:
            index = {}
    except (OSError, ValueError, AttributeError):
        index = {}
    images, embeddings = dict(index.get("images", {})), dict(index.get("embeddings", {}))
    journal = folder / "journal.tsv"
    if journal.is_file():
        for line in journal.read_text(encoding="utf-8").splitlines():
            sha, _, entry = line.partition("\t")
            try:  # the last line of a killed run may be cut short
                embeddings[sha] = json.loads(entry)
            except ValueError:
                continue
    return {"images": images, "embeddings": embeddings}


def _write_index(folder: Path, images: Dict, embeddings: Dict) -> None:
    text = json.dumps({"version": INDEX_VERSION, "images": images, "embeddings": embeddings}, sort_keys=True)
    write_text_atomic(folder / "index.json", text)
    (folder / "journal.tsv").unlink(missing_ok=True)


def cache_image_embeddings(
    img_scp: str | Path,
    clip_conf: dict,
    cache_root: str | Path,
    batch_size: int = 64,
    device: str = "cpu",
    progress: bool = True,
    threads: int = 4,
) -> Path:
    """Embed every image of ``img_scp`` (``key file`` lines) whose content is not yet in the cache, or
    whose cached embedding is missing or damaged.

    Returns the cache folder ``cache_root/<clip fingerprint>``; its ``img_emb.scp`` lists ``key path.npy``
    for every image of every call so far (see the module doc for the layout).
    """
    folder = Path(cache_root) / clip_fingerprint(**clip_conf)
    with folder_lock(folder, "image caching"):  # one writer of a cache folder at a time
        _fill_cache(read_kv(img_scp), str(img_scp), clip_conf, folder, batch_size, device, progress, threads)
    return folder


def _fill_cache(
    images: Dict[str, str],
    img_scp: str,
    clip_conf: dict,
    folder: Path,
    batch_size: int,
    device: str,
    progress: bool,
    threads: int,
) -> None:
    """:func:`cache_image_embeddings` for the ``images`` (key -> file) of ``img_scp``, lock held."""
    (folder / "emb").mkdir(parents=True, exist_ok=True)
    index = _read_index(folder)
    image_hashes = FileHashes(index["images"])
    missing = [f"{k} ({p})" for k, p in sorted(images.items()) if not os.path.isfile(p)]
    if missing:
        raise MissingFileError(f"{img_scp}: {len(missing)} image file(s) do not exist, e.g. {missing[:3]}")
    content = image_hashes.sha256_many(images.values(), threads=threads)  # path -> sha256
    embeddings: Dict[str, dict] = index["embeddings"]  # image sha256 -> npy file entry

    def npy(sha: str) -> Path:
        return folder / "emb" / f"{sha}.npy"

    npy_hashes = FileHashes({str(npy(sha)): e for sha, e in embeddings.items()})
    todo_shas, damaged = [], 0
    for sha in sorted(set(content.values())):
        entry = embeddings.get(sha)
        ok = entry is not None and npy(sha).is_file() and npy_hashes.sha256(npy(sha)) == entry["sha256"]
        if not ok:
            damaged += entry is not None
            embeddings.pop(sha, None)
            todo_shas.append(sha)
    # one file per distinct content: the first key (sorted) holding it is the one loaded
    path_of = {}
    for k in sorted(images):
        path_of.setdefault(content[images[k]], images[k])
    logger.info(
        "image cache %s: %d images, %d to embed%s",
        folder,
        len(images),
        len(todo_shas),
        f" ({damaged} damaged cached embedding(s) recomputed)" if damaged else "",
    )
    if todo_shas:  # torch and CLIP only when there is something to embed (a rerun or a second config)
        import torch

        from espnet_speechclip.models.clip import CLIPImageEncoder

        encoder = CLIPImageEncoder.from_config(clip_conf).to(device)
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(todo_shas), desc="embedding images", unit="img")
        with open(folder / "journal.tsv", "a", encoding="utf-8") as journal:
            for i in range(0, len(todo_shas), batch_size):
                shas = todo_shas[i : i + batch_size]
                emb = encoder.embed_images(
                    [load_image(path_of[sha]) for sha in shas], device=torch.device(device)
                )
                lines = []
                for sha, e in zip(shas, emb.float().cpu().numpy()):
                    with atomic_path(npy(sha), keep_suffix=True) as tmp:  # never half a file
                        np.save(tmp, e)
                    embeddings[sha] = file_entry(npy(sha))
                    lines.append(f"{sha}\t{json.dumps(embeddings[sha])}\n")
                # A batch enters the journal whole, in one write: a run killed mid-batch redoes that
                # batch, so batches keep their composition and a resumed cache is byte-identical to an
                # uninterrupted one (CPU kernels may round differently for other batch sizes).
                journal.write("".join(lines))
                journal.flush()
                if bar is not None:
                    bar.update(len(shas))
        if bar is not None:
            bar.close()
    # keep the entries refreshed by this run (a racy entry becomes a settled one), not those of the
    # damaged files that were just replaced
    recomputed = set(todo_shas)
    for sha in embeddings:
        key = str(npy(sha))
        if key in npy_hashes.entries and sha not in recomputed:
            embeddings[sha] = npy_hashes.entries[key]
    _write_index(folder, {**index["images"], **image_hashes.entries}, embeddings)

    entries: Dict[str, str] = {}
    scp = folder / "img_emb.scp"
    if scp.is_file():
        entries.update(read_kv(scp))
    entries.update({k: str(npy(content[p]).resolve()) for k, p in images.items()})
    write_text_atomic(scp, "".join(f"{k} {entries[k]}\n" for k in sorted(entries)))


def embedding_identities(paths: Iterable[str], hashes: FileHashes) -> Dict[str, str]:
    """What each cached embedding file is made from, for an identity that a repair keeps:
    ``"<clip fingerprint>/<image sha256>"`` for a file of a cache whose index vouches for it (the bytes
    are the ones the cache wrote for that image and CLIP), else ``"sha256:<the file's sha256>"``.

    A repaired entry (recomputed outside its original batch) matches the original only within float
    rounding (about 1e-7: the CLIP tower's kernels round differently for other batch sizes), so the
    bytes cannot identify it; the image and the CLIP can, and they are what the embedding is of.
    """
    indexes: Dict[Path, Dict] = {}
    out = {}
    for path in paths:
        p = Path(path)
        folder = p.parent.parent
        if p.parent.name == "emb" and folder not in indexes:
            indexes[folder] = _read_index(folder)["embeddings"] if (folder / "index.json").is_file() else {}
        entry = indexes.get(folder, {}).get(p.stem) if p.parent.name == "emb" else None
        sha = hashes.sha256(path)
        vouched = isinstance(entry, dict) and entry.get("sha256") == sha
        out[path] = f"{folder.name}/{p.stem}" if vouched else f"sha256:{sha}"
    return out


def write_utt_emb_scp(utt2img: str | Path, img_emb_scp: str | Path, out: str | Path) -> Path:
    """Per-utterance scp (``utt path.npy``) for ESPnet's ``npy`` data type, pointing each utterance at
    its image's cached embedding."""
    u2i = read_kv(utt2img)
    emb = read_kv(img_emb_scp)
    missing = sorted({img for img in u2i.values() if img not in emb})
    if missing:
        raise MissingKeyError(
            f"{img_emb_scp} lacks embeddings for {len(missing)} image(s) named in {utt2img}, "
            f"e.g. {missing[:3]}"
        )
    return write_text_atomic(out, "".join(f"{utt} {emb[u2i[utt]]}\n" for utt in sorted(u2i)))
