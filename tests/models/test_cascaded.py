"""The cascaded branch: quantiser, keyword BatchNorm, keywords through the frozen text tower."""

import torch

from espnet_speechclip.models.cascaded import CascadedBranch, CosineVectorQuantizer
from espnet_speechclip.models.clip import (
    EOT_ID,
    SOT_ID,
    SPECIAL_IDS,
)
from espnet_speechclip.models.codebook import (
    codebook_from_texts,
    full_codebook,
)


def make_branch(text_encoder, ids=None, k=4):
    ids = torch.tensor(
        ids
        if ids is not None
        else codebook_from_texts(["a red circle above a blue square", "there is a small green triangle"])
    )
    torch.manual_seed(0)
    return CascadedBranch(16, text_encoder, ids, num_keywords=k, nhead=1)


def test_quantizer_forward_is_exactly_a_codebook_row_and_backward_is_soft():
    torch.manual_seed(0)
    codebook = torch.randn(20, 8)
    z = torch.randn(3, 4, 8, requires_grad=True)
    vq = CosineVectorQuantizer(tau=0.1).train()
    out = vq(z, codebook)
    assert torch.equal(out["quantized"], codebook[out["index"]])  # bitwise, not approximately
    out["quantized"].sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    vq.eval()
    z2 = z.detach()
    out2 = vq(z2, codebook)
    assert torch.equal(out2["quantized"], codebook[out2["index"]])
    cos = torch.nn.functional.normalize(z2, dim=-1) @ torch.nn.functional.normalize(codebook, dim=-1).t()
    assert torch.equal(out2["index"], cos.argmax(-1))


def test_gradient_reaches_keyword_head_through_frozen_text_encoder(text_encoder):
    branch = make_branch(text_encoder).train()
    feats, lengths = torch.randn(5, 12, 16), torch.tensor([12, 10, 8, 12, 3])
    out = branch(feats, lengths)
    out["embedding"][:, 0].sum().backward()
    for name in ("cls", "projection.weight", "norm.weight", "norm.bias"):
        grad = dict(branch.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name
    assert all(p.grad is None for p in text_encoder.parameters())


def test_batchnorm_init_is_per_dimension_codebook_statistics(text_encoder):
    branch = make_branch(text_encoder, k=3)
    rows = text_encoder.token_embedding.weight[branch.codebook_ids]
    d = text_encoder.width
    gamma = branch.norm.weight.view(3, d)
    beta = branch.norm.bias.view(3, d)
    for slot in range(3):  # every slot carries the statistics of dim d at feature slot*D_t + d
        torch.testing.assert_close(gamma[slot], rows.std(dim=0))
        torch.testing.assert_close(beta[slot], rows.mean(dim=0))


def test_keywords_come_from_the_codebook_and_never_special(text_encoder):
    branch = make_branch(text_encoder).eval()
    out = branch(torch.randn(6, 9, 16), torch.full((6,), 9))
    allowed = set(branch.codebook_ids.tolist())
    assert set(out["keyword_ids"].flatten().tolist()) <= allowed
    assert not set(SPECIAL_IDS) & allowed
    full = full_codebook(text_encoder.vocab_size)
    assert len(full) == text_encoder.vocab_size - 3 and SOT_ID not in full and EOT_ID not in full


def test_keyword_attention_is_a_distribution_over_the_frames(text_encoder):
    branch = make_branch(text_encoder).eval()
    torch.manual_seed(1)
    feats, lengths = torch.randn(3, 10, 16), torch.tensor([10, 6, 2])
    att = branch.keyword_attention(feats, lengths)
    assert att.shape == (3, 4, 10)
    torch.testing.assert_close(att.sum(-1), torch.ones(3, 4))
    for b, n in enumerate(lengths.tolist()):
        assert (att[b, :, n:] == 0).all() and (att[b, :, :n] > 0).all()
    # an utterance's attention does not depend on its batch-mates
    torch.testing.assert_close(branch.keyword_attention(feats[1:2, :6], lengths[1:2])[0], att[1, :, :6])
