"""Which options define a trained model, and which trained model a ``(config, weights)`` pair is.

:func:`training_options` is what an experiment's record compares before training continues (see
:mod:`espnet_speechclip.training.experiment`); :func:`model_identity` is what decode folders, results
and packing record of the model they were made from (see :mod:`espnet_speechclip.provenance`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Mapping, Union

from espnet_speechclip.config import read_config
from espnet_speechclip.files import sha256_file
from espnet_speechclip.provenance import FileHashes, digest

PathLike = Union[str, Path]

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
    hashes = hashes if hashes is not None else FileHashes()
    drop = RUN_SETTINGS | DATA_PATH_KEYS | (INIT_ONLY_KEYS if model_only else frozenset())
    kept = {k: v for k, v in dict(config).items() if k not in drop}
    return _files_by_content(kept, hashes)


def model_identity(config_file: PathLike, model_file: PathLike, hashes=None) -> dict:
    """Which trained model ``(config, weights)`` is, by content: the weights' sha256 and a digest of the
    options the model is built from (local files such as the CLIP weights or the codebook by content,
    see :func:`training_options`). The same model from an experiment folder or from its packed archive
    has the same identity. Decode folders and results record it."""
    options = training_options(read_config(config_file), hashes, model_only=True)
    return {"weights": sha256_file(model_file), "options": digest(options)}
