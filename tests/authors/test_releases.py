"""Which release a checkpoint is, from its content (espnet_speechclip.authors.releases)."""

from __future__ import annotations

import json

from espnet_speechclip.evaluation.published import comparison_section, identify


def test_a_renamed_release_is_identified_from_content(imported):
    """The stand-in saved as authors.ckpt is Base Flickr8k parallel by its keys, HuBERT width and stored
    corpus; RESULTS.md says what that rests on and never presents the release's name as the file's."""
    record = json.loads((imported["base_parallel"]["exp"] / "import.json").read_text())
    release = record["source"]["release"]
    assert release["identified"] and release["path"].startswith("base/flickr/parallel/")
    assert release["hub_name"] == "epoch_131-step_15443-val_recall_mean_1_36.0100.ckpt"
    assert (
        "data.dataset.name 'flickr'" in release["identified_by"]
        and "parallel branch keys" in release["identified_by"]
    )
    # the stand-in stores epoch 56 / step 6668, not the released file's 132 / 15444: said, not hidden
    assert any("epoch 56" in d for d in release["differences"])
    found, why = identify(record)
    assert found is not None and found.path == release["path"] and why == release["identified_by"]
    md = "\n".join(
        comparison_section(found, "flickr8k_test", {}, identified_by=why, source_name="authors.ckpt")
    )
    assert (
        "Imported `authors.ckpt`, identified as the authors' SpeechCLIP release `base/flickr/parallel/" in md
    )
    assert f"by {why}" in md


def test_no_release_is_said_so(imported):
    record = json.loads((imported["large_cascaded"]["exp"] / "import.json").read_text())
    record["source"]["release"] = {"identified": False, "summary": "matches none of the authors' releases"}
    assert identify(record) == (None, "matches none of the authors' releases")
