"""The length masks every padded batch uses."""

import torch

from espnet_speechclip.models.masks import padding_mask, valid_mask


def test_valid_and_padding_masks_are_complements_after_the_prefix():
    lengths = torch.tensor([3, 0, 5])
    valid = valid_mask(lengths, 5)
    assert valid.tolist() == [[True] * 3 + [False] * 2, [False] * 5, [True] * 5]
    pad = padding_mask(lengths, 5, prefix=2)
    assert pad.shape == (3, 7) and not pad[:, :2].any()  # CLS slots are never padding
    assert torch.equal(pad[:, 2:], ~valid)
