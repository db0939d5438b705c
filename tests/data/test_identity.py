"""A data dir's identity is its content: the lists and the files they name, not their paths."""

import shutil

from espnet_speechclip.data.identity import datadir_identity


def _datadir(root, audio=b"RIFF-one"):
    root.mkdir()
    (root / "a.wav").write_bytes(audio)
    (root / "x.png").write_bytes(b"png")
    (root / "wav.scp").write_text(f"u1 {root / 'a.wav'}\n")
    (root / "img.scp").write_text(f"i1 {root / 'x.png'}\n")
    (root / "utt2img").write_text("u1 i1\n")
    return root


def test_identity_follows_content(tmp_path):
    first = datadir_identity(_datadir(tmp_path / "d1"))
    assert set(first) == {"wav.scp", "img.scp", "utt2img", "audio", "images"}
    other = datadir_identity(_datadir(tmp_path / "d2", audio=b"RIFF-two"))
    assert other["audio"] != first["audio"] and other["images"] == first["images"]
    # the same files at another place: the lists differ (they name the paths), the content does not
    shutil.copytree(tmp_path / "d1", tmp_path / "d3")
    moved = datadir_identity(tmp_path / "d3")
    assert moved["audio"] == first["audio"] and moved["images"] == first["images"]
