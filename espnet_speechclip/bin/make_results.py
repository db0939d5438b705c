"""Recipe stage 7: RESULTS.md and results.json of an experiment from its scored test sets.

python -m espnet_speechclip.bin.make_results --exp_dir exp/<tag> --test_set flickr8k_test \
        [--model_file exp/<tag>/valid.mean_r10.best.pth --data_root dump/raw --dev_set flickr8k_dev]

Refuses (naming the folder and what differs) a decode folder that is not the finished inference of the
experiment's model on the data as it is now: rerun the inference stage first.

For an experiment imported from one of the authors' released checkpoints (``import.json`` in the folder,
see ``espnet_speechclip.bin.import_authors_ckpt``), RESULTS.md also puts the paper's numbers of that
checkpoint beside ours (and, with ``--dev_set``, the dev metric the authors selected the file by).

With ``--mteb_dir``, the result folder of ``python -m espnet_speechclip.bin.mteb_eval --data_dir
<data_root>/<test set>`` for this model (needs no ``mteb`` here), RESULTS.md also puts MTEB's evaluator's
numbers (its main score nDCG@10, its recall and hit rate) beside ours.
"""

import argparse
import json
import logging
from pathlib import Path
from typing import List

from espnet_speechclip.errors import MissingFileError, run_cli
from espnet_speechclip.evaluation.results import write_results
from espnet_speechclip.identity import model_identity
from espnet_speechclip.inference.decode_dir import require_current
from espnet_speechclip.inference.loader import find_weights
from espnet_speechclip.locks import folder_lock


def imported_sections(exp_dir: Path, test_sets: List[str], dev_set: str = None) -> List[str]:
    """RESULTS.md sections of an imported experiment: the paper's numbers beside ours."""
    from espnet_speechclip.evaluation.published import comparison_section, identify

    record = json.loads((exp_dir / "import.json").read_text(encoding="utf-8"))
    release, identified_by = identify(record)
    source = record.get("source", {})
    if release is None:
        return [
            "## Imported weights",
            "",
            f"Imported from `{source.get('name')}` (sha256 `{source.get('sha256')}`), which is not one of "
            f"the authors' released checkpoints ({identified_by}): there are no published numbers to "
            "compare with.",
            "",
        ]
    dev_scores = None
    if dev_set:
        f = exp_dir / f"decode_{dev_set}" / "scores.json"
        if not f.is_file():
            raise MissingFileError(f"{f} is missing: run the inference stage for {dev_set} first")
        dev_scores = json.loads(f.read_text(encoding="utf-8"))
    lines: List[str] = []
    for test_set in test_sets:
        scores = json.loads((exp_dir / f"decode_{test_set}" / "scores.json").read_text(encoding="utf-8"))
        lines += comparison_section(
            release, test_set, scores, dev_set, dev_scores, identified_by, source.get("name")
        )
    return lines


def main(cmd=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp_dir", required=True)
    p.add_argument("--test_set", action="append", required=True, help="test set name (decode_<name>)")
    p.add_argument(
        "--model_file",
        default=None,
        help="the experiment's weights (default: valid.mean_r10.best.pth, else latest.pth); the decode "
        "folders must hold its inference",
    )
    p.add_argument(
        "--dev_set",
        default=None,
        help="dev set name (decode_<name>): for an imported checkpoint, our value of the dev metric the "
        "authors selected it by",
    )
    p.add_argument(
        "--data_root",
        default=None,
        help="folder of the data dirs (<data_root>/<test set>): the decode folders must hold their "
        "inference as the data is now; draws retrieval examples",
    )
    p.add_argument(
        "--mteb_dir",
        default=None,
        help="MTEB results of this model on the test sets (mteb_eval --data_dir <data_root>/<test set> "
        "--output_folder DIR): RESULTS.md shows MTEB's numbers beside ours",
    )
    args = p.parse_args(cmd)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (%(module)s) %(levelname)s: %(message)s")
    exp_dir = Path(args.exp_dir)
    # one writer of the experiment folder at a time (training holds it too)
    with folder_lock(exp_dir, "scoring"):
        _make_results(args, exp_dir)


def _make_results(args: argparse.Namespace, exp_dir: Path) -> None:
    """RESULTS.md, results.json, the pictures and their record for ``exp_dir``."""
    model_file = Path(args.model_file) if args.model_file else find_weights(exp_dir)
    model = model_identity(exp_dir / "config.yaml", model_file)
    # Only the inference of this model on the data as it is now may be scored.
    for test_set in args.test_set:
        data_dir = Path(args.data_root) / test_set if args.data_root else None
        require_current(exp_dir / f"decode_{test_set}", model, data_dir)

    from espnet_speechclip.inference.speech2image import Speech2Image
    from espnet_speechclip.models.random_weights import count_parameters

    # the counts need the architecture and the trained weights, not CLIP's pretrained weights
    params = count_parameters(Speech2Image(exp_dir / "config.yaml", model_file, clip_weights=False).model)
    imported = (exp_dir / "import.json").is_file()
    extra = imported_sections(exp_dir, args.test_set, args.dev_set) if imported else []
    pictures = []
    if args.data_root:
        from espnet_speechclip.evaluation.retrieval_examples import draw_retrieval_examples

        for test_set in args.test_set:
            png = draw_retrieval_examples(
                exp_dir / f"decode_{test_set}",
                Path(args.data_root) / test_set / "img.scp",
                exp_dir / f"retrieval_{test_set}.png",
            )
            pictures.append(png)
            extra += [f"## Retrieval examples ({test_set})", "", f"![retrieval examples]({png.name})", ""]
    if args.mteb_dir:
        from espnet_speechclip.benchmark.mteb_scores import results_sections

        extra += results_sections(args.mteb_dir, exp_dir, args.test_set, model, args.data_root)
    extra += [
        "## Where the outputs live",
        "",
        (
            f"- imported weights (`valid.mean_r10.best.pth`), `config.yaml`, `import.json`: `{args.exp_dir}/`"
            if imported
            else f"- checkpoints, `config.yaml`, `train.log`: `{args.exp_dir}/`"
        ),
        *(
            []
            if imported
            else [
                f"- TensorBoard curves of training: `{args.exp_dir}/tensorboard/` "
                f"(`tensorboard --logdir {args.exp_dir}/tensorboard`)"
            ]
        ),
        f"- embeddings, keywords and `scores.json` per set: `{args.exp_dir}/decode_<set>/`",
        f"- this page's numbers as JSON: `{args.exp_dir}/results.json`",
        f"- the packed model (after stage 8): `{args.exp_dir}/packed/model.zip`; laid out for the "
        f"Hugging Face Hub (stage 9, `--hf_repo`): `{args.exp_dir}/packed/hf_<namespace>_<name>/`",
        "",
    ]
    write_results(exp_dir, args.test_set, params, extra, model=model, extra_outputs=pictures)
    logging.info("wrote %s/RESULTS.md and %s/results.json", args.exp_dir, args.exp_dir)


if __name__ == "__main__":
    run_cli(main)
