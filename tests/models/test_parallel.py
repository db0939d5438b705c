"""models/parallel: the CLS-token branch (its mask: tests/models/test_masks.py)."""

import pytest
import torch

from espnet_speechclip.models.parallel import ParallelBranch


def test_branch_embeds_to_unit_vectors_ignoring_padding():
    torch.manual_seed(0)
    branch = ParallelBranch(input_size=8, embed_dim=6, nhead=2, dim_feedforward=16, dropout=0.0).eval()
    feats = torch.randn(2, 5, 8)
    out = branch(feats, torch.tensor([5, 3]))
    assert out.shape == (2, 6)
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(2))
    # what lies past an utterance's length does not change its embedding
    changed = feats.clone()
    changed[1, 3:] = 100.0
    torch.testing.assert_close(branch(changed, torch.tensor([5, 3]))[1], out[1])
    # and each utterance is embedded on its own
    torch.testing.assert_close(branch(feats[1:, :3], torch.tensor([3]))[0], out[1], atol=1e-5, rtol=1e-5)


def test_layers_and_width_checks():
    branch = ParallelBranch(input_size=8, embed_dim=4, num_layers=2, nhead=4, dim_feedforward=16)
    assert len(branch.layers) == 2 and branch.cls.shape == (1, 1, 8)
    assert not branch.layers[0].norm_first  # post-norm, as the paper's layers
    with pytest.raises(ValueError, match="parallel branch: width 10 is not divisible by nhead 4"):
        ParallelBranch(input_size=10, embed_dim=4, nhead=4)
