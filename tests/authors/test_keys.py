"""Key mapping and the key-set checks (espnet_speechclip.authors.keys)."""

from __future__ import annotations

import torch
from authors_reference import _import_error


def test_unknown_key_is_named(towers, tmp_path):
    def edit(sd):
        sd["parallel_branch.extra_proj.weight"] = torch.zeros(2, 2)

    _import_error(towers, tmp_path, r"unknown key parallel_branch\.extra_proj\.weight", edit=edit)


def test_shape_mismatch_is_named(towers, tmp_path):
    def edit(sd):
        sd["parallel_branch.linear_proj.weight"] = torch.zeros(32, 60)

    _import_error(
        towers,
        tmp_path,
        r"shape mismatch for parallel_branch\.linear_proj\.weight: the checkpoint "
        r"has \[32, 60\]",
        edit=edit,
    )


def test_layer_weight_count_must_match_the_upstream(towers, tmp_path):
    def edit(sd):
        sd["audio_encoder.weightedsum_layer.weights"] = torch.zeros(
            25
        )  # HuBERT Large's 25 for a 2-layer HuBERT

    _import_error(
        towers,
        tmp_path,
        r"shape mismatch for audio_encoder\.weightedsum_layer\.weights: the checkpoint "
        r"has \[25\], the architecture derived from it needs \[3\]",
        edit=edit,
    )
