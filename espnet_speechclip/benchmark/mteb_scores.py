"""MTEB's result and prediction files of our data-dir tasks, read beside our own scoring (no ``mteb`` needed).

How the two scorers count (both rank by cosine similarity; MTEB's numbers are fractions rounded to 5
decimals, ours percentages):

* speech->image (``<Name>A2IRetrieval``): one relevant image per utterance, so MTEB's ``recall_at_k``
  (relevant documents found in the top k / relevant documents) and ``hit_rate_at_k`` (a relevant
  document in the top k) are both our R@k.
* image->speech (``<Name>I2ARetrieval``): every caption of the image is relevant. Our R@k counts an image
  as a hit when ANY of its captions is in its top k: that is MTEB's ``hit_rate_at_k``. MTEB's
  ``recall_at_k`` is the share of the image's captions found in the top k (with 3 captions per image
  R@1 is at most 1/3), a different and smaller number, not comparable with the papers' I->S R@k.
* ties: ours are pessimistic (a target ranks below every competitor with an equal score, so a collapsed
  model scores 0); MTEB ranks with ``pytrec_eval`` (trec_eval), which sorts equal scores by document id,
  descending: a tie can go either way there. With real-valued embeddings ties do not occur in practice;
  on scores with ties the two differ exactly by those ties.

:func:`recall_from_predictions` applies our rule to the very scores MTEB's evaluator ranked (its
prediction files), which checks the two metric implementations against each other on identical input.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Mapping, Optional, Set, Tuple

from espnet_speechclip.errors import InputError, MissingFileError

if TYPE_CHECKING:
    import torch

KS = (1, 5, 10)
# Our result keys -> the task direction MTEB's files hold them under.
DIRECTION_TASKS = {"speech_to_image": "A2I", "image_to_speech": "I2A"}


def revision_of(identity: Mapping) -> str:
    """MTEB's revision of a local model or data dir: 40 hex digits of the digest of its identity
    (:func:`espnet_speechclip.inference.loader.model_identity`,
    :func:`espnet_speechclip.data.datadir.datadir_identity`)."""
    from espnet_speechclip.provenance import digest

    return digest(dict(identity))[:40]


def task_prefix(data_dir: str | Path) -> str:
    """``dump/raw/synth_test`` -> ``SynthTest``: the data dir's name in CamelCase, the tasks' prefix."""
    words = [w for w in re.split(r"[^0-9A-Za-z]+", Path(data_dir).resolve().name) if w]
    return "".join(w[:1].upper() + w[1:] for w in words) or "Local"


def task_names(data_dir: str | Path) -> Dict[str, str]:
    """``{"A2I": "<Prefix>A2IRetrieval", "I2A": "<Prefix>I2ARetrieval"}`` of a data dir."""
    prefix = task_prefix(data_dir)
    return {d: f"{prefix}{d}Retrieval" for d in ("A2I", "I2A")}


def find_result(folder: str | Path, task_name: str, revision: Optional[str] = None) -> Path:
    """The path of MTEB's result file ``<task_name>.json`` under ``folder`` (as ``mteb_eval`` and
    ``mteb.ResultCache`` lay it out: ``results/<model>/<revision>/<task>.json``), of model ``revision``
    when given.

    Raises:
        FileNotFoundError: none (naming the folder and revision), or several that ``revision`` does not
            tell apart.
    """
    folder = Path(folder)
    found = sorted(folder.rglob(f"{task_name}.json"))
    if revision is not None:
        found = [f for f in found if revision in f.relative_to(folder).parts]
    if not found:
        which = f" of model revision {revision}" if revision else ""
        raise MissingFileError(
            f"{folder} holds no MTEB result {task_name}.json{which}: run "
            f"python -m espnet_speechclip.bin.mteb_eval for this model first"
        )
    if len(found) > 1:
        raise MissingFileError(
            f"{folder} holds several {task_name}.json ({found[:2]}); give the model revision"
        )
    return found[0]


def read_json(path: str | Path) -> dict:
    """A JSON file's object."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def split_scores(result: Mapping) -> dict:
    """The ``test`` split's score dict of an MTEB result file."""
    try:
        return dict(result["scores"]["test"][0])
    except (KeyError, IndexError, TypeError):
        raise InputError(f"MTEB result of {result.get('task_name')} has no test scores") from None


def mteb_recall(scores: Mapping, metric: str = "hit_rate", ks=KS) -> Dict[str, float]:
    """MTEB's ``<metric>_at_k`` (fractions) -> ``{"R@k": percent}`` like our results."""
    return {f"R@{k}": 100.0 * float(scores[f"{metric}_at_{k}"]) for k in ks}


def disagreements(
    ours: Mapping[str, float], theirs: Mapping[str, float], tol: float = 1e-3, tied: float = 0.0
) -> List[str]:
    """The R@k where two percentages differ by more than MTEB's rounding (5 decimals of a fraction)
    and, with ``tied`` (the percentage of queries whose target ties a competitor, :func:`tied_share`),
    by more than those ties explain: our pessimistic rule counts a tied query as a miss where trec_eval's
    order may make it a hit, so MTEB may be higher by up to ``tied``, never lower."""
    out = []
    for k in theirs:
        if k not in ours:
            continue
        gap = float(theirs[k]) - float(ours[k])
        if gap < -tol or gap > tied + tol:
            out.append(f"{k}: ours {ours[k]:.4f} vs MTEB {theirs[k]:.4f}")
    return out


def tied_share(predictions: Mapping[str, Mapping[str, float]], relevant: Mapping[str, Set[str]]) -> float:
    """Percent of queries whose target (best relevant document's score) equals the score of a document
    that is not relevant: the queries the two tie rules may count differently. E.g. a cascaded model
    gives captions with the same keywords the same embedding."""
    tied = 0
    for query, docs in predictions.items():
        own = [s for d, s in docs.items() if d in relevant[query]]
        if own and any(s == max(own) for d, s in docs.items() if d not in relevant[query]):
            tied += 1
    return 100.0 * tied / max(1, len(predictions))


def similarity_from_predictions(
    predictions: Mapping[str, Mapping[str, float]], rows: List[str], cols: List[str]
) -> torch.Tensor:
    """MTEB predictions ``{query: {document: score}}`` -> (len(rows), len(cols)) float64 scores.

    MTEB keeps each query's top 1000 documents: a document it dropped gets a score below every kept
    one, so it ranks below them all, as in MTEB (exact for K up to 1000).
    """
    import torch

    kept = [float(s) for q in rows for s in predictions.get(q, {}).values()]
    floor = (min(kept) if kept else 0.0) - 1.0
    sim = torch.full((len(rows), len(cols)), floor, dtype=torch.float64)
    col = {c: j for j, c in enumerate(cols)}
    for i, q in enumerate(rows):
        for doc, score in predictions.get(q, {}).items():
            if doc in col:
                sim[i, col[doc]] = float(score)
    return sim


def recall_from_predictions(
    a2i: Mapping[str, Mapping[str, float]],
    i2a: Mapping[str, Mapping[str, float]],
    utt2img: Mapping[str, str],
    ks=KS,
) -> Dict[str, Dict[str, float]]:
    """Our R@k (:func:`espnet_speechclip.evaluation.retrieval.retrieval_recall`) of the scores MTEB
    ranked: ``a2i`` / ``i2a`` the ``test`` predictions of the two tasks, ``utt2img`` the data dir's.

    Returns:
        ``{"speech_to_image": {"R@1": ..}, "image_to_speech": {..}}`` in percent.
    """
    from espnet_speechclip.evaluation.retrieval import dedupe_images, retrieval_recall

    utts = sorted(utt2img)
    images, index = dedupe_images([utt2img[u] for u in utts])
    s2i = retrieval_recall(similarity_from_predictions(a2i, utts, images), index, ks)
    i2s = retrieval_recall(similarity_from_predictions(i2a, images, utts).t().contiguous(), index, ks)
    return {"speech_to_image": s2i["speech_to_image"], "image_to_speech": i2s["image_to_speech"]}


def read_predictions(folder: str | Path, task_name: str) -> Tuple[dict, dict]:
    """``(test predictions {query: {doc: score}}, model {"model_name", "revision"})`` of
    ``<folder>/<task_name>_predictions.json`` (``mteb.evaluate(..., prediction_folder=folder)``)."""
    path = Path(folder) / f"{task_name}_predictions.json"
    if not path.is_file():
        raise MissingFileError(f"{path} does not exist: evaluate with a prediction folder first")
    data = json.loads(path.read_text(encoding="utf-8"))
    return data["default"]["test"], data.get("mteb_model_meta", {})


def _fmt(x: float) -> str:
    return f"{x:.1f}"


def mteb_section(
    test_set: str,
    ours: Mapping[str, Mapping[str, float]],
    a2i: Mapping,
    i2a: Mapping,
    branch: str,
) -> List[str]:
    """RESULTS.md lines: MTEB's main score (nDCG@10) and its recall beside our R@k for ``test_set``.

    Args:
        ours: our scores of the branch MTEB evaluated (``results.json[test_set][branch]``).
        a2i, i2a: MTEB's result files of the two tasks.
    """
    s2i, i2s = split_scores(a2i), split_scores(i2a)
    rows = [
        ("S→I", "ours (decode folder)", ours["speech_to_image"], None),
        ("S→I", "MTEB recall@k = hit rate@k", mteb_recall(s2i, "recall"), s2i["ndcg_at_10"]),
        ("I→S", "ours (decode folder)", ours["image_to_speech"], None),
        ("I→S", "MTEB hit rate@k", mteb_recall(i2s, "hit_rate"), i2s["ndcg_at_10"]),
        ("I→S", "MTEB recall@k (share of captions)", mteb_recall(i2s, "recall"), None),
    ]
    lines = [
        f"## MTEB evaluator ({test_set}, {branch} branch)",
        "",
        f"MTEB {a2i.get('mteb_version')}'s retrieval evaluator on the tasks `{a2i.get('task_name')}` and "
        f"`{i2a.get('task_name')}` built from the test set (`python -m espnet_speechclip.bin.mteb_eval "
        "--data_dir ...`), embeddings computed from the audio and image files. Its main score is nDCG@10 "
        "(0-100 here). An image query hits if any caption is in the top K: MTEB's hit rate; MTEB's "
        "recall@k of an image is the share of its captions found.",
        "",
        "| direction | scorer | R@1 | R@5 | R@10 | nDCG@10 |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for direction, scorer, recall, ndcg in rows:
        cells = " | ".join(_fmt(recall[f"R@{k}"]) for k in KS)
        lines.append(f"| {direction} | {scorer} | {cells} | {'' if ndcg is None else _fmt(100 * ndcg)} |")
    return lines + [""]


def results_sections(
    mteb_dir: str | Path,
    exp_dir: str | Path,
    test_sets: List[str],
    model: Mapping,
    data_root: Optional[str | Path] = None,
) -> List[str]:
    """RESULTS.md sections of ``mteb_eval --data_dir <data_root>/<test set>`` runs of ``exp_dir``'s model
    (its identity ``model``) whose result files lie under ``mteb_dir``: MTEB's numbers beside ours.

    Raises:
        FileNotFoundError: no result of this model for a test set.
        ValueError: a result computed on other data than ``<data_root>/<test set>`` holds now.
    """
    revision = revision_of(model)
    lines: List[str] = []
    for test_set in test_sets:
        names = task_names(test_set)
        paths = {d: find_result(mteb_dir, names[d], revision) for d in ("A2I", "I2A")}
        results = {d: read_json(p) for d, p in paths.items()}
        if data_root is not None:
            from espnet_speechclip.data.identity import datadir_identity

            data = revision_of(datadir_identity(Path(data_root) / test_set))
            for d, r in results.items():
                if r.get("dataset_revision") != data:
                    raise InputError(
                        f"{paths[d]} was computed on other data than {Path(data_root) / test_set} holds now: "
                        "rerun python -m espnet_speechclip.bin.mteb_eval"
                    )
        meta = paths["A2I"].parent / "model_meta.json"
        branch = (read_json(meta).get("loader_kwargs") or {}).get("branch") if meta.is_file() else None
        ours = read_json(Path(exp_dir) / f"decode_{test_set}" / "scores.json")
        branch = branch or next(iter(ours))
        lines += mteb_section(test_set, ours[branch], results["A2I"], results["I2A"], branch)
    return lines
