"""The keyword vocabulary recovered from a checkpoint (espnet_speechclip.authors.vocabulary)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from authors_layout import EOT, SOT
from authors_reference import run_import

from espnet_speechclip.authors import AuthorsCheckpointError


def test_vocabulary_recovered_in_the_authors_order(imported, towers, tmp_path):
    """The codebook is the reduced vocabulary in the authors' order minus the rows their VQ masks; the same
    from the usage file; a usage file of another vocabulary is refused."""
    from espnet_speechclip.models.codebook import read_codebook

    case = imported["large_cascaded"]
    vocab = case["vocab"]
    expected = [int(i) for r, i in enumerate(vocab[:, 0]) if r not in (0, 2, 3)]
    assert read_codebook(case["exp"] / "codebook.txt", 49408) == expected
    assert case["model"].cascaded.codebook_ids.tolist() == expected
    record = json.loads((case["exp"] / "import.json").read_text())
    assert record["vocabulary"]["vq_masked_ids"] == [0, SOT, EOT]
    assert record["vocabulary"]["source"].startswith("matched each row")

    usage = tmp_path / "text_clip_vocab_usage_byfreq.npy"
    np.save(usage, vocab)
    exp = run_import(towers, case["ckpt"], tmp_path / "from_usage", vocab_usage=usage, verify=False)
    assert read_codebook(exp / "codebook.txt", 49408) == expected

    swapped = vocab.copy()
    swapped[[10, 11]] = swapped[[11, 10]]
    np.save(usage, swapped)
    with pytest.raises(AuthorsCheckpointError, match="row 10"):
        run_import(towers, case["ckpt"], tmp_path / "bad", vocab_usage=usage, verify=False)
    np.save(usage, vocab[:-1])
    with pytest.raises(
        AuthorsCheckpointError, match="lists 299 ids but clip.model.token_embedding.weight has 300"
    ):
        run_import(towers, case["ckpt"], tmp_path / "bad", vocab_usage=usage, verify=False)
    assert not (tmp_path / "bad").exists()
