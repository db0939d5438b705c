"""Score a decode folder (see :mod:`espnet_speechclip.inference.decode_dir`): retrieval and keywords.

Result layout, per branch: ``speech_to_image``/``image_to_speech`` R@1/5/10, zero-shot
``speech_to_text``/``text_to_speech`` R@1/5/10 (when transcripts were embedded; correctness by image),
and for the cascaded branch ``keyword_hit_rate`` kw1..kwK + avg: the share of utterances whose slot-k
keyword occurs in the transcript (special tokens never count), and, when the decode folder holds each
keyword's nearest codebook subwords, ``keyword_hit_rate_top5_neighbours``: a hit when any of the 5 nearest
(the keyword itself first) occurs, the variant the authors published (22.7 / 32.7 / 38.2). The two are
not comparable with each other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Union

import torch

from espnet_speechclip.evaluation.keywords import keyword_hit_rate
from espnet_speechclip.evaluation.retrieval import grouped_recall, retrieval_recall
from espnet_speechclip.inference.decode_dir import DecodeDir


def neighbours_key(n: int) -> str:
    """The results key of the hit rate over each keyword's ``n`` nearest codebook subwords."""
    return f"keyword_hit_rate_top{n}_neighbours"


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
            ids = torch.from_numpy(d.array("keyword_ids"))
            res["keyword_hit_rate"] = keyword_hit_rate(ids, caps)
            if d.has("keyword_neighbour_ids.npy"):
                near = torch.from_numpy(d.array("keyword_neighbour_ids"))
                res[neighbours_key(near.shape[-1])] = keyword_hit_rate(ids, caps, topk_ids=near)
        results[branch] = res
    return results
