"""SpeechCLIP+'s cascaded+ / hybrid+ branch: shapes, gradients, unit targets, BatchNorm over a variable
number of units, batch independence, and the quantity loss in the model's loss and stats."""

import pytest
import torch

from espnet_speechclip.models.cif_branch import CIFCascadedBranch
from espnet_speechclip.models.codebook import codebook_from_texts

FEATS, LENGTHS = (5, 14, 16), torch.tensor([14, 11, 8, 14, 3])


def make_branch(text_encoder, **kwargs):
    ids = torch.tensor(codebook_from_texts(["a red circle above a blue square", "there is a small star"]))
    cif_conf = dict(kernel_size=3, dropout=0.0, frames_per_unit=4, scaling_steps=None)
    cif_conf.update(kwargs.pop("cif_conf", {}))
    torch.manual_seed(0)
    return CIFCascadedBranch(16, text_encoder, ids, dropout=0.0, cif_conf=cif_conf, **kwargs)


def feats(seed=0):
    torch.manual_seed(seed)
    x = torch.randn(*FEATS)
    return x, LENGTHS.clone()


def test_cascaded_plus_shapes_and_padding(text_encoder):
    branch = make_branch(text_encoder).eval()
    x, lengths = feats()
    out = branch(x, lengths)
    n = out.keyword_lengths
    b, n_max = out.keyword_ids.shape
    assert b == 5 and n_max == int(n.max()) and n.min() >= 1
    assert out.embedding.shape == (5, text_encoder.embed_dim)
    torch.testing.assert_close(out.embedding.norm(dim=-1), torch.ones(5))
    valid = torch.arange(n_max)[None, :] < n[:, None]
    assert (out.keyword_ids[~valid] == -1).all() and (out.keyword_scores[~valid] == 0).all()
    assert set(out.keyword_ids[valid].tolist()) <= set(branch.codebook_ids.tolist())
    spans = out.unit_spans
    assert spans.shape == (5, n_max, 2)
    for row, k, t in zip(spans, n.tolist(), lengths.tolist()):
        # units tile the utterance from its first to (at most) its last frame
        assert row[0, 0] == 0 and row[k - 1, 1] <= t and (row[:k, 1] > row[:k, 0]).all()
        torch.testing.assert_close(row[1:k, 0], row[: k - 1, 1])
    assert out.parallel_embedding is None and branch.cls is None


def test_keyword_attention_is_each_units_share_of_the_frames(text_encoder):
    """Where a CIF keyword comes from: its unit's integration weights over the frames, as a distribution;
    asking for it changes nothing else."""
    branch = make_branch(text_encoder).eval()
    x, lengths = feats()
    with torch.no_grad():
        plain = branch(x, lengths)
        timed = branch(x, lengths, return_attention=True)
        c = branch.cif(branch.layers[0](x, padding_mask_of(lengths, x.size(1))), lengths)
    att, n = timed.attention, timed.keyword_lengths
    assert plain.attention is None and att.shape == (5, int(n.max()), x.size(1))
    for name in ("embedding", "keyword_ids", "keyword_scores", "unit_spans"):
        assert torch.equal(getattr(plain, name), getattr(timed, name)), name
    w = c["weights"].float()
    for b, (k, t) in enumerate(zip(n.tolist(), lengths.tolist())):
        torch.testing.assert_close(att[b, :k].sum(-1), torch.ones(k))
        torch.testing.assert_close(att[b, :k], w[b, :k] / w[b, :k].sum(-1, keepdim=True))
        assert (att[b, k:] == 0).all() and (att[b, :, t:] == 0).all()
        # a unit's weight lies between its firing boundaries
        for j in range(k):
            start, end = timed.unit_spans[b, j].tolist()
            frames = att[b, j].nonzero().view(-1)
            assert frames.min() >= int(start) and frames.max() < end + 1


def test_keyword_neighbours_of_variable_length_keywords(text_encoder):
    """The authors' top-5 hit rate needs each keyword's nearest codebook subwords; the padding gets -1."""
    branch = make_branch(text_encoder).eval()
    x, lengths = feats()
    with torch.no_grad():
        out = branch(x, lengths)
    ids, n = out.keyword_ids, out.keyword_lengths
    near = branch.neighbour_ids(ids)
    assert near.shape == (*ids.shape, 5)
    valid = torch.arange(ids.size(1))[None, :] < n[:, None]
    assert (near[~valid] == -1).all() and torch.equal(near[valid][:, 0], ids[valid])
    rows = torch.nn.functional.normalize(branch.codebook().float(), dim=-1)
    codes = branch.codebook_ids.tolist()
    for i in ids[valid].unique().tolist():
        cos = rows @ rows[codes.index(i)]
        expected = [codes[j] for j in cos.topk(5).indices.tolist()]
        assert near[ids == i][0].tolist() == expected


def padding_mask_of(lengths, t):
    from espnet_speechclip.models.masks import padding_mask

    return padding_mask(lengths, t)


def test_gradients_reach_every_trainable_part_through_the_frozen_text_encoder(text_encoder):
    branch = make_branch(text_encoder, projection_hidden=24).train()
    x, lengths = feats()
    out = branch(x, lengths)
    (out.embedding[:, 0].sum() + out.unit_count.loss).backward()
    for name, p in branch.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert all(p.grad is None for p in text_encoder.parameters())


def test_hybrid_plus_shares_one_attention_layer(text_encoder):
    branch = make_branch(text_encoder, parallel_dim=text_encoder.embed_dim, nhead=2).train()
    assert len(branch.layers) == 1 and branch.cls.shape == (1, 1, 16)
    x, lengths = feats()
    out = branch(x, lengths)
    assert out.parallel_embedding.shape == (5, text_encoder.embed_dim)
    torch.testing.assert_close(out.parallel_embedding.norm(dim=-1), torch.ones(5))
    out.parallel_embedding[:, 0].sum().backward()
    grads = {name: p.grad for name, p in branch.named_parameters()}
    # the parallel embedding trains the CLS, its projection and the SHARED attention, nothing of CIF
    assert grads["cls"].abs().sum() > 0 and grads["parallel_projection.weight"].abs().sum() > 0
    assert grads["layers.0.attn.in_proj_weight"].abs().sum() > 0
    assert all(grads[name] is None for name in grads if name.startswith(("cif.", "projection", "norm")))


@pytest.mark.parametrize("parallel", [False, True])
def test_eval_output_does_not_depend_on_batch_mates(text_encoder, parallel):
    branch = make_branch(text_encoder, parallel_dim=32 if parallel else None, nhead=2).eval()
    x, lengths = feats()
    batch = branch(x, lengths)
    for i in (2, 4):  # short utterances, padded in the batch
        n = int(lengths[i])
        alone = branch(x[i : i + 1, :n], lengths[i : i + 1])
        k = int(alone.keyword_lengths[0])
        assert k == int(batch.keyword_lengths[i])
        torch.testing.assert_close(alone.embedding[0], batch.embedding[i], atol=1e-5, rtol=0)
        assert torch.equal(alone.keyword_ids[0, :k], batch.keyword_ids[i, :k])
        torch.testing.assert_close(alone.unit_spans[0, :k], batch.unit_spans[i, :k])
        if parallel:
            torch.testing.assert_close(
                alone.parallel_embedding[0], batch.parallel_embedding[i], atol=1e-5, rtol=0
            )


@pytest.mark.parametrize("norm_padding", [False, True])
def test_keyword_batchnorm_statistics_over_units(text_encoder, norm_padding):
    """One BatchNorm for every unit position: its batch statistics come from the units that exist
    (norm_padding false) or from every slot of the padded (B, N) grid, as SpeechCLIP+ computes them."""
    branch = make_branch(text_encoder, norm_padding=norm_padding).train()
    seen = {}
    branch.projection.register_forward_hook(lambda m, i, o: seen.update(z=o.detach()))
    x, lengths = feats()
    out = branch(x, lengths)
    z, n = seen["z"], out.keyword_lengths
    valid = torch.arange(z.size(1))[None, :] < n[:, None]
    rows = z.reshape(-1, z.size(-1)) if norm_padding else z[valid]
    momentum = branch.norm.momentum
    torch.testing.assert_close(branch.norm.running_mean, momentum * rows.mean(0))
    assert bool((n < n.max()).any())  # the batch has padded slots, so the two variants differ


def test_batchnorm_initialised_to_codebook_statistics(text_encoder):
    branch = make_branch(text_encoder)
    rows = text_encoder.token_embedding.weight[branch.codebook_ids]
    torch.testing.assert_close(branch.norm.weight.data, rows.std(dim=0))
    torch.testing.assert_close(branch.norm.bias.data, rows.mean(dim=0))


def test_one_unit_in_a_training_batch_uses_the_running_statistics(text_encoder):
    branch = make_branch(text_encoder, unit_target="caption", cif_conf=dict(scaling_steps=None)).train()
    x, lengths = feats()
    out = branch(x[:1], lengths[:1], text_lengths=torch.tensor([3]))  # [SOT, one token, EOT]
    assert out.keyword_lengths.tolist() == [1]
    assert torch.isfinite(out.embedding).all()


def test_caption_targets(text_encoder):
    branch = make_branch(text_encoder, unit_target="caption", cif_conf=dict(scaling_steps=None)).train()
    x, lengths = feats()
    text_lengths = torch.tensor([6, 4, 9, 3, 5])  # [SOT, ..., EOT]
    out = branch(x, lengths, text_lengths=text_lengths)
    # while the alphas are scaled, each utterance gets exactly its caption's token count of units
    assert out.keyword_lengths.tolist() == (text_lengths - 2).tolist()
    assert out.unit_count.targets.tolist() == (text_lengths - 2).tolist()
    alpha_sum = out.alpha_sum
    torch.testing.assert_close(out.unit_count.loss, (alpha_sum - (text_lengths - 2)).abs().mean())
    with pytest.raises(ValueError, match="no transcripts.*text,text,text"):
        branch(x, lengths)
    # at inference the transcripts are optional: no target, no quantity loss, units from the alphas
    branch.eval()
    out = branch(x, lengths)
    assert out.unit_count is None


def test_frame_targets_are_one_unit_per_frames_per_unit(text_encoder):
    branch = make_branch(text_encoder).train()
    x, lengths = feats()
    out = branch(x, lengths)
    expected = torch.round(lengths.double() / 4).long()  # half to even, as SpeechCLIP+
    assert out.unit_count.targets.tolist() == expected.tolist()
    assert out.keyword_lengths.tolist() == expected.clamp(min=1).tolist()


def test_bad_confs_are_refused(text_encoder):
    with pytest.raises(ValueError, match="max_units 76"):
        make_branch(text_encoder, cif_conf=dict(max_units=76))
    with pytest.raises(ValueError, match="unit_target"):
        make_branch(text_encoder, unit_target="words")
    with pytest.raises(ValueError, match="not divisible"):
        make_branch(text_encoder, nhead=3)


def test_quantity_loss_in_the_models_loss_and_stats(tiny_clip):
    from helpers import TINY

    from espnet_speechclip.config import read_config
    from espnet_speechclip.models.builder import build_model

    config = read_config(TINY / "hybrid_plus.yaml")
    config["clip_conf"].update(tiny_clip)
    model = build_model(config).train()
    assert model.branches == ["parallel", "cascaded"] and model.variable_keywords
    torch.manual_seed(0)
    speech, lengths = torch.randn(4, 8000), torch.tensor([8000, 7000, 6400, 5000])
    text_lengths = torch.tensor([5, 4, 6, 3])
    loss, stats, _ = model(
        speech, lengths, image_id=torch.arange(4), image_emb=torch.randn(4, 32), text_lengths=text_lengths
    )
    expected = stats["loss_parallel"] + stats["loss_cascaded"] + 0.25 * stats["loss_quantity"]
    torch.testing.assert_close(stats["loss"], expected)
    torch.testing.assert_close(loss, expected)
    assert stats["units"] == pytest.approx((text_lengths - 2).float().mean().item())
    assert stats["unit_error"] == 0  # the first scaling_steps forwards scale the alphas to the targets
    loss.backward()
    assert model.cascaded.cif.head.weight.grad.abs().sum() > 0
