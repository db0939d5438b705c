"""Where each trainable tensor of a released checkpoint goes in our model, and the checks on the key set.

:func:`expected_trainable` is the table ``authors' key -> (our key, shape in their file, transform)`` for
the derived architecture; :func:`classify_keys` splits a state dict into that table, the frozen HuBERT and
CLIP copies and the ignored constants, and names any key left over or missing; :func:`map_state_dict`
applies the transforms.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch

from espnet_speechclip.authors.plus import PLUS_FAMILY, plus_trainable
from espnet_speechclip.authors.spec import (
    CASCADED_CLIP_PREFIX,
    CLIP_PREFIX,
    EYE_BUFFERS,
    HUBERT_PREFIX,
    PERMUTE,
    Architecture,
    Target,
    attention_and_norm_keys,
    encoder_layer_shapes,
    keyword_norm_and_quantizer,
    shape_of,
)
from espnet_speechclip.authors.unpickling import AuthorsCheckpointError


@dataclass
class Mapped:
    """One of our state-dict entries and where it came from."""

    ours: str
    authors: Optional[str]
    shape: List[int]
    transform: str


def expected_trainable(arch: Architecture) -> Dict[str, Target]:
    """authors' trainable key -> (our key, expected shape in the authors' file, transform)."""
    out: Dict[str, Target] = {
        "audio_encoder.weightedsum_layer.weights": (
            "speech_encoder.layer_sum.weights",
            [arch.hidden_states],
            "copy",
        ),
    }
    out.update(plus_trainable(arch) if arch.family == PLUS_FAMILY else speechclip_trainable(arch))
    if arch.learnable_temperature:
        out["criterion.temperature"] = (
            "loss.log_scale",
            [],
            "copy: both are log(1/temperature), no clamp in the authors' loss",
        )
    return out


def speechclip_trainable(arch: Architecture) -> Dict[str, Target]:
    """The branch keys of a SpeechCLIP (parallel / cascaded / hybrid) checkpoint."""
    d_a, d_t, d_c = arch.speech_width, arch.text_width, arch.embed_dim
    out: Dict[str, Target] = {}
    if arch.parallel is not None:
        ff = arch.parallel["dim_feedforward"]
        out["parallel_branch.cls"] = ("parallel.cls", [1, 1, d_a], "copy")
        for i in range(arch.parallel["num_layers"]):
            theirs, ours = f"parallel_branch.self_att.model.layers.{i}.", f"parallel.layers.{i}."
            for name, shape in encoder_layer_shapes(d_a, ff):
                out[theirs + name] = (ours + name, shape, "copy")
        out["parallel_branch.self_att.model.norm.weight"] = ("parallel.final_norm.weight", [d_a], "copy")
        out["parallel_branch.self_att.model.norm.bias"] = ("parallel.final_norm.bias", [d_a], "copy")
        out["parallel_branch.linear_proj.weight"] = ("parallel.projection.weight", [d_c, d_a], "copy")
        out["parallel_branch.linear_proj.bias"] = ("parallel.projection.bias", [d_c], "copy")
    if arch.cascaded is not None:
        k = arch.cascaded["num_keywords"]
        att, ours = "cascaded_branch.self_att.", "cascaded.layers.0."
        out["cascaded_branch.cls"] = ("cascaded.cls", [1, k, d_a], "copy")
        out.update(attention_and_norm_keys(att, ours, d_a))
        out["cascaded_branch.linear_proj.weight"] = ("cascaded.projection.weight", [d_t, d_a], "copy")
        out["cascaded_branch.linear_proj.bias"] = ("cascaded.projection.bias", [d_t], "copy")
        out.update(keyword_norm_and_quantizer(k, d_t))
    return out


def classify_keys(
    state: Mapping[str, torch.Tensor], arch: Architecture
) -> Tuple[Dict[str, Target], List[str], List[str], List[Dict[str, Any]]]:
    """Split the state dict: (trainable mapping, frozen HuBERT keys, frozen CLIP keys, ignored entries).

    Raises for an unknown key, a missing trainable key, or a trainable tensor of the wrong shape.
    """
    expected = expected_trainable(arch)
    hubert, clip, ignored = [], [], []
    for key, value in state.items():
        if key in EYE_BUFFERS:
            ignored.append(
                dict(
                    key=key,
                    shape=shape_of(value),
                    reason="batch-size-shaped constant mask of the authors' loss, not a weight",
                )
            )
        elif key.startswith(HUBERT_PREFIX):
            hubert.append(key)
        elif key.startswith(CLIP_PREFIX) or key.startswith(CASCADED_CLIP_PREFIX):
            rest = (
                key[len(CLIP_PREFIX) :] if key.startswith(CLIP_PREFIX) else key[len(CASCADED_CLIP_PREFIX) :]
            )
            if not (rest.startswith("model.") or rest == "original_text_emb_weight"):
                raise AuthorsCheckpointError(
                    f"unknown key {key} in the checkpoint (not part of the authors' CLIP wrapper)"
                )
            clip.append(key)
        elif key not in expected:
            raise AuthorsCheckpointError(
                f"unknown key {key} in the checkpoint (shape {shape_of(value)}): it has no "
                f"counterpart in a {arch.model} SpeechCLIP"
            )
    for key, (_, shape, _) in expected.items():
        if key not in state:
            if key == "cascaded_branch.vector_quantizer.curr_temp":  # a scheduled temperature is no tensor
                continue
            raise AuthorsCheckpointError(
                f"missing key {key} in the checkpoint (a {arch.model} SpeechCLIP has it)"
            )
        got = shape_of(state[key])
        if got != shape and not (key == "criterion.temperature" and got in ([], [1])):
            raise AuthorsCheckpointError(
                f"shape mismatch for {key}: the checkpoint has {got}, the architecture "
                f"derived from it needs {shape}"
            )
    for key in [k for k in clip if k.startswith(CASCADED_CLIP_PREFIX)]:
        twin = CLIP_PREFIX + key[len(CASCADED_CLIP_PREFIX) :]
        if twin not in state:
            raise AuthorsCheckpointError(
                f"{key} has no counterpart {twin}: the cascaded branch's CLIP must be the model's CLIP"
            )
        a, b = state[key], state[twin]
        if a.shape != b.shape or not torch.equal(a, b):
            raise AuthorsCheckpointError(
                f"{key} differs from {twin}: the cascaded branch's CLIP must be the model's"
            )
    twins = [k for k in clip if k.startswith(CASCADED_CLIP_PREFIX)]
    if twins:
        ignored.append(
            dict(
                key=CASCADED_CLIP_PREFIX + "*",
                count=len(twins),
                reason=f"equal to {CLIP_PREFIX}* key for key (the cascaded branch holds the model's CLIP)",
            )
        )
    clip = [k for k in clip if k.startswith(CLIP_PREFIX)]
    return expected, hubert, clip, ignored


def map_state_dict(
    state: Mapping[str, torch.Tensor],
    arch: Architecture,
    expected: Mapping[str, Target],
    codebook: Optional[Sequence[int]],
) -> Tuple[Dict[str, torch.Tensor], List[Mapped]]:
    """Our trainable state dict (fp32 CPU tensors) and the mapping record."""
    ours: Dict[str, torch.Tensor] = {}
    record: List[Mapped] = []
    for key, (target, _, transform) in expected.items():
        if key not in state or transform == "config value":
            if key in state:
                record.append(Mapped(target, key, shape_of(state[key]), transform))
            continue
        value = state[key].detach()
        value = value.float() if value.is_floating_point() else value.long()
        if key == "criterion.temperature":
            value = value.reshape(())
        elif transform.startswith(PERMUTE):
            # The authors' BatchNorm feature j is (dimension j // K, keyword j % K); ours is k * D_t + d.
            k, d_t = arch.cascaded["num_keywords"], arch.text_width
            value = value.reshape(d_t, k).t().reshape(-1)
        ours[target] = value.clone().contiguous()
        record.append(Mapped(target, key, shape_of(value), transform))
    if arch.cascaded is not None:
        ours["cascaded.codebook_ids"] = torch.tensor(list(codebook or []), dtype=torch.long)
        record.append(
            Mapped(
                "cascaded.codebook_ids",
                None,
                [len(codebook or [])],
                "recovered vocabulary ids (authors' order, VQ-masked positions removed)",
            )
        )
    return ours, record
