"""Score a decode folder (see :mod:`espnet_speechclip.inference.decode_dir`): retrieval and keywords.

Result layout, per branch: ``speech_to_image``/``image_to_speech`` R@1/5/10, zero-shot
``speech_to_text``/``text_to_speech`` R@1/5/10 (when transcripts were embedded; correctness by image),
and for the cascaded branch:

- ``keyword_hit_rate``: kw1..kwK + avg for K keyword slots, the share of utterances whose slot-k keyword
  occurs in the transcript; for variable-length keywords (CIF) no slots exist, and it holds the
  ``pooled`` rate over all keywords, ``utterance_avg`` and ``keywords_per_utterance`` (special tokens
  never count);
- ``keyword_hit_rate_top5_neighbours``, when the decode folder holds each keyword's nearest codebook
  subwords: the same with a hit when any of the 5 nearest (the keyword itself first) occurs, the variant
  the authors published (22.7 / 32.7 / 38.2). The two are not comparable with each other;
- ``keyword_timing``, when the data has a word alignment (``words.ctm``): boundary precision / recall /
  F1 / R-value of the keyword spans at 20 ms and how often the span of a keyword that occurs in the
  transcript contains (overlaps) a word holding its subword, each with its chance level
  (:func:`espnet_speechclip.evaluation.keyword_timing.keyword_timing_scores`), plus ``spans_from``:
  ``cif_segment`` (integrated units snapped onto segments) or ``occlusion_segment`` (K-token models, see
  :func:`espnet_speechclip.evaluation.keyword_spans.occlusion_spans`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Union

import torch

from espnet_speechclip.errors import InputError, MissingFileError
from espnet_speechclip.evaluation.keyword_timing import keyword_timing_scores
from espnet_speechclip.evaluation.keywords import keyword_hit_rate, pooled_keyword_hit_rate
from espnet_speechclip.evaluation.retrieval import grouped_recall, retrieval_recall
from espnet_speechclip.inference.decode_dir import DecodeDir


def neighbours_key(n: int) -> str:
    """The results key of the hit rate over each keyword's ``n`` nearest codebook subwords."""
    return f"keyword_hit_rate_top{n}_neighbours"


def score_decode_dir(decode_dir: Union[str, Path, DecodeDir]) -> Dict[str, Dict]:
    """-> ``{"parallel": {...}, "cascaded": {...}}`` for the branches present in ``decode_dir``."""
    d = decode_dir if isinstance(decode_dir, DecodeDir) else DecodeDir.read(decode_dir)
    if not d.branches:
        raise MissingFileError(f"{d.path} holds no speech_<branch>.npy: run inference first")
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
        if branch == "cascaded" and d.has("keyword_ids.npy"):
            res.update(_keyword_scores(d))
        results[branch] = res
    return results


def _keyword_scores(d: DecodeDir) -> Dict[str, Dict]:
    """Hit rates (with transcripts) and timing (with a word alignment) of the cascaded keywords."""
    from espnet_speechclip.models.clip import text_token_ids

    res: Dict[str, Dict] = {}
    ids = torch.from_numpy(d.array("keyword_ids"))
    if d.transcripts is not None:
        caps = [text_token_ids(d.transcripts[u]) for u in d.utts]
        rate = pooled_keyword_hit_rate if d.variable_keywords else keyword_hit_rate
        res["keyword_hit_rate"] = rate(ids, caps)
        if d.has("keyword_neighbour_ids.npy"):
            near = torch.from_numpy(d.array("keyword_neighbour_ids"))
            res[neighbours_key(near.shape[-1])] = rate(ids, caps, topk_ids=near)
    words = d.word_alignment()
    if words is not None and d.has("keyword_spans.npy"):
        missing = [u for u in d.utts if u not in words]
        if missing:
            raise InputError(
                f"{d.path}/words.ctm has no words for {len(missing)} utterance(s), e.g. {missing[:3]}"
            )
        id_lists, span_lists = d.keyword_lists()
        res["keyword_timing"] = dict(
            keyword_timing_scores(
                [[tuple(s) for s in spans] for spans in span_lists],
                [list(i) for i in id_lists],
                [words[u] for u in d.utts],
                text_token_ids,
            ),
            spans_from="cif_segment" if d.variable_keywords else "occlusion_segment",
        )
    return res
