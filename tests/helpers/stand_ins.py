"""Tiny stand-ins for the pretrained models, built locally: a random tiny HuBERT in s3prl's
converted-checkpoint format (loads with ``hubert_local``), a random tiny CLIP (``conf/clip/tiny-clip.json``)
as an open_clip weights file, and a tiny SpeechCLIP trained through the real entry point."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List

import torch

from espnet_speechclip.models.random_weights import random_hubert, save_hubert

from . import TINY, TINY_CLIP_CONFIG
from .corpora import make_tiny_corpus

TINY_HUBERT_MODEL_CFG = dict(
    label_rate=50,
    extractor_mode="default",
    encoder_layers=2,
    encoder_embed_dim=64,
    encoder_ffn_embed_dim=128,
    encoder_attention_heads=2,
    final_dim=32,
    conv_feature_layers="[(32,10,5)] + [(32,3,2)]*4 + [(32,2,2)]*2",
    conv_pos=16,
    conv_pos_groups=4,
)


def make_tiny_hubert(path: Path, normalize: bool = False, seed: int = 0) -> Path:
    """A random 2-layer HuBERT (width 64) at ``path``."""
    task_cfg = dict(sample_rate=16000, normalize=normalize, label_rate=50)
    model = random_hubert(TINY_HUBERT_MODEL_CFG, task_cfg, seed, num_classes=2)
    return save_hubert(model, TINY_HUBERT_MODEL_CFG, task_cfg, path)


def make_pre_norm_hubert(path: Path, seed: int = 3) -> Path:
    """A tiny HuBERT with HuBERT Large's layout: pre-norm layers and a trained final LayerNorm."""
    cfg = dict(TINY_HUBERT_MODEL_CFG, layer_norm_first=True)
    task = dict(sample_rate=16000, normalize=True, label_rate=50)
    model = random_hubert(cfg, task, seed, num_classes=2)
    with torch.no_grad():
        model.encoder.layer_norm.weight.uniform_(0.5, 1.5)
        model.encoder.layer_norm.bias.normal_(0, 0.3)
    return save_hubert(model, cfg, task, path)


def make_tiny_clip(path: Path, seed: int = 0) -> Dict[str, str]:
    """Random tiny CLIP weights at ``path``; returns the clip_conf that loads them."""
    import open_clip

    open_clip.add_model_config(TINY_CLIP_CONFIG)
    torch.manual_seed(seed)
    model = open_clip.create_model("tiny-clip", pretrained=None)
    torch.save(model.state_dict(), path)
    return dict(model_name="tiny-clip", pretrained=str(path), config_file=str(TINY_CLIP_CONFIG))


def training_data_args(train_dir: Path, valid_dir: Path = None, image_id_file: str = "utt2img") -> List[str]:
    """ESPnet data options for a tiny corpus whose data dirs hold ``image_emb.scp`` (cached embeddings)."""
    args: List[str] = []
    for mode, d in (("train", train_dir), ("valid", valid_dir or train_dir)):
        args += [
            f"--{mode}_data_path_and_name_and_type",
            f"{d}/wav.scp,speech,sound_16k",
            f"--{mode}_data_path_and_name_and_type",
            f"{d}/{image_id_file},image_id,text",
            f"--{mode}_data_path_and_name_and_type",
            f"{d}/image_emb.scp,image_emb,npy",
            f"--{mode}_shape_file",
            f"{d}/utt2num_samples",
        ]
    return args


def train_tiny_speechclip(
    root: Path, clip_conf: Dict[str, str], config: Path, hubert: Path = None, extra: List[str] = ()
) -> Dict[str, Path]:
    """Train a tiny SpeechCLIP for one epoch through the real entry point on a 4-image corpus (images
    as cached embeddings); with ``hubert`` its upstream is that local checkpoint."""
    from espnet_speechclip.bin import speechclip_train
    from espnet_speechclip.training.image_cache import cache_image_embeddings, write_utt_emb_scp

    data = make_tiny_corpus(root / "corpus", 4, 2, seed=0, split="train")
    cache = cache_image_embeddings(data / "img.scp", clip_conf, root / "image_emb", progress=False)
    write_utt_emb_scp(data / "utt2img", cache / "img_emb.scp", data / "image_emb.scp")
    exp = root / "exp"
    cmd = [
        "--config",
        str(config),
        "--output_dir",
        str(exp),
        "--ngpu",
        "0",
        "--max_epoch",
        "1",
        "--clip_conf",
        f"pretrained={clip_conf['pretrained']}",
        "--clip_conf",
        f"config_file={clip_conf['config_file']}",
    ]
    if hubert is not None:
        cmd += [
            "--speech_encoder_conf",
            "upstream=hubert_local",
            "--speech_encoder_conf",
            f"path_or_url={hubert}",
        ]
    speechclip_train.main(cmd + list(extra) + training_data_args(data))
    return dict(exp=exp, data=data, img_emb_scp=cache / "img_emb.scp")


def pack_random_model(root: Path, clip_conf: Dict[str, str], hubert: Path, **pack_kwargs) -> Path:
    """A tiny parallel SpeechCLIP shaped like the paper's (the branch takes the tiny HuBERT's frames:
    no projection) with random trainable weights, packed into ``root/model.zip``."""
    import yaml

    from espnet_speechclip.inference.packing import pack_model
    from espnet_speechclip.inference.speech2image import Speech2Image

    config = yaml.safe_load((TINY / "parallel.yaml").read_text())
    config["clip_conf"] = dict(clip_conf)
    config["speech_encoder_conf"] = dict(upstream="hubert_local", path_or_url=str(hubert))
    config["image_input"] = "embedding"
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    torch.manual_seed(0)
    torch.save(Speech2Image(root / "config.yaml").model.state_dict(), root / "model.pth")
    return pack_model(root / "config.yaml", root / "model.pth", root / "model.zip", **pack_kwargs)
