"""RESULTS.md and results.json of an experiment, from the scored inference folders (recipe stage 7).

results.json maps each test set to its branches:
``{"<test set>": {"parallel": {"speech_to_image": {"R@1": ..}, "image_to_speech": .., "speech_to_text": ..,
"text_to_speech": ..}, "cascaded": {..., "keyword_hit_rate": {"kw1": .., "avg": ..}}}}`` (percent).
"""

from __future__ import annotations

import datetime
import json
import os
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


def environment() -> List[str]:
    lines = [
        f"- date: `{datetime.datetime.now().astimezone().strftime('%a %b %d %H:%M:%S %Z %Y')}`",
        f"- python: `{platform.python_version()}`, host: `{platform.machine()} {platform.system()}`",
        f"- CPU: `{cpu_name() or 'unknown'}`, {os.cpu_count()} cores",
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
    lines += [
        "Example keywords (cosine score to the codebook subword):",
        "",
        "| utterance | transcript | keywords |",
        "|---|---|---|",
    ]
    for i in np.linspace(0, len(utts) - 1, min(n_examples, len(utts))).astype(int):
        kws = keywords[utts[i]].split()
        shown = " ".join(f"{w} ({s:.2f})" for w, s in zip(kws, scores[i]))
        lines.append(f"| {utts[i]} | {text.get(utts[i], '')} | {shown} |")
    return lines


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
        if "keyword_hit_rate" in scores.get("cascaded", {}):
            md += ["### Keyword hit rate (cascaded)", ""]
            md += keyword_tables(exp_dir / f"decode_{s}", scores["cascaded"]["keyword_hit_rate"]) + [""]
    md += extra_sections or []
    (exp_dir / "RESULTS.md").write_text("\n".join(md) + "\n", encoding="utf-8")
    return results
