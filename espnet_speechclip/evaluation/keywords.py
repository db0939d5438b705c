"""Keyword hit rates of the cascaded SpeechCLIP, as pure tensor functions.

For slot k, the share of utterances whose slot-k keyword (a CLIP BPE id) occurs among the CLIP BPE ids
of the utterance's transcription. Models with a variable number of keywords per utterance (SpeechCLIP+'s
CIF) have no slots: ``pooled_keyword_hit_rate`` counts hits over all keywords emitted. Special ids (pad
0, SOT 49406, EOT 49407 by default) never count as hits, neither as a keyword nor as a caption token.
``content_word_hit_rate`` additionally drops stop tokens and reports the chance baselines next to the
rates.

All percentages are Python floats computed as ``100.0 * hits / count`` from exact integer counts.
"""

from __future__ import annotations

from typing import Sequence, Union

import torch

from espnet_speechclip.errors import InputError
from espnet_speechclip.models.clip import SPECIAL_IDS as CLIP_SPECIAL_IDS

__all__ = [
    "CLIP_SPECIAL_IDS",
    "keyword_hit_rate",
    "pooled_keyword_hit_rate",
    "content_word_hit_rate",
    "token_baselines",
]

CaptionIds = Union[torch.Tensor, Sequence[Union[Sequence[int], torch.Tensor]]]


def _as_id_tensor(x: Sequence[int] | torch.Tensor | None, name: str) -> torch.Tensor:
    if x is None:
        return torch.empty(0, dtype=torch.long)
    t = torch.as_tensor(x if isinstance(x, torch.Tensor) else list(x))
    if t.numel() == 0:
        return torch.empty(0, dtype=torch.long)
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise TypeError(f"{name} must hold integer ids, got dtype {t.dtype}")
    return t.reshape(-1).long().cpu()


def _sorted_content(caption_ids: CaptionIds, n: int, ignore: torch.Tensor) -> torch.Tensor:
    """(N, L) caption ids with ignored ids replaced by -1, each row sorted ascending.

    The -1 filler sorts first and never equals a real id (ids are checked to be >= 0).
    """
    if isinstance(caption_ids, torch.Tensor):
        # A padded (N, L) batch; padding with 0 (a special id) is the CLIP tokenizer's convention.
        if caption_ids.dim() != 2:
            raise InputError(f"caption_ids as a tensor must be 2-D (N, L), got {tuple(caption_ids.shape)}")
        caps = caption_ids
    else:
        rows = [torch.as_tensor(c if isinstance(c, torch.Tensor) else list(c)) for c in caption_ids]
        if len(rows) != n:
            raise InputError(f"caption_ids has {len(rows)} captions for {n} utterances")
        for i, r in enumerate(rows):
            if r.dim() != 1:
                raise InputError(f"caption_ids[{i}] must be 1-D, got shape {tuple(r.shape)}")
            # torch.as_tensor([]) is float32; an empty caption is fine whatever its dtype.
            if r.numel() and (r.is_floating_point() or r.is_complex() or r.dtype == torch.bool):
                raise TypeError(f"caption_ids[{i}] must hold integer ids, got dtype {r.dtype}")
        # One flat copy plus a scatter into the padded matrix: no per-row Python writes.
        lengths = torch.tensor([r.numel() for r in rows], dtype=torch.long)
        flat = torch.cat([r.reshape(-1).long().cpu() for r in rows] + [torch.empty(0, dtype=torch.long)])
        if flat.numel() and int(flat.min()) < 0:
            raise InputError("caption_ids must be non-negative token ids")
        max_len = int(lengths.max()) if rows else 0
        caps = torch.full((n, max(1, max_len)), -1, dtype=torch.long)
        caps[torch.arange(max(1, max_len))[None, :] < lengths[:, None]] = flat
    if caps.shape[0] != n:
        raise InputError(f"caption_ids has {caps.shape[0]} captions for {n} utterances")
    if caps.is_floating_point() or caps.is_complex() or caps.dtype == torch.bool:
        raise TypeError(f"caption_ids must hold integer ids, got dtype {caps.dtype}")
    caps = caps.long().cpu()
    if isinstance(caption_ids, torch.Tensor) and caps.numel() and int(caps.min()) < 0:
        raise InputError("caption_ids must be non-negative token ids")
    caps = torch.where(torch.isin(caps, ignore), torch.full_like(caps, -1), caps)
    if caps.shape[1] == 0:
        caps = torch.full((n, 1), -1, dtype=torch.long)
    return caps.sort(dim=1).values


def _contains(sorted_caps: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
    """Membership test: out[n, q] = queries[n, q] occurs in row n of ``sorted_caps``.

    Args:
        sorted_caps: (N, L) rows sorted ascending.
        queries: (N, Q) ids.
    """
    pos = torch.searchsorted(sorted_caps, queries.contiguous())  # (N, Q) first index >= query
    pos = pos.clamp_max(sorted_caps.shape[1] - 1)
    return sorted_caps.gather(1, pos) == queries


def _hit_rates(
    keyword_ids: torch.Tensor,
    caption_ids: CaptionIds,
    ignore: torch.Tensor,
    topk_ids: torch.Tensor | None,
) -> tuple[dict[str, float], torch.Tensor]:
    if not isinstance(keyword_ids, torch.Tensor):
        keyword_ids = torch.as_tensor(keyword_ids)
    if keyword_ids.dim() != 2:
        raise InputError(f"keyword_ids must be 2-D (N, K), got shape {tuple(keyword_ids.shape)}")
    n, k = keyword_ids.shape
    if n == 0 or k == 0:
        raise InputError(f"keyword_ids must be non-empty, got shape {tuple(keyword_ids.shape)}")
    if keyword_ids.is_floating_point() or keyword_ids.is_complex() or keyword_ids.dtype == torch.bool:
        raise TypeError(f"keyword_ids must hold integer ids, got dtype {keyword_ids.dtype}")
    cand = keyword_ids.long().cpu()[:, :, None]  # (N, K, 1)
    if topk_ids is not None:
        if not isinstance(topk_ids, torch.Tensor):
            topk_ids = torch.as_tensor(topk_ids)
        if topk_ids.dim() != 3 or tuple(topk_ids.shape[:2]) != (n, k) or topk_ids.shape[2] == 0:
            raise InputError(
                f"topk_ids must have shape ({n}, {k}, M) with M >= 1, got {tuple(topk_ids.shape)}"
            )
        if topk_ids.is_floating_point() or topk_ids.is_complex() or topk_ids.dtype == torch.bool:
            raise TypeError(f"topk_ids must hold integer ids, got dtype {topk_ids.dtype}")
        # The keyword itself is always a candidate, so the top-M rate is never below the top-1 rate
        # even if the caller's neighbour list leaves the chosen keyword out.
        cand = torch.cat([cand, topk_ids.long().cpu()], dim=2)  # (N, K, 1 + M)
    if int(cand.min()) < 0:
        raise InputError("keyword_ids / topk_ids must be non-negative token ids")

    caps = _sorted_content(caption_ids, n, ignore)  # (N, L)
    m = cand.shape[2]
    found = _contains(caps, cand.reshape(n, k * m)).reshape(n, k, m)
    # An ignored candidate is never a hit even if the caption holds it (the caption side already had it
    # replaced by -1, this also covers ids that a caller's pre-padded caption tensor kept).
    found &= ~torch.isin(cand, ignore)
    hits = found.any(dim=2)  # (N, K)

    per_slot = hits.sum(0).tolist()
    rates = {f"kw{j + 1}": 100.0 * per_slot[j] / n for j in range(k)}
    # Equal to the mean of the slot rates (same denominator), but computed from the exact count.
    rates["avg"] = 100.0 * sum(per_slot) / (n * k)
    return rates, caps


def keyword_hit_rate(
    keyword_ids: torch.Tensor,
    caption_ids: CaptionIds,
    special_ids: Sequence[int] | torch.Tensor = CLIP_SPECIAL_IDS,
    topk_ids: torch.Tensor | None = None,
) -> dict[str, float]:
    """Per-slot keyword hit rate of the cascaded model, in percent.

    Args:
        keyword_ids: (N, K) CLIP BPE id chosen for each keyword slot of each utterance.
        caption_ids: the CLIP BPE ids of each utterance's transcription: a list of N lists / 1-d
            tensors (any lengths, SOT/EOT may be included), or an (N, L) tensor padded with a special id.
        special_ids: ids that never count as a hit, on either side (default pad 0, SOT 49406, EOT 49407).
        topk_ids: optional (N, K, M) candidate ids per slot (e.g. the top-5 nearest codebook
            neighbours, as the official code reported); a slot hits if its keyword OR any of its M
            candidates occurs in the caption.

    Returns:
        ``{"kw1": .., ..., "kwK": .., "avg": ..}``; ``avg`` is the mean over slots. Utterances whose
        caption is empty (after dropping special ids) count as misses.
    """
    rates, _ = _hit_rates(keyword_ids, caption_ids, _as_id_tensor(special_ids, "special_ids"), topk_ids)
    return rates


def pooled_keyword_hit_rate(
    keyword_ids: torch.Tensor,
    caption_ids: CaptionIds,
    special_ids: Sequence[int] | torch.Tensor = CLIP_SPECIAL_IDS,
    topk_ids: torch.Tensor | None = None,
) -> dict[str, float]:
    """Keyword hit rate over ALL keywords emitted, for models whose utterances have different numbers of
    keywords (CIF), in percent.

    Args:
        keyword_ids: (N, K) CLIP BPE ids, each row padded with -1 after the utterance's own keywords.
        caption_ids, special_ids: as in ``keyword_hit_rate``.
        topk_ids: optional (N, K, M) candidate ids per keyword (its nearest codebook subwords, any value
            in the padding); a keyword hits if it OR any of its M candidates occurs in the caption.

    Returns:
        ``pooled``: hits / keywords over the corpus (a keyword hits if its id occurs in the utterance's
        caption; special ids never hit but count as emitted); ``utterance_avg``: the mean over utterances
        of each one's own rate (utterances without keywords left out); ``keywords_per_utterance``: the
        mean number of keywords. For a fixed K, ``pooled`` equals ``keyword_hit_rate``'s ``avg``.
    """
    if not isinstance(keyword_ids, torch.Tensor):
        keyword_ids = torch.as_tensor(keyword_ids)
    if keyword_ids.dim() != 2:
        raise InputError(f"keyword_ids must be 2-D (N, K), got shape {tuple(keyword_ids.shape)}")
    if keyword_ids.is_floating_point() or keyword_ids.is_complex() or keyword_ids.dtype == torch.bool:
        raise TypeError(f"keyword_ids must hold integer ids, got dtype {keyword_ids.dtype}")
    ids = keyword_ids.long().cpu()
    n = ids.shape[0]
    emitted = ids >= 0  # (N, K)
    if n == 0 or not bool(emitted.any()):
        raise InputError("no keywords to score")
    ignore = _as_id_tensor(special_ids, "special_ids")
    caps = _sorted_content(caption_ids, n, ignore)
    cand = ids[:, :, None]  # (N, K, 1)
    if topk_ids is not None:
        topk_ids = torch.as_tensor(topk_ids)
        if topk_ids.dim() != 3 or tuple(topk_ids.shape[:2]) != tuple(ids.shape) or topk_ids.shape[2] == 0:
            raise InputError(
                f"topk_ids must have shape ({n}, {ids.shape[1]}, M) with M >= 1, got {tuple(topk_ids.shape)}"
            )
        if topk_ids.is_floating_point() or topk_ids.is_complex() or topk_ids.dtype == torch.bool:
            raise TypeError(f"topk_ids must hold integer ids, got dtype {topk_ids.dtype}")
        # the keyword itself is always a candidate, as in keyword_hit_rate
        cand = torch.cat([cand, topk_ids.long().cpu()], dim=2)  # (N, K, 1 + M)
    cand = torch.where(emitted[:, :, None], cand, -1)  # the padding never hits
    if int(cand[emitted].min()) < 0:
        raise InputError("keyword_ids / topk_ids must be non-negative token ids")
    m = cand.shape[2]
    hit = _contains(caps, cand.clamp_min(0).reshape(n, -1)).reshape(n, -1, m)
    hit &= (cand >= 0) & ~torch.isin(cand, ignore)
    found = hit.any(dim=2) & emitted  # (N, K)
    per_utt = emitted.sum(1)
    has = per_utt > 0
    return {
        "pooled": 100.0 * int(found.sum()) / int(emitted.sum()),
        "utterance_avg": 100.0 * float((found.sum(1)[has].double() / per_utt[has]).mean()),
        "keywords_per_utterance": int(emitted.sum()) / n,
    }


def token_baselines(
    caption_ids: CaptionIds,
    ignore_ids: Sequence[int] | torch.Tensor = CLIP_SPECIAL_IDS,
    candidate_ids: Sequence[int] | torch.Tensor | None = None,
) -> dict[str, float]:
    """Chance levels of the keyword hit rate for a single keyword slot, in percent.

    Args:
        caption_ids: as in ``keyword_hit_rate``.
        ignore_ids: caption ids that never count (special ids, plus stop tokens if wanted).
        candidate_ids: optional id set a random keyword would be drawn from (duplicates ignored).

    Returns:
        ``best_constant``: hit rate of the single non-ignored id that occurs in the most captions (what a
        model emitting one fixed token would score), ``best_constant_id``: that id (the smallest on a tie;
        -1 if no caption has any counted token); and, if ``candidate_ids`` is given, ``random``: the
        expected hit rate of a uniformly random id from ``candidate_ids`` (ignored candidates can be drawn
        but never hit).
    """
    n = len(caption_ids)
    if n == 0:
        raise InputError("caption_ids is empty")
    caps = _sorted_content(caption_ids, n, _as_id_tensor(ignore_ids, "ignore_ids"))
    return _baselines_from_sorted(caps, candidate_ids)


def _baselines_from_sorted(
    caps: torch.Tensor, candidate_ids: Sequence[int] | torch.Tensor | None
) -> dict[str, float]:
    n = caps.shape[0]
    # Keep each id once per caption: it is document frequency that matters, not repeats.
    first = torch.ones_like(caps, dtype=torch.bool)
    first[:, 1:] = caps[:, 1:] != caps[:, :-1]
    distinct = caps[first & (caps >= 0)]  # flat ids, each (caption, id) pair once
    out: dict[str, float] = {}
    if distinct.numel():
        ids, df = torch.unique(distinct, return_counts=True)  # ids ascending
        best = int(torch.argmax(df))  # argmax returns the first maximum: the smallest id on a tie
        out["best_constant"] = 100.0 * int(df[best]) / n
        out["best_constant_id"] = int(ids[best])
    else:
        out["best_constant"] = 0.0
        out["best_constant_id"] = -1
    if candidate_ids is not None:
        cands = torch.unique(_as_id_tensor(candidate_ids, "candidate_ids"))
        if cands.numel() == 0:
            raise InputError("candidate_ids is empty")
        # E[hit] of one uniform draw = sum over captions of |caption ∩ candidates| / (N |candidates|).
        n_in = int(torch.isin(distinct, cands).sum())
        out["random"] = 100.0 * n_in / (n * cands.numel())
    return out


def content_word_hit_rate(
    keyword_ids: torch.Tensor,
    caption_ids: CaptionIds,
    stop_ids: Sequence[int] | torch.Tensor,
    special_ids: Sequence[int] | torch.Tensor = CLIP_SPECIAL_IDS,
    topk_ids: torch.Tensor | None = None,
    candidate_ids: Sequence[int] | torch.Tensor | None = None,
) -> dict[str, float]:
    """Keyword hit rate on content words only, with its chance baselines, in percent.

    The same as ``keyword_hit_rate`` with ``stop_ids`` (e.g. the BPE ids of "a", "the", "is", "there",
    "of", "on", "and") treated like special ids: caption stop tokens are dropped, so a stop-token keyword
    never hits. A model that learned to emit "a" in every slot scores high on the plain rate and 0 here.

    Args:
        keyword_ids, caption_ids, special_ids, topk_ids: as in ``keyword_hit_rate``.
        stop_ids: ids that do not count as content words.
        candidate_ids: optional id set for the ``random`` baseline (e.g. the keyword codebook's ids).

    Returns:
        ``{"kw1": .., ..., "kwK": .., "avg": .., "best_constant": .., "best_constant_id": ..,
        ["random": ..]}``; the baselines (see ``token_baselines``) are for a single token per slot,
        computed on the same content-only captions, so they compare with ``avg`` of the top-1 variant.
    """
    ignore = torch.unique(
        torch.cat([_as_id_tensor(special_ids, "special_ids"), _as_id_tensor(stop_ids, "stop_ids")])
    )
    rates, caps = _hit_rates(keyword_ids, caption_ids, ignore, topk_ids)
    rates.update(_baselines_from_sorted(caps, candidate_ids))
    return rates
