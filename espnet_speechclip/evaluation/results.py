"""RESULTS.md and results.json of an experiment, from the scored inference folders (recipe stage 7).

results.json maps each test set to its branches:
``{"<test set>": {"parallel": {"speech_to_image": {"R@1": ..}, "image_to_speech": .., "speech_to_text": ..,
"text_to_speech": ..}, "cascaded": {..., "keyword_hit_rate": {"kw1": .., "avg": ..},
"keyword_hit_rate_top5_neighbours": {..}, "keyword_timing": {..}}}}`` (percent; see
:mod:`espnet_speechclip.evaluation.scoring`).

The pages carry a record (``.results.json.made_from.json``, :mod:`espnet_speechclip.provenance`) of the
model and decode folders they were computed from, written after them; packing refuses results whose
record names another model.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from espnet_speechclip.config import config_value, read_config
from espnet_speechclip.errors import MissingFileError
from espnet_speechclip.inference.decode_dir import RECORD_KIND as DECODE_KIND
from espnet_speechclip.inference.decode_dir import DecodeDir
from espnet_speechclip.provenance import (
    RECORD_NAME,
    clear_record,
    digest,
    read_record,
    record_path,
    write_record,
)

RECORD_KIND = "results"

DIRECTIONS = [
    ("speech_to_image", "S→I"),
    ("image_to_speech", "I→S"),
    ("speech_to_text", "S→T (zero-shot)"),
    ("text_to_speech", "T→S (zero-shot)"),
]


# Where numbers can be compared: the same seed and thread count reproduce them on one machine, but
# float results differ in the last bits across CPU models, BLAS builds and GPUs, and training amplifies
# that.
REPRODUCIBILITY_NOTE = (
    "Numbers are deterministic per seed and thread count on one machine; another CPU model, BLAS build "
    "or GPU gives slightly different ones."
)


def cpu_name() -> str:
    """The CPU model as the OS names it ("" when unknown)."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _git(*args: str) -> str:
    """Output of a git command in the package's checkout, "" when it is not one (or git is missing)."""
    try:
        return subprocess.run(
            ["git", *args], capture_output=True, text=True, cwd=Path(__file__).parent, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def environment() -> List[str]:
    """The ``## Environments`` header of a results page, in ESPnet's RESULTS.md format (date, python,
    espnet and pytorch versions, git hash and commit date), plus the versions SpeechCLIP's numbers
    depend on (s3prl, open_clip, this package) and the GPU."""
    from espnet_speechclip import __version__

    lines = [
        "## Environments",
        f"- date: `{datetime.datetime.now().astimezone().strftime('%a %b %d %H:%M:%S %Z %Y')}`",
        f"- python version: `{sys.version.replace(chr(10), ' ')}`",
        f"- espnet version: `espnet {_version('espnet')}`",
        f"- pytorch version: `pytorch {_version('torch')}`",
        f"- s3prl version: `s3prl {_version('s3prl')}`",
        f"- open_clip version: `open_clip_torch {_version('open_clip_torch')}`",
        f"- espnet_speechclip version: `espnet_speechclip {__version__}`",
        f"- CPU: `{cpu_name() or 'unknown'}`, {os.cpu_count()} cores",
    ]
    # only this package's own checkout (an installed copy may sit inside some unrelated repository)
    top = _git("rev-parse", "--show-toplevel")
    package = Path(__file__).resolve().parent.parent
    commit = _git("rev-parse", "HEAD") if top and (Path(top) / package.name).resolve() == package else ""
    if commit:
        dirty = " (with uncommitted changes)" if _git("status", "--porcelain", "--untracked-files=no") else ""
        lines += [
            f"- Git hash: `{commit}`{dirty}",
            f"  - Commit date: `{_git('show', '-s', '--format=%cd', 'HEAD')}`",
        ]
    else:
        lines.append("- Git hash: `unknown` (espnet_speechclip is not installed from a git checkout)")
    try:
        import torch

        if torch.cuda.is_available():
            lines.append(f"- GPU: `{torch.cuda.get_device_name(0)}`")
    except Exception:  # environment reporting must never fail a results page
        pass
    return lines


def _fmt(x: float) -> str:
    return f"{x:.1f}"


def retrieval_table(scores: Dict[str, Dict]) -> List[str]:
    lines = ["| branch | direction | R@1 | R@5 | R@10 |", "|---|---|---:|---:|---:|"]
    for branch, res in scores.items():
        for key, name in DIRECTIONS:
            if key in res:
                r = res[key]
                lines.append(
                    f"| {branch} | {name} | {_fmt(r['R@1'])} | {_fmt(r['R@5'])} | {_fmt(r['R@10'])} |"
                )
    return lines


def is_results(results: Any) -> bool:
    """Whether ``results`` has results.json's shape: ``{test set: {branch: {direction: {R@K: x}}}}``."""
    return (
        isinstance(results, dict)
        and bool(results)
        and all(
            isinstance(scores, dict)
            and bool(scores)
            and all(isinstance(r, dict) and any(key in r for key, _ in DIRECTIONS) for r in scores.values())
            for scores in results.values()
        )
    )


def keyword_rate_rows(scores: Dict[str, Dict]) -> List[Tuple[str, Dict[str, float]]]:
    """(row name, its rates) of every keyword hit rate in a cascaded branch's scores: kw1..kwK + avg
    for K keyword slots; pooled, utterance_avg, keywords_per_utterance for CIF keywords."""
    rows = [("top-1 (the keyword itself)", scores["keyword_hit_rate"])]
    for key, rates in scores.items():
        m = re.fullmatch(r"keyword_hit_rate_top(\d+)_neighbours", key)
        if m:
            rows.append((f"top-{m.group(1)} neighbours (the authors' metric)", rates))
    return rows


def hit_rate_table(scores: Dict[str, Dict]) -> List[str]:
    """Every keyword hit rate of a cascaded branch's ``scores`` as a markdown table, with what it counts."""
    rows = keyword_rate_rows(scores)
    if "pooled" in rows[0][1]:  # variable-length keywords (CIF): no slots
        lines = [
            "A keyword hits when it (top-1), or any of its nearest codebook subwords by cosine, the keyword "
            "first (top-5, as the authors counted), occurs among the CLIP subwords of the transcript; "
            "special tokens never count. CIF keywords have no slots: pooled over all keywords emitted, "
            "and the mean of the utterances' own rates. The two rows do not compare with each other.",
            "",
            "| keyword hit rate | pooled | utterance avg | keywords per utterance |",
            "|---|---:|---:|---:|",
        ]
        for name, rates in rows:
            lines.append(
                f"| {name} | {_fmt(rates['pooled'])} | {_fmt(rates['utterance_avg'])} | "
                f"{rates['keywords_per_utterance']:.2f} |"
            )
        return lines
    slots = [k for k in rows[0][1] if k != "avg"]
    lines = [
        "A slot hits when its keyword (top-1), or any of its nearest codebook subwords by cosine, the "
        "keyword first (top-5: how the authors' published averages were counted), occurs among the CLIP "
        "subwords of the transcript; special tokens never count. The two rows do not compare with each "
        "other.",
        "",
        "| keyword hit rate | " + " | ".join(slots) + " | avg |",
        "|---|" + "---:|" * (len(slots) + 1),
    ]
    for name, rates in rows:
        lines.append(
            f"| {name} | " + " | ".join(_fmt(rates[k]) for k in slots) + f" | {_fmt(rates['avg'])} |"
        )
    return lines


def keyword_tables(decode_dir: Path, scores: Dict[str, Dict], n_examples: int = 10) -> List[str]:
    """Keyword hit rates (every variant in ``scores``, the cascaded branch's) and example keywords."""
    lines = hit_rate_table(scores) + [""]
    d = DecodeDir.read(decode_dir)
    keywords, text, utts = d.keywords or {}, d.transcripts or {}, d.utts
    kw_scores = d.array("keyword_scores")
    _, spans = d.keyword_lists()
    lines += [
        "Example keywords (cosine score to the codebook subword"
        + (", and the seconds of speech each came from" if spans is not None else "")
        + "):",
        "",
        "| utterance | transcript | keywords |",
        "|---|---|---|",
    ]
    for i in np.linspace(0, len(utts) - 1, min(n_examples, len(utts))).astype(int):
        kws = keywords[utts[i]].split()
        shown = " ".join(
            f"{w} ({s:.2f}"
            + (f", {spans[i][k][0]:.2f}-{spans[i][k][1]:.2f}" if spans is not None else "")
            + ")"
            for k, (w, s) in enumerate(zip(kws, kw_scores[i]))
        )
        lines.append(f"| {utts[i]} | {text.get(utts[i], '')} | {shown} |")
    return lines


def keyword_timing_table(timing: Dict[str, float]) -> List[str]:
    """The keyword-timing scores of :mod:`espnet_speechclip.evaluation.scoring` as a table."""
    source = {
        "cif": "the units CIF integrated",
        "attention": "the frames holding the central 90 % of each keyword's attention",
    }.get(timing.get("spans_from", ""), timing.get("spans_from", "?"))
    ms = round(1000 * timing["tolerance"])
    return [
        f"Keyword time spans ({source}) against the word alignment: boundary precision / recall / F1 / "
        f"R-value within {ms} ms (utterance edges left out on both sides), the F1 of as many equal spans "
        f"over the same stretch (the chance level), how often a keyword's span contains (edges within "
        f"{ms} ms) or overlaps a word holding its subword, and the mean span.",
        "",
        "| boundary P | R | F1 | R-value | F1 of equal spans | over-segmentation | span contains word "
        "| span overlaps word | mean span (s) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {_fmt(timing['boundary_precision'])} | {_fmt(timing['boundary_recall'])} | "
        f"{_fmt(timing['boundary_f1'])} | {_fmt(timing['boundary_r_value'])} | "
        f"{_fmt(timing['boundary_f1_equal'])} | {timing['over_segmentation']:+.2f} | "
        f"{_fmt(timing['span_contains_word'])} | {_fmt(timing['span_overlaps_word'])} | "
        f"{timing['mean_span']:.2f} |",
    ]


def clear_results_record(exp_dir: str | Path) -> None:
    """Drop the record of ``exp_dir``'s results before any of them is rewritten."""
    clear_record(record_path(Path(exp_dir) / "results.json"))


def write_results(
    exp_dir: str | Path,
    test_sets: List[str],
    params: Optional[Dict[str, int]] = None,
    extra_sections: Optional[List[str]] = None,
    model: Optional[dict] = None,
    extra_outputs: Optional[List[Path]] = None,
) -> Dict[str, Dict]:
    """Collect ``exp_dir/decode_<set>/scores.json`` into ``results.json`` and ``RESULTS.md``.

    With ``model`` (its identity), the pages get a record of that model and of each decode folder's
    record; ``extra_outputs`` (e.g. the retrieval picture) are part of it. Check the decode folders first
    (:func:`espnet_speechclip.inference.decode_dir.require_current`).
    """
    exp_dir = Path(exp_dir)
    clear_results_record(exp_dir)
    results: Dict[str, Dict] = {}
    for s in test_sets:
        f = exp_dir / f"decode_{s}" / "scores.json"
        if not f.is_file():
            raise MissingFileError(f"{f} is missing: run the inference stage for {s} first")
        results[s] = json.loads(f.read_text(encoding="utf-8"))
    (exp_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")

    config = read_config(exp_dir / "config.yaml")
    clip = config_value(config, "clip_conf")
    md = [
        "<!-- Generated by python -m espnet_speechclip.bin.make_results -->",
        "# RESULTS",
        *environment(),
        "",
        REPRODUCIBILITY_NOTE,
        "",
        "## Model",
        f"- config: `{exp_dir / 'config.yaml'}`",
        f"- model: `{config_value(config, 'model')}`, speech upstream: "
        f"`{config_value(config, 'speech_encoder_conf.upstream')}`, "
        f"CLIP: `{clip.get('model_name')}` (`{clip.get('pretrained')}`)",
    ]
    if params:
        md.append(
            f"- parameters: {params['trainable'] / 1e6:.2f} M trainable, {params['total'] / 1e6:.1f} M total"
        )
    md.append("")
    for s, scores in results.items():
        md += [
            f"## {s}",
            "",
            "Recall in percent (an image query hits if any of its captions is in the top K; "
            "zero-shot speech↔text uses CLIP text embeddings of the transcripts, correct by image).",
            "",
        ]
        md += retrieval_table(scores) + [""]
        cascaded = scores.get("cascaded", {})
        if "keyword_hit_rate" in cascaded:
            md += ["### Keyword hit rate (cascaded)", ""]
            md += keyword_tables(exp_dir / f"decode_{s}", cascaded) + [""]
        if "keyword_timing" in cascaded:
            md += ["### Keyword timing (cascaded)", ""]
            md += keyword_timing_table(cascaded["keyword_timing"]) + [""]
    md += extra_sections or []
    (exp_dir / "RESULTS.md").write_text("\n".join(md) + "\n", encoding="utf-8")
    if model is not None:
        decodes = {}
        for s in test_sets:
            record = read_record(exp_dir / f"decode_{s}" / RECORD_NAME) or {}
            decodes[s] = digest(record.get("made_from")) if record.get("kind") == DECODE_KIND else None
        outputs = {
            p.name: p for p in [exp_dir / "results.json", exp_dir / "RESULTS.md", *(extra_outputs or [])]
        }
        write_record(
            record_path(exp_dir / "results.json"),
            RECORD_KIND,
            {"model": model, "decodes": decodes},
            outputs=outputs,
        )
    return results
