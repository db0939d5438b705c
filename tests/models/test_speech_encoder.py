import pytest
import torch

from espnet_speechclip.models.speech_encoder import S3PRLSpeechEncoder


@pytest.fixture(params=["hubert_local", "fbank"])
def encoder(request, tiny_hubert):
    torch.manual_seed(0)
    if request.param == "hubert_local":
        return S3PRLSpeechEncoder("hubert_local", str(tiny_hubert), max_train_samples=6000)
    return S3PRLSpeechEncoder(
        "fbank", projection_dim=32, subsampling=2, positional=True, max_train_samples=6000
    )


def test_upstream_frozen_in_eval_and_layer_weights_train(encoder):
    upstream_before = {k: v.clone() for k, v in encoder.upstream.state_dict().items()}
    weights_before = encoder.layer_sum.weights.detach().clone()
    assert torch.equal(weights_before, torch.zeros_like(weights_before))  # uniform init
    head = torch.nn.Linear(encoder.output_size(), 1)
    opt = torch.optim.Adam(list(encoder.parameters()) + list(head.parameters()), lr=0.05)
    for _ in range(3):
        encoder.train()  # as ESPnet's Trainer does every epoch
        assert encoder.training and not encoder.upstream.training
        assert all(not m.training for m in encoder.upstream.modules())
        x = torch.randn(2, 8000)
        feats, lengths = encoder(x, torch.tensor([8000, 5000]))
        loss = head(feats).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    for k, v in encoder.upstream.state_dict().items():
        assert torch.equal(v, upstream_before[k]), k
    assert all(not p.requires_grad for p in encoder.upstream.parameters())
    if encoder.upstream.num_layers > 1:
        assert not torch.equal(encoder.layer_sum.weights.detach(), weights_before)
    else:  # one state (fbank): its softmax weight is 1 whatever the scalar, so nothing to learn
        assert not encoder.layer_sum.weights.requires_grad


def test_single_state_passes_through_unchanged():
    from espnet_speechclip.models.speech_encoder import WeightedLayerSum

    h = torch.randn(2, 5, 4)
    assert WeightedLayerSum(1)([h]) is h
    torch.testing.assert_close(WeightedLayerSum(1, layer_norm=True)([h]), WeightedLayerSum(2, True)([h, h]))
    torch.testing.assert_close(WeightedLayerSum(2)([h, h]), h)


def test_exact_output_lengths_and_batch_invariance(encoder):
    encoder.eval()
    x = torch.randn(3, 9000)
    lengths = torch.tensor([9000, 6400, 3201])
    feats, out_len = encoder(x, lengths)
    rate = encoder.upstream.downsample_rate * encoder.subsampling
    assert feats.size(1) == int(out_len.max())
    for i in range(3):
        single, n = encoder(x[i : i + 1, : lengths[i]], lengths[i : i + 1])
        assert int(n) == int(out_len[i])
        if encoder.upstream.name == "fbank":  # the padding never leaks into valid frames
            torch.testing.assert_close(single[0], feats[i, : int(n)], atol=1e-5, rtol=1e-4)
    # at least the frames whose receptive field fits in the waveform (HuBERT: exactly those)
    assert int(out_len[0]) >= (9000 - encoder.min_samples) // rate + 1


def test_random_crop_only_in_training(encoder):
    x = torch.randn(2, 20000)
    lengths = torch.tensor([20000, 4000])
    encoder.train()
    cropped, new = encoder.crop(x, lengths)
    assert cropped.shape == (2, 6000) and new.tolist() == [6000, 4000]
    assert any(torch.equal(cropped[0], x[0, s : s + 6000]) for s in range(0, 14001))
    encoder.eval()
    same, n = encoder.crop(x, lengths)
    assert same is x and n is lengths


def test_too_short_audio_is_an_error_naming_the_minimum(encoder):
    encoder.eval()
    with pytest.raises(ValueError, match=f"minimum of {encoder.min_samples} samples"):
        encoder(torch.randn(2, 8000), torch.tensor([8000, encoder.min_samples - 1]))


def test_hubert_receptive_field_and_normalisation(tmp_path):
    from helpers.stand_ins import make_tiny_hubert

    ckpt = make_tiny_hubert(tmp_path / "norm.pt", normalize=True)
    enc = S3PRLSpeechEncoder("hubert_local", str(ckpt)).eval()
    assert enc.min_samples == 400  # the conv stack of every HuBERT: 25 ms at 16 kHz
    x = torch.randn(1, 8000)
    a, _ = enc(x, torch.tensor([8000]))
    b, _ = enc(7.0 * x + 0.5, torch.tensor([8000]))  # normalize=True: per-utterance waveform layer norm
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-3)


def test_unknown_upstream_and_missing_checkpoint(tmp_path):
    with pytest.raises(ValueError, match="unknown s3prl upstream 'hubert_xxl_nope'"):
        S3PRLSpeechEncoder("hubert_xxl_nope")
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        S3PRLSpeechEncoder("hubert_local", str(tmp_path / "missing.pt"))
    with pytest.raises(ValueError, match="needs path_or_url"):
        S3PRLSpeechEncoder("hubert_local")


def test_layer_norm_option_normalises_each_hidden_state(tiny_hubert):
    enc = S3PRLSpeechEncoder("hubert_local", str(tiny_hubert), layer_norm=True).eval()
    feats, _ = enc(torch.randn(1, 4000), torch.tensor([4000]))
    # uniform weights over layer-normed states: the mean over features of each frame is ~0
    assert feats.mean(dim=-1).abs().max() < 1e-4


def test_frame_times(encoder):
    """Frame t covers [offset + t * shift, offset + (t + 1) * shift): 20 ms frames for HuBERT and for
    10 ms filterbanks subsampled by 2, centred half a 25 ms window after their start."""
    shift, offset = 1 / encoder.frame_rate, encoder.frame_offset
    assert shift == pytest.approx(0.02)
    assert offset + shift / 2 == pytest.approx(0.0125)
    # the frames of a waveform cover it
    feats, lengths = encoder.eval()(torch.randn(1, 16000), torch.tensor([16000]))
    assert offset + int(lengths[0]) * shift == pytest.approx(1.0, abs=shift)


def test_frame_rate_is_the_total_downsampling_at_16k(encoder):
    """Frames per second = 16000 / (upstream hop x projection subsampling): HuBERT 320 samples (50 Hz),
    fbank 160 samples x 2 (50 Hz); one second of speech gives that many frames."""
    shift = {"hubert_local": 320, "fbank": 160 * 2}[encoder.upstream.name]
    assert encoder.frame_shift == shift and encoder.frame_rate == 16000 / shift
    encoder.eval()
    with torch.no_grad():
        _, lengths = encoder(torch.randn(1, 32000), torch.tensor([32000]))
    assert int(lengths[0]) == pytest.approx(2 * encoder.frame_rate, abs=1)
