"""SpeechCLIP configs: the one reader and the one table of task defaults.

A config is the YAML that training reads (``conf/paper/*.yaml``) or writes (``exp/<tag>/config.yaml``).
Its top-level task keys default to :data:`TASK_DEFAULTS` (the task's argument parser takes its defaults
from this table); the keys inside ``speech_encoder_conf`` and ``model_conf`` default to the keyword
arguments of the classes they configure, which :func:`espnet_speechclip.models.builder.option_value`
reads off the constructors instead of restating them. The recipe's naming rules are in
:mod:`espnet_speechclip.naming`; which options define a trained model, in
:mod:`espnet_speechclip.identity`. This module imports neither ESPnet nor the models: the recipe reads
config values through it many times per run.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Dict, Mapping, Union

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

# Sections whose keys default to the keyword arguments of the class they configure (the speech encoder
# named by ``speech_encoder``, the model named by ``model``).
CLASS_SECTIONS = ("speech_encoder_conf", "model_conf")
# "No value here" where None is a value (an explicit None in a config means "the default").
MISSING = object()


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


def dotted_get(config: Mapping, dotted: str, default: Any = None) -> Any:
    """The raw value at ``a.b.c`` of a nested mapping, or ``default`` where a level is missing (no task or
    class defaults: see :func:`config_value` for those)."""
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return default
        node = node[part]
    return node


def dotted_set(config: dict, dotted: str, value: Any) -> None:
    """Set ``a.b.c`` of a nested dict in place (every level above ``c`` must exist)."""
    *parents, last = dotted.split(".")
    node = config
    for part in parents:
        node = node[part]
    node[last] = value


def config_value(config: Mapping, dotted: str, default: Any = None) -> Any:
    """The value of ``a.b.c`` in a config read by :func:`read_config`, or its default: the task table's
    for top-level keys; ``default`` when it has none. Keys of :data:`CLASS_SECTIONS` default to the
    configured class's keyword arguments: :func:`espnet_speechclip.models.builder.option_value` reads
    those (it imports the model classes, hence ESPnet; this module imports neither).

    Example::

        config_value(read_config("conf/paper/parallel_base.yaml"), "model")  # "parallel"
    """
    parts = dotted.split(".")
    node = dotted_get(config, dotted, MISSING)
    if node is not MISSING and node is not None:  # an explicit None means "the default"
        return node
    if len(parts) == 1 and parts[0] in TASK_DEFAULTS:
        return copy.deepcopy(TASK_DEFAULTS[parts[0]])
    return default
