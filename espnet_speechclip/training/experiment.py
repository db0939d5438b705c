"""The experiment folder: its weights, the config they were trained with, and what they were trained on.

``exp/<tag>/config.yaml`` is what inference, scoring and packing rebuild a model from, so it must be the
config the weights were trained with. ESPnet rewrites it at the start of every run; before it does,
:func:`guard_experiment` compares the run with the folder's record (``exp/<tag>/.made_from.json``):

- the training options (:func:`espnet_speechclip.identity.training_options`: everything except how and
  where the run executes, e.g. ``max_epoch``, ``ngpu``, ``resume``, logging), with local files such as
  the CLIP weights or the codebook identified by content;
- the data, by content (:func:`espnet_speechclip.training.data_check.scan_training_data`, which also
  refuses unusable files before training starts).

A folder that already holds trained weights and was trained otherwise is refused with a message that says
how to start a new experiment; anything else proceeds, and the record is (re)written.

Interrupted runs: ESPnet writes ``checkpoint.pth``, then ``<N>epoch.pth``, then the ``latest`` and
``*.best`` links, each with a plain ``torch.save``. :func:`atomic_torch_save` makes each file appear
whole or not at all, and :func:`repair_interrupted_epoch` redoes what a run killed between those steps
left undone, so that ``kill -9`` then ``--resume true`` ends exactly where an uninterrupted run ends.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, Mapping, Optional, Sequence

import torch

from espnet_speechclip.files import atomic_path
from espnet_speechclip.identity import training_options
from espnet_speechclip.provenance import (
    RECORD_NAME,
    FileHashes,
    ProvenanceError,
    explain,
    read_record,
    write_record,
)
from espnet_speechclip.weights import WeightsError, load_file, load_weights

logger = logging.getLogger(__name__)

RECORD_KIND = "training"


def has_trained_weights(output_dir: Path) -> bool:
    return (output_dir / "checkpoint.pth").exists() or any(output_dir.glob("*epoch.pth"))


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _previous_options(output_dir: Path, hashes: FileHashes) -> Optional[Dict[str, Any]]:
    """The training options of a folder trained before records existed: its config.yaml's."""
    import yaml

    try:
        with open(output_dir / "config.yaml", encoding="utf-8") as f:
            config = yaml.safe_load(f)
    except (OSError, yaml.YAMLError):
        return None
    return _jsonable(training_options(config, hashes)) if isinstance(config, dict) else None


def process_rank(args: Any) -> int:
    """This process's rank in a distributed run (0 otherwise), as ESPnet will resolve it."""
    if not getattr(args, "distributed", False):
        return 0
    from espnet2.train.distributed_utils import get_rank

    return int(get_rank(args.dist_rank, args.dist_launcher) or 0)


def _upgraded(before: Dict[str, Any], now: Dict[str, Any], by_bytes: Mapping[str, str]) -> Dict[str, Any]:
    """An older record's ``made_from`` in today's terms: its embedding lists were identified by the
    files' bytes (``content``); where those bytes are unchanged, the list is today's (``embeddings``)."""
    data = dict(before.get("data") or {})
    for key, digest in by_bytes.items():
        entry = data.get(key)
        if isinstance(entry, dict) and "embeddings" not in entry and entry.get("content") == digest:
            data[key] = {k: v for k, v in entry.items() if k != "content"}
            data[key]["embeddings"] = now["data"][key]["embeddings"]
    return {**before, "data": data}


def guard_experiment(args: Any, threads: Optional[int] = None) -> Dict[str, Any]:
    """Check the run's data and compare the run with its folder; write the folder's record (rank 0).

    Returns the record's ``made_from``.

    Raises:
        espnet_speechclip.training.data_check.DataCheckError: unusable training files, all named.
        ProvenanceError: the folder holds weights trained with other options or data.
    """
    from espnet_speechclip.training.data_check import scan_training_data

    output_dir = Path(args.output_dir)
    record_file = output_dir / RECORD_NAME
    old = read_record(record_file)
    if old is not None and old.get("kind") != RECORD_KIND:
        old = None
    checked = FileHashes((old or {}).get("hashes"))
    threads = threads or max(1, min(8, os.cpu_count() or 1))
    by_bytes: Dict[str, str] = {}
    made_from = _jsonable(
        {
            "options": training_options(vars(args), checked),
            "data": scan_training_data(args, checked, threads=threads, legacy=by_bytes),
        }
    )
    if has_trained_weights(output_dir):
        if old is not None:
            before, now = _upgraded(old["made_from"], made_from, by_bytes), made_from
        else:  # trained by an older version: its config.yaml tells the options, nothing tells the data
            before, now = _previous_options(output_dir, checked), made_from["options"]
        if before is not None and before != now:
            raise ProvenanceError(
                f"{output_dir} holds a model trained with other settings or data ("
                + "; ".join(explain(before, now))
                + f"). Its config.yaml and weights are left as they are. To train with these settings, "
                f"start a new experiment: give another --output_dir (recipe: --tag NAME), or delete "
                f"{output_dir}. To continue this experiment, rerun it with its own config "
                f"({output_dir / 'config.yaml'}) and data."
            )
    if process_rank(args) == 0:
        write_record(record_file, RECORD_KIND, made_from, hashes=checked.entries)
    return made_from


# --------------------------------------------------------------------------------------- checkpoints
@contextlib.contextmanager
def atomic_torch_save() -> Iterator[None]:
    """While active, ``torch.save(obj, path)`` writes ``.<name>.partial`` and renames it into place.

    ESPnet's Trainer saves its checkpoints with plain ``torch.save`` onto the final names; a kill during
    a save would leave a truncated ``checkpoint.pth`` that resuming cannot read. Patching the function
    for the duration of training is the only hook that needs no copy of ESPnet's training loop.
    """
    original = torch.save

    def save(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        if not isinstance(f, (str, os.PathLike)):
            return original(obj, f, *args, **kwargs)
        with atomic_path(f) as tmp:
            original(obj, tmp, *args, **kwargs)

    torch.save = save
    try:
        yield
    finally:
        torch.save = original


def _relink(link: Path, target: str) -> None:
    if link.is_symlink() and os.readlink(link) == target:
        return
    with atomic_path(link) as tmp:
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(target)


def repair_interrupted_epoch(output_dir: Path, best_model_criterion: Iterable[Sequence[str]]) -> None:
    """Finish what a run killed after saving ``checkpoint.pth`` left undone: the last epoch's weights file,
    the ``latest.pth`` link and the ``<phase>.<key>.best.pth`` links.

    Raises:
        ProvenanceError: ``checkpoint.pth`` cannot be read (a save interrupted by an older version).
    """
    from espnet2.train.reporter import Reporter

    ckpt = Path(output_dir) / "checkpoint.pth"
    if not ckpt.exists():
        return
    try:
        # training's own file (optimizer and scheduler states too): read as ESPnet reads it
        states = load_file(ckpt, "checkpoint", trusted_pickle=True)
    except WeightsError as e:
        raise ProvenanceError(
            f"{ckpt} cannot be read ({str(e).removeprefix(f'{ckpt}: ')}): it was damaged, e.g. by a "
            f"run stopped while writing it. Delete it to restart this experiment from epoch 1, or start "
            f"a new one."
        ) from None
    reporter = Reporter()
    reporter.load_state_dict(states["reporter"])
    epoch = reporter.get_epoch()
    if epoch < 1:
        return
    weights = Path(output_dir) / f"{epoch}epoch.pth"
    try:
        intact = load_weights(weights).keys() == states["model"].keys()
    except (FileNotFoundError, WeightsError):  # missing or half-written: rewritten below
        intact = False
    if not intact:
        logger.info("completing %s from %s (the last run stopped before writing it)", weights, ckpt)
        with atomic_torch_save():
            torch.save(states["model"], weights)
    _relink(Path(output_dir) / "latest.pth", weights.name)
    for phase, key, mode in best_model_criterion:
        if reporter.has(phase, key):
            best = Path(output_dir) / f"{reporter.get_best_epoch(phase, key, mode)}epoch.pth"
            if best.exists():
                _relink(Path(output_dir) / f"{phase}.{key}.best.pth", best.name)
