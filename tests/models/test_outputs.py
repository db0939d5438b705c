"""models/outputs: the typed speech outputs: branches by name, the per-utterance fields, unit-count stats."""

import pytest
import torch

from espnet_speechclip.models.outputs import BRANCHES, SpeechEmbeddings, UnitCount


def test_a_branch_is_given_by_name_and_a_missing_one_names_what_the_model_has():
    cascaded = torch.nn.functional.normalize(torch.randn(2, 4), dim=-1)
    out = SpeechEmbeddings(cascaded=cascaded, keyword_ids=torch.zeros(2, 3, dtype=torch.long))
    assert out.branch("cascaded") is cascaded and list(out.branches()) == ["cascaded"]
    with pytest.raises(KeyError, match=r"no parallel embedding: the model gives \{'cascaded'"):
        out.branch("parallel")
    with pytest.raises(KeyError, match="no keyword_ids embedding"):  # a field, but not a branch
        out.branch("keyword_ids")
    both = SpeechEmbeddings(cascaded=cascaded, parallel=cascaded + 1)
    assert list(both.branches()) == list(BRANCHES) == ["parallel", "cascaded"]


def test_per_utterance_fields_are_the_fixed_width_ones_present():
    b, k, t = 2, 3, 7
    out = SpeechEmbeddings(
        parallel=torch.zeros(b, 4),
        keyword_ids=torch.zeros(b, k, dtype=torch.long),
        keyword_scores=torch.zeros(b, k),
        keyword_lengths=torch.tensor([3, 1]),
        keyword_frames=torch.zeros(b, k, 2),
        keyword_attention=torch.zeros(b, k, t),
        frame_features=torch.zeros(b, t, 5),
        frame_lengths=torch.tensor([7, 5]),
    )
    assert set(out.per_utterance()) == {"parallel", "keyword_ids", "keyword_scores", "keyword_lengths"}
    assert all(v.shape[0] == b for v in out.per_utterance().values())


def test_unit_count_stats():
    loss = torch.tensor(1.5, requires_grad=True)
    count = UnitCount(loss=loss * 2, targets=torch.tensor([3, 5, 2]), units=torch.tensor([4, 5, 0]))
    stats = count.stats()
    assert not stats["loss_quantity"].requires_grad and stats["loss_quantity"].item() == 3.0
    assert stats["units"].item() == pytest.approx(3.0)  # mean keywords per utterance
    assert stats["unit_error"].item() == pytest.approx(1.0)  # mean |units - target| = (1 + 0 + 2) / 3
