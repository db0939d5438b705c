"""The one SpeechCLIP model builder: a config in, a model with its frozen towers out.

Training (the ESPnet task), inference, packing, the ESPnet frontend, parameter counts and benchmarks
all build through :func:`build_model`. It is kept apart from :mod:`espnet_speechclip.training.task`
because importing ESPnet's AbsTask costs ~10 s, which inference and the Python API do not need.
"""

from __future__ import annotations

import inspect
from typing import Any, Mapping, Optional

import torch
from espnet2.train.abs_espnet_model import AbsESPnetModel
from espnet2.train.class_choices import ClassChoices

from espnet_speechclip.config import CLASS_SECTIONS, MISSING, config_value, read_config
from espnet_speechclip.errors import InputError
from espnet_speechclip.models.clip import CLIPImageEncoder, CLIPTextEncoder, load_clip
from espnet_speechclip.models.speech_encoder import S3PRLSpeechEncoder
from espnet_speechclip.models.speechclip import (
    CascadedPlusSpeechCLIP,
    CascadedSpeechCLIP,
    HybridPlusSpeechCLIP,
    HybridSpeechCLIP,
    ParallelSpeechCLIP,
    SharedHybridSpeechCLIP,
    SpeechCLIP,
)
from espnet_speechclip.models.upstream import hub_entry

speech_encoder_choices = ClassChoices(
    "speech_encoder",
    classes=dict(s3prl=S3PRLSpeechEncoder),
    type_check=torch.nn.Module,
    default="s3prl",
)
model_choices = ClassChoices(
    "model",
    classes=dict(
        parallel=ParallelSpeechCLIP,
        cascaded=CascadedSpeechCLIP,
        hybrid=HybridSpeechCLIP,
        # SpeechCLIP+ (Wang et al., 2024): variable-length keywords by continuous integrate-and-fire
        cascaded_plus=CascadedPlusSpeechCLIP,
        hybrid_plus=HybridPlusSpeechCLIP,
        # SpeechCLIP+'s hybrid: one attention block shared by a parallel CLS and the keyword CLS tokens
        hybrid_shared=SharedHybridSpeechCLIP,
    ),
    type_check=AbsESPnetModel,
    default="parallel",
)


def constructor_default(config: Mapping, section: str, name: str) -> Any:
    """The default of ``<section>.<name>`` (``section`` one of
    :data:`espnet_speechclip.config.CLASS_SECTIONS`): the keyword default of the constructor the section
    configures, or :data:`espnet_speechclip.config.MISSING` when it has none."""
    choices = {"speech_encoder_conf": speech_encoder_choices, "model_conf": model_choices}.get(section)
    if choices is None:
        return MISSING
    cls = choices.get_class(read_config(config)[choices.name])
    param = inspect.signature(cls.__init__).parameters.get(name)
    if param is None or param.default is inspect.Parameter.empty:
        return MISSING
    return param.default


def option_value(config: Mapping, dotted: str, default: Any = None) -> Any:
    """:func:`espnet_speechclip.config.config_value`, with the keys of ``speech_encoder_conf`` and
    ``model_conf`` defaulting to the configured class's keyword arguments.

    Example::

        option_value(read_config("conf/paper/parallel_base.yaml"), "speech_encoder_conf.upstream")  # "hubert"
    """
    value = config_value(config, dotted, MISSING)
    if value is not MISSING:
        return value
    parts = dotted.split(".")
    if len(parts) == 2 and parts[0] in CLASS_SECTIONS:
        value = constructor_default(config, parts[0], parts[1])
        if value is not MISSING:
            return value
    return default


CLIP_KEYS = ("model_name", "pretrained", "config_file")


def check_clip_conf(clip_conf: Mapping, need_weights: bool = True) -> dict:
    """Validate a ``clip_conf`` section. Frozen CLIP weights are never saved in checkpoints but rebuilt
    from the config, so a trained model needs ``pretrained`` (a tag or a local file)."""
    unknown = set(clip_conf) - set(CLIP_KEYS)
    if unknown:
        raise InputError(f"clip_conf has unknown keys {sorted(unknown)}; allowed: {CLIP_KEYS}")
    if "model_name" not in clip_conf:
        raise InputError("clip_conf.model_name is required (e.g. ViT-B-32-quickgelu)")
    if need_weights and not clip_conf.get("pretrained"):
        raise InputError(
            "clip_conf.pretrained is required (a tag such as openai, or a local weights file): "
            "frozen CLIP weights are not saved in checkpoints but rebuilt from the config"
        )
    return dict(clip_conf)


def build_model(config: Mapping, clip_weights: bool = True, image_tower: Optional[bool] = None) -> SpeechCLIP:
    """Build the SpeechCLIP of a config (``config.yaml`` as a dict, or the task's parsed arguments).

    Args:
        config: the config; missing top-level keys take :data:`espnet_speechclip.config.TASK_DEFAULTS`.
        clip_weights: load CLIP's pretrained weights; ``False`` builds CLIP with random weights (parameter
            counts, benchmarks, and users of the speech side only, who need no CLIP download).
        image_tower: build the CLIP image tower. Default: when the config trains on pixels
            (``image_input: pixels``) and CLIP has its weights (a random tower serves only a count).

    Example::

        model = build_model(read_config("exp/synth_parallel/config.yaml"))
    """
    config = read_config(config)

    # 0. The cheap checks first: an unknown upstream is said before CLIP loads (seconds, gigabytes).
    if config["speech_encoder"] == "s3prl":
        hub_entry(option_value(config, "speech_encoder_conf.upstream"))

    # 1. The frozen CLIP: the text tower always (keywords, zero-shot text), the image tower on demand.
    clip_conf = check_clip_conf(config["clip_conf"], need_weights=clip_weights)
    if not clip_weights:
        clip_conf["pretrained"] = None
    if image_tower is None:
        image_tower = clip_weights and config["image_input"] == "pixels"
    clip = load_clip(**clip_conf)
    text_encoder = CLIPTextEncoder(clip)
    image_encoder = CLIPImageEncoder(clip) if image_tower else None
    del clip  # only the towers kept above stay alive

    # 2. The speech encoder: a frozen s3prl upstream and its learnable layer weights.
    speech_encoder_class = speech_encoder_choices.get_class(config["speech_encoder"])
    speech_encoder = speech_encoder_class(**config["speech_encoder_conf"])

    # 3. The model: its branches (built from model_conf) on top of the encoder and the towers.
    model_class = model_choices.get_class(config["model"])
    return model_class(speech_encoder, text_encoder, image_encoder, **config["model_conf"])
