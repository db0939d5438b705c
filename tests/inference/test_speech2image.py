"""Speech2Image, the one door to a trained model, against the inference entry point."""

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from helpers import ROOT

from espnet_speechclip.bin import speechclip_inference
from espnet_speechclip.data.datadir import read_kv
from espnet_speechclip.data.media import MEL_HOP, MediaError, log_mel, write_wav
from espnet_speechclip.evaluation.keyword_spans import (
    change_boundaries,
    occlusion_spans,
    segment_windows,
)
from espnet_speechclip.inference import decode_dir
from espnet_speechclip.inference.result_types import KeywordTiming
from espnet_speechclip.inference.speech2image import Speech2Image

TINY = ROOT / "conf" / "tiny"


@pytest.fixture(scope="module")
def decoded(sc, tmp_path_factory):
    """The inference entry's outputs for the exp dir and for the archive (images through the tower)."""
    out = {}
    for name, model_args in (
        ("exp", ["--config", str(sc["exp"] / "config.yaml"), "--model_file", str(sc["weights"])]),
        ("zip", ["--model", str(sc["archive"])]),
    ):
        dec = tmp_path_factory.mktemp(f"dec_{name}")
        speechclip_inference.main([*model_args, "--data_dir", str(sc["data"]), "--output_dir", str(dec)])
        out[name] = dec
    return out


@pytest.mark.parametrize("source", ["exp", "zip"])
def test_api_equals_inference_entry(sc, decoded, source):
    dec = decoded[source]
    # the inference entry's batch size: HuBERT's GroupNorm feature extractor sees the padding, so
    # features depend slightly on an utterance's batch-mates
    pipe = Speech2Image.from_pretrained(sc["exp"] if source == "exp" else sc["archive"], batch_size=16)
    assert pipe.branches == ["parallel", "cascaded"]
    utts = (dec / "utt_list").read_text().split()
    wav_scp, img_scp, text = (read_kv(sc["data"] / n) for n in ("wav.scp", "img.scp", "text"))
    out = pipe.embed_speech([wav_scp[u] for u in utts], timing=True)
    for name in ("speech_parallel", "speech_cascaded", "keyword_scores"):
        np.testing.assert_allclose(
            out[name.replace("speech_", "")], np.load(dec / f"{name}.npy"), atol=1e-5, rtol=0, err_msg=name
        )
    np.testing.assert_array_equal(out["keyword_ids"], np.load(dec / "keyword_ids.npy"))
    np.testing.assert_allclose(out["keyword_spans"], np.load(dec / "keyword_spans.npy"), atol=1e-9)
    images = (dec / "image_list").read_text().split()
    np.testing.assert_allclose(
        pipe.embed_images([img_scp[k] for k in images]), np.load(dec / "image.npy"), atol=1e-5, rtol=0
    )
    np.testing.assert_allclose(
        pipe.embed_texts([text[u] for u in utts]), np.load(dec / "text.npy"), atol=1e-5, rtol=0
    )

    keywords = pipe.keywords([wav_scp[u] for u in utts])
    lines = dict(line.split(maxsplit=1) for line in (dec / "keywords").read_text().splitlines())
    for u, kws in zip(utts, keywords):
        assert " ".join(k.token for k in kws) == lines[u]
    assert [k.id for k in keywords[0]] == list(np.load(dec / "keyword_ids.npy")[0])
    np.testing.assert_allclose(
        [k.score for k in keywords[0]], np.load(dec / "keyword_scores.npy")[0], atol=1e-5
    )
    one = pipe.keywords(wav_scp[utts[0]])  # one utterance: its keywords, not a list of lists
    assert len(one) == 4 and isinstance(one[0].token, str) and one[0].start is None

    # keyword timing: the decode folder's spans are the API's, and timing changes no keyword
    timed = pipe.keywords([wav_scp[u] for u in utts], timing=True)
    assert [[k[:2] for k in kws] for kws in timed] == [[k[:2] for k in kws] for kws in keywords]
    # a keyword without a confident span has start = end = None here and NaN in the arrays
    spans = np.array([[(k.start, k.end) for k in kws] for kws in timed], dtype=np.float64)
    np.testing.assert_allclose(spans, np.load(dec / "keyword_spans.npy"), atol=1e-6)
    np.testing.assert_allclose(
        pipe.embed_speech([wav_scp[u] for u in utts], timing=True)["keyword_spans"], spans, atol=1e-6
    )
    assert decode_dir.DecodeDir.read(dec).keyword_spans().shape == (len(utts), 4, 2)
    # K-token keywords come with the stretch they are read from, inside the utterance
    seconds = sf.info(wav_scp[utts[0]]).duration
    assert all(0 <= k.start < k.end <= seconds for k in timed[0] if k.start is not None)

    # any sample rate: a file or an array at 8 kHz is resampled the same way
    wav = pipe._load_all([wav_scp[utts[0]]], utts[:1])[0]
    from espnet_speechclip.data.media import resample

    low = resample(wav, 16000, 8000)
    write_wav(sc["root"] / f"low_{source}.wav", low, 8000)
    by_file = pipe.embed_speech(sc["root"] / f"low_{source}.wav")["parallel"]
    by_array = pipe.embed_speech((low, 8000))["parallel"]
    np.testing.assert_allclose(by_file, by_array, atol=1e-4, rtol=0)  # the file is 16-bit PCM

    # retrieval ranks by the cosine scores of the embeddings
    hits = pipe.retrieve_images(wav_scp[utts[0]], [img_scp[k] for k in images], topk=3)
    scores = np.load(dec / "image.npy") @ pipe.embed_speech(wav_scp[utts[0]])["parallel"][0]
    assert [h.index for h in hits] == list(np.argsort(-scores, kind="stable")[:3])
    np.testing.assert_allclose([h.score for h in hits], np.sort(scores)[::-1][:3], atol=1e-5)
    hits = pipe.retrieve_speech(img_scp[images[0]], [wav_scp[u] for u in utts], topk=None, branch="cascaded")
    assert len(hits) == len(utts) and hits == sorted(hits, key=lambda h: -h.score)
    assert pipe.retrieve_texts((wav, 16000), ["a red square", "a blue square"], topk=1)[0].item in (
        "a red square",
        "a blue square",
    )


def test_api_wrong_inputs_raise_clear_errors(sc, parallel_exp, tmp_path):
    pipe = Speech2Image.from_pretrained(sc["archive"])
    img = next(iter(read_kv(sc["data"] / "img.scp").values()))
    wav = next(iter(read_kv(sc["data"] / "wav.scp").values()))
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, dtype=np.float32), 16000)
    not_image = tmp_path / "photo.png"
    not_image.write_text("not an image")
    cases = [
        # span settings are checked before any model is built
        (
            lambda: Speech2Image(tmp_path / "no_config.yaml", span_segments=0),
            ValueError,
            "span_segments must be >= 1 and min_contrast >= 0, got 0, 0.05",
        ),
        (
            lambda: pipe.embed_speech(tmp_path / "nope.wav"),
            MediaError,
            f"audio file {tmp_path / 'nope.wav'} does not exist",
        ),
        (lambda: pipe.embed_speech(empty), MediaError, f"audio file {empty} is empty"),
        (lambda: pipe.embed_speech([wav, np.zeros(0)]), MediaError, "speech input #1 is empty"),
        (
            lambda: pipe.embed_speech([np.zeros(100)]),
            MediaError,
            "#0: 100 samples at 16 kHz, shorter than the speech encoder's minimum of 400 samples",
        ),
        (lambda: pipe.embed_speech((np.zeros(16000), 0)), ValueError, "#0: sample rate must be positive"),
        (
            lambda: pipe.embed_speech(np.zeros((2, 16000))),
            ValueError,
            r"mono waveform \(T,\), got shape \(2, 16000\)",
        ),
        (lambda: pipe.embed_speech([np.full(16000, np.nan)]), MediaError, "#0 contains NaN"),
        (lambda: pipe.embed_speech([42]), TypeError, "speech input #0: expected a file path"),
        (
            lambda: pipe.embed_images([img, not_image]),
            MediaError,
            f"image file {not_image} cannot be decoded",
        ),
        (lambda: pipe.embed_images(tmp_path / "nope.jpg"), MediaError, "nope.jpg does not exist"),
        (
            lambda: pipe.embed_images([np.zeros((4, 4, 3))]),
            TypeError,
            "image input #0: expected a file path or a PIL",
        ),
        (lambda: pipe.embed_texts(["ok", 3]), TypeError, "text input #1"),
        (lambda: pipe.retrieve_images([wav, wav], [img]), TypeError, "one utterance"),
        (lambda: pipe.retrieve_images(wav, [img], topk=0), ValueError, "topk must be at least 1"),
        (lambda: pipe.retrieve_texts(wav, ["x"], branch="nope"), ValueError, "not 'nope'"),
        (lambda: Speech2Image.from_pretrained(tmp_path / "nope"), FileNotFoundError, "nope does not exist"),
        (lambda: Speech2Image.from_pretrained(tmp_path), FileNotFoundError, "has no config.yaml"),
    ]
    for call, error, match in cases:
        with pytest.raises(error, match=match):
            call()
    (tmp_path / "config.yaml").write_text("")
    with pytest.raises(FileNotFoundError, match="valid.mean_r10.best.pth, latest.pth"):
        Speech2Image.from_pretrained(tmp_path)

    par = Speech2Image.from_pretrained(parallel_exp)  # latest.pth: no best checkpoint there
    assert par.branches == ["parallel"]
    with pytest.raises(ValueError, match="parallel model: keywords need a cascaded or hybrid"):
        par.keywords(wav)


# ------------------------------------------------------------------------------------- query CLI


@pytest.fixture(scope="module")
def cif_pipe(tiny_clip):
    """An untrained cascaded+ model (CIF keywords) behind the API."""
    config = yaml.safe_load((TINY / "cascaded_plus.yaml").read_text())
    config["clip_conf"] = dict(tiny_clip)
    torch.manual_seed(0)
    return Speech2Image(config, batch_size=2)


def test_variable_length_keywords_through_the_api(cif_pipe):
    rng = np.random.RandomState(0)
    wavs = [0.1 * rng.randn(n).astype(np.float32) for n in (16000, 4000, 9000, 24000, 6000)]
    out = cif_pipe(wavs, timing=True)
    n = out["keyword_lengths"]
    ids, scores, spans = out["keyword_ids"], out["keyword_scores"], out["keyword_spans"]
    # batches of 2 have different widths: the concatenation pads them to the largest count
    assert ids.shape == (5, n.max()) and spans.shape == (5, n.max(), 2) and len(set(n)) > 1
    mask = np.arange(ids.shape[1])[None, :] < n[:, None]
    assert (ids[~mask] == -1).all() and (scores[~mask] == 0).all() and np.isnan(spans[~mask]).all()
    # the spans are the integrated units snapped onto the segments of the signal they cover, within
    # each utterance's duration, each starting and ending at a cut
    from espnet_speechclip.data.media import MEL_HOP, log_mel
    from espnet_speechclip.evaluation.keyword_spans import (
        CIF_SECONDS_PER_SEGMENT,
        CIF_SEGMENT_MIN_GAP,
        change_boundaries,
        unit_segment_spans,
    )

    model = cif_pipe.model
    rate, offset = model.speech_encoder.frame_rate, model.speech_encoder.frame_offset
    for i, wav in enumerate(wavs):
        own = spans[i, : n[i]]
        assert (own[:, 0] >= 0).all() and (own[:, 0] < own[:, 1]).all()
        assert (own[:, 1] <= len(wav) / 16000 + 1e-6).all()
        with torch.no_grad():
            alone = model.encode_speech(
                torch.from_numpy(wav)[None], torch.tensor([len(wav)]), keyword_attention=True
            )
        frames = alone.keyword_frames[0].double().numpy()
        cuts = change_boundaries(
            log_mel(wav), MEL_HOP / 16000, CIF_SECONDS_PER_SEGMENT, min_gap=CIF_SEGMENT_MIN_GAP
        )
        expected = unit_segment_spans(frames, int(alone.frame_lengths[0]), cuts, rate, offset)
        np.testing.assert_allclose(own, np.clip(expected, 0.0, len(wav) / 16000), atol=1e-6)
        edges = np.append(cuts, len(wav) / 16000)  # a span starts and ends at a cut (or the end)
        assert all(np.isclose(edges, x, atol=1e-6).any() for x in own.ravel())
        assert alone.keyword_ids[0].tolist() == ids[i, : n[i]].tolist()
    # keywords() drops the padding: each utterance its own number of Keyword(token, id, score, start, end)
    keywords = cif_pipe.keywords(wavs, timing=True)
    assert [len(k) for k in keywords] == n.tolist()
    assert [k.id for k in keywords[1]] == ids[1, : n[1]].tolist()
    assert keywords[3][-1].end == pytest.approx(spans[3, n[3] - 1, 1], abs=1e-6)
    assert [k.id for k in cif_pipe.keywords(wavs[1])] == ids[1, : n[1]].tolist()  # no timing asked
    # the timing of a CIF keyword: its unit's share of each frame's weight, rows summing to 1
    timing = cif_pipe.keyword_timing(wavs[3])
    assert isinstance(timing, KeywordTiming) and timing.attention.shape[0] == n[3]
    np.testing.assert_allclose(timing.attention.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose([(k.start, k.end) for k in timing.keywords], spans[3, : n[3]], atol=1e-6)
    # the batch size changes nothing
    cif_pipe.batch_size = 5
    try:
        np.testing.assert_array_equal(cif_pipe(wavs)["keyword_ids"], ids)
    finally:
        cif_pipe.batch_size = 2


def test_keyword_timing_maps_attention_frames_to_seconds(sc, monkeypatch):
    """Where a keyword was heard: its attention over the utterance's own frames, and its span in seconds:
    the stretch of signal segments it is read from, at the speech encoder's frame rate
    (tiny HuBERT: 320 samples, 50 Hz)."""
    pipe = Speech2Image.from_pretrained(sc["archive"])
    wav_scp = read_kv(sc["data"] / "wav.scp")
    utts = sorted(wav_scp)[:3]
    timings = pipe.keyword_timing([wav_scp[u] for u in utts])
    assert pipe.model.speech_encoder.frame_rate == 50.0
    # frame t is centred on HuBERT's t-th 400-sample window: [t, t + 1) / 50 s + 2.5 ms
    offset = pipe.model.speech_encoder.frame_offset
    assert offset == pytest.approx(0.0025)
    for u, t in zip(utts, timings):
        assert isinstance(t, KeywordTiming) and t.frame_rate == 50.0 and t.frame_offset == offset
        n = sf.info(wav_scp[u]).frames
        assert t.duration == pytest.approx(n / 16000)
        # the utterance's own frames (the extractor's output length), not the batch's
        assert t.attention.shape == (4, (n - 400) // 320 + 1)
        np.testing.assert_allclose(t.attention.sum(axis=1), 1.0, atol=1e-5)
        for k in t.keywords:
            assert (k.start is None) == (k.end is None)
            assert k.start is None or 0 <= k.start < k.end <= t.duration
    # one utterance alone: the spans are the stretches of three signal segments each keyword is read
    # from (the best of: cosine with the stretch alone + loss of cosine without it)
    wav = pipe._load_all([wav_scp[utts[0]]], utts[:1])[0]
    alone = pipe.keyword_timing(wav_scp[utts[0]])
    branch = pipe.model.cascaded
    with torch.no_grad():
        out = pipe.model.encode_speech(torch.from_numpy(wav)[None], torch.tensor([len(wav)]), True)
        bounds = change_boundaries(log_mel(wav), MEL_HOP / 16000)
        inside, times = segment_windows(bounds, out.frame_features.size(1), 50.0, offset, 3)
        ids = out.keyword_ids[0]
        full = branch.keyword_cosines(out.frame_features[0], ids, torch.zeros(1, inside.shape[1], dtype=bool))
        kept = branch.keyword_cosines(out.frame_features[0], ids, torch.from_numpy(~inside))
        removed = branch.keyword_cosines(out.frame_features[0], ids, torch.from_numpy(inside))
    cosines = (full[0].numpy(), kept.numpy(), removed.numpy(), times)
    assert len(times) > 1
    for k, (start, end) in zip(alone.keywords, np.clip(occlusion_spans(*cosines), 0, alone.duration)):
        assert (k.start, k.end) == ((None, None) if np.isnan(start) else pytest.approx((start, end)))
    # this tiny random model's stretches hardly differ; without a contrast floor every keyword has one
    every = np.clip(occlusion_spans(*cosines, min_contrast=0.0), 0, alone.duration)
    assert not np.isnan(every).any()
    monkeypatch.setattr(pipe, "min_contrast", 0.0)
    again = pipe.keyword_timing(wav_scp[utts[0]])
    assert [(k.start, k.end) for k in again.keywords] == [pytest.approx(tuple(se)) for se in every]
    # the keywords are those of keywords() on the same input (one utterance: a batch's padding moves
    # scores slightly through HuBERT's GroupNorm, which can swap near-tied keywords)
    assert [k[:2] for k in alone.keywords] == [k[:2] for k in pipe.keywords(wav_scp[utts[0]])]

    # a planted model: keyword 0 is read from frame 2 only, keyword 1 from every frame alike (no
    # confident span), the others from frames 5-9; segments cut at 0.03, 0.07 and 0.3 s, one per stretch
    def planted(feats, keyword_ids, hidden):
        seen = (~hidden).float()  # (W, T)
        cos = torch.zeros(hidden.size(0), len(keyword_ids))
        cos[:, 0] = seen[:, 2]
        cos[:, 1] = 0.5
        cos[:, 2:] = seen[:, 5:10].mean(1, keepdim=True)
        return cos

    monkeypatch.setattr(branch, "keyword_cosines", planted)
    monkeypatch.setattr(
        "espnet_speechclip.inference.speech2image.change_boundaries",
        lambda features, hop: np.array([0.0, 0.03, 0.07, 0.3, len(features) * hop]),
    )
    monkeypatch.setattr(pipe, "span_segments", 1)
    t = pipe.keyword_timing(wav_scp[utts[0]])
    # frame 2's centre (0.05 s + offset) lies in [0.03, 0.07); frames 5-9 in [0.07, 0.3)
    assert (t.keywords[0].start, t.keywords[0].end) == pytest.approx((0.03, 0.07))
    assert t.keywords[1].start is None and t.keywords[1].end is None
    assert (t.keywords[2].start, t.keywords[2].end) == pytest.approx((0.07, 0.3))
    result = pipe.query(wav_scp[utts[0]], timing=True)
    assert result.timing is not None and result.keywords == t.keywords
    assert result.embedding.shape == (pipe.embed_speech(wav_scp[utts[0]])["parallel"].shape[1],)
    assert pipe.query(wav_scp[utts[0]]).timing is None


@pytest.mark.parametrize("use_amp,amp_dtype", [(True, "bfloat16"), (True, None), (False, "bfloat16")])
def test_inference_runs_in_the_training_precision(sc, use_amp, amp_dtype):
    """Speech, image and text passes under the config's autocast dtype (what validation selected the
    checkpoint with); on CPU the autocast is off whatever the config says."""
    config = yaml.safe_load((sc["exp"] / "config.yaml").read_text())
    config["use_amp"] = use_amp
    if amp_dtype is None:
        config.pop("amp_dtype", None)  # a config written before amp_dtype existed: the default
    else:
        config["amp_dtype"] = amp_dtype
    pipe = Speech2Image(config, sc["weights"])
    seen = []
    for owner, name in (
        (pipe.model, "encode_speech"),
        (pipe.model.cascaded, "keyword_cosines"),
        (pipe.model, "encode_text"),
    ):
        original = getattr(owner, name)

        def record(*args, _original=original, **kwargs):
            seen.append((torch.get_autocast_dtype("cuda"), torch.is_autocast_enabled("cuda")))
            return _original(*args, **kwargs)

        setattr(owner, name, record)
    wav = np.random.RandomState(0).randn(8000).astype(np.float32)
    pipe(wav, timing=True)  # with the keyword spans' occlusion passes
    pipe.embed_texts(["a red square"])
    expected = torch.bfloat16 if amp_dtype == "bfloat16" else torch.float16
    assert seen == [(expected, False)] * 3  # (on a GPU: enabled exactly when use_amp)
