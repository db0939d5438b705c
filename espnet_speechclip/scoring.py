"""Score an inference output folder (see :mod:`espnet_speechclip.inference`): retrieval and keywords.

Result layout, per branch: ``speech_to_image``/``image_to_speech`` R@1/5/10, zero-shot
``speech_to_text``/``text_to_speech`` R@1/5/10 (when transcripts were embedded; correctness by image),
and for the cascaded branch ``keyword_hit_rate`` kw1..kwK + avg (special tokens never count).
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List

import numpy as np
import torch

from espnet_speechclip.data.datadir import read_kv
from espnet_speechclip.metrics import grouped_recall, keyword_hit_rate, retrieval_recall

BRANCHES = ("parallel", "cascaded")


def _lines(path: Path) -> List[str]:
    return path.read_text(encoding="utf-8").split()


def score_decode_dir(decode_dir: str | Path) -> Dict[str, Dict]:
    """-> ``{"parallel": {...}, "cascaded": {...}}`` for the branches present in ``decode_dir``."""
    from espnet_speechclip.encoders.clip import text_token_ids

    d = Path(decode_dir)
    utts = _lines(d / "utt_list")
    images = _lines(d / "image_list")
    utt2img = read_kv(d / "utt2img")
    index = {k: i for i, k in enumerate(images)}
    utt_img = torch.tensor([index[utt2img[u]] for u in utts])
    image = torch.from_numpy(np.load(d / "image.npy"))
    text = torch.from_numpy(np.load(d / "text.npy")) if (d / "text.npy").is_file() else None
    results: Dict[str, Dict] = {}
    for branch in BRANCHES:
        f = d / f"speech_{branch}.npy"
        if not f.is_file():
            continue
        speech = torch.from_numpy(np.load(f))
        res = dict(retrieval_recall(speech @ image.t(), utt_img))
        if text is not None:
            sim = speech @ text.t()
            res["speech_to_text"] = grouped_recall(sim, utt_img, utt_img)
            res["text_to_speech"] = grouped_recall(sim.t(), utt_img, utt_img)
        if branch == "cascaded" and (d / "keyword_ids.npy").is_file() and (d / "text").is_file():
            transcripts = read_kv(d / "text")
            caps = [text_token_ids(transcripts[u]) for u in utts]
            res["keyword_hit_rate"] = keyword_hit_rate(torch.from_numpy(np.load(d / "keyword_ids.npy")), caps)
        results[branch] = res
    if not results:
        raise FileNotFoundError(f"{d} holds no speech_<branch>.npy: run inference first")
    return results
