"""SpeechCLIP configs: the one reader, the one table of task defaults, and the recipe's naming rule.

A config is the YAML that training reads (``conf/paper/*.yaml``) or writes (``exp/<tag>/config.yaml``).
Its top-level task keys default to :data:`TASK_DEFAULTS` (the task's argument parser takes its defaults
from this table); the keys inside ``speech_encoder_conf`` and ``model_conf`` default to the keyword
arguments of the classes they configure, so :func:`config_value` reads those defaults off the
constructors instead of restating them.
"""

from __future__ import annotations

import copy
import inspect
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Union

from espnet_speechclip.errors import InputError, MissingFileError

PathLike = Union[str, Path]

# Top-level SpeechCLIP task keys and their defaults (paper Base: HuBERT Base + CLIP ViT-B/32).
TASK_DEFAULTS: Dict[str, Any] = {
    "clip_conf": {"model_name": "ViT-B-32-quickgelu", "pretrained": "openai"},
    "image_input": "embedding",
    "use_preprocessor": True,
    # plain random batches, as the paper; length-grouped batches (e.g. 50) are an opt-in speed option
    "length_group_batches": 1,
    # with use_amp (ESPnet's option): autocast dtype of training, validation and inference (paper: fp16)
    "amp_dtype": "float16",
    "speech_encoder": "s3prl",
    "speech_encoder_conf": {},
    "model": "parallel",
    "model_conf": {},
}

_MISSING = object()


class ConfigError(InputError):
    """A config file that cannot be a SpeechCLIP config (unreadable YAML, wrong types, unknown model)."""


def read_config(source: Union[PathLike, Mapping]) -> Dict[str, Any]:
    """A SpeechCLIP config as a dict, with the top-level task defaults filled in.

    ``source`` is a YAML file or a mapping (copied, never modified).

    Raises:
        FileNotFoundError: no such file.
        ConfigError: not YAML, or not a mapping with SpeechCLIP's sections.
    """
    if isinstance(source, Mapping):
        config = copy.deepcopy(dict(source))
        where = "config"
    else:
        import yaml

        path = Path(source)
        if not path.is_file():
            raise MissingFileError(f"SpeechCLIP config {path} does not exist")
        try:
            with open(path, encoding="utf-8") as f:
                config = yaml.safe_load(f)
        except yaml.YAMLError as e:
            raise ConfigError(f"{path} is not valid YAML: {e}") from None
        where = str(path)
        if not isinstance(config, dict):
            raise ConfigError(f"{path} is not a SpeechCLIP config (a YAML mapping)")
    if not {"clip_conf", "speech_encoder_conf", "model", "model_conf"} & set(config):
        raise ConfigError(
            f"{where} is not a SpeechCLIP config (none of clip_conf, speech_encoder_conf, model, model_conf)"
        )
    for key in ("clip_conf", "speech_encoder_conf", "model_conf"):
        if config.get(key) is not None and not isinstance(config[key], dict):
            raise ConfigError(f"{where}: {key} must be a mapping, got {config[key]!r}")
    for key, default in TASK_DEFAULTS.items():
        if config.get(key) is None:
            config[key] = copy.deepcopy(default)
    return config


def _signature_default(cls: type, name: str) -> Any:
    param = inspect.signature(cls.__init__).parameters.get(name)
    if param is None or param.default is inspect.Parameter.empty:
        return _MISSING
    return param.default


def _class_default(config: Mapping, section: str, name: str) -> Any:
    """The default of ``<section>.<name>`` from the constructor the section configures."""
    from espnet_speechclip.models.builder import model_choices, speech_encoder_choices

    if section == "speech_encoder_conf":
        return _signature_default(speech_encoder_choices.get_class(config["speech_encoder"]), name)
    if section == "model_conf":
        return _signature_default(model_choices.get_class(config["model"]), name)
    return _MISSING


def dotted_get(config: Mapping, dotted: str, default: Any = None) -> Any:
    """The raw value at ``a.b.c`` of a nested mapping, or ``default`` where a level is missing (no task or
    class defaults: see :func:`config_value` for those)."""
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return default
        node = node[part]
    return node


def config_value(config: Mapping, dotted: str, default: Any = None) -> Any:
    """The value of ``a.b.c`` in a config read by :func:`read_config`, or its default: the task table's
    for top-level keys, the configured class's keyword default for ``speech_encoder_conf.*`` and
    ``model_conf.*``; ``default`` when neither has one.

    Example::

        config_value(read_config("conf/paper/parallel_base.yaml"), "speech_encoder_conf.upstream")  # "hubert"
    """
    parts = dotted.split(".")
    node = dotted_get(config, dotted, _MISSING)
    if node is not _MISSING and node is not None:  # an explicit None means "the default"
        return node
    if len(parts) == 1:
        return copy.deepcopy(TASK_DEFAULTS.get(parts[0], default))
    if len(parts) == 2:
        value = _class_default(read_config(config), parts[0], parts[1])
        if value is not _MISSING:
            return value
    return default


# ------------------------------------------------------------------------------------------ naming
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


# ------------------------------------------------------------------------------ training identity
# ESPnet options that say how and where a run executes, not what the weights are trained on or with:
# an experiment may continue with these changed (more epochs, another GPU count, another log level).
RUN_SETTINGS = frozenset(
    {
        "config",
        "output_dir",
        "resume",
        "print_config",
        "dry_run",
        "version",
        "log_level",
        "log_interval",
        "num_workers",
        "ngpu",
        "distributed",
        "dist_backend",
        "dist_init_method",
        "dist_world_size",
        "dist_rank",
        "local_rank",
        "dist_master_addr",
        "dist_master_port",
        "dist_launcher",
        "multiprocessing_distributed",
        "unused_parameters",
        "sharded_ddp",
        "gradient_as_bucket_view",
        "ddp_comm_hook",
        "cudnn_enabled",
        "cudnn_benchmark",
        "cudnn_deterministic",
        "use_tf32",
        "use_amp",
        "detect_anomaly",
        "no_forward_run",
        "max_epoch",
        "patience",
        "early_stopping_criterion",
        "best_model_criterion",
        "keep_nbest_models",
        "nbest_averaging_interval",
        "use_matplotlib",
        "num_att_plot",
        "use_tensorboard",
        "create_graph_in_tensorboard",
        "use_wandb",
        "wandb_project",
        "wandb_id",
        "wandb_entity",
        "wandb_name",
        "wandb_model_log_interval",
        "write_collected_feats",
        "max_cache_size",
        "max_cache_fd",
        "valid_max_cache_size",
        "valid_batch_size",
        "valid_batch_bins",
        "valid_batch_type",
        "valid_iterator_type",
        "pretrain_path",
    }
)
# Where the data is: identified by content instead (see espnet_speechclip.training.data_check), so a
# moved dump/ is the same data and a corpus regenerated under the same paths is not.
DATA_PATH_KEYS = frozenset(
    {
        "train_data_path_and_name_and_type",
        "valid_data_path_and_name_and_type",
        "train_shape_file",
        "valid_shape_file",
    }
)
# Options that only matter while training starts, not for what the trained weights compute.
INIT_ONLY_KEYS = frozenset({"init_param", "ignore_init_mismatch", "freeze_param"})


def _files_by_content(value: Any, hashes: Any) -> Any:
    """``value`` with every string naming an existing file replaced by ``sha256:<hex>`` of its bytes, so
    that a file's identity is its content, not its path."""
    if isinstance(value, Mapping):
        return {k: _files_by_content(v, hashes) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_files_by_content(v, hashes) for v in value]
    if isinstance(value, str) and value and Path(value).is_file():
        return "sha256:" + hashes.sha256(value)
    return value


def training_options(config: Mapping, hashes: Any = None, model_only: bool = False) -> Dict[str, Any]:
    """The options of a config (an ``exp/<tag>/config.yaml`` or the parsed arguments of a run) that the
    trained weights depend on: everything but :data:`RUN_SETTINGS` and :data:`DATA_PATH_KEYS`, with local
    files (CLIP weights, open_clip JSON, upstream checkpoint, codebook) identified by content.
    ``model_only`` also drops :data:`INIT_ONLY_KEYS` (what a decode depends on besides the weights).

    ``hashes``: a :class:`espnet_speechclip.provenance.FileHashes` to reuse earlier hashes of big files.
    """
    from espnet_speechclip.provenance import FileHashes

    hashes = hashes if hashes is not None else FileHashes()
    drop = RUN_SETTINGS | DATA_PATH_KEYS | (INIT_ONLY_KEYS if model_only else frozenset())
    kept = {k: v for k, v in dict(config).items() if k not in drop}
    return _files_by_content(kept, hashes)
