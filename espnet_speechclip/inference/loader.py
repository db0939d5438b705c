"""Where a trained SpeechCLIP comes from -> (config, weights): the one resolver.

A source is, in this order:

- an experiment folder (``config.yaml`` + a checkpoint, see :func:`find_weights`);
- a packed model folder (an archive unpacked: ``meta.json``, ``config.yaml``, ``model.pth``, ...);
- a packed archive (``.zip`` of ``espnet_speechclip.bin.pack``), extracted once into the unpack cache;
- a Hugging Face Hub model repo id ``<namespace>/<name>`` (``@<revision>`` or ``revision=``), fetched
  with the Hub's own cache and offline mode (see :mod:`espnet_speechclip.inference.hub`). A local path
  wins over a repo id spelled the same.

:meth:`espnet_speechclip.inference.speech2image.Speech2Image.from_pretrained`, the ESPnet frontend, the
s3prl upstream and the recipe's ``--download_model`` resolve their source here; nothing else needs to
know the layouts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Tuple, Union

import espnet_speechclip.inference.hub as hub
from espnet_speechclip.errors import InputError, MissingFileError
from espnet_speechclip.inference.archive import (
    PackError,
    is_packed_folder,
    resolve_packed_folder,
    unpack_model,
)

PathLike = Union[str, Path]

# Weights an experiment folder is read from, best first: the checkpoint selected by dev mean R@10, else
# the last epoch's.
WEIGHT_FILES = ("valid.mean_r10.best.pth", "latest.pth")


def find_weights(exp_dir: PathLike) -> Path:
    """The weights of an experiment folder: ``valid.mean_r10.best.pth``, else ``latest.pth``."""
    for name in WEIGHT_FILES:
        if (Path(exp_dir) / name).is_file():
            return Path(exp_dir) / name
    raise MissingFileError(f"{exp_dir} holds none of {', '.join(WEIGHT_FILES)}: give model_file")


def resolve_model(
    source: PathLike,
    model_file: Optional[PathLike] = None,
    cache_dir: Optional[PathLike] = None,
    revision: Optional[str] = None,
) -> Tuple[Path, Path]:
    """``(config.yaml, weights)`` of ``source`` (see the module doc for what a source is).

    Args:
        source: experiment folder, packed folder, packed archive or Hub repo id.
        model_file: the checkpoint of an experiment folder (default :func:`find_weights`; relative
            paths in its config are relative to the current directory, as for training). Packed
            models carry their own weights.
        cache_dir: the unpack cache (default ``$ESPNET_SPEECHCLIP_CACHE`` or
            ``~/.cache/espnet_speechclip``); Hub downloads go to the Hub's cache.
        revision: branch, tag or commit of a Hub repo.

    Raises:
        FileNotFoundError: no such folder / archive / config / weights, and not a Hub repo id.
        PackError: a corrupt or tampered packed model.
        HubError: a Hub repo that cannot be fetched (not found; offline and not cached).
        ValueError: ``model_file`` or ``revision`` given for a source that takes none.
    """
    path = Path(source)
    if path.exists():
        if revision is not None:
            raise InputError(f"{path} is a local model: revision applies to Hub repos only")
        if path.is_dir() and not is_packed_folder(path):
            config = path / "config.yaml"
            if not config.is_file():
                raise MissingFileError(
                    f"experiment folder {path} has no config.yaml (and no meta.json: not a packed "
                    f"model folder either)"
                )
            weights = Path(model_file) if model_file is not None else find_weights(path)
            if not weights.is_file():
                raise MissingFileError(f"model file {weights} does not exist")
            return config, weights
        if model_file is not None:
            raise InputError(f"{path} is a packed model with its own weights: do not give model_file")
        if path.is_dir():
            return resolve_packed_folder(path, cache_dir)
        return unpack_model(path, cache_dir)

    parsed = hub.parse_repo_id(str(source))
    if parsed is None:
        raise MissingFileError(
            f"SpeechCLIP model {source} does not exist (an experiment folder, a packed .zip or folder, "
            f"or a Hub repo id <namespace>/<name>)"
        )
    repo_id, pinned = parsed
    if pinned is not None and revision is not None and pinned != revision:
        raise InputError(f"{source} pins revision {pinned}, but revision={revision} was given")
    if model_file is not None:
        raise InputError(
            f"Hub model {repo_id} is a packed model with its own weights: do not give model_file"
        )
    try:
        folder = hub.download(repo_id, pinned or revision)
    except hub.HubError as e:
        raise hub.HubError(f"{source} is no local model, and as a Hub repo id: {e}") from e
    if not is_packed_folder(folder):
        raise PackError(
            f"Hub repo {repo_id} has no meta.json: not a SpeechCLIP model uploaded by espnet_speechclip "
            f"(its layout: {', '.join(hub.REPO_FILES)})"
        )
    return resolve_packed_folder(folder, cache_dir)
