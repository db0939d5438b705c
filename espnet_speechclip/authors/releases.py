"""Which released checkpoint a file is, from its content, never from its name.

SpeechCLIP+'s download script saves all nine of its files as ``model.ckpt`` and anyone can rename a file, so
the release is recognised from what the checkpoint holds: its family and model (the branch keys), the model
size (the HuBERT width), the corpus (the stored ``data.dataset.name``, else the size of the reduced keyword
vocabulary, 8112 rows for Flickr8k and 19787 for SpokenCOCO, the same in both families). Each of the fifteen
releases has its own (family, model, size, corpus). The stored epoch and step are compared with a
SpeechCLIP release's file name where it is known.
"""

from __future__ import annotations

import re
from typing import Any, Dict, List, Mapping, Optional

from espnet_speechclip.authors.spec import Architecture
from espnet_speechclip.evaluation.published import ALL_RELEASES, Release

SIZES = {"hubert": "base", "hubert_large_ll60k": "large"}
CORPORA = {"flickr": "flickr8k", "coco": "spokencoco"}
VOCABULARY_CORPORA = {8112: "flickr8k", 19787: "spokencoco"}


def _stored_step(release: Release) -> Optional[Dict[str, int]]:
    """(epoch, step) of a SpeechCLIP file name (Lightning stores epoch + 1 and step + 1 inside)."""
    m = re.search(r"epoch_(\d+)-step_(\d+)-", release.file_name or "")
    return None if m is None else dict(epoch=int(m.group(1)) + 1, global_step=int(m.group(2)) + 1)


def identify_release(arch: Architecture, ckpt: Mapping[str, Any], vocabulary_size: int) -> Dict[str, Any]:
    """The ``source.release`` record of import.json: ``identified`` and ``summary`` always; for a known
    release its Hub path, family, size, corpus, model, dev metric and value, and ``identified_by`` (what
    the identification rests on); ``differences`` lists what of the content does not fit it."""
    evidence: List[str] = [f"the {arch.family} {arch.model} branch keys of its state dict"]
    size = SIZES.get(arch.upstream)
    evidence.append(f"HuBERT {arch.upstream} (width {arch.speech_width})")
    corpus = CORPORA.get(arch.corpus or "")
    if corpus is not None:
        evidence.append(f"the stored data.dataset.name {arch.corpus!r}")
    else:
        corpus = VOCABULARY_CORPORA.get(vocabulary_size)
        if corpus is not None:
            evidence.append(f"its {vocabulary_size}-row keyword vocabulary ({corpus})")
    matches = [
        r
        for r in ALL_RELEASES
        if (r.family, r.model, r.size, r.corpus) == (arch.family, arch.model, size, corpus)
    ]
    if len(matches) != 1:
        what = f"{arch.family} {arch.model}, {size or arch.upstream}, {corpus or 'corpus unknown'}"
        return dict(
            identified=False,
            summary=f"matches none of the authors' released checkpoints ({what}); "
            "imported as that architecture",
        )
    release = matches[0]
    differences: List[str] = []
    stored = _stored_step(release)
    if stored is not None:
        for key, want in stored.items():
            got = ckpt.get(key)
            if isinstance(got, int) and got != want:
                differences.append(f"the file stores {key} {got}, the release's name implies {want}")
    record: Dict[str, Any] = dict(
        identified=True,
        path=release.path,
        url=release.url,
        family=release.family,
        size=release.size,
        corpus=release.corpus,
        model=release.model,
        dev_metric=f"mean R@{release.dev_k} (speech->image, image->speech)"
        + (", parallel embedding" if release.branch == "parallel" and release.model != "parallel" else ""),
        dev_value=release.dev_value,
        identified_by=", ".join(evidence),
        summary=f"the authors' {release.family} release {release.path} ({release.size} {release.corpus} "
        f"{release.model}, dev mean R@{release.dev_k} {release.dev_value} in its Hub file name)",
    )
    if release.file_name:
        record["hub_name"] = release.file_name
    if differences:
        record["differences"] = differences
    return record
