"""RESULTS.md and results.json of an experiment, from the scored inference folders (recipe stage 7).

results.json maps each test set to its branches:
``{"<test set>": {"parallel": {"speech_to_image": {"R@1": ..}, "image_to_speech": .., "speech_to_text": ..,
"text_to_speech": ..}, "cascaded": {..., "keyword_hit_rate": {"kw1": .., "avg": ..},
"keyword_hit_rate_top5_neighbours": {..}, "keyword_timing": {..}}}}`` (percent; see
:mod:`espnet_speechclip.evaluation.scoring`).

The pages carry a record (``.results.json.made_from.json``, :mod:`espnet_speechclip.provenance`) of the
model and decode folders they were computed from and of the pages' own sha256, written after them and
never removed before: results pass :func:`require_results_of` only when their record names the model and
matches them byte for byte, so packing refuses results of another model, of an interrupted scoring run,
or without a record (unless the user says they were written by hand).
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from espnet_speechclip.config import config_value, read_config
from espnet_speechclip.errors import MissingFileError
from espnet_speechclip.evaluation.tables import hit_rate_table, keyword_timing_table, retrieval_table
from espnet_speechclip.files import write_text_atomic
from espnet_speechclip.inference.decode_dir import RECORD_KIND as DECODE_KIND
from espnet_speechclip.inference.decode_dir import DecodeDir
from espnet_speechclip.models.builder import option_value
from espnet_speechclip.provenance import (
    RECORD_NAME,
    ProvenanceError,
    check_record,
    clear_record,
    digest,
    read_record,
    record_path,
    write_record,
)

RECORD_KIND = "results"

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
    from espnet_speechclip.version import __version__

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


def keyword_tables(decode_dir: Path, scores: Dict[str, Dict], n_examples: int = 10) -> List[str]:
    """Keyword hit rates (every variant in ``scores``, the cascaded branch's) and example keywords."""
    lines = hit_rate_table(scores) + [""]
    d = DecodeDir.read(decode_dir)
    keywords, text, utts = d.keywords or {}, d.transcripts or {}, d.utts
    kw_scores = d.array("keyword_scores")
    _, spans = d.keyword_lists()
    lines += [
        "Example keywords (cosine score to the codebook subword"
        + (
            ", and the seconds of speech each came from, none where it is not localised"
            if spans is not None
            else ""
        )
        + "):",
        "",
        "| utterance | transcript | keywords |",
        "|---|---|---|",
    ]

    def heard(i: int, k: int) -> str:
        if spans is None:
            return ""
        start, end = spans[i][k]
        return ", not localised" if np.isnan(start) or np.isnan(end) else f", {start:.2f}-{end:.2f}"

    for i in np.linspace(0, len(utts) - 1, min(n_examples, len(utts))).astype(int):
        kws = keywords[utts[i]].split()
        shown = " ".join(f"{w} ({s:.2f}{heard(i, k)})" for k, (w, s) in enumerate(zip(kws, kw_scores[i])))
        lines.append(f"| {utts[i]} | {text.get(utts[i], '')} | {shown} |")
    return lines


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
    results: Dict[str, Dict] = {}
    for s in test_sets:
        f = exp_dir / f"decode_{s}" / "scores.json"
        if not f.is_file():
            raise MissingFileError(f"{f} is missing: run the inference stage for {s} first")
        results[s] = json.loads(f.read_text(encoding="utf-8"))
    # The earlier record stays until the new one replaces it: it holds the sha256 of the pages it was
    # written with, so a run stopped between writing a page and its record leaves pages that do not
    # match their record, refused by require_results_of, never results without a record.
    write_text_atomic(exp_dir / "results.json", json.dumps(results, indent=2) + "\n")

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
        f"`{option_value(config, 'speech_encoder_conf.upstream')}`, "
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
    write_text_atomic(exp_dir / "RESULTS.md", "\n".join(md) + "\n")
    if model is None:  # pages of no known model: none of their earlier record may vouch for them
        clear_record(record_path(exp_dir / "results.json"))
    else:
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


def require_results_of(results_json: str | Path, model: dict) -> None:
    """Refuse ``results_json`` unless the scoring stage wrote it for ``model`` (its identity,
    :func:`espnet_speechclip.inference.loader.model_identity`) and it is unchanged since: its record
    names that model and the file's sha256. A decode folder's ``scores.json`` passes on the decode
    folder's record.

    Raises:
        ProvenanceError: no record (an interrupted scoring run, a copied or hand-written file), a record
            of another model, or a file changed since its record was written; the message says what to do.
    """
    results_json = Path(results_json)
    record, kind = record_path(results_json), RECORD_KIND
    if read_record(record) is None and results_json.name == "scores.json":
        record, kind = results_json.parent / RECORD_NAME, DECODE_KIND
    problem = check_record(record, kind, {"model": model}, keys=["model"])
    if problem is not None:
        raise ProvenanceError(
            f"{results_json} {problem}: rerun the scoring stage (stage 7) for this model; for results "
            f"written by hand, say so (pack --hand_written_results)"
        )
