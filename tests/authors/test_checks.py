"""The frozen towers checked against the ones we build (espnet_speechclip.authors.checks)."""

from __future__ import annotations

import pytest
from authors_reference import make_checkpoint

from espnet_speechclip.authors import AuthorsCheckpointError, import_checkpoint


def test_another_clip_is_refused(towers, tmp_path):
    """Same architecture, other weights (as another open_clip tag would be): the frozen copy in the file
    tells, and the error names the first differing key."""
    from helpers import make_tiny_clip

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
