"""Evaluation metrics of SpeechCLIP (docs/speechclip.md section 8), as pure tensor functions.

Nothing here imports a model, ESPnet or s3prl: the module costs no more than ``import torch``, so a
scoring script, a test or a notebook can use it on dumped embeddings.

Retrieval (``retrieval_recall``)
    ``sim`` is the (N_utt, N_img) similarity of every test utterance to every UNIQUE test image (dedupe the
    images first, e.g. with ``dedupe_images``) and ``utt2img`` (N_utt,) names each utterance's image.

    * speech->image: an utterance hits@K if its image is among its top K images.
    * image->speech: every image that has at least one utterance is a query (an image without
      utterances is skipped, it is not counted as a miss); it hits@K if ANY of its captions is among
      its top K utterances.

    Ties are resolved pessimistically. The rank of a target is the number of competitors whose score is
    >= the target's score, and the query hits@K iff rank < K. Competitors are the other images
    (speech->image) or the utterances of OTHER images (image->speech, where the target score is the best
    score over the image's own captions). A constant similarity matrix therefore scores R@1 = 0 (as long as
    there is any competitor) instead of whatever a sort's tie order would happen to give, so a collapsed
    model can never look good. K larger than the number of competitors gives 100.

Keyword hit rate (``keyword_hit_rate`` / ``content_word_hit_rate``)
    For slot k, the share of utterances whose slot-k keyword (a CLIP BPE id) occurs among the CLIP BPE ids
    of the utterance's transcription. Special ids (pad 0, SOT 49406, EOT 49407 by default) never count
    as hits, neither as a keyword nor as a caption token. ``content_word_hit_rate`` additionally drops
    stop tokens and reports the chance baselines next to the rates.

All percentages are Python floats computed as ``100.0 * hits / count`` from exact integer counts, so
they are reproducible bit for bit.
"""

from __future__ import annotations

from typing import Iterable, Sequence, Union

import torch

__all__ = [
    "CLIP_SPECIAL_IDS",
    "retrieval_recall",
    "grouped_recall",
    "mean_r10",
    "dedupe_images",
    "keyword_hit_rate",
    "content_word_hit_rate",
    "token_baselines",
]

# pad (open_clip pads with 0), <start_of_text>, <end_of_text> of the CLIP BPE vocabulary (49408 ids).
CLIP_SPECIAL_IDS: tuple[int, ...] = (0, 49406, 49407)

# Rows of ``sim`` handled per step: about 4M scores (16 MB of float32 for 5000 images), which keeps the
# boolean temporaries in cache-sized pieces while leaving each step large enough to be vectorised.
_CHUNK_ELEMS = 1 << 22

CaptionIds = Union[torch.Tensor, Sequence[Union[Sequence[int], torch.Tensor]]]


# --------------------------------------------------------------------------------------------------
# Retrieval
# --------------------------------------------------------------------------------------------------
def _check_ks(ks: Iterable[int]) -> tuple[int, ...]:
    ks = tuple(ks)
    if not ks:
        raise ValueError("ks must name at least one K")
    for k in ks:
        # bool is an int subclass; True as a K is surely a mistake.
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"every K must be a positive int, got {k!r} in ks={ks!r}")
    return ks


def retrieval_recall(
    sim: torch.Tensor,
    utt2img: torch.Tensor,
    ks: Sequence[int] = (1, 5, 10),
) -> dict[str, dict[str, float]]:
    """Recall@K in both directions, with pessimistic tie handling (see the module docstring).

    Args:
        sim: (N_utt, N_img) real scores of each utterance against each unique image (higher = closer).
            Must be finite. Any real dtype and any device; comparisons are made in ``sim``'s own dtype,
            so no ties are created or broken by a cast.
        utt2img: (N_utt,) integer index in [0, N_img) of each utterance's image.
        ks: the K values, positive ints.

    Returns:
        ``{"speech_to_image": {"R@1": .., ...}, "image_to_speech": {"R@1": .., ...}}``, percentages as
        floats. image->speech averages over the images that have at least one utterance.

    Runs in one pass over ``sim`` in row chunks; memory beyond ``sim`` is O(N_utt + N_img + chunk).
    """
    ks = _check_ks(ks)
    if not isinstance(sim, torch.Tensor) or not isinstance(utt2img, torch.Tensor):
        raise TypeError("sim and utt2img must be torch tensors")
    if sim.dim() != 2:
        raise ValueError(f"sim must be 2-D (N_utt, N_img), got shape {tuple(sim.shape)}")
    n_utt, n_img = sim.shape
    if n_utt == 0 or n_img == 0:
        raise ValueError(f"sim must be non-empty, got shape {tuple(sim.shape)}")
    if sim.dtype == torch.bool or sim.is_complex():
        raise TypeError(f"sim must hold real scores, got dtype {sim.dtype}")
    if utt2img.dim() != 1 or utt2img.shape[0] != n_utt:
        raise ValueError(
            f"utt2img must have shape ({n_utt},) to match sim {tuple(sim.shape)}, "
            f"got {tuple(utt2img.shape)}"
        )
    if utt2img.dtype == torch.bool or utt2img.is_floating_point() or utt2img.is_complex():
        raise TypeError(f"utt2img must be an integer tensor, got dtype {utt2img.dtype}")
    utt2img = utt2img.to(device=sim.device, dtype=torch.long)
    lo, hi = int(utt2img.min()), int(utt2img.max())
    if lo < 0 or hi >= n_img:
        raise ValueError(f"utt2img values must lie in [0, {n_img}), got range [{lo}, {hi}]")

    # Score of each utterance against its own image: the speech->image target, and the candidates for
    # the image->speech target (the best of an image's own captions).
    own = sim.gather(1, utt2img[:, None]).squeeze(1)  # (N_utt,)
    # Images without captions keep the fill value as target; they are dropped from the ranks below.
    fill = float("-inf") if own.is_floating_point() else torch.iinfo(own.dtype).min
    img_target = torch.full((n_img,), fill, dtype=own.dtype, device=sim.device)
    img_target.scatter_reduce_(0, utt2img, own, reduce="amax", include_self=True)
    has_caps = torch.bincount(utt2img, minlength=n_img) > 0  # (N_img,)

    s2i_ge = torch.empty(n_utt, dtype=torch.long, device=sim.device)  # images scoring >= target
    i2s_ge = torch.zeros(n_img, dtype=torch.long, device=sim.device)  # utterances scoring >= target
    rows = max(1, _CHUNK_ELEMS // n_img)
    for r0 in range(0, n_utt, rows):
        block = sim[r0 : r0 + rows]  # (R, N_img)
        if block.is_floating_point() and not bool(torch.isfinite(block).all()):
            raise ValueError("sim contains non-finite values (NaN or inf)")
        s2i_ge[r0 : r0 + rows] = (block >= own[r0 : r0 + rows, None]).sum(1)
        i2s_ge += (block >= img_target[None, :]).sum(0)

    # The target image itself is always counted (score == target), so subtract it.
    s2i_rank = s2i_ge - 1
    # Own captions that reach the image's target (those equal to the max) are not competitors.
    own_at_max = (own >= img_target[utt2img]).long()
    own_ge = torch.zeros(n_img, dtype=torch.long, device=sim.device).scatter_add_(0, utt2img, own_at_max)
    i2s_rank = (i2s_ge - own_ge)[has_caps]
    n_queries_img = int(has_caps.sum())

    return {
        "speech_to_image": {f"R@{k}": 100.0 * int((s2i_rank < k).sum()) / n_utt for k in ks},
        "image_to_speech": {f"R@{k}": 100.0 * int((i2s_rank < k).sum()) / n_queries_img for k in ks},
    }


def mean_r10(result: dict[str, dict[str, float]]) -> float:
    """Mean of speech->image and image->speech R@10: the checkpoint-selection criterion.

    Args:
        result: the output of ``retrieval_recall`` (computed with 10 among ``ks``).
    """
    try:
        return (result["speech_to_image"]["R@10"] + result["image_to_speech"]["R@10"]) / 2.0
    except KeyError as e:
        raise KeyError(f"mean_r10 needs R@10 in both directions of the result, missing {e}") from None


def dedupe_images(image_keys: Sequence[str]) -> tuple[list[str], torch.Tensor]:
    """Map per-utterance image keys to indices of unique images, in order of first appearance.

    Args:
        image_keys: N_utt image ids/paths, one per utterance (several utterances share an image).

    Returns:
        ``(unique_keys, index)``: ``unique_keys`` the N_img distinct keys, ``index`` (N_utt,) long with
        ``unique_keys[index[i]] == image_keys[i]``; feed ``index`` as ``utt2img`` and embed the images
        in ``unique_keys`` order.
    """
    if isinstance(image_keys, str):
        # A bare string would be deduped character by character.
        raise TypeError("image_keys must be a sequence of keys, not a single string")
    first: dict[str, int] = {}
    index = [first.setdefault(key, len(first)) for key in image_keys]
    return list(first), torch.tensor(index, dtype=torch.long)


# --------------------------------------------------------------------------------------------------
# Keyword hit rate
# --------------------------------------------------------------------------------------------------
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
            raise ValueError(f"caption_ids as a tensor must be 2-D (N, L), got {tuple(caption_ids.shape)}")
        caps = caption_ids
    else:
        rows = [torch.as_tensor(c if isinstance(c, torch.Tensor) else list(c)) for c in caption_ids]
        if len(rows) != n:
            raise ValueError(f"caption_ids has {len(rows)} captions for {n} utterances")
        for i, r in enumerate(rows):
            if r.dim() != 1:
                raise ValueError(f"caption_ids[{i}] must be 1-D, got shape {tuple(r.shape)}")
            # torch.as_tensor([]) is float32; an empty caption is fine whatever its dtype.
            if r.numel() and (r.is_floating_point() or r.is_complex() or r.dtype == torch.bool):
                raise TypeError(f"caption_ids[{i}] must hold integer ids, got dtype {r.dtype}")
        # One flat copy plus a scatter into the padded matrix: no per-row Python writes.
        lengths = torch.tensor([r.numel() for r in rows], dtype=torch.long)
        flat = torch.cat([r.reshape(-1).long().cpu() for r in rows] + [torch.empty(0, dtype=torch.long)])
        if flat.numel() and int(flat.min()) < 0:
            raise ValueError("caption_ids must be non-negative token ids")
        max_len = int(lengths.max()) if rows else 0
        caps = torch.full((n, max(1, max_len)), -1, dtype=torch.long)
        caps[torch.arange(max(1, max_len))[None, :] < lengths[:, None]] = flat
    if caps.shape[0] != n:
        raise ValueError(f"caption_ids has {caps.shape[0]} captions for {n} utterances")
    if caps.is_floating_point() or caps.is_complex() or caps.dtype == torch.bool:
        raise TypeError(f"caption_ids must hold integer ids, got dtype {caps.dtype}")
    caps = caps.long().cpu()
    if isinstance(caption_ids, torch.Tensor) and caps.numel() and int(caps.min()) < 0:
        raise ValueError("caption_ids must be non-negative token ids")
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
        raise ValueError(f"keyword_ids must be 2-D (N, K), got shape {tuple(keyword_ids.shape)}")
    n, k = keyword_ids.shape
    if n == 0 or k == 0:
        raise ValueError(f"keyword_ids must be non-empty, got shape {tuple(keyword_ids.shape)}")
    if keyword_ids.is_floating_point() or keyword_ids.is_complex() or keyword_ids.dtype == torch.bool:
        raise TypeError(f"keyword_ids must hold integer ids, got dtype {keyword_ids.dtype}")
    cand = keyword_ids.long().cpu()[:, :, None]  # (N, K, 1)
    if topk_ids is not None:
        if not isinstance(topk_ids, torch.Tensor):
            topk_ids = torch.as_tensor(topk_ids)
        if topk_ids.dim() != 3 or tuple(topk_ids.shape[:2]) != (n, k) or topk_ids.shape[2] == 0:
            raise ValueError(
                f"topk_ids must have shape ({n}, {k}, M) with M >= 1, got {tuple(topk_ids.shape)}"
            )
        if topk_ids.is_floating_point() or topk_ids.is_complex() or topk_ids.dtype == torch.bool:
            raise TypeError(f"topk_ids must hold integer ids, got dtype {topk_ids.dtype}")
        # The keyword itself is always a candidate, so the top-M rate is never below the top-1 rate
        # even if the caller's neighbour list leaves the chosen keyword out.
        cand = torch.cat([cand, topk_ids.long().cpu()], dim=2)  # (N, K, 1 + M)
    if int(cand.min()) < 0:
        raise ValueError("keyword_ids / topk_ids must be non-negative token ids")

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
        raise ValueError("caption_ids is empty")
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
            raise ValueError("candidate_ids is empty")
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


def grouped_recall(sim: torch.Tensor, row_groups: torch.Tensor, col_groups: torch.Tensor,
                   ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """Recall@K when rows and columns both come in groups and a row is right about any column of its
    own group: zero-shot speech->text, where every transcript of the utterance's image counts.

    Args:
        sim: (N_row, N_col) similarities.
        row_groups: (N_row,) integer group (image) of each row; col_groups: (N_col,) likewise.
    Rows whose group has no column are skipped. Ties are pessimistic as in ``retrieval_recall``:
    rank = number of columns of OTHER groups scoring >= the row's best own-group score.
    Returns ``{"R@1": .., "R@5": .., "R@10": ..}`` in percent.
    """
    ks = _check_ks(ks)
    if sim.dim() != 2 or sim.shape != (row_groups.numel(), col_groups.numel()):
        raise ValueError(f"sim {tuple(sim.shape)} does not match {row_groups.numel()} rows x {col_groups.numel()} columns")
    if not sim.is_floating_point():
        raise TypeError(f"sim must hold floating-point scores, got dtype {sim.dtype}")
    own_cols, own_valid = _group_columns(row_groups.view(-1).cpu(), col_groups.view(-1).cpu())
    own_cols, own_valid = own_cols.to(sim.device), own_valid.to(sim.device)
    has_cols = own_valid[:, 0]  # a group's first slot is filled iff it has a column
    count = int(has_cols.sum())
    if count == 0:
        raise ValueError("no row has a column of its own group")
    hits = torch.zeros(len(ks), dtype=torch.long)
    # Row blocks are views, never copies: a transposed ``sim`` (text->speech) is then read in place,
    # which costs about what the row-major direction does, where a gather of rows would copy it.
    step = max(1, _CHUNK_ELEMS // max(1, sim.size(1)))
    for start in range(0, sim.size(0), step):
        block = sim[start : start + step]  # (R, N_col)
        if not bool(torch.isfinite(block).all()):
            raise ValueError("sim contains NaN or infinite scores")
        cols, valid = own_cols[start : start + step], own_valid[start : start + step]  # (R, C) own columns
        own = block.gather(1, cols)
        target = own.masked_fill(~valid, float("-inf")).amax(dim=1, keepdim=True)  # best own-group score
        rank = (block >= target).sum(dim=1) - ((own >= target) & valid).sum(dim=1)
        rank = rank[has_cols[start : start + step]]  # rows without an own column are not queries
        for i, k in enumerate(ks):
            hits[i] += int((rank < k).sum())
    return {f"R@{k}": 100.0 * int(h) / count for k, h in zip(ks, hits)}


def _group_columns(row_groups: torch.Tensor, col_groups: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """The columns of each row's own group as a padded table.

    Args:
        row_groups: (N_row,) and col_groups: (N_col,) integer group ids.
    Returns:
        ``(cols, valid)``: cols (N_row, C) long column indices of the row's group, left-aligned and padded
        with column 0 where ``valid`` (N_row, C) is False. C is the largest group's column count.
    """
    _, inverse = torch.unique(torch.cat([row_groups, col_groups]), return_inverse=True)
    rows_g, cols_g = inverse[: row_groups.numel()], inverse[row_groups.numel():]
    n_groups = int(inverse.max()) + 1 if inverse.numel() else 0
    counts = torch.bincount(cols_g, minlength=n_groups)  # (G,)
    width = max(1, int(counts.max()) if counts.numel() else 1)
    # Sort columns by group; a column's slot in its group's row is its position after the group start.
    order = torch.argsort(cols_g, stable=True)
    starts = torch.cumsum(counts, 0) - counts
    slot = torch.arange(cols_g.numel()) - starts[cols_g[order]]
    table = torch.zeros(n_groups, width, dtype=torch.long)
    filled = torch.zeros(n_groups, width, dtype=torch.bool)
    table[cols_g[order], slot] = order
    filled[cols_g[order], slot] = True
    return table[rows_g], filled[rows_g]
