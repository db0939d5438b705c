"""bin/make_codebook: recipe stage 4, the cascaded codebook from the training transcripts."""

import logging

from espnet_speechclip.bin import make_codebook
from espnet_speechclip.models.codebook import codebook_from_texts, read_codebook

VOCAB = 49408  # CLIP's


def test_codebook_of_the_transcripts_and_an_idle_rerun(tmp_path, caplog):
    text = tmp_path / "text"
    text.write_text("u1 a red square\nu2 a blue circle on the left\n")
    out = tmp_path / "codebook" / "train.txt"
    out.parent.mkdir()
    with caplog.at_level(logging.INFO):
        make_codebook.main(["--text", str(text), "--out", str(out)])
    ids = read_codebook(out, VOCAB)
    assert ids == codebook_from_texts(["a red square", "a blue circle on the left"])
    assert f"wrote {out}: {len(ids)} subwords" in caplog.text
    mtime = out.stat().st_mtime_ns
    caplog.clear()
    with caplog.at_level(logging.INFO):
        make_codebook.main(["--text", str(text), "--out", str(out)])
    assert f"{out} is up to date ({len(ids)} subwords)" in caplog.text
    assert out.stat().st_mtime_ns == mtime and sorted(p.name for p in out.parent.iterdir()) == ["train.txt"]
    # other transcripts: a new codebook
    text.write_text("u1 a green star\n")
    make_codebook.main(["--text", str(text), "--out", str(out)])
    assert read_codebook(out, VOCAB) == codebook_from_texts(["a green star"])
