"""Tiny stand-ins for the pretrained models and corpora, built locally by the tests.

- a random tiny HuBERT saved in s3prl's converted-checkpoint format (loads with ``hubert_local``);
- a random tiny CLIP (``conf/clip/tiny-clip.json``) saved as an open_clip weights file;
- a tiny spoken-caption corpus where each image is a solid colour and its captions are tones whose
  pitch encodes the colour, so a few epochs can learn it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
TINY_CLIP_CONFIG = ROOT / "conf" / "clip" / "tiny-clip.json"

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
    from espnet_speechclip.compat import patch_s3prl

    patch_s3prl()
    from s3prl.upstream.hubert.hubert_model import HubertConfig, HubertModel, HubertPretrainingConfig
    from s3prl.upstream.utils import merge_with_parent

    task_cfg = dict(sample_rate=16000, normalize=normalize, label_rate=50)
    torch.manual_seed(seed)
    model = HubertModel(
        merge_with_parent(HubertConfig, TINY_HUBERT_MODEL_CFG),
        merge_with_parent(HubertPretrainingConfig, task_cfg),
        [["a", "b"]],
    )
    torch.save(
        dict(
            task_cfg=task_cfg,
            model_cfg=TINY_HUBERT_MODEL_CFG,
            model_weight=model.state_dict(),
            dictionaries_symbols=[["a", "b"]],
        ),
        path,
    )
    return path


def make_tiny_clip(path: Path, seed: int = 0) -> Dict[str, str]:
    """Random tiny CLIP weights at ``path``; returns the clip_conf that loads them."""
    import open_clip

    open_clip.add_model_config(TINY_CLIP_CONFIG)
    torch.manual_seed(seed)
    model = open_clip.create_model("tiny-clip", pretrained=None)
    torch.save(model.state_dict(), path)
    return dict(model_name="tiny-clip", pretrained=str(path), config_file=str(TINY_CLIP_CONFIG))


COLOURS = {
    "red": (220, 30, 30),
    "green": (30, 200, 30),
    "blue": (30, 30, 220),
    "yellow": (230, 220, 20),
    "purple": (140, 40, 170),
    "white": (245, 245, 245),
    "black": (10, 10, 10),
    "orange": (240, 140, 20),
}


def make_tiny_corpus(
    root: Path, n_images: int = 8, captions: int = 2, seed: int = 0, split: str = "train"
) -> Path:
    """Write images, wavs and a data dir ``root/data/tiny_<split>``; returns the data dir."""
    from PIL import Image

    from espnet_speechclip.data.datadir import Utterance, write_datadir
    from espnet_speechclip.data.media import write_wav

    rng = np.random.RandomState(seed)
    names = list(COLOURS)
    utts: List[Utterance] = []
    for i in range(n_images):
        colour = names[i % len(names)]
        key = f"{split}img{i:03d}"
        img_path = root / "images" / f"{key}.png"
        img_path.parent.mkdir(parents=True, exist_ok=True)
        pixels = np.full((40, 40, 3), COLOURS[colour], dtype=np.uint8)
        pixels[: 10 + i % 7] = 128  # a grey band so images of one colour still differ
        Image.fromarray(pixels).save(img_path)
        for c in range(captions):
            n = int(rng.randint(6000, 12000))
            t = np.arange(n) / 16000
            freq = 200 + 150 * names.index(colour)
            wav = 0.3 * np.sin(2 * np.pi * freq * t) + 0.01 * rng.randn(n)
            utt = f"spk{c}-{key}_{c}"
            wav_path = root / "wavs" / f"{utt}.wav"
            write_wav(wav_path, wav)
            utts.append(Utterance(utt, str(wav_path), f"a {colour} square", f"spk{c}", key, str(img_path), n))
    return write_datadir(root / "data" / f"tiny_{split}", utts)


def make_flickr8k_tree(root: Path, n_images: Dict[str, int] = None, captions: int = 2, seed: int = 0) -> Path:
    """A learnable miniature of Flickr8k in its official layout (colour images, tone captions)."""
    from PIL import Image

    from espnet_speechclip.data.media import write_wav

    n_images = n_images or {"train": 12, "dev": 4, "test": 4}
    split_files = {
        "train": "Flickr_8k.trainImages.txt",
        "dev": "Flickr_8k.devImages.txt",
        "test": "Flickr_8k.testImages.txt",
    }
    rng = np.random.RandomState(seed)
    names = list(COLOURS)
    tokens, wav2capt, wav2spk = [], [], []
    (root / "Flicker8k_Dataset").mkdir(parents=True, exist_ok=True)
    (root / "Flickr8k_text").mkdir(parents=True, exist_ok=True)
    count = 0
    for split, n in n_images.items():
        listed = []
        for i in range(n):
            colour = names[count % len(names)]
            image = f"{1000 + count}_{split}{i}.jpg"
            count += 1
            pixels = np.full((48, 48, 3), COLOURS[colour], dtype=np.uint8)
            pixels[: 8 + i % 9] = 128
            Image.fromarray(pixels).save(root / "Flicker8k_Dataset" / image, "JPEG")
            listed.append(image)
            for k in range(5):
                tokens.append(f"{image}#{k}\ta {colour} square .")
            for k in range(captions):
                n_samples = int(rng.randint(6000, 12000))
                t = np.arange(n_samples) / 16000
                wav = 0.3 * np.sin(2 * np.pi * (200 + 150 * names.index(colour)) * t) + 0.01 * rng.randn(
                    n_samples
                )
                name = f"{image[:-4]}_{k}.wav"
                write_wav(root / "flickr_audio" / "wavs" / name, wav)
                wav2capt.append(f"{name} {image} #{k}")
                wav2spk.append(f"{name} {k + 1}")
        (root / "Flickr8k_text" / split_files[split]).write_text("".join(f"{x}\n" for x in listed))
    (root / "Flickr8k_text" / "Flickr8k.token.txt").write_text("".join(f"{x}\n" for x in tokens))
    (root / "flickr_audio" / "wav2capt.txt").write_text("".join(f"{x}\n" for x in wav2capt))
    (root / "flickr_audio" / "wav2spk.txt").write_text("".join(f"{x}\n" for x in wav2spk))
    return root


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
