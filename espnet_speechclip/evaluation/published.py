"""The published numbers of the authors' six released SpeechCLIP checkpoints and the dev metric of the nine
SpeechCLIP+ ones, as data, and the RESULTS.md section that puts them beside ours for an imported checkpoint.

Sources: the paper (Shih et al., "SpeechCLIP: Integrating Speech with Pre-Trained Vision and Language Model",
IEEE SLT 2022, arXiv 2210.00705: SpokenCOCO test recall, zero-shot speech-text recall, keyword hit rate
averages) and the names of the released files (the authors' ``download_ckpts.sh``; each name carries the
dev metric the file was selected by: the mean of speech->image and image->speech R@1 or R@10 on their dev
split). The Flickr8k test recall of the paper's Table 1 is not reproduced here.

Metric names and layout follow ``results.json`` (see :mod:`espnet_speechclip.evaluation.results`). The
paper's keyword hit rates count a slot as a hit when any of the 5 nearest codebook subwords of the keyword
is in the caption: they compare with ``keyword_hit_rate_top5_neighbours``, never with ``keyword_hit_rate``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Tuple

PAPER = "Shih et al., SLT 2022 (arXiv 2210.00705)"
PLUS_PAPER = "Wang et al., 2024 (SpeechCLIP+, arXiv 2402.06959)"
DOWNLOAD_ROOT = "https://huggingface.co/speechclip/models/resolve/main"
PLUS_DOWNLOAD_ROOT = "https://huggingface.co/ShampooWang/speechclip_plus/tree/main"


@dataclass(frozen=True)
class Release:
    """One released checkpoint and what was published about it."""

    path: str  # <size>/<corpus>/<model>/<file name>, under DOWNLOAD_ROOT
    size: str  # base | large (HuBERT Base + ViT-B/32 | HuBERT Large + ViT-L/14)
    corpus: str  # flickr8k | spokencoco
    model: str  # parallel | cascaded
    dev_k: int  # the file was selected by the dev mean R@dev_k ...
    dev_value: float  # ... of this value
    # test-set numbers of the paper, in results.json's layout: metric -> {"R@1": ..} or {"avg": ..}
    test: Dict[str, Dict[str, float]] = field(default_factory=dict)
    family: str = "SpeechCLIP"  # or SpeechCLIP+ (model: cascaded_plus, hybrid_shared, hybrid_plus)

    @property
    def file_name(self) -> Optional[str]:
        """The released file's name, where it is known (the SpeechCLIP+ ``path`` is the Hub folder only)."""
        name = self.path.rsplit("/", 1)[-1]
        return name if name.endswith(".ckpt") else None

    @property
    def url(self) -> str:
        return f"{PLUS_DOWNLOAD_ROOT if self.family == 'SpeechCLIP+' else DOWNLOAD_ROOT}/{self.path}"

    @property
    def branch(self) -> str:
        """The branch of ``scores.json`` the dev metric was computed on (SpeechCLIP+'s hybrids: the
        parallel one, see their Hub names)."""
        return (
            "parallel" if self.model in ("hybrid_shared", "hybrid_plus") else self.model.replace("_plus", "")
        )


RELEASES: Tuple[Release, ...] = (
    Release("base/flickr/parallel/epoch_131-step_15443-val_recall_mean_1_36.0100.ckpt", "base", "flickr8k",
            "parallel", 1, 36.01),
    Release("base/flickr/cascaded/epoch_58-step_6902-val_recall_mean_1_7.7700.ckpt", "base", "flickr8k",
            "cascaded", 1, 7.77, {"keyword_hit_rate_top5_neighbours": {"avg": 22.7}}),
    Release("large/flickr/parallel/epoch_56-step_6668-val_recall_mean_10_89.0000.ckpt", "large", "flickr8k",
            "parallel", 10, 89.00),
    Release("large/flickr/cascaded/epoch_187-step_21995-val_recall_mean_10_62.7700.ckpt", "large", "flickr8k",
            "cascaded", 10, 62.77, {"keyword_hit_rate_top5_neighbours": {"avg": 32.7}}),
    Release("large/coco/parallel/epoch_14-step_33224-val_recall_mean_10_84.0128.ckpt", "large", "spokencoco",
            "parallel", 10, 84.0128, {
                "speech_to_image": {"R@1": 35.8, "R@5": 66.5, "R@10": 78.0},
                "image_to_speech": {"R@1": 50.6, "R@5": 80.9, "R@10": 89.1},
                "speech_to_text": {"R@1": 60.32, "R@5": 81.81, "R@10": 88.18},
                "text_to_speech": {"R@1": 65.45, "R@5": 85.82, "R@10": 91.27},
            }),
    Release("large/coco/cascaded/epoch_12-step_28794-val_recall_mean_10_36.1455.ckpt", "large", "spokencoco",
            "cascaded", 10, 36.1455, {
                "speech_to_image": {"R@1": 6.4, "R@5": 20.7, "R@10": 31.0},
                "image_to_speech": {"R@1": 9.6, "R@5": 27.7, "R@10": 39.7},
                "keyword_hit_rate_top5_neighbours": {"avg": 38.2},
            }),
)  # fmt: skip

# The nine SpeechCLIP+ releases (Hub ShampooWang/speechclip_plus; every file is saved as model.ckpt by their
# download script). Only the dev mean R@10 of each Hub file name is stored: the SpeechCLIP+ paper's test
# numbers are not reproduced here.
PLUS_RELEASES: Tuple[Release, ...] = tuple(
    Release(f"{size}/{corpus_dir}/{model_dir}", size, corpus, model, 10, dev, family="SpeechCLIP+")
    for (size, corpus_dir, corpus), values in (
        (("base", "flickr", "flickr8k"), (42.11, 80.01, 81.03)),
        (("large", "flickr", "flickr8k"), (60.05, 90.10, 89.35)),
        (("large", "coco", "spokencoco"), (31.30, 79.30, 83.54)),
    )
    for (model_dir, model), dev in zip(
        (("cascaded+", "cascaded_plus"), ("hybrid", "hybrid_shared"), ("hybrid+", "hybrid_plus")), values
    )
)
ALL_RELEASES = RELEASES + PLUS_RELEASES

# The authors' names in their stored configs (audio_encoder.name, data.dataset.name) -> ours
_SIZES = {"hubert": "base", "hubert_large_ll60k": "large"}
_CORPORA = {"flickr": "flickr8k", "coco": "spokencoco"}

METRIC_NAMES = {
    "speech_to_image": "speech→image",
    "image_to_speech": "image→speech",
    "speech_to_text": "speech→text (zero-shot)",
    "text_to_speech": "text→speech (zero-shot)",
    "keyword_hit_rate_top5_neighbours": "keyword hit rate, top-5 neighbours",
}


def release_by_path(path: Optional[str]) -> Optional[Release]:
    return next((r for r in ALL_RELEASES if r.path == path), None)


def identify(record: Mapping) -> Tuple[Optional[Release], str]:
    """The release an ``import.json`` record was imported from, and what that identification rests on:
    the release the import identified from the checkpoint's content, else the file name, else (records
    of older imports) the size, corpus and branch of its stored config. (None, why) for anything else."""
    source, arch = record.get("source", {}), record.get("architecture", {})
    found = source.get("release") or {}
    if found.get("identified") and release_by_path(found.get("path")) is not None:
        return release_by_path(found["path"]), found.get("identified_by", "the checkpoint's content")
    if found.get("summary"):
        return None, found["summary"]
    for release in RELEASES:
        if source.get("name") == release.file_name:
            return release, "the file name"
    size, corpus = _SIZES.get(arch.get("upstream")), _CORPORA.get(arch.get("corpus"))
    matches = [r for r in RELEASES if (r.size, r.corpus, r.model) == (size, corpus, arch.get("model"))]
    if len(matches) == 1:
        return matches[0], "the model size, corpus and branch of its stored config"
    return None, "it matches none of the authors' released checkpoints"


def release_of(record: Mapping) -> Optional[Release]:
    """The release an ``import.json`` record was imported from (see :func:`identify`), or None."""
    return identify(record)[0]


def _fmt(x: Optional[float], digits: int = 1) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def dev_mean(scores: Mapping, k: int) -> Optional[float]:
    """Mean of speech->image and image->speech R@k of one branch's scores (the authors' dev metric)."""
    try:
        return 0.5 * (scores["speech_to_image"][f"R@{k}"] + scores["image_to_speech"][f"R@{k}"])
    except KeyError:
        return None


def comparison_section(
    release: Release,
    test_set: str,
    test_scores: Mapping,
    dev_set: Optional[str] = None,
    dev_scores=None,
    identified_by: str = "the file name",
    source_name: Optional[str] = None,
) -> List[str]:
    """RESULTS.md lines: the paper's numbers of ``release`` beside ours on ``test_set`` (``test_scores``
    = that set's scores.json, by branch) and, with ``dev_scores``, the dev metric the file was chosen by.
    ``identified_by`` says what the identification rests on, ``source_name`` is the imported file."""
    branch = release.branch
    ours = test_scores.get(branch, {})
    plus = release.family == "SpeechCLIP+"
    imported = f"`{source_name}`, " if source_name else ""
    lines = [
        f"## The paper's numbers beside ours ({release.size} {release.corpus} {release.model})",
        "",
        f"Imported {imported}identified as the authors' {release.family} release `{release.path}` by "
        f"{identified_by}. Paper: {PLUS_PAPER if plus else PAPER}; dev metric: the released file's name on "
        f"the Hub. Ours: this experiment's `{branch}` branch on `{test_set}`"
        + (f" (dev: `{dev_set}`)" if dev_set else "")
        + ". Small differences are expected (inference batches and frame lengths, see import.json "
        "`known_mismatches`).",
        "",
        "| metric | paper | ours |",
        "|---|---:|---:|",
    ]
    our_dev = dev_mean(dev_scores.get(branch, {}), release.dev_k) if dev_scores else None
    lines.append(
        f"| dev mean R@{release.dev_k} (speech→image, image→speech) | {_fmt(release.dev_value, 2)} | "
        f"{_fmt(our_dev, 2)} |"
    )
    for metric, values in release.test.items():
        for k, value in values.items():
            mine = ours.get(metric, {}).get(k)
            lines.append(f"| {METRIC_NAMES.get(metric, metric)} {k} | {_fmt(value)} | {_fmt(mine)} |")
    if plus:
        lines += [
            "",
            "The SpeechCLIP+ paper's test numbers are not stored here: compare the recall table above "
            "with its tables.",
        ]
    elif release.corpus == "flickr8k":
        lines += [
            "",
            f"The paper's Flickr8k test recall (its Table 1) is not stored here: compare the `{test_set}` "
            "recall table above with it.",
        ]
    if "keyword_hit_rate_top5_neighbours" in release.test:
        lines += [
            "",
            "The paper's keyword hit rate counts a slot as a hit when any of the keyword's 5 nearest "
            "codebook subwords is in the caption (`keyword_hit_rate_top5_neighbours`); our top-1 "
            "`keyword_hit_rate` is stricter and does not compare with it.",
        ]
    return lines + [""]
