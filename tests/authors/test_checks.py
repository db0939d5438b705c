"""The frozen towers checked against the ones we build (espnet_speechclip.authors.checks)."""

from __future__ import annotations

import pytest
import torch
from authors_reference import make_checkpoint

from espnet_speechclip.authors import AuthorsCheckpointError, import_checkpoint


def test_another_clip_is_refused(towers, tmp_path):
    """Same architecture, other weights (as another open_clip tag would be): the frozen copy in the file
    tells, and the error names the first differing key."""
    from helpers.stand_ins import make_tiny_clip

    other = make_tiny_clip(tmp_path / "other-clip.pt", seed=1)
    ckpt, _, _ = make_checkpoint(towers, tmp_path / "a.ckpt", "parallel", False)
    with pytest.raises(AuthorsCheckpointError, match=r"clip\.model\.\S+ differs from the CLIP we build"):
        import_checkpoint(
            ckpt,
            tmp_path / "exp",
            upstream_path=towers["hubert_path"],
            clip_pretrained=other["pretrained"],
            clip_model_name="tiny-clip",
            clip_config_file=other["config_file"],
        )
    assert not (tmp_path / "exp").exists()


@pytest.mark.parametrize("verify", [True, False])
def test_clip_file_of_another_size_is_one_line(towers, tmp_path, verify):
    """A local CLIP weights file of another architecture (text width 48 for a width-32 CLIP): one error
    naming the file and the widths expected, before open_clip's loader asserts, with or without the
    tower check."""
    clip = dict(towers["clip"])
    ctx, width = clip["positional_embedding"].shape
    clip["positional_embedding"] = torch.zeros(ctx, width + 16)
    clip["token_embedding.weight"] = torch.zeros(clip["token_embedding.weight"].shape[0], width + 16)
    wrong = tmp_path / "wrong-clip.pt"
    torch.save(clip, wrong)
    ckpt, _, _ = make_checkpoint(towers, tmp_path / "a.ckpt", "parallel", False)
    with pytest.raises(
        AuthorsCheckpointError, match=rf"CLIP weights {wrong} do not fit tiny-clip: .* text width {width}"
    ):
        import_checkpoint(
            ckpt,
            tmp_path / "exp",
            upstream_path=towers["hubert_path"],
            clip_pretrained=str(wrong),
            clip_model_name="tiny-clip",
            clip_config_file=towers["clip_conf"]["config_file"],
            verify=verify,
        )
