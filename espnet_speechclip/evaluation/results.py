"""RESULTS.md and results.json of an experiment, from the scored inference folders (recipe stage 7).

results.json maps each test set to its branches:
``{"<test set>": {"parallel": {"speech_to_image": {"R@1": ..}, "image_to_speech": .., "speech_to_text": ..,
"text_to_speech": ..}, "cascaded": {..., "keyword_hit_rate": {"kw1": .., "avg": ..}, "keyword_timing":
{..}}}}`` (percent; see :mod:`espnet_speechclip.evaluation.scoring`).
"""

from __future__ import annotations

import datetime
import json
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from espnet_speechclip.config import config_value, read_config
from espnet_speechclip.inference.decode_dir import DecodeDir

DIRECTIONS = [
    ("speech_to_image", "S→I"),
    ("image_to_speech", "I→S"),
    ("speech_to_text", "S→T (zero-shot)"),
    ("text_to_speech", "T→S (zero-shot)"),
]


def environment() -> List[str]:
    lines = [
        f"- date: `{datetime.datetime.now().astimezone().strftime('%a %b %d %H:%M:%S %Z %Y')}`",
        f"- python: `{platform.python_version()}`, host: `{platform.machine()} {platform.system()}`",
    ]
    for pkg in ("espnet-speechclip", "espnet", "s3prl", "open_clip_torch", "torch"):
        try:
            lines.append(f"- {pkg} version: `{metadata.version(pkg)}`")
        except metadata.PackageNotFoundError:
            pass
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).parent,
            timeout=10,
        ).stdout.strip()
        if commit:
            lines.append(f"- espnet-speechclip git commit: `{commit}`")
    except (OSError, subprocess.SubprocessError):
        pass
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


def keyword_tables(decode_dir: Path, hit_rate: Dict[str, float], n_examples: int = 10) -> List[str]:
    if "pooled" in hit_rate:  # variable-length keywords: no slots
        lines = [
            "Over all keywords emitted (pooled), and the mean of the utterances' own rates:",
            "",
            "| pooled | utterance avg | keywords per utterance |",
            "|---:|---:|---:|",
            f"| {_fmt(hit_rate['pooled'])} | {_fmt(hit_rate['utterance_avg'])} | "
            f"{hit_rate['keywords_per_utterance']:.2f} |",
            "",
        ]
    else:
        slots = [k for k in hit_rate if k != "avg"]
        lines = [
            "| " + " | ".join(slots) + " | avg |",
            "|" + "---:|" * (len(slots) + 1),
            "| " + " | ".join(_fmt(hit_rate[k]) for k in slots) + f" | {_fmt(hit_rate['avg'])} |",
            "",
        ]
    d = DecodeDir.read(decode_dir)
    keywords, text, utts = d.keywords or {}, d.transcripts or {}, d.utts
    scores = d.array("keyword_scores")
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
            for k, (w, s) in enumerate(zip(kws, scores[i]))
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


def write_results(
    exp_dir: str | Path,
    test_sets: List[str],
    params: Optional[Dict[str, int]] = None,
    extra_sections: Optional[List[str]] = None,
) -> Dict[str, Dict]:
    """Collect ``exp_dir/decode_<set>/scores.json`` into ``results.json`` and ``RESULTS.md``."""
    exp_dir = Path(exp_dir)
    results: Dict[str, Dict] = {}
    for s in test_sets:
        f = exp_dir / f"decode_{s}" / "scores.json"
        if not f.is_file():
            raise FileNotFoundError(f"{f} is missing: run the inference stage for {s} first")
        results[s] = json.loads(f.read_text(encoding="utf-8"))
    (exp_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")

    config = read_config(exp_dir / "config.yaml")
    clip = config_value(config, "clip_conf")
    md = [
        "# RESULTS",
        "",
        "## Environment",
        *environment(),
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
            md += keyword_tables(exp_dir / f"decode_{s}", cascaded["keyword_hit_rate"]) + [""]
        if "keyword_timing" in cascaded:
            md += ["### Keyword timing (cascaded)", ""]
            md += keyword_timing_table(cascaded["keyword_timing"]) + [""]
    md += extra_sections or []
    (exp_dir / "RESULTS.md").write_text("\n".join(md) + "\n", encoding="utf-8")
    return results
