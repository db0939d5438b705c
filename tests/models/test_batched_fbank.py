"""s3prl's Kaldi fbank baseline computed for a whole batch: the expert's own numbers, frame counts and
fall-backs."""

import pytest
import torch

from espnet_speechclip.models.batched_fbank import BatchedKaldiFbank
from espnet_speechclip.models.upstream import Upstream

# around the 25 ms window / 10 ms shift boundaries (400 + 160 k samples), odd and long ones
LENGTHS = [560, 561, 719, 720, 721, 1000, 8000, 12345, 16000, 31999]
# float32 filterbanks, torchaudio's and these alike, are about 1e-4 off float64 in log-mel energy


def _batch(lengths, seed=0):
    gen = torch.Generator().manual_seed(seed)
    wavs = torch.zeros(len(lengths), max(lengths))
    for i, n in enumerate(lengths):
        wavs[i, :n] = torch.randn(n, generator=gen) * 0.3
    return wavs, torch.tensor(lengths)


@pytest.fixture(scope="module")
def fbank():
    return Upstream("fbank")


def test_batch_gives_the_expert_features_of_every_utterance_alone(fbank):
    batched = BatchedKaldiFbank.from_expert(fbank.expert)
    assert batched is not None
    wavs, lengths = _batch(LENGTHS)
    feats, frames = batched(wavs, lengths)
    assert frames.tolist() == [1 + (n - 400) // 160 for n in LENGTHS]
    for i, n in enumerate(LENGTHS):
        alone = fbank.expert([wavs[i, :n]])["hidden_states"][0][0]  # (T, 240): fbank, deltas, CMVN
        assert alone.shape == (frames[i], 240)
        torch.testing.assert_close(feats[i, : frames[i]], alone, atol=1e-3, rtol=1e-3)


def test_plain_log_mel_equals_torchaudio_kaldi_fbank():
    """No deltas or CMVN, other Kaldi options: still torchaudio's fbank frame for frame."""
    from torchaudio.compliance.kaldi import fbank

    options = dict(num_mel_bins=40, low_freq=60.0, high_freq=-400.0, preemphasis_coefficient=0.5)
    batched = BatchedKaldiFbank(**options)
    wavs, lengths = _batch(LENGTHS, seed=1)
    feats, frames = batched(wavs, lengths)
    for i, n in enumerate(LENGTHS):
        ref = fbank(wavs[i : i + 1, :n], **options)
        torch.testing.assert_close(feats[i, : frames[i]], ref, atol=1e-3, rtol=1e-4)


def test_upstream_output_is_the_per_utterance_output(fbank):
    """Frame counts, the last frame repeated up to s3prl's (n - 1) // 160 + 1 and zeros after: as when
    the expert computes each utterance alone."""
    assert fbank.batched is not None
    wavs, lengths = _batch([16000, 721, 12345, 8000])
    hs, frames = fbank(wavs, lengths)
    batched, fbank.batched = fbank.batched, None
    try:
        ref, ref_frames = fbank(wavs, lengths)
    finally:
        fbank.batched = batched
    assert frames.tolist() == ref_frames.tolist() == [100, 5, 78, 50]
    assert len(hs) == len(ref) == 1 and hs[0].shape == ref[0].shape == (4, 100, 240)
    torch.testing.assert_close(hs[0], ref[0], atol=1e-3, rtol=1e-3)
    assert torch.equal(hs[0][1, 5:], torch.zeros(95, 240))
    assert torch.equal(hs[0][1, 4], hs[0][1, 3])  # 721 samples: 3 Kaldi frames, s3prl's 5th repeats the 3rd
    # and an utterance does not depend on its batch-mates
    alone, _ = fbank(wavs[1:2, :721], lengths[1:2])
    torch.testing.assert_close(alone[0][0], hs[0][1, :5], atol=1e-5, rtol=0)


def test_fbank_needs_two_frames_for_cmvn(fbank):
    """One frame has no standard deviation: CMVN would make NaN features of it."""
    assert fbank.min_samples == 400 + 160
    assert Upstream("fbank_no_cmvn").min_samples == 400


@pytest.mark.parametrize("name", ["mfcc", "spectrogram", "mel"])
def test_other_baselines_keep_the_per_utterance_path(name):
    up = Upstream(name)
    assert up.batched is None
    wavs, lengths = _batch([16000, 8000])
    hs, frames = up(wavs, lengths)
    assert frames.tolist() == [100, 50] and hs[0].shape[:2] == (2, 100)


def test_a_config_it_does_not_reproduce_is_refused(fbank):
    """Dither (random), another window or an unknown option: None, and the expert does the work."""
    import copy

    for change in ({"dither": 1.0}, {"window_type": "hamming"}, {"energy_floor": 2.0, "use_energy": True}):
        expert = copy.copy(fbank.expert)
        expert.config = copy.deepcopy(fbank.expert.config)
        expert.config["kaldi"]["fbank"].update(change)
        assert BatchedKaldiFbank.from_expert(expert) is None, change


def test_a_mismatch_with_the_expert_is_caught(fbank, caplog):
    """The self-check: a batched filterbank that gives other numbers than the expert is not used."""
    wrong = BatchedKaldiFbank(num_mel_bins=80, delta_order=2, cmvn=True, preemphasis_coefficient=0.9)
    assert not wrong.matches(fbank.expert)
    assert "differs from s3prl's" in caplog.text


def test_too_short_utterance_is_refused():
    with pytest.raises(ValueError, match="at least 400 samples"):
        BatchedKaldiFbank()(torch.zeros(2, 1000), torch.tensor([1000, 399]))
