"""A packed SpeechCLIP as an s3prl upstream, through s3prl's own classes (``S3PRLUpstream``,
``Featurizer``) and ESPnet's ``S3prlFrontend``. Importing ``s3prl.nn`` imports every s3prl upstream
(about 20 s here): the module does it once."""

import pytest
import torch

from espnet_speechclip.frontend.espnet_frontend import BranchLayers, SpeechCLIPFrontend
from espnet_speechclip.inference.speech2image import Speech2Image

NAMES = {"speechclip", "speechclip_local", "speechclip_custom"}


@pytest.fixture(scope="module")
def s3prl_nn():
    # espnet_speechclip (imported by the test modules' imports) registers the names into s3prl.hub
    from s3prl import nn

    return nn


@pytest.fixture(scope="module")
def paper_shaped(tmp_path_factory, tiny_clip, tiny_hubert):
    """A parallel model whose branch takes the (tiny) HuBERT frames, as the paper's configs do."""
    from helpers.stand_ins import pack_random_model

    return pack_random_model(tmp_path_factory.mktemp("paper_shaped"), tiny_clip, tiny_hubert)


def assert_refit(got: torch.Tensor, ref: torch.Tensor) -> None:
    """``got`` is ``ref`` refitted by s3prl's wrapper to its own frame count: the same frames, then the
    last one repeated (what S3PRLUpstream does to every upstream's states)."""
    torch.testing.assert_close(got[:, : ref.size(1)], ref)
    torch.testing.assert_close(got[:, ref.size(1) :], ref[:, -1:].expand_as(got[:, ref.size(1) :]))


def waves():
    torch.manual_seed(1)
    return torch.randn(2, 16000), torch.tensor([16000, 9000])


def test_names_follow_s3prl_conventions(s3prl_nn):
    assert NAMES <= set(s3prl_nn.S3PRLUpstream.available_names())
    # names that need path_or_url end in _local / _custom; only the short alias is listed among the
    # names with a registered checkpoint, and it refuses to guess one
    registered = set(s3prl_nn.S3PRLUpstream.available_names(only_registered_ckpt=True))
    assert NAMES & registered == {"speechclip"}
    with pytest.raises(ValueError, match="speechclip needs path_or_url"):
        s3prl_nn.S3PRLUpstream("speechclip")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        s3prl_nn.S3PRLUpstream("speechclip_local", path_or_url="no/such/model.zip")


def test_hidden_states_are_the_upstream_layers_then_the_branch(s3prl_nn, paper_shaped):
    upstream = s3prl_nn.S3PRLUpstream("speechclip", path_or_url=str(paper_shaped))
    upstream.eval()
    # tiny HuBERT: 2 layers + the CNN output = 3 states, then the learned layer mix, then the branch layer
    assert upstream.num_layers == 5
    assert upstream.hidden_sizes == [64] * 5 and upstream.downsample_rates == [320] * 5
    wav, lengths = waves()
    with torch.no_grad():
        hs, hs_len = upstream(wav, lengths)
    assert [tuple(h.shape) for h in hs] == [(2, 50, 64)] * 5
    assert all(n.tolist() == [50, 29] for n in hs_len)

    model = Speech2Image.from_pretrained(paper_shaped, clip_weights=False).model
    encoder = model.speech_encoder
    with torch.no_grad():
        ref_hs, ref_len = encoder.hidden_states(wav, lengths)
        feats, feats_len = encoder(wav, lengths)
        branch = BranchLayers(model.parallel)(feats, feats_len)
    # the extractor's own frame counts ((n - 400) // 320 + 1); s3prl's wrapper refits every upstream's
    # states to its convention ((n - 1) // 320 + 1, the last frame repeated), so ours come out so too
    assert ref_len.tolist() == [49, 27]
    for got, ref in zip(hs, [*ref_hs, feats, branch]):
        assert_refit(got, ref)

    featurizer = s3prl_nn.Featurizer(upstream)
    out, out_len = featurizer(hs, hs_len)
    assert out.shape == (2, 50, 64) and out_len.tolist() == [50, 29]
    # uniform initial weights: the mean of the five states
    torch.testing.assert_close(out, torch.stack(hs).mean(0))


def test_projected_model_starts_from_its_projected_features(s3prl_nn, sc):
    """The tiny hybrid of ``sc`` projects its upstream to 32 dims: the states are the projected features,
    then the parallel branch layer, exactly the frontend's outputs."""
    upstream = s3prl_nn.S3PRLUpstream("speechclip_local", path_or_url=str(sc["archive"]))
    upstream.eval()
    assert upstream.num_layers == 2 and upstream.hidden_sizes == [32, 32]
    wav, lengths = waves()
    with torch.no_grad():
        hs, hs_len = upstream(wav, lengths)
        encoder_only = SpeechCLIPFrontend(packed_model=str(sc["archive"]))
        with_branch = SpeechCLIPFrontend(packed_model=str(sc["archive"]), branch_layers=True)
        feats, feats_len = encoder_only(wav, lengths)
        branch, _ = with_branch(wav, lengths)
    assert_refit(hs[0], feats)
    assert_refit(hs[1], branch)
    # s3prl counts (n - 1) // 320 + 1 frames, the extractor (n - 400) // 320 + 1
    assert hs_len[0].tolist() == ((lengths - 1) // 320 + 1).tolist()
    assert feats_len.tolist() == ((lengths - 400) // 320 + 1).tolist()
    # extra_conf: the speech encoder alone
    alone = s3prl_nn.S3PRLUpstream(
        "speechclip_custom", path_or_url=str(sc["archive"]), extra_conf={"branch_layers": False}
    )
    assert alone.num_layers == 1


def test_espnet_s3prl_frontend_takes_it(s3prl_nn, sc):
    """ESPnet's S3prlFrontend (``frontend: s3prl`` with ``frontend_conf: {frontend_conf: {upstream:
    speechclip, path_or_url: ...}}``) builds on it once espnet_speechclip is imported."""
    from espnet2.asr.frontend.s3prl import S3prlFrontend

    frontend = S3prlFrontend(
        frontend_conf={"upstream": "speechclip", "path_or_url": str(sc["archive"])}, multilayer_feature=True
    )
    frontend.eval()
    assert frontend.output_size() == 32 and frontend.hop_length == 320
    wav, lengths = waves()
    with torch.no_grad():
        feats, feats_len = frontend(wav, lengths)
    assert feats.shape == (2, 50, 32) and feats_len.tolist() == [50, 29]
    frontend.reload_pretrained_parameters()  # what ESPnet calls after --init
