"""Checks that the frozen towers a checkpoint was trained with are the ones our config builds.

The authors' files carry the frozen HuBERT and CLIP; the importer rebuilds them from public names (or the
user's local files) and compares them value by value, and checks a local CLIP weights file's widths before
open_clip reads it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional, Sequence

import torch

from espnet_speechclip.authors.spec import CLIP_PREFIX, HUBERT_PREFIX, REDUCED_TABLE, shape_of
from espnet_speechclip.authors.unpickling import AuthorsCheckpointError
from espnet_speechclip.weights import load_file


def _compare_frozen(
    what: str,
    ckpt: Mapping[str, torch.Tensor],
    keys: Sequence[str],
    prefix: str,
    ours: Mapping[str, torch.Tensor],
    rename: Callable[[str], Optional[str]],
    special: Optional[Mapping[str, torch.Tensor]] = None,
) -> Dict[str, Any]:
    """Compare frozen tensors of the checkpoint with the tower we built; raise naming the first mismatch."""
    checked, skipped = 0, []
    special = special or {}
    for key in keys:
        ours_key = rename(key[len(prefix) :])
        if ours_key is None:
            skipped.append(key)
            continue
        if key in special:
            mine = special[key]
        elif ours_key in ours:
            mine = ours[ours_key]
        else:
            raise AuthorsCheckpointError(f"unknown key {key}: the {what} we build has no {ours_key}")
        theirs = ckpt[key]
        if theirs.shape != mine.shape:
            raise AuthorsCheckpointError(
                f"shape mismatch for {key}: the checkpoint has {shape_of(theirs)}, the {what} "
                f"we build has {shape_of(mine)}: the checkpoint was trained with another {what}"
            )
        a, b = theirs.detach().float(), mine.detach().float().to(theirs.device)
        if not torch.allclose(a, b, rtol=1e-4, atol=1e-6):
            diff = float((a - b).abs().max())
            raise AuthorsCheckpointError(
                f"{key} differs from the {what} we build (max abs difference {diff:.3g}): the "
                f"checkpoint was trained with another {what}"
            )
        checked += 1
    return dict(checked=checked, skipped=skipped)


def check_frozen_towers(
    model: torch.nn.Module,
    state: Mapping[str, torch.Tensor],
    hubert_keys: Sequence[str],
    clip_keys: Sequence[str],
    vocabulary: Sequence[int],
) -> Dict[str, Any]:
    """The checkpoint's frozen HuBERT and CLIP must be the towers our config builds (value by value)."""
    upstream = model.speech_encoder.upstream.expert.model.state_dict()
    hubert = _compare_frozen("HuBERT", state, hubert_keys, HUBERT_PREFIX, upstream, lambda k: k)
    text = model.text_encoder.state_dict()
    visual = model.image_encoder.visual.state_dict() if model.image_encoder is not None else {}
    towers = {**text, **{"visual." + k: v for k, v in visual.items()}}
    table = text["token_embedding.weight"]

    def rename(rest: str) -> Optional[str]:
        if rest == "model.logit_scale":
            return None  # CLIP's own logit scale is unused by SpeechCLIP
        if rest == "original_text_emb_weight":
            return "token_embedding.weight"
        return rest[len("model.") :]

    special = {REDUCED_TABLE: table[torch.tensor(list(vocabulary), dtype=torch.long)]}
    clip = _compare_frozen("CLIP", state, clip_keys, CLIP_PREFIX, towers, rename, special)
    return dict(hubert=hubert, clip=clip)


# (key in an open_clip / OpenAI state dict, dimension, which width it must have)
_CLIP_FILE_WIDTHS = (
    ("positional_embedding", 1, "width"),
    ("token_embedding.weight", 1, "width"),
    ("text_projection", 0, "width"),
    ("text_projection", 1, "embed_dim"),
    ("positional_embedding", 0, "context_length"),
)


def check_clip_file(path: Path, model_name: str, expected: Mapping[str, int]) -> None:
    """A local CLIP weights file must have the text widths of ``model_name`` (``expected``: width,
    embed_dim, context_length): one line naming the file and the widths, before open_clip would stop on
    an assertion deep inside its loader. A file that is no plain state dict (a TorchScript archive) is
    left to open_clip."""
    try:
        obj = load_file(path, "CLIP weights file", mmap=True)
    except Exception:  # TorchScript or another format open_clip reads itself
        return
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping):
        return
    state = {k[len("module.") :] if k.startswith("module.") else k: v for k, v in obj.items()}
    for key, dim, size in _CLIP_FILE_WIDTHS:
        value = state.get(key)
        if isinstance(value, torch.Tensor) and value.dim() > dim and int(value.shape[dim]) != expected[size]:
            raise AuthorsCheckpointError(
                f"CLIP weights {path} do not fit {model_name}: {key} has shape {shape_of(value)}, expected "
                f"text width {expected['width']}, joint width {expected['embed_dim']} and context "
                f"{expected['context_length']}"
            )
