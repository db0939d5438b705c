"""Character and word error rates of ASR output against reference transcripts, as sclite counts them.

The ESPnet wheel has no file-level scorer (its recipes call sclite through ``utils/score_sclite.sh``,
which the wheel does not ship), so the counts are computed here: a Levenshtein alignment per utterance
(substitutions, deletions, insertions), summed over the corpus; the error rate is
``(S + D + I) / N`` with ``N`` the reference length. Characters include the spaces between words
(ESPnet's character tokens write them as ``<space>``), and runs of whitespace count as one space.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Dict, List, Mapping, Sequence, Tuple

from espnet_speechclip.errors import InputError

UNITS = ("char", "word")


def edit_ops(ref: Sequence[str], hyp: Sequence[str]) -> Tuple[int, int, int]:
    """``(substitutions, deletions, insertions)`` of a minimum edit distance alignment of ``hyp`` to
    ``ref`` (unit costs). Among alignments with the fewest errors it takes one with the fewest
    substitutions, as sclite's weights do ("ab" -> "ba" is one deletion and one insertion)."""
    # prev[j] / cur[j]: (errors, substitutions, deletions, insertions) of ref[:i] against hyp[:j]
    prev = [(j, 0, 0, j) for j in range(len(hyp) + 1)]
    for i in range(1, len(ref) + 1):
        cur = [(i, 0, i, 0)]
        for j in range(1, len(hyp) + 1):
            e, s, d, n = prev[j - 1]
            diagonal = (e, s, d, n) if ref[i - 1] == hyp[j - 1] else (e + 1, s + 1, d, n)
            e, s, d, n = prev[j]
            deletion = (e + 1, s, d + 1, n)
            e, s, d, n = cur[j - 1]
            insertion = (e + 1, s, d, n + 1)
            cur.append(min(diagonal, deletion, insertion))
        prev = cur
    _, substitutions, deletions, insertions = prev[-1]
    return substitutions, deletions, insertions


def units(text: str, unit: str) -> List[str]:
    """The units of ``text`` that are scored: its characters (one space between words) or its words."""
    if unit not in UNITS:
        raise InputError(f"unit must be one of {UNITS}, got {unit!r}")
    words = text.split()
    return list(" ".join(words)) if unit == "char" else words


@dataclass
class ErrorRate:
    """Corpus totals. ``error_rate`` is in percent of the reference units ``n_ref``."""

    unit: str
    n_utts: int
    n_ref: int
    substitutions: int
    deletions: int
    insertions: int
    n_missing: int  # reference utterances without a hypothesis (scored as empty)

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def error_rate(self) -> float:
        return 100.0 * self.errors / max(self.n_ref, 1)

    def to_dict(self) -> dict:
        return dict(asdict(self), errors=self.errors, error_rate=round(self.error_rate, 2))

    def summary(self) -> str:
        name = {"char": "CER", "word": "WER"}[self.unit]
        return (
            f"{name} {self.error_rate:.2f} % ({self.errors} errors / {self.n_ref} reference {self.unit}s: "
            f"{self.substitutions} sub, {self.deletions} del, {self.insertions} ins; {self.n_utts} utterances"
            + (f", {self.n_missing} without hypothesis" if self.n_missing else "")
            + ")"
        )


def error_rate(refs: Mapping[str, str], hyps: Mapping[str, str], unit: str = "char") -> ErrorRate:
    """Score ``hyps`` (utterance -> text) against ``refs`` over every reference utterance.

    A reference utterance without a hypothesis is scored as an empty hypothesis and counted in
    ``n_missing``; a hypothesis without a reference is an error (scoring the wrong set).

    Raises:
        ValueError: hypotheses for utterances the references lack.
    """
    extra = sorted(set(hyps) - set(refs))
    if extra:
        raise InputError(
            f"{len(extra)} hypothesis utterance(s) have no reference, e.g. {extra[:3]}: "
            "are reference and hypothesis of the same set?"
        )
    totals: Dict[str, int] = dict(n_ref=0, substitutions=0, deletions=0, insertions=0)
    for utt, ref in refs.items():
        r, h = units(ref, unit), units(hyps.get(utt, ""), unit)
        s, d, i = edit_ops(r, h)
        totals["n_ref"] += len(r)
        totals["substitutions"] += s
        totals["deletions"] += d
        totals["insertions"] += i
    return ErrorRate(unit, len(refs), n_missing=len(set(refs) - set(hyps)), **totals)
