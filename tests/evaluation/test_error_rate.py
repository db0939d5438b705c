"""Character / word error rates: the alignment counts and the corpus totals."""

import pytest

from espnet_speechclip.evaluation.error_rate import edit_ops, error_rate, units


@pytest.mark.parametrize(
    "ref, hyp, ops",
    [
        ("abc", "abc", (0, 0, 0)),
        ("abc", "axc", (1, 0, 0)),
        ("abc", "ac", (0, 1, 0)),
        ("abc", "abxc", (0, 0, 1)),
        ("abc", "", (0, 3, 0)),
        ("", "ab", (0, 0, 2)),
        ("ab", "ba", (0, 1, 1)),  # two errors either way: sclite-like, no substitution pair
        ("kitten", "sitting", (2, 0, 1)),
    ],
)
def test_edit_ops(ref, hyp, ops):
    assert edit_ops(list(ref), list(hyp)) == ops
    assert sum(edit_ops(list(hyp), list(ref))) == sum(ops)  # the distance is symmetric


def test_units_normalise_whitespace():
    assert units("  a  red\tstar ", "char") == list("a red star")
    assert units("  a  red\tstar ", "word") == ["a", "red", "star"]
    with pytest.raises(ValueError, match="unit"):
        units("a", "phone")


def test_corpus_error_rate_counts_spaces_and_missing_hypotheses():
    refs = {"u1": "a red star", "u2": "a blue cross", "u3": "a cross"}
    hyps = {"u1": "a red star", "u2": "a bluecross"}  # one deleted space; u3 missing
    cer = error_rate(refs, hyps, "char")
    assert (cer.n_ref, cer.substitutions, cer.deletions, cer.insertions) == (10 + 12 + 7, 0, 1 + 7, 0)
    assert cer.n_missing == 1 and cer.n_utts == 3
    assert cer.error_rate == pytest.approx(100 * 8 / 29)
    assert "CER 27.59 %" in cer.summary() and "1 without hypothesis" in cer.summary()
    wer = error_rate(refs, hyps, "word")
    assert (wer.n_ref, wer.errors) == (3 + 3 + 2, 1 + 1 + 2)  # "bluecross" for "blue cross": 1 sub 1 del
    assert wer.to_dict()["error_rate"] == 50.0
    with pytest.raises(ValueError, match="no reference"):
        error_rate(refs, {"u9": "x"})
