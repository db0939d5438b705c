"""Retrieval recall of SpeechCLIP (the only implementation in the package), as pure tensor functions.

Nothing here imports a model, ESPnet or s3prl: the module costs no more than ``import torch``, so a
scoring script, the trainer's validation, a test or a notebook can use it on embeddings.

``retrieval_recall``: ``sim`` is the (N_utt, N_img) similarity of every test utterance to every UNIQUE
test image (dedupe the images first, e.g. with ``dedupe_images``) and ``utt2img`` (N_utt,) names each
utterance's image.

* speech->image: an utterance hits@K if its image is among its top K images.
* image->speech: every image that has at least one utterance is a query (an image without utterances is
  skipped, it is not counted as a miss); it hits@K if ANY of its captions is among its top K utterances.

Ties are resolved pessimistically. The rank of a target is the number of competitors whose score is
>= the target's score, and the query hits@K iff rank < K. Competitors are the other images
(speech->image) or the utterances of OTHER images (image->speech, where the target score is the best
score over the image's own captions). A constant similarity matrix therefore scores R@1 = 0 (as long as
there is any competitor) instead of whatever a sort's tie order would happen to give, so a collapsed
model can never look good. K larger than the number of competitors gives 100.

``grouped_recall`` is the same rule when rows and columns both come in groups (zero-shot speech->text).

All percentages are Python floats computed as ``100.0 * hits / count`` from exact integer counts, so
the same similarities always give the same percentages, bit for bit (the similarities themselves are
deterministic per seed and thread count on one machine, not across CPU models or GPUs).
"""

from __future__ import annotations

from typing import Iterable, Sequence

import torch

from espnet_speechclip.errors import InputError, MissingKeyError

__all__ = ["retrieval_recall", "grouped_recall", "mean_r10", "dedupe_images"]

# Rows of ``sim`` handled per step: about 4M scores (16 MB of float32 for 5000 images), which keeps the
# boolean temporaries in cache-sized pieces while leaving each step large enough to be vectorised.
_CHUNK_ELEMS = 1 << 22


# --------------------------------------------------------------------------------------------------
# Retrieval
# --------------------------------------------------------------------------------------------------
def _check_ks(ks: Iterable[int]) -> tuple[int, ...]:
    ks = tuple(ks)
    if not ks:
        raise InputError("ks must name at least one K")
    for k in ks:
        # bool is an int subclass; True as a K is surely a mistake.
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise InputError(f"every K must be a positive int, got {k!r} in ks={ks!r}")
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
        raise InputError(f"sim must be 2-D (N_utt, N_img), got shape {tuple(sim.shape)}")
    n_utt, n_img = sim.shape
    if n_utt == 0 or n_img == 0:
        raise InputError(f"sim must be non-empty, got shape {tuple(sim.shape)}")
    if sim.dtype == torch.bool or sim.is_complex():
        raise TypeError(f"sim must hold real scores, got dtype {sim.dtype}")
    if utt2img.dim() != 1 or utt2img.shape[0] != n_utt:
        raise InputError(
            f"utt2img must have shape ({n_utt},) to match sim {tuple(sim.shape)}, got {tuple(utt2img.shape)}"
        )
    if utt2img.dtype == torch.bool or utt2img.is_floating_point() or utt2img.is_complex():
        raise TypeError(f"utt2img must be an integer tensor, got dtype {utt2img.dtype}")
    utt2img = utt2img.to(device=sim.device, dtype=torch.long)
    lo, hi = int(utt2img.min()), int(utt2img.max())
    if lo < 0 or hi >= n_img:
        raise InputError(f"utt2img values must lie in [0, {n_img}), got range [{lo}, {hi}]")

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
            raise InputError("sim contains non-finite values (NaN or inf)")
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
        raise MissingKeyError(f"mean_r10 needs R@10 in both directions of the result, missing {e}") from None


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


def grouped_recall(
    sim: torch.Tensor, row_groups: torch.Tensor, col_groups: torch.Tensor, ks: Sequence[int] = (1, 5, 10)
) -> dict[str, float]:
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
        raise InputError(
            f"sim {tuple(sim.shape)} does not match {row_groups.numel()} rows x {col_groups.numel()} columns"
        )
    if not sim.is_floating_point():
        raise TypeError(f"sim must hold floating-point scores, got dtype {sim.dtype}")
    own_cols, own_valid = _group_columns(row_groups.view(-1).cpu(), col_groups.view(-1).cpu())
    own_cols, own_valid = own_cols.to(sim.device), own_valid.to(sim.device)
    has_cols = own_valid[:, 0]  # a group's first slot is filled iff it has a column
    count = int(has_cols.sum())
    if count == 0:
        raise InputError("no row has a column of its own group")
    hits = torch.zeros(len(ks), dtype=torch.long)
    # Row blocks are views, never copies: a transposed ``sim`` (text->speech) is then read in place,
    # which costs about what the row-major direction does, where a gather of rows would copy it.
    step = max(1, _CHUNK_ELEMS // max(1, sim.size(1)))
    for start in range(0, sim.size(0), step):
        block = sim[start : start + step]  # (R, N_col)
        if not bool(torch.isfinite(block).all()):
            raise InputError("sim contains NaN or infinite scores")
        cols, valid = own_cols[start : start + step], own_valid[start : start + step]  # (R, C) own columns
        own = block.gather(1, cols)
        target = own.masked_fill(~valid, float("-inf")).amax(dim=1, keepdim=True)  # best own-group score
        rank = (block >= target).sum(dim=1) - ((own >= target) & valid).sum(dim=1)
        rank = rank[has_cols[start : start + step]]  # rows without an own column are not queries
        for i, k in enumerate(ks):
            hits[i] += int((rank < k).sum())
    return {f"R@{k}": 100.0 * int(h) / count for k, h in zip(ks, hits)}


def _group_columns(row_groups: torch.Tensor, col_groups: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The columns of each row's own group as a padded table.

    Args:
        row_groups: (N_row,) and col_groups: (N_col,) integer group ids.
    Returns:
        ``(cols, valid)``: cols (N_row, C) long column indices of the row's group, left-aligned and padded
        with column 0 where ``valid`` (N_row, C) is False. C is the largest group's column count.
    """
    _, inverse = torch.unique(torch.cat([row_groups, col_groups]), return_inverse=True)
    rows_g, cols_g = inverse[: row_groups.numel()], inverse[row_groups.numel() :]
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
