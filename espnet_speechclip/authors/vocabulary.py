"""The keyword vocabulary of a released checkpoint: the CLIP id of every row of its reduced token table.

The authors' cascaded branches quantise keywords against a reduced CLIP token table (the subwords of their
training captions, by frequency); the files do not list its ids, but hold the full table beside it, so each
reduced row is found in the full one bitwise (or the authors' usage file is checked against it).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch

from espnet_speechclip.authors.spec import AUTHORS_VQ_MASKED_POSITIONS, FULL_TABLE, REDUCED_TABLE
from espnet_speechclip.authors.unpickling import AuthorsCheckpointError, one_line
from espnet_speechclip.errors import MissingFileError
from espnet_speechclip.models.clip import SPECIAL_IDS


def _row_hashes(table: torch.Tensor) -> Dict[bytes, List[int]]:
    """Row bytes digest -> row indices, to find equal rows without comparing every pair."""
    rows = table.detach().float().contiguous().numpy()
    out: Dict[bytes, List[int]] = {}
    for i in range(rows.shape[0]):
        out.setdefault(hashlib.blake2b(rows[i].tobytes(), digest_size=16).digest(), []).append(i)
    return out


def recover_vocabulary(
    state: Mapping[str, torch.Tensor], vocab_usage: Optional[str | Path] = None
) -> Tuple[List[int], str]:
    """The CLIP vocabulary id of every row of the checkpoint's reduced token-embedding table, in its order.

    From ``vocab_usage`` (the authors' ``text_clip_vocab_usage_byfreq.npy``: rows ``(id, count)``) when given,
    checked row by row against the table; else by matching each reduced row bitwise against the full table
    ``clip.original_text_emb_weight``. Returns (ids, how they were obtained).
    """
    reduced = state[REDUCED_TABLE].detach().float()
    full = state.get(FULL_TABLE)
    if vocab_usage is not None:
        vocab_usage = Path(vocab_usage)
        if not vocab_usage.is_file():
            raise MissingFileError(f"vocabulary usage file {vocab_usage} does not exist")
        try:
            usage = np.load(vocab_usage, allow_pickle=False)
        except Exception as e:
            raise AuthorsCheckpointError(
                f"{vocab_usage} is not a numpy .npy array ({one_line(str(e))})"
            ) from None
        if usage.ndim not in (1, 2) or not np.issubdtype(usage.dtype, np.integer):
            raise AuthorsCheckpointError(
                f"{vocab_usage}: expected integer rows (id, count) or ids, got {usage.dtype} {usage.shape}"
            )
        ids = [int(i) for i in (usage[:, 0] if usage.ndim == 2 else usage)]
        if len(ids) != reduced.shape[0]:
            raise AuthorsCheckpointError(
                f"{vocab_usage} lists {len(ids)} ids but {REDUCED_TABLE} has "
                f"{reduced.shape[0]} rows: it is not this checkpoint's vocabulary"
            )
        if full is not None:
            full = full.detach().float()
            bad = [
                i
                for i, t in enumerate(ids)
                if not (0 <= t < full.shape[0] and torch.equal(reduced[i], full[t]))
            ]
            if bad:
                i = bad[0]
                raise AuthorsCheckpointError(
                    f"{vocab_usage} row {i} says id {ids[i]}, but row {i} of {REDUCED_TABLE} "
                    f"is not row {ids[i]} of {FULL_TABLE} ({len(bad)} rows disagree): "
                    f"not this checkpoint's vocabulary"
                )
            return ids, f"usage file {vocab_usage}, checked row by row against {FULL_TABLE}"
        return ids, f"usage file {vocab_usage} (unchecked: the checkpoint has no {FULL_TABLE})"
    if full is None:
        raise AuthorsCheckpointError(
            f"the checkpoint has no {FULL_TABLE} to recover the keyword vocabulary from; "
            f"give the authors' text_clip_vocab_usage_byfreq.npy (vocab_usage)"
        )
    full = full.detach().float()
    if reduced.shape[0] == full.shape[0] and torch.equal(reduced, full):
        return list(range(full.shape[0])), "the token table is the full vocabulary"
    index = _row_hashes(full)
    ids = []
    for i in range(reduced.shape[0]):
        row = reduced[i]
        digest = hashlib.blake2b(row.contiguous().numpy().tobytes(), digest_size=16).digest()
        matches = [j for j in index.get(digest, []) if torch.equal(full[j], row)]
        if not matches:
            raise AuthorsCheckpointError(
                f"row {i} of {REDUCED_TABLE} equals no row of {FULL_TABLE}: cannot recover "
                f"its vocabulary id (give vocab_usage)"
            )
        if len(matches) > 1:
            raise AuthorsCheckpointError(
                f"row {i} of {REDUCED_TABLE} equals rows {matches} of {FULL_TABLE}: its "
                f"vocabulary id is ambiguous (give vocab_usage)"
            )
        ids.append(matches[0])
    if len(set(ids)) != len(ids):
        raise AuthorsCheckpointError(f"{REDUCED_TABLE} repeats vocabulary rows: not a reduced CLIP table")
    return ids, f"matched each row of {REDUCED_TABLE} bitwise against {FULL_TABLE}"


def codebook_from_vocabulary(ids: Sequence[int]) -> List[int]:
    """Our codebook: the reduced vocabulary without the rows the authors' VQ never selects, in their order.

    Their argmax over the reduced table with those rows at -inf picks the same vocabulary id as our argmax
    over this codebook (same rows, same order, so ties break the same way)."""
    masked = set(AUTHORS_VQ_MASKED_POSITIONS)
    codebook = [int(t) for i, t in enumerate(ids) if i not in masked]
    special = [(i, t) for i, t in enumerate(ids) if i not in masked and t in SPECIAL_IDS]
    if special:
        i, t = special[0]
        raise AuthorsCheckpointError(
            f"the authors' quantiser can select special token {t} (reduced row {i}); our "
            f"codebook cannot hold special tokens, so this checkpoint cannot be expressed"
        )
    return codebook
