"""The cascaded branch: quantiser, keyword BatchNorm, keywords through the frozen text tower."""

import pytest
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
    out.embedding[:, 0].sum().backward()
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
    assert set(out.keyword_ids.flatten().tolist()) <= allowed
    assert not set(SPECIAL_IDS) & allowed
    full = full_codebook(text_encoder.vocab_size)
    assert len(full) == text_encoder.vocab_size - 3 and SOT_ID not in full and EOT_ID not in full


def test_keyword_attention_is_a_distribution_over_the_frames(text_encoder):
    branch = make_branch(text_encoder).eval()
    torch.manual_seed(1)
    feats, lengths = torch.randn(3, 10, 16), torch.tensor([10, 6, 2])
    with torch.no_grad():
        att = branch(feats, lengths, return_attention=True).attention
    assert att.shape == (3, 4, 10)
    torch.testing.assert_close(att.sum(-1), torch.ones(3, 4))
    for b, n in enumerate(lengths.tolist()):
        assert (att[b, :, n:] == 0).all() and (att[b, :, :n] > 0).all()
    # an utterance's attention does not depend on its batch-mates
    with torch.no_grad():
        alone = branch(feats[1:2, :6], lengths[1:2], return_attention=True).attention
    torch.testing.assert_close(alone[0], att[1, :, :6])


def _expected_last_layer_attention(branch, feats, lengths):
    """Each keyword's attention in the last layer, computed by hand from the layer's projections:
    softmax(q k^T / sqrt(d_h)) per head over the unpadded keys, mean over heads, CLS keys dropped,
    renormalised over the frames."""
    from espnet_speechclip.models.masks import padding_mask

    k = branch.num_keywords
    captured = {}
    last = branch.layers[-1]
    handle = last.register_forward_pre_hook(lambda mod, args: captured.update(x=args[0]))
    branch(feats, lengths)
    handle.remove()
    x = captured["x"]  # (B, K + T, D): the last layer's input
    mha = last.attn
    w_q, w_k, _ = mha.in_proj_weight.chunk(3)
    b_q, b_k, _ = mha.in_proj_bias.chunk(3)
    heads, d = mha.num_heads, x.size(-1) // mha.num_heads
    q = (x[:, :k] @ w_q.t() + b_q).view(x.size(0), k, heads, d).transpose(1, 2)
    key = (x @ w_k.t() + b_k).view(x.size(0), -1, heads, d).transpose(1, 2)
    logits = q @ key.transpose(-1, -2) / d**0.5  # (B, H, K, K + T)
    logits = logits.masked_fill(padding_mask(lengths, feats.size(1), prefix=k)[:, None, None], float("-inf"))
    frames = logits.softmax(-1).mean(1)[:, :, k:]
    return frames / frames.sum(-1, keepdim=True)


def test_keyword_attention_is_the_last_layers_head_mean_over_the_frames(text_encoder):
    torch.manual_seed(0)
    ids = torch.tensor(codebook_from_texts(["a red circle above a blue square"]))
    branch = CascadedBranch(16, text_encoder, ids, num_keywords=3, num_layers=2, nhead=2).eval()
    feats, lengths = torch.randn(3, 10, 16), torch.tensor([10, 7, 4])
    with torch.no_grad():
        plain = branch(feats, lengths)
        timed = branch(feats, lengths, return_attention=True)
        expected = _expected_last_layer_attention(branch, feats, lengths)
    att = timed.attention
    assert att.shape == (3, 3, 10) and plain.attention is None
    torch.testing.assert_close(att, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(att.sum(-1), torch.ones(3, 3))
    assert att[1, :, 7:].abs().max() == 0 and att[2, :, 4:].abs().max() == 0  # padding gets none
    # asking for the attention changes nothing else, bit for bit
    for name in ("embedding", "keyword_ids", "keyword_scores"):
        assert torch.equal(getattr(plain, name), getattr(timed, name)), name


def test_training_never_computes_keyword_attention(text_encoder, monkeypatch):
    from espnet_speechclip.models.cascaded import AttentionBlock

    def refuse(*args, **kwargs):
        raise AssertionError("attention weights computed in a training step")

    monkeypatch.setattr(AttentionBlock, "query_attention", refuse)
    branch = make_branch(text_encoder).train()
    out = branch(torch.randn(2, 6, 16), torch.tensor([6, 4]))
    out.embedding.sum().backward()
    assert out.attention is None


def test_attention_block_is_layernorm_of_attention_plus_input_in_training():
    """The authors' block is LayerNorm(MHA(x) + x): in training only the attention weights drop out
    (inside the MHA), never the attention output before the residual."""
    from espnet_speechclip.models.cascaded import AttentionBlock

    torch.manual_seed(0)
    block = AttentionBlock(16, nhead=1, dim_feedforward=0, dropout=0.5).train()
    x = torch.randn(3, 7, 16)
    mask = torch.tensor([[False] * 7, [False] * 5 + [True] * 2, [False] * 2 + [True] * 5])
    torch.manual_seed(1)
    ours = block(x, mask)
    torch.manual_seed(1)  # the same attention-weight dropout draw
    attn, _ = block.attn(x, x, x, key_padding_mask=mask, need_weights=False)
    torch.testing.assert_close(ours, block.norm(attn + x), atol=1e-6, rtol=0)


def test_keyword_neighbours_are_the_nearest_codebook_subwords(text_encoder):
    """The authors' keyword hit rate counts a hit when any of the 5 nearest codebook subwords (cosine) of
    a quantised keyword is in the caption; the branch reports them: (B, K, 5) CLIP ids, nearest first."""
    from espnet_speechclip.models.cascaded import KEYWORD_NEIGHBOURS

    assert KEYWORD_NEIGHBOURS == 5
    branch = make_branch(text_encoder).eval()
    out = branch(torch.randn(3, 9, 16), torch.full((3,), 9))
    near = branch.neighbour_ids(out.keyword_ids)
    assert near.shape == (3, 4, 5)
    assert torch.equal(near[..., 0], out.keyword_ids)  # a keyword is its own nearest subword
    rows = torch.nn.functional.normalize(branch.codebook().float(), dim=-1)
    ids = branch.codebook_ids.tolist()
    for b in range(3):
        for k in range(4):
            cos = rows @ rows[ids.index(int(out.keyword_ids[b, k]))]
            assert near[b, k].tolist() == [ids[i] for i in cos.topk(5).indices.tolist()]


def test_quantizer_cosine_is_float32_under_autocast():
    """Under mixed precision the keyword-to-codebook cosine stays fp32 (as the authors'
    F.cosine_similarity, which autocast runs in fp32): a half-precision matmul could pick another row."""
    torch.manual_seed(0)
    codebook = torch.randn(500, 16)
    z = torch.randn(4, 8, 16)
    reference = CosineVectorQuantizer(0.1).eval()(z, codebook)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = CosineVectorQuantizer(0.1).eval()(z, codebook)
    assert out["similarity"].dtype == torch.float32
    assert torch.equal(out["index"], reference["index"])


def test_shared_parallel_cls_goes_through_the_same_attention(text_encoder):
    """SpeechCLIP+'s hybrid: [P, CLS_1..CLS_K, frames] through one block; the parallel embedding is the
    projected P output, the keywords are what the K-token branch makes of positions 1..K."""
    torch.manual_seed(0)
    ids = torch.tensor(full_codebook(text_encoder.vocab_size))
    branch = CascadedBranch(16, text_encoder, ids, num_keywords=3, parallel_dim=text_encoder.embed_dim).eval()
    feats, lengths = torch.randn(2, 7, 16), torch.tensor([7, 4])
    with torch.no_grad():
        out = branch(feats, lengths)
        x = torch.cat([branch.parallel_cls.expand(2, -1, -1), branch.cls.expand(2, -1, -1), feats], 1)
        pad = torch.nn.functional.pad(torch.arange(7)[None] >= lengths[:, None], (4, 0))
        x = branch.layers[0](x, pad)
        p = torch.nn.functional.normalize(branch.parallel_projection(x[:, 0]), dim=-1)
        z = branch.norm(branch.projection(x[:, 1:4]).reshape(2, -1)).view(2, 3, -1)
    torch.testing.assert_close(out.parallel_embedding, p)
    assert torch.equal(out.keyword_ids, branch.codebook_ids[branch.quantizer(z, branch.codebook())["index"]])


def test_hybrid_shared_builds_and_trains_from_its_config(tiny_clip):
    """The ESPnet task's builder makes model ``hybrid_shared``: both embeddings, a training step."""
    from pathlib import Path

    from espnet_speechclip.config import read_config
    from espnet_speechclip.models.builder import build_model

    config = read_config(Path(__file__).resolve().parents[2] / "conf/tiny/hybrid_shared.yaml")
    config["clip_conf"] = dict(tiny_clip)
    model = build_model(config)
    assert (
        model.branches == ["parallel", "cascaded"]
        and model.cascaded.parallel_projection[0].out_features == 32
    )
    speech, lengths = torch.randn(3, 16000), torch.tensor([16000, 12000, 9000])
    loss, stats, _ = model(
        speech, lengths, image_id=torch.arange(3), image_emb=torch.randn(3, model.text_encoder.embed_dim)
    )
    loss.backward()
    assert {"loss_parallel", "loss_cascaded"} <= set(stats)
    assert model.cascaded.parallel_cls.grad is not None


@pytest.mark.parametrize("parallel_dim", [None, 8])  # hybrid: a parallel CLS in front of the keywords
def test_keyword_cosines_hide_frames_as_if_they_were_cut_out(text_encoder, parallel_dim, monkeypatch):
    ids = codebook_from_texts(["a red circle above a blue square", "there is a small green triangle"])
    torch.manual_seed(0)
    branch = CascadedBranch(
        16, text_encoder, torch.tensor(ids), num_keywords=3, nhead=1, parallel_dim=parallel_dim
    ).eval()
    torch.manual_seed(1)
    feats = torch.randn(9, 16)
    hidden = torch.zeros(3, 9, dtype=torch.bool)
    hidden[1, 2:5] = True
    hidden[2] = True  # every frame hidden: the keyword tokens alone, still defined
    with torch.no_grad():
        kw = branch.keywords(feats[None], torch.tensor([9]))[0][0]  # (K, D_t)
        keyword_ids = branch(feats[None], torch.tensor([9])).keyword_ids[0]
        cos = branch.keyword_cosines(feats, keyword_ids, hidden)
        cut = branch.keywords(torch.cat([feats[:2], feats[5:]])[None], torch.tensor([6]))[0][0]
    rows = text_encoder.token_embedding.weight[keyword_ids]
    assert cos.shape == (3, 3) and torch.isfinite(cos).all()
    # nothing hidden: the cosine of each keyword vector with its codebook row
    torch.testing.assert_close(cos[0], torch.nn.functional.cosine_similarity(kw, rows, dim=-1))
    # frames 2-4 hidden: the keywords of the utterance with those frames cut out
    torch.testing.assert_close(cos[1], torch.nn.functional.cosine_similarity(cut, rows, dim=-1))
    assert not torch.allclose(cos[0], cos[1])
    # a long utterance's stretches go through in several passes, with the same cosines
    monkeypatch.setattr("espnet_speechclip.models.cascaded.OCCLUSION_BUDGET", 1)  # one row per pass
    with torch.no_grad():
        torch.testing.assert_close(branch.keyword_cosines(feats, keyword_ids, hidden), cos)
