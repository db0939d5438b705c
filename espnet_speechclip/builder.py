"""Build a SpeechCLIP model from its config sections.

Kept apart from :mod:`espnet_speechclip.task` because importing ESPnet's AbsTask costs ~10 s: inference,
scoring, packing and the Python API rebuild models from a config without it.
"""

from __future__ import annotations

from typing import Mapping, Optional

import torch
from espnet2.train.abs_espnet_model import AbsESPnetModel
from espnet2.train.class_choices import ClassChoices

from espnet_speechclip.encoders.clip import CLIPImageEncoder, CLIPTextEncoder, load_clip
from espnet_speechclip.encoders.speech import S3PRLSpeechEncoder
from espnet_speechclip.models.speechclip import CascadedSpeechCLIP, HybridSpeechCLIP, ParallelSpeechCLIP, SpeechCLIP

speech_encoder_choices = ClassChoices(
    "speech_encoder",
    classes=dict(s3prl=S3PRLSpeechEncoder),
    type_check=torch.nn.Module,
    default="s3prl",
)
model_choices = ClassChoices(
    "model",
    classes=dict(parallel=ParallelSpeechCLIP, cascaded=CascadedSpeechCLIP, hybrid=HybridSpeechCLIP),
    type_check=AbsESPnetModel,
    default="parallel",
)

CLIP_KEYS = ("model_name", "pretrained", "config_file")


def check_clip_conf(clip_conf: Mapping, need_weights: bool = True) -> dict:
    """Validate a ``clip_conf`` section. Frozen CLIP weights are never saved in checkpoints but rebuilt
    from the config, so a trained model needs ``pretrained`` (a tag or a local file)."""
    unknown = set(clip_conf) - set(CLIP_KEYS)
    if unknown:
        raise ValueError(f"clip_conf has unknown keys {sorted(unknown)}; allowed: {CLIP_KEYS}")
    if "model_name" not in clip_conf:
        raise ValueError("clip_conf.model_name is required (e.g. ViT-B-32-quickgelu)")
    if need_weights and not clip_conf.get("pretrained"):
        raise ValueError("clip_conf.pretrained is required (a tag such as openai, or a local weights file): "
                         "frozen CLIP weights are not saved in checkpoints but rebuilt from the config")
    return dict(clip_conf)


def build_speechclip(model: str, model_conf: dict, speech_encoder_conf: dict, clip_conf: dict,
                     image_input: str = "embedding", speech_encoder: str = "s3prl") -> SpeechCLIP:
    """Build a SpeechCLIP model from its config sections (``clip_conf['pretrained']`` None = random CLIP
    weights, for parameter counts, benchmarks and speech-only users)."""
    clip = load_clip(**check_clip_conf(clip_conf, need_weights=False))
    text_encoder = CLIPTextEncoder(clip)
    image_encoder = CLIPImageEncoder(clip) if image_input == "pixels" else None
    del clip  # only the towers kept above stay alive
    encoder = speech_encoder_choices.get_class(speech_encoder)(**speech_encoder_conf)
    return model_choices.get_class(model)(encoder, text_encoder, image_encoder, **model_conf)


def build_from_config(config: Mapping, clip_weights: bool = True, image_tower: Optional[bool] = None) -> SpeechCLIP:
    """Build the model of a training config (a dict of ``config.yaml``).

    ``clip_weights=False`` builds CLIP with random weights. ``image_tower`` overrides whether the CLIP
    image tower is built (default: when the config trains on pixels and CLIP has its weights; a random
    tower serves nobody but a parameter count)."""
    clip_conf = check_clip_conf(config["clip_conf"], need_weights=clip_weights)
    if not clip_weights:
        clip_conf["pretrained"] = None
    if image_tower is None:
        image_tower = clip_weights and config.get("image_input", "embedding") == "pixels"
    return build_speechclip(config.get("model", "parallel"), config.get("model_conf", {}),
                            config.get("speech_encoder_conf", {}), clip_conf,
                            image_input="pixels" if image_tower else "embedding",
                            speech_encoder=config.get("speech_encoder", "s3prl"))
