"""The frozen s3prl upstream: the frames each utterance has, and HuBERT Large's raw last layer."""

import pytest
import torch
from helpers.stand_ins import make_pre_norm_hubert

from espnet_speechclip.models.upstream import Upstream

# lengths around HuBERT's frame boundaries (400 + 320 k samples) and the importer tests' lengths
LENGTHS = [400, 401, 719, 720, 721, 1039, 1040, 8000, 9700, 12345, 16000]


@pytest.fixture(scope="module")
def hubert(tiny_hubert):
    return Upstream("hubert_local", str(tiny_hubert))


def test_hubert_frames_are_its_conv_output_lengths(hubert):
    """An utterance of n samples has the (n - 400) // 320 + 1 frames HuBERT's conv stack makes of it,
    not ceil(n / 320) (which invented a repeated last frame) nor round(n / 320)."""
    n = torch.tensor(LENGTHS)
    assert hubert.frame_lengths(n).tolist() == [(x - 400) // 320 + 1 for x in LENGTHS]
    for x in LENGTHS:
        alone = hubert.expert([torch.randn(x)])["hidden_states"][0]
        assert alone.shape[1] == int(hubert.frame_lengths(torch.tensor([x]))), x


def test_hubert_batch_has_each_utterance_own_frames(hubert):
    torch.manual_seed(0)
    lengths = torch.tensor([9700, 16000, 12345])
    speech = torch.zeros(3, 16000)
    for i, x in enumerate(lengths.tolist()):
        speech[i, :x] = torch.randn(x)
    hs, frames = hubert(speech, lengths)
    assert frames.tolist() == [30, 49, 38]
    assert all(h.shape[1] == 49 for h in hs)  # as many as the longest has: nothing repeated or invented
    # the longest has no padding: its frames are exactly its frames alone
    alone, n = hubert(speech[1:2], lengths[1:2])
    assert n.tolist() == [49]
    for h, a in zip(hs, alone):
        torch.testing.assert_close(h[1], a[0], atol=1e-5, rtol=0)


def test_fbank_frames_unchanged():
    """Filterbank experts compute each waveform alone; each keeps the s3prl convention (n-1)//rate + 1."""
    fbank = Upstream("fbank")
    lengths = torch.tensor([16000, 8000, 401])
    hs, frames = fbank(torch.randn(3, 16000), lengths)
    assert frames.tolist() == [(x - 1) // fbank.downsample_rate + 1 for x in lengths.tolist()]
    assert fbank.frame_lengths(lengths).tolist() == frames.tolist()
    assert hs[0].shape[1] == frames.max()


def test_raw_last_layer_is_the_last_layer_output_without_the_final_layer_norm(tmp_path):
    """HuBERT Large (pre-norm): s3prl's last state is LayerNorm(layer 24 output); the authors weight the
    raw layer-24 output. raw_last_layer gives that, the other states untouched."""
    path = make_pre_norm_hubert(tmp_path / "pre_norm.pt")
    s3prl_states, raw = (
        Upstream("hubert_local", str(path)),
        Upstream("hubert_local", str(path), raw_last_layer=True),
    )
    assert raw.num_layers == s3prl_states.num_layers == 3
    torch.manual_seed(1)
    lengths = torch.tensor([5000, 7999])  # odd frame counts: the encoder pads to a multiple of 2 inside
    speech = torch.randn(2, 7999)
    a, fa = s3prl_states(speech, lengths)
    b, fb = raw(speech, lengths)
    assert torch.equal(fa, fb)
    for x, y in zip(a[:-1], b[:-1]):
        assert torch.equal(x, y)
    layers = raw.expert.model.encoder.layers
    kept = {}
    handle = layers[-1].register_forward_hook(lambda m, i, o: kept.update(x=o[0].transpose(0, 1)))
    raw.expert([w[:n] for w, n in zip(speech, lengths.tolist())])
    handle.remove()
    torch.testing.assert_close(b[-1], kept["x"][:, : b[-1].shape[1]], atol=0, rtol=0)
    final_norm = raw.expert.model.encoder.layer_norm
    torch.testing.assert_close(a[-1], final_norm(b[-1]), atol=1e-5, rtol=0)
    assert not torch.allclose(a[-1], b[-1], atol=1e-2)


def test_raw_last_layer_of_a_post_norm_hubert_is_s3prl_last_state(hubert, tiny_hubert):
    """HuBERT Base (post-norm) has no final LayerNorm: raw_last_layer changes nothing."""
    raw = Upstream("hubert_local", str(tiny_hubert), raw_last_layer=True)
    speech, lengths = torch.randn(2, 6000), torch.tensor([6000, 4321])
    for x, y in zip(hubert(speech, lengths)[0], raw(speech, lengths)[0]):
        torch.testing.assert_close(x, y, atol=1e-6, rtol=0)


def test_raw_last_layer_needs_transformer_layers():
    with pytest.raises(ValueError, match="raw_last_layer.*fbank"):
        Upstream("fbank", raw_last_layer=True)


def test_a_meta_upstream_has_the_layout_of_the_real_one(hubert, tiny_hubert):
    """Built on the meta device (parameter counts), HuBERT allocates no weight and its dry run computes
    nothing, yet it reads the same layout; a weight-free filterbank is built on CPU all the same."""
    with torch.device("meta"):
        meta = Upstream("hubert_local", str(tiny_hubert), raw_last_layer=True)
        fbank = Upstream("fbank")
    assert all(p.is_meta for p in meta.expert.model.encoder.parameters())
    for attr in (
        "num_layers",
        "hidden_sizes",
        "downsample_rates",
        "receptive_field",
        "min_samples",
        "_convs",
    ):
        assert getattr(meta, attr) == getattr(hubert, attr), attr
    assert not any(t.is_meta for t in fbank.state_dict().values()) and fbank.batched is not None
    lengths = torch.tensor([16000, 8000])
    assert fbank(torch.randn(2, 16000), lengths)[1].tolist() == fbank.frame_lengths(lengths).tolist()
