"""Evaluate a SpeechCLIP model with MTEB's evaluator, writing MTEB's own result files.

    python -m espnet_speechclip.bin.mteb_eval --model exp/synth_parallel \
        --tasks SpokenCOCOA2IRetrieval SpokenCOCOI2ARetrieval --output_folder results/
    python -m espnet_speechclip.bin.mteb_eval --model exp/synth_parallel \
        --data_dir dump/raw/synth_test --output_folder exp/synth_parallel/mteb

``--model``: anything ``Speech2Image.from_pretrained`` loads (experiment folder, packed archive or
folder, Hub repo id with ``--hub_revision``, an imported authors' checkpoint). ``--tasks``: MTEB task
names (``mteb.get_tasks(modalities=["audio", "image"])`` lists them; their data come from the Hugging
Face Hub). ``--data_dir``: a data dir of this recipe, evaluated offline as the tasks
``<Name>A2IRetrieval`` / ``<Name>I2ARetrieval`` (see :mod:`espnet_speechclip.benchmark.mteb_task`); for
these the command also applies our own scoring to the scores MTEB ranked and prints both (they must
agree: see :mod:`espnet_speechclip.benchmark.mteb_scores`).

The result files land where MTEB's CLI puts them, ``<output_folder>/results/<org>__<name>/<revision>/``:
one ``<Task>.json`` per task and ``model_meta.json``, the files MTEB's results repository takes.
Needs the optional extra: ``pip install 'espnet-speechclip[mteb]'``.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import List, Optional

from espnet_speechclip.errors import InputError, RunError


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="experiment folder, packed .zip / folder, or Hub repo id")
    p.add_argument("--hub_revision", default=None, help="branch, tag or commit of a Hub repo id")
    p.add_argument(
        "--model_file",
        default=None,
        help="checkpoint of an experiment folder (default its best, else latest)",
    )
    p.add_argument("--tasks", nargs="+", default=[], help="MTEB task names, e.g. SpokenCOCOA2IRetrieval")
    p.add_argument(
        "--data_dir", action="append", default=[], help="a data dir of this recipe to evaluate as local tasks"
    )
    p.add_argument("--output_folder", required=True, help="MTEB's result folder (results/ by MTEB's CLI)")
    p.add_argument(
        "--prediction_folder",
        default=None,
        help="where MTEB writes each task's ranked scores (default <output_folder>/predictions with "
        "--data_dir, where the recall check reads them; else none)",
    )
    p.add_argument(
        "--cache_dir",
        default=None,
        help="where the data dirs' audio is written as datasets files (default datasets' own cache)",
    )
    p.add_argument("--device", default=None, help="cpu or cuda[:N] (default: CUDA when available)")
    p.add_argument(
        "--batch_size",
        type=int,
        default=16,
        help="utterances / images per forward pass (MTEB batches are the same size, so the embeddings are "
        "exactly Speech2Image's)",
    )
    p.add_argument("--branch", default=None, help="speech branch (default the model's first)")
    p.add_argument("--name", default=None, help="MTEB model name organization/name (default from --model)")
    p.add_argument("--license", default=None, help="the weights' licence, a Hub licence id")
    p.add_argument("--corpus", default=None, help="training corpus (default from the training config)")
    p.add_argument(
        "--overwrite_strategy",
        default="always",
        choices=["always", "never", "only-missing", "only-cache"],
        help="MTEB's: rerun tasks whose results exist (always) or keep them",
    )
    return p


def check_recall(task_pair, prediction_folder: Path, results) -> List[str]:
    """Our R@k of the scores MTEB ranked vs MTEB's own numbers for a data dir's two tasks; prints them
    with the share of queries whose target ties a competitor, and returns the disagreements that the
    ties do not explain (empty when they agree)."""
    from espnet_speechclip.benchmark.mteb_scores import (
        disagreements,
        mteb_recall,
        read_predictions,
        recall_from_predictions,
        tied_share,
    )
    from espnet_speechclip.benchmark.mteb_task import read_pairs

    a2i_task, i2a_task = task_pair
    scores = {r.task_name: r.scores["test"][0] for r in results}
    a2i, _ = read_predictions(prediction_folder, a2i_task.metadata.name)
    i2a, _ = read_predictions(prediction_folder, i2a_task.metadata.name)
    _, utt2img, _ = read_pairs(a2i_task.data_dir)
    ours = recall_from_predictions(a2i, i2a, utt2img)
    theirs = {
        "speech_to_image": mteb_recall(scores[a2i_task.metadata.name], "recall"),
        "image_to_speech": mteb_recall(scores[i2a_task.metadata.name], "hit_rate"),
    }
    relevant = {"speech_to_image": {u: {i} for u, i in utt2img.items()}, "image_to_speech": {}}
    for u, i in utt2img.items():
        relevant["image_to_speech"].setdefault(i, set()).add(u)
    predictions = {"speech_to_image": a2i, "image_to_speech": i2a}
    problems = []
    for direction, task in (("speech_to_image", a2i_task), ("image_to_speech", i2a_task)):
        metric = "recall@k" if direction == "speech_to_image" else "hit_rate@k"
        tied = tied_share(predictions[direction], relevant[direction])
        print(
            f"{task.metadata.name}: ours R@1/5/10 "
            + " / ".join(f"{v:.2f}" for v in ours[direction].values())
            + f"; MTEB {metric} "
            + " / ".join(f"{v:.2f}" for v in theirs[direction].values())
            + f"; nDCG@10 {100 * scores[task.metadata.name]['ndcg_at_10']:.2f}"
            + f"; queries with tied scores {tied:.2f} %"
        )
        problems += [
            f"{task.metadata.name} {d}" for d in disagreements(ours[direction], theirs[direction], tied=tied)
        ]
    return problems


def mteb_task(mteb, name: str):
    """The MTEB task ``name``; a short name the pinned release spells with ``Retrieval`` (``SpokenCOCOA2I``
    -> ``SpokenCOCOA2IRetrieval``) is taken as that task, with a note.

    Raises:
        InputError: a name MTEB does not know, with MTEB's suggestion.
    """
    try:
        return mteb.get_task(name)
    except KeyError as e:
        try:
            task = mteb.get_task(name + "Retrieval")
        except KeyError:
            raise InputError(f"unknown MTEB task: {e.args[0] if e.args else name}") from None
        logging.info("MTEB task %s is called %s in mteb %s", name, task.metadata.name, mteb.__version__)
        return task


def main(cmd: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (%(module)s) %(levelname)s: %(message)s")
    if not args.tasks and not args.data_dir:
        raise InputError("give MTEB task names (--tasks) or a data dir (--data_dir)")
    try:
        import mteb
    except ImportError:
        raise RunError("mteb is not installed: pip install 'espnet-speechclip[mteb]'") from None

    from espnet_speechclip.benchmark.mteb_encoder import SpeechCLIPEncoder
    from espnet_speechclip.benchmark.mteb_meta import speechclip_model_meta
    from espnet_speechclip.benchmark.mteb_task import datadir_tasks

    # tasks first: a wrong name or data dir fails before the model is loaded
    tasks = [mteb_task(mteb, name) for name in args.tasks]
    pairs = [datadir_tasks(d, cache_dir=args.cache_dir) for d in args.data_dir]
    tasks += [t for pair in pairs for t in pair]
    # the data before the model: a task that cannot get its data fails first, in one line
    for task in tasks:
        try:
            task.load_data()
        except ConnectionError as e:
            raise RunError(
                f"{task.metadata.name}: {e}. MTEB's public tasks download their data from the Hugging Face "
                "Hub; offline, fill the Hub cache first or evaluate a data dir (--data_dir)"
            ) from e
    prediction_folder = args.prediction_folder or (
        str(Path(args.output_folder) / "predictions") if args.data_dir else None
    )

    encoder = SpeechCLIPEncoder(
        args.model,
        source=args.model,
        hub_revision=args.hub_revision,
        model_file=args.model_file,
        device=args.device,
        branch=args.branch,
        batch_size=args.batch_size,
    )
    meta = speechclip_model_meta(encoder, name=args.name, license=args.license, corpus=args.corpus)
    encoder.mteb_model_meta = meta
    result = mteb.evaluate(
        encoder,
        tasks,
        cache=mteb.ResultCache(args.output_folder),
        encode_kwargs={"batch_size": args.batch_size},
        overwrite_strategy=args.overwrite_strategy,
        prediction_folder=prediction_folder,
    )
    summary = {r.task_name: r.scores["test"][0]["main_score"] for r in result.task_results}
    print(f"{meta.name} (revision {meta.revision}), main scores: {json.dumps(summary)}")
    problems = [p for pair in pairs for p in check_recall(pair, Path(prediction_folder), result.task_results)]
    if problems:
        raise RunError("our scoring and MTEB's disagree on the scores MTEB ranked: " + "; ".join(problems))


if __name__ == "__main__":
    from espnet_speechclip.errors import run_cli

    run_cli(main)
