"""The recipe's naming rules: data sets (``<corpus>_<split>``) and experiment folders, and the data
dir an experiment was trained on, read back from its ``config.yaml``."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional, Union

from espnet_speechclip.config import ConfigError
from espnet_speechclip.errors import InputError

PathLike = Union[str, Path]

SPLITS = ("train", "dev", "test")


def set_name(corpus: str, split: str) -> str:
    """The data set of ``corpus``'s ``split``: ``data/<set>``, ``dump/raw/<set>``, ``decode_<set>``."""
    if split not in SPLITS:
        raise InputError(f"split must be one of {SPLITS}, got {split!r}")
    return f"{corpus}_{split}"


def experiment_data_dir(config: Mapping, split: str) -> Path:
    """The data dir of ``split`` for an experiment the recipe trained, from its ``config.yaml``: the
    training speech list lies in ``<dumpdir>/raw/<corpus>_train/``; the other splits are its siblings
    (:func:`set_name`). E.g. ``dump/raw/flickr8k_test`` for ``exp/flickr8k_parallel_base``.

    Raises:
        ConfigError: the config names no training speech list in a ``<corpus>_train`` folder.
    """
    entries = config.get("train_data_path_and_name_and_type") or []
    speech = [Path(e[0]) for e in entries if len(e) == 3 and e[1] == "speech"]
    suffix = "_" + "train"
    if not speech or not speech[0].parent.name.endswith(suffix):
        raise ConfigError(
            "this config was not trained by the recipe: its train_data_path_and_name_and_type has no "
            f"speech list in a <corpus>{suffix} folder ({[e[0] for e in entries]})"
        )
    train_dir = speech[0].parent
    corpus = train_dir.name[: -len(suffix)]
    return train_dir.parent / set_name(corpus, split)


def exp_name(corpus: str, config_file: PathLike, tag: Optional[str] = None, n_configs: int = 1) -> str:
    """The experiment folder name of one training config of a recipe run: ``<corpus>_<config name>``,
    or with ``--tag``, ``<tag>`` (one config) or ``<tag>_<config name>`` (several)."""
    name = Path(config_file).name
    for suffix in (".yaml", ".yml"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    if tag:
        return tag if n_configs == 1 else f"{tag}_{name}"
    return f"{corpus}_{name}"
