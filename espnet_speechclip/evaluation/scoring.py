"""Score a decode folder (see :mod:`espnet_speechclip.inference.decode_dir`): retrieval and keywords.

Result layout, per branch: ``speech_to_image``/``image_to_speech`` R@1/5/10, zero-shot
``speech_to_text``/``text_to_speech`` R@1/5/10 (when transcripts were embedded; correctness by image),
and for the cascaded branch ``keyword_hit_rate`` kw1..kwK + avg (special tokens never count).
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Union

import torch

from espnet_speechclip.evaluation.keywords import keyword_hit_rate
from espnet_speechclip.evaluation.retrieval import grouped_recall, retrieval_recall
from espnet_speechclip.inference.decode_dir import DecodeDir


def score_decode_dir(decode_dir: Union[str, Path, DecodeDir]) -> Dict[str, Dict]:
    """-> ``{"parallel": {...}, "cascaded": {...}}`` for the branches present in ``decode_dir``."""
    from espnet_speechclip.models.clip import text_token_ids

    d = decode_dir if isinstance(decode_dir, DecodeDir) else DecodeDir.read(decode_dir)
    if not d.branches:
        raise FileNotFoundError(f"{d.path} holds no speech_<branch>.npy: run inference first")
    utt_img = d.image_index()
    image = torch.from_numpy(d.image())
    text = d.text()
    text = torch.from_numpy(text) if text is not None else None
    results: Dict[str, Dict] = {}
    for branch in d.branches:
        speech = torch.from_numpy(d.speech(branch))
        res = dict(retrieval_recall(speech @ image.t(), utt_img))
        if text is not None:
            sim = speech @ text.t()
            res["speech_to_text"] = grouped_recall(sim, utt_img, utt_img)
            res["text_to_speech"] = grouped_recall(sim.t(), utt_img, utt_img)
        if branch == "cascaded" and d.has("keyword_ids.npy") and d.transcripts is not None:
            caps = [text_token_ids(d.transcripts[u]) for u in d.utts]
            res["keyword_hit_rate"] = keyword_hit_rate(torch.from_numpy(d.array("keyword_ids")), caps)
        results[branch] = res
    return results
