"""The architecture derived from a checkpoint (espnet_speechclip.authors.architecture)."""

from __future__ import annotations

import pytest
from authors_reference import _import_error, make_checkpoint

from espnet_speechclip.authors import AuthorsCheckpointError, import_checkpoint


def test_wrong_clip_width_is_named(towers, tmp_path):
    """Without the test CLIP override the checkpoint's config asks for ViT-L/14, whose text width is 768."""
    ckpt, _, _ = make_checkpoint(towers, tmp_path / "a.ckpt", "cascaded", True)
    with pytest.raises(
        AuthorsCheckpointError,
        match=r"clip\.model\.token_embedding\.weight has shape \[300, 32\]"
        r".*ViT-L-14-quickgelu \(768\)",
    ):
        import_checkpoint(ckpt, tmp_path / "exp", upstream_path=towers["hubert_path"], verify=False)


def test_config_contradicting_the_weights_is_refused(towers, tmp_path):
    def config_edit(config):
        config["model_settings"]["parallel_branch"]["transformer_args"]["dim_feedforward"] = 3072

    _import_error(
        towers,
        tmp_path,
        r"transformer_args\.dim_feedforward = 3072, but parallel_branch\.self_att\.model"
        r"\.layers\.0\.linear1\.weight implies 128",
        config_edit=config_edit,
    )
