"""CIF (SpeechCLIP+) against an independent frame-by-frame reference, and the variable-length text pass."""

from __future__ import annotations

import random

import pytest
import torch

from espnet_speechclip.models.cif import CIFDownsampler, cif, encode_variable_keywords
from espnet_speechclip.models.clip import EOT_ID, SOT_ID, CLIPTextEncoder, load_clip


# --------------------------------------------------------------------------------------------------
# Reference: the textbook sequential integrate-and-fire, one utterance, plain Python scalars.
# --------------------------------------------------------------------------------------------------
def reference_cif(
    alphas, feats, threshold=1.0, tail_threshold=None, max_units=None, at_least_one=True, fire_tolerance=1e-5
):
    """alphas: list of T floats (valid frames only), feats: T lists of D floats.

    Returns a list of units, each a dict(vec, weights (T floats), fire, start, end, kind) with kind
    "complete", "tail" or "partial".
    """
    dim = len(feats[0]) if feats else 0
    n_frames = len(alphas)
    units = []

    def new_unit():
        return {"vec": [0.0] * dim, "weights": [0.0] * n_frames, "start": None, "last": None, "mass": 0.0}

    cur = new_unit()

    def give(unit, t, amount, left_before):
        # frame t's weight is spread uniformly over [t, t + 1): `left_before` of it was still unassigned
        if unit["start"] is None:
            unit["start"] = t + (alphas[t] - left_before) / alphas[t]
        unit["weights"][t] += amount
        unit["mass"] += amount
        unit["vec"] = [v + amount * x for v, x in zip(unit["vec"], feats[t])]
        unit["last"] = t

    for t, a in enumerate(alphas):
        left = a
        # the frame completes as many units as its weight allows
        # (a crossing missed by a rounding error, < 1e-9, still counts: cif() does the same)
        while left > 0 and cur["mass"] + left >= threshold * (1 - 1e-9):
            take = min(threshold - cur["mass"], left)
            give(cur, t, take, left)
            left -= take
            if left < 1e-9 * threshold:  # exact crossing: nothing of this frame is left for the next unit
                left = 0.0
            cur.update(fire=t, end=t + (a - left) / a, kind="complete")
            units.append(cur)
            cur = new_unit()
        if left > 0:
            give(cur, t, left, left)

    r = cur["mass"]
    if r > 0:
        end = cur["last"] + 1.0  # the remainder holds everything up to the end of its last frame
        if r >= threshold * (1 - fire_tolerance):
            cur.update(fire=cur["last"], end=end, kind="complete")
            units.append(cur)
        elif at_least_one and not units:
            cur.update(fire=cur["last"], end=end, kind="partial")
            units.append(cur)
        elif tail_threshold is not None and r >= tail_threshold - 1e-9 * threshold:
            cur.update(fire=cur["last"], end=end, kind="tail")
            cur["vec"] = [v * threshold / r for v in cur["vec"]]
            units.append(cur)
    if max_units is not None:
        units = units[:max_units]
    return units


def run_both(
    alphas_list, dim=3, threshold=1.0, tail_threshold=None, max_units=None, at_least_one=True, seed=0, pad=2
):
    """Batch the utterances (padding with garbage alphas and features), run cif, and the reference."""
    g = torch.Generator().manual_seed(seed)
    lengths = [len(a) for a in alphas_list]
    b, t_max = len(alphas_list), max(lengths) + pad
    alphas = torch.rand(b, t_max, generator=g, dtype=torch.float64) * 5  # padding garbage
    feats = torch.randn(b, t_max, dim, generator=g, dtype=torch.float64)
    for i, a in enumerate(alphas_list):
        alphas[i, : len(a)] = torch.tensor(a, dtype=torch.float64)
    out = cif(
        alphas,
        feats,
        torch.tensor(lengths),
        threshold=threshold,
        tail_threshold=tail_threshold,
        max_units=max_units,
        at_least_one=at_least_one,
    )
    refs = [
        reference_cif(
            list(a), feats[i, : len(a)].tolist(), threshold, tail_threshold, max_units, at_least_one
        )
        for i, a in enumerate(alphas_list)
    ]
    return out, refs, feats


def assert_matches_reference(out, refs, t_max):
    assert out["unit_lengths"].tolist() == [len(r) for r in refs]
    n_max = max([len(r) for r in refs] + [0])
    assert out["units"].shape[1] == n_max
    for i, ref in enumerate(refs):
        n = len(ref)
        for j, u in enumerate(ref):
            torch.testing.assert_close(
                out["units"][i, j], torch.tensor(u["vec"], dtype=torch.float64), atol=1e-9, rtol=0
            )
            w = torch.zeros(t_max, dtype=torch.float64)
            w[: len(u["weights"])] = torch.tensor(u["weights"], dtype=torch.float64)
            torch.testing.assert_close(out["weights"][i, j], w, atol=1e-9, rtol=0)
            assert int(out["fire_frames"][i, j]) == u["fire"]
            torch.testing.assert_close(
                out["spans"][i, j],
                torch.tensor([u["start"], u["end"]], dtype=torch.float64),
                atol=1e-9,
                rtol=0,
            )
        assert bool(out["tail_fired"][i]) == (n > 0 and ref[-1]["kind"] == "tail")
        # padding units are empty
        assert (out["units"][i, n:] == 0).all() and (out["weights"][i, n:] == 0).all()
        assert (out["fire_frames"][i, n:] == -1).all() and (out["spans"][i, n:] == 0).all()


def random_utterances(rng: random.Random, b: int, high: float) -> list[list[float]]:
    return [[rng.uniform(0, high) for _ in range(rng.randint(1, 40))] for _ in range(b)]


# --------------------------------------------------------------------------------------------------
# cif() against the reference
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("b", [1, 3, 8])
@pytest.mark.parametrize("tail_threshold", [None, 0.5])
@pytest.mark.parametrize("threshold", [1.0, 1.5])
def test_random_batches_match_reference(b, tail_threshold, threshold):
    rng = random.Random(100 * b + int(10 * threshold) + (tail_threshold is None))
    for trial in range(5):
        # sigmoid-like alphas (< 1), and scaled-up ones (up to 2.5: a frame can complete several units)
        utts = random_utterances(rng, b, high=1.0 if trial % 2 == 0 else 2.5)
        out, refs, feats = run_both(utts, threshold=threshold, tail_threshold=tail_threshold, seed=trial)
        assert_matches_reference(out, refs, feats.size(1))


@pytest.mark.parametrize("values", [(0, 0.125, 0.25, 0.5, 0.75, 1.0, 1.5, 2.25), (0, 1 / 3, 0.1, 0.2, 0.7)])
def test_tie_heavy_batches_match_reference(values):
    """Weights from a small set: exact crossings, silent frames after a firing, remainders exactly at
    the tail threshold (dyadic values), and the same ties up to rounding errors (1/3, 0.1, ...)."""
    rng = random.Random(len(values))
    for trial in range(40):
        utts = [[rng.choice(values) for _ in range(rng.randint(1, 30))] for _ in range(rng.randint(1, 6))]
        out, refs, feats = run_both(
            utts,
            threshold=rng.choice([1.0, 0.5, 1.5]),
            tail_threshold=rng.choice([None, 0.5, 0.25]),
            max_units=rng.choice([None, 3]),
            at_least_one=rng.choice([True, False]),
            seed=trial,
        )
        assert_matches_reference(out, refs, feats.size(1))


def test_hand_example_with_exact_crossing():
    # c = 0.25, 1.0 | 1.5, 2.0 | 2.25: frame 1 completes unit 0 exactly, so unit 1 starts at frame 2
    out, refs, feats = run_both([[0.25, 0.75, 0.5, 0.5, 0.25]], tail_threshold=0.5)
    assert out["unit_lengths"].tolist() == [2]  # remainder 0.25 < 0.5: no tail
    torch.testing.assert_close(
        out["weights"][0, :, :5],
        torch.tensor([[0.25, 0.75, 0, 0, 0], [0, 0, 0.5, 0.5, 0]], dtype=torch.float64),
    )
    assert out["fire_frames"][0].tolist() == [1, 3]
    torch.testing.assert_close(out["spans"][0], torch.tensor([[0.0, 2.0], [2.0, 4.0]], dtype=torch.float64))
    torch.testing.assert_close(out["units"][0, 0], 0.25 * feats[0, 0] + 0.75 * feats[0, 1])
    assert_matches_reference(out, refs, feats.size(1))


def test_exact_crossing_followed_by_silence_starts_next_unit_at_next_weighted_frame():
    out, refs, feats = run_both([[0.5, 0.5, 0.0, 0.0, 0.75, 0.5]])
    torch.testing.assert_close(out["spans"][0], torch.tensor([[0.0, 2.0], [4.0, 5.5]], dtype=torch.float64))
    assert_matches_reference(out, refs, feats.size(1))


def test_frame_heavier_than_threshold_fires_several_units():
    # c = 0.5, 2.75, 3.0: frame 1 completes units 0 and 1 and starts unit 2, which frame 2 completes
    out, refs, feats = run_both([[0.5, 2.25, 0.25]])
    assert out["unit_lengths"].tolist() == [3]
    assert out["fire_frames"][0].tolist() == [1, 1, 2]
    torch.testing.assert_close(
        out["weights"][0, :, :3],
        torch.tensor([[0.5, 0.5, 0], [0, 1.0, 0], [0, 0.75, 0.25]], dtype=torch.float64),
    )
    s = 1 / 2.25
    torch.testing.assert_close(
        out["spans"][0],
        torch.tensor([[0, 1 + 0.5 * s], [1 + 0.5 * s, 1 + 1.5 * s], [1 + 1.5 * s, 3.0]], dtype=torch.float64),
    )
    assert_matches_reference(out, refs, feats.size(1))


def test_tail_rule():
    # remainder 0.5 >= 0.5 fires, rescaled to a full unit; 0.375 does not; training (None) never fires
    out, refs, feats = run_both([[0.5, 0.5, 0.5], [0.5, 0.5, 0.375]], tail_threshold=0.5)
    assert out["unit_lengths"].tolist() == [2, 1]
    assert out["tail_fired"].tolist() == [True, False]
    assert out["weights"][0, 1].sum().item() == pytest.approx(0.5)  # raw weights sum to the remainder
    torch.testing.assert_close(out["units"][0, 1], feats[0, 2])  # 0.5 * x_2 rescaled by 1 / 0.5
    assert out["spans"][0, 1].tolist() == [2.0, 3.0]
    assert_matches_reference(out, refs, feats.size(1))
    out, refs, _ = run_both([[0.5, 0.5, 0.5]], tail_threshold=None)
    assert out["unit_lengths"].tolist() == [1] and not out["tail_fired"].any()


def test_lone_partial_unit_is_kept_unscaled_like_speechclip_plus():
    # total 0.75 < 1: SpeechCLIP+ keeps one unit (count clipped to 1) holding the raw remainder
    out, refs, feats = run_both([[0.25, 0.5], [0.125, 0.125]], tail_threshold=0.5)
    assert out["unit_lengths"].tolist() == [1, 1]
    torch.testing.assert_close(out["units"][0, 0], 0.25 * feats[0, 0] + 0.5 * feats[0, 1])
    assert not out["tail_fired"].any()
    assert_matches_reference(out, refs, feats.size(1))
    # without at_least_one the ordinary tail rule decides
    out, refs, feats = run_both([[0.25, 0.5], [0.125, 0.125]], tail_threshold=0.5, at_least_one=False)
    assert out["unit_lengths"].tolist() == [1, 0]
    torch.testing.assert_close(out["units"][0, 0], (0.25 * feats[0, 0] + 0.5 * feats[0, 1]) / 0.75)
    assert_matches_reference(out, refs, feats.size(1))


def test_all_zero_alphas_give_no_units():
    out, refs, feats = run_both([[0.0] * 6, [0.0] * 3], tail_threshold=0.5)
    assert out["unit_lengths"].tolist() == [0, 0]
    assert out["units"].shape == (2, 0, 3) and out["weights"].shape == (2, 0, feats.size(1))
    assert out["spans"].shape == (2, 0, 2) and out["fire_frames"].shape == (2, 0)
    # next to a normal utterance: an empty row of padding
    out, refs, feats = run_both([[0.0] * 6, [0.75, 0.75, 0.75]], tail_threshold=0.5)
    assert out["unit_lengths"].tolist() == [0, 2]
    assert_matches_reference(out, refs, feats.size(1))


def test_sum_just_below_an_integer_still_fires_and_max_units_truncates():
    out, refs, feats = run_both([[1 / 3] * 9, [0.5] * 10], max_units=4)
    # 9 * fl(1/3) misses 3.0 by a rounding error only
    assert out["unit_lengths"].tolist() == [3, 4]
    assert_matches_reference(out, refs, feats.size(1))


def test_padding_alphas_and_frames_are_ignored():
    torch.manual_seed(0)
    a = torch.rand(2, 12, dtype=torch.float64)
    f = torch.randn(2, 12, 4, dtype=torch.float64)
    lengths = torch.tensor([7, 12])
    ref = cif(a, f, lengths, tail_threshold=0.5)
    a2, f2 = a.clone(), f.clone()
    a2[0, 7:], f2[0, 7:] = 9.0, 1e6
    got = cif(a2, f2, lengths, tail_threshold=0.5)
    for k in ("units", "unit_lengths", "weights", "spans", "fire_frames"):
        torch.testing.assert_close(got[k], ref[k])
    assert (got["weights"][0, :, 7:] == 0).all()


def test_weights_conserve_the_alphas():
    torch.manual_seed(1)
    a = torch.rand(4, 30, dtype=torch.float64) * 1.5
    lengths = torch.tensor([30, 11, 25, 3])
    out = cif(a, torch.randn(4, 30, 2, dtype=torch.float64), lengths, tail_threshold=None, at_least_one=False)
    rows = out["weights"].sum(-1)
    for i, n in enumerate(out["unit_lengths"].tolist()):
        assert n == int(a[i, : lengths[i]].sum())
        torch.testing.assert_close(rows[i, :n], torch.ones(n, dtype=torch.float64))  # beta per fired unit
        # each frame before the last firing is split among the units without loss; the last firing
        # frame keeps its share of the dropped remainder; later frames only fed the remainder
        per_frame = out["weights"][i].sum(0)
        last = int(out["fire_frames"][i, n - 1])
        torch.testing.assert_close(per_frame[:last], a[i, :last])
        assert per_frame[last] <= a[i, last] and (per_frame[last + 1 :] == 0).all()


def test_gradients_wrt_alphas_and_features():
    torch.manual_seed(2)
    a = (torch.rand(2, 9, dtype=torch.float64) * 0.9 + 0.05).requires_grad_()
    f = torch.randn(2, 9, 3, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([9, 6])

    def fn(alphas, feats):
        out = cif(alphas, feats, lengths, tail_threshold=0.5)
        return out["units"], out["weights"]

    assert torch.autograd.gradcheck(fn, (a, f))


def test_float32_and_autocast_paths_agree_with_float64():
    torch.manual_seed(3)
    a = torch.rand(3, 50) * 0.6
    f = torch.randn(3, 50, 8)
    lengths = torch.tensor([50, 31, 44])
    ref = cif(a.double(), f.double(), lengths, tail_threshold=0.5)
    got = cif(a, f, lengths, tail_threshold=0.5)
    assert got["units"].dtype == torch.float32
    assert torch.equal(got["unit_lengths"], ref["unit_lengths"])
    torch.testing.assert_close(got["units"].double(), ref["units"], atol=1e-5, rtol=1e-5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        amp = cif(a, f, lengths, tail_threshold=0.5)
    assert amp["units"].dtype == torch.float32
    torch.testing.assert_close(amp["units"], got["units"])


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="non-negative"):
        cif(torch.tensor([[0.5, -0.1]]), torch.zeros(1, 2, 1), torch.tensor([2]))
    with pytest.raises(ValueError, match=r"\(B, T\)"):
        cif(torch.zeros(1, 3), torch.zeros(1, 2, 1), torch.tensor([2]))


# --------------------------------------------------------------------------------------------------
# CIFDownsampler: alpha network, scaling, quantity loss
# --------------------------------------------------------------------------------------------------
def constant_alpha_downsampler(dim: int, alpha: float, **kwargs) -> CIFDownsampler:
    """A downsampler whose weight head ignores the features: every valid frame gets ``alpha``."""
    m = CIFDownsampler(dim, **kwargs)
    with torch.no_grad():
        m.head.weight.zero_()
        m.head.bias.fill_(torch.logit(torch.tensor(alpha)).item())
    return m


def test_quantity_loss_hand_computed():
    m = constant_alpha_downsampler(4, 0.5).eval()
    feats = torch.randn(2, 6, 4)
    out = m(feats, torch.tensor([4, 6]), target_lengths=torch.tensor([3, 1]))
    # alpha sums 4 * 0.5 = 2 and 6 * 0.5 = 3; |2 - 3| = 1, |3 - 1| = 2; mean 1.5
    torch.testing.assert_close(out["alpha_sum"], torch.tensor([2.0, 3.0]))
    assert out["quantity_loss"].item() == pytest.approx(1.5)
    # eval: no scaling, the units follow the alphas (2 and 3 complete units)
    assert out["unit_lengths"].tolist() == [2, 3]
    # default targets: round(frames / 20), half to even: 50 -> 2 (2.5), 70 -> 4 (3.5), 30 -> 2 (1.5)
    out = m(torch.randn(3, 70, 4), torch.tensor([50, 70, 30]))
    assert out["target_lengths"].tolist() == [2, 4, 2]
    # sums 25, 35, 15 -> |25-2| + |35-4| + |15-2| = 23 + 31 + 13 = 67, mean 67 / 3
    assert out["quantity_loss"].item() == pytest.approx(67 / 3, rel=1e-6)


def test_training_scales_alphas_to_the_targets_for_scaling_steps_forwards():
    torch.manual_seed(4)
    m = CIFDownsampler(8, scaling_steps=2).train()
    feats = torch.randn(5, 60, 8)
    lengths = torch.tensor([60, 47, 33, 60, 12])
    targets = torch.tensor([7, 1, 13, 3, 2])
    for _ in range(2):
        out = m(feats, lengths, target_lengths=targets)
        torch.testing.assert_close(out["alphas"].sum(1), targets.double(), atol=1e-9, rtol=0)
        assert torch.equal(out["unit_lengths"], targets)  # no tail at training time, sums hit the targets
        assert not out["tail_fired"].any()
        # the quantity loss uses the unscaled alphas
        torch.testing.assert_close(out["quantity_loss"], (out["alpha_sum"] - targets).abs().mean())
        assert (out["alphas"][1, 47:] == 0).all()
    assert int(m.num_forwards) == 2 and not m.scaling_active()
    out = m(feats, lengths, target_lengths=targets)  # scaling over: the raw alphas are integrated
    assert out["alphas"].dtype == torch.float32
    torch.testing.assert_close(out["alphas"].sum(1), out["alpha_sum"])
    assert torch.equal(out["unit_lengths"], torch.floor(out["alpha_sum"] + 1e-5).long().clamp_min(1))


def test_downsampler_output_does_not_depend_on_batch_padding():
    torch.manual_seed(5)
    m = CIFDownsampler(6, num_layers=2, kernel_size=5).eval()
    with torch.no_grad():
        m.head.bias.fill_(1.0)  # alphas ~ 0.7: several units per utterance
    feats = torch.randn(2, 40, 6)
    lengths = torch.tensor([40, 23])
    batched = m(feats, lengths)
    alone = m(feats[1:, :23], lengths[1:])
    n = int(alone["unit_lengths"][0])
    assert n > 1 and int(batched["unit_lengths"][1]) == n
    torch.testing.assert_close(batched["units"][1, :n], alone["units"][0, :n], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(batched["alphas"][1, :23], alone["alphas"][0])


def test_downsampler_gradients_are_finite():
    torch.manual_seed(6)
    m = CIFDownsampler(8).train()
    feats = torch.randn(4, 50, 8, requires_grad=True)
    out = m(feats, torch.tensor([50, 20, 35, 9]), target_lengths=torch.tensor([4, 2, 3, 1]))
    loss = out["units"].pow(2).sum() + 0.25 * out["quantity_loss"]
    loss.backward()
    grads = [feats.grad] + [p.grad for p in m.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert m.head.weight.grad.abs().sum() > 0


def test_downsampler_rejects_even_kernel():
    with pytest.raises(ValueError, match="odd"):
        CIFDownsampler(4, kernel_size=4)


# --------------------------------------------------------------------------------------------------
# encode_variable_keywords against open_clip's encode_text
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def clip(tiny_clip):
    return load_clip(**tiny_clip)


def test_variable_keywords_equal_open_clip_encode_text(clip):
    text = CLIPTextEncoder(clip)
    torch.manual_seed(7)
    lengths = [5, 0, 1, 75, 12, 80]  # 80 > 77 - 2: truncated to 75 with EOT last
    n_max = max(lengths)
    tokens = torch.randint(1, 49000, (len(lengths), n_max))
    ids = torch.zeros(len(lengths), 77, dtype=torch.long)
    for i, n in enumerate(lengths):
        k = min(n, 75)
        ids[i, 0], ids[i, 1 : k + 1], ids[i, k + 1] = SOT_ID, tokens[i, :k], EOT_ID
    ref = clip.encode_text(ids, normalize=True)
    keywords = text.token_embedding(tokens).clone().requires_grad_()
    got = encode_variable_keywords(text, keywords, torch.tensor(lengths))
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=0)
    # rows beyond each utterance's n do not matter, and gradients reach the keywords
    noisy = keywords.detach().clone()
    for i, n in enumerate(lengths):
        noisy[i, n:] = 1e3
    torch.testing.assert_close(
        encode_variable_keywords(text, noisy, torch.tensor(lengths)), ref, atol=1e-5, rtol=0
    )
    got.sum().backward()
    assert torch.isfinite(keywords.grad).all() and keywords.grad[0, :5].abs().sum() > 0
    assert (keywords.grad[0, 5:] == 0).all() and (keywords.grad[1] == 0).all()


def test_variable_keywords_equal_fixed_k_path(clip):
    text = CLIPTextEncoder(clip)
    torch.manual_seed(8)
    kw = torch.randn(3, 8, text.width)
    ends = text.token_embedding.weight[[SOT_ID, EOT_ID]]
    seq = torch.cat([ends[0].expand(3, 1, -1), kw, ends[1].expand(3, 1, -1)], dim=1)
    torch.testing.assert_close(
        encode_variable_keywords(text, kw, torch.full((3,), 8)),
        text.encode_embeddings(seq),
        atol=1e-5,
        rtol=0,
    )


def test_variable_keywords_reject_bad_lengths(clip):
    text = CLIPTextEncoder(clip)
    with pytest.raises(ValueError, match="lengths"):
        encode_variable_keywords(text, torch.zeros(2, 3, text.width), torch.tensor([1, 4]))
