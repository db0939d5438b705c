"""Build a configured SpeechCLIP with RANDOM frozen weights, without any download.

Pretrained HuBERT and CLIP weights are not needed to count parameters or to time a training step:
the architecture is. CLIP architectures come from open_clip's configs (``pretrained=None``); HuBERT
architectures are written as a random checkpoint in s3prl's converted format and loaded through the
same ``hubert_local`` path a real local checkpoint takes.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Dict, Tuple

import torch

from espnet_speechclip.errors import InputError
from espnet_speechclip.files import atomic_path

# fairseq HuBERT configs of the released models (s3prl's converted checkpoints carry the same).
_CONV = "[(512,10,5)] + [(512,3,2)] * 4 + [(512,2,2)] * 2"
HUBERT_ARCHITECTURES: Dict[str, Tuple[dict, dict]] = {
    "hubert_base": (
        dict(
            label_rate=50,
            extractor_mode="default",
            encoder_layers=12,
            encoder_embed_dim=768,
            encoder_ffn_embed_dim=3072,
            encoder_attention_heads=12,
            final_dim=256,
            conv_feature_layers=_CONV,
            conv_pos=128,
            conv_pos_groups=16,
            layer_norm_first=False,
        ),
        dict(sample_rate=16000, normalize=False, label_rate=50),
    ),
    "hubert_large_ll60k": (
        dict(
            label_rate=50,
            extractor_mode="layer_norm",
            encoder_layers=24,
            encoder_embed_dim=1024,
            encoder_ffn_embed_dim=4096,
            encoder_attention_heads=16,
            final_dim=768,
            conv_feature_layers=_CONV,
            conv_pos=128,
            conv_pos_groups=16,
            layer_norm_first=True,
        ),
        dict(sample_rate=16000, normalize=True, label_rate=50),
    ),
}
HUBERT_ARCHITECTURES["hubert"] = HUBERT_ARCHITECTURES["hubert_base"]
NUM_HUBERT_CLASSES = 504  # k-means targets of the released models' final iteration


def random_hubert(model_cfg: dict, task_cfg: dict, seed: int = 0, num_classes: int = NUM_HUBERT_CLASSES):
    """A randomly initialised s3prl ``HubertModel`` of the fairseq-style ``model_cfg`` / ``task_cfg``
    (keys as in :data:`HUBERT_ARCHITECTURES`) with ``num_classes`` k-means targets."""
    from espnet_speechclip.compat import patch_s3prl

    patch_s3prl()
    from s3prl.upstream.hubert.hubert_model import HubertConfig, HubertModel, HubertPretrainingConfig
    from s3prl.upstream.utils import merge_with_parent

    torch.manual_seed(seed)
    return HubertModel(
        merge_with_parent(HubertConfig, model_cfg),
        merge_with_parent(HubertPretrainingConfig, task_cfg),
        [[str(i) for i in range(num_classes)]],
    )


def save_hubert(model: torch.nn.Module, model_cfg: dict, task_cfg: dict, path: str | Path) -> Path:
    """Write ``model`` (a :func:`random_hubert`) as s3prl's converted checkpoint, which its
    ``hubert_local`` upstream loads."""
    path = Path(path)
    with atomic_path(path) as tmp:  # renamed into place: never half a checkpoint
        torch.save(
            dict(
                task_cfg=task_cfg,
                model_cfg=model_cfg,
                model_weight=model.state_dict(),
                dictionaries_symbols=[[str(i) for i in range(model.num_classes[0])]],
            ),
            tmp,
        )
    return path


def write_random_hubert(name: str, path: str | Path, seed: int = 0) -> Path:
    """A random HuBERT of the released architecture ``name`` in s3prl's converted format."""
    if name not in HUBERT_ARCHITECTURES:
        raise InputError(
            f"no random architecture for upstream {name!r}; known: {sorted(HUBERT_ARCHITECTURES)}"
        )
    model_cfg, task_cfg = HUBERT_ARCHITECTURES[name]
    return save_hubert(random_hubert(model_cfg, task_cfg, seed), model_cfg, task_cfg, path)


def build_random(
    config: dict,
    workdir: str | Path | None = None,
    image_tower: bool = False,
    device: str | torch.device = "cpu",
):
    """Build the model of a training config with random frozen weights.

    The speech upstream is replaced by a random checkpoint of the same architecture (weight-free
    upstreams such as fbank are used as they are), CLIP is built without weights, and a cascaded
    codebook file that is not at hand is replaced by the full vocabulary (the parameter count does not
    depend on it). ``image_tower`` builds the CLIP image tower too (part of the system even when
    training reads cached embeddings). ``device="meta"`` builds the architecture without allocating or
    initialising any weight (parameter counts: seconds instead of minutes and gigabytes for Large).
    """
    from espnet_speechclip.config import read_config
    from espnet_speechclip.models.builder import build_model, option_value

    config = read_config(config)
    speech_conf = config["speech_encoder_conf"]
    upstream = option_value(config, "speech_encoder_conf.upstream")
    workdir = Path(workdir or tempfile.mkdtemp(prefix="speechclip_random_"))
    device = torch.device(device)
    if device.type == "meta":
        _import_outside_meta("hubert_local" if upstream in HUBERT_ARCHITECTURES else upstream)
    if upstream in HUBERT_ARCHITECTURES:
        # one random checkpoint per architecture, device and workdir: several configs share it (1.2 GB for
        # Large; a meta one holds no data, so it must never serve a build with weights)
        path = workdir / f"{upstream}.{device.type}.pt"
        if not path.is_file():
            with device:
                write_random_hubert(upstream, path)
        speech_conf["upstream"] = "hubert_local"
        speech_conf["path_or_url"] = str(path)
    cascaded = config.get("model_conf", {}).get("cascaded_conf")
    if (
        cascaded is not None
        and cascaded.get("codebook", "full") != "full"
        and not Path(cascaded["codebook"]).is_file()
    ):
        cascaded["codebook"] = "full"
    with device:
        return build_model(config, clip_weights=False, image_tower=image_tower or None)


def _import_outside_meta(upstream: str) -> None:
    """Import what a build imports lazily, before a ``with torch.device("meta")``: a module first
    imported inside it keeps meta module-level tensors for the whole process (torchaudio's Kaldi
    ``EPSILON``, imported by s3prl, then breaks every later filterbank)."""
    from espnet_speechclip.models.upstream import hub_entry

    hub_entry(upstream)  # s3prl, the upstream's hub module and its model (HuBERT's for hubert_local)
    # after the upstream, so that an unknown one is said before this import's seconds
    import open_clip  # noqa: F401


def count_parameters(model: torch.nn.Module) -> Dict[str, int]:
    """Trainable parameters and total parameters (the frozen towers included)."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return {"trainable": trainable, "total": total}
