"""Inference over a data dir: speech embeddings of every branch, image and text embeddings, keywords.

Outputs of :func:`embed_datadir` in ``output_dir``:

- ``utt_list`` (N utterance ids, sorted), ``speech_<branch>.npy`` (N, D_c) per branch;
- ``image_list`` (M unique image keys), ``image.npy`` (M, D_c), ``utt2img`` (utterance -> image key);
- ``text.npy`` (N, D_c) CLIP text embeddings of the transcripts (zero-shot side), when ``text`` exists;
- cascaded: ``keyword_ids.npy`` (N, K) CLIP ids, ``keyword_scores.npy`` (N, K) cosine, ``keywords``
  (``utt kw_1 ... kw_K`` subword strings).
"""

from __future__ import annotations

import argparse
import logging
import shutil
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch

from espnet_speechclip.data.datadir import read_kv
from espnet_speechclip.data.media import MediaError, load_audio, load_image

logger = logging.getLogger(__name__)


def read_config(config_file: str | Path) -> dict:
    """A SpeechCLIP training ``config.yaml`` as a dict, checked to be one."""
    import yaml

    config_file = Path(config_file)
    if not config_file.is_file():
        raise FileNotFoundError(f"SpeechCLIP config {config_file} does not exist")
    with open(config_file, encoding="utf-8") as f:
        conf = yaml.safe_load(f)
    if not isinstance(conf, dict) or "clip_conf" not in conf or "speech_encoder_conf" not in conf:
        raise ValueError(f"{config_file} is not a SpeechCLIP training config (no clip_conf / speech_encoder_conf)")
    return conf


def load_model(config_file: str | Path, model_file: Optional[str | Path] = None, device: str = "cpu",
               clip_weights: bool = True):
    """Rebuild a trained model from its ``config.yaml`` (frozen towers from their own config) and load
    the trainable weights with ``strict=True``: a missing or unexpected trainable key is an error.

    ``clip_weights=False`` builds CLIP with random weights, for users of the speech side only (an
    ESPnet frontend), who then need neither a CLIP download nor its weights file.
    """
    from espnet_speechclip.builder import build_from_config

    config = read_config(config_file)
    model = build_from_config(config, clip_weights=clip_weights)
    args = argparse.Namespace(**config)
    if model_file is not None:
        if not Path(model_file).is_file():
            raise FileNotFoundError(f"SpeechCLIP model file {model_file} does not exist")
        state = torch.load(model_file, map_location="cpu", weights_only=True)
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise RuntimeError(f"{model_file} does not match the model of {config_file}: {e}") from e
    return model.to(device).eval(), args


def pad_batch(wavs: List[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """List of (T_i,) -> zero-padded (B, T_max), lengths (B,)."""
    lengths = torch.tensor([len(w) for w in wavs])
    out = torch.zeros(len(wavs), int(lengths.max()))
    for i, w in enumerate(wavs):
        out[i, : len(w)] = torch.from_numpy(w)
    return out, lengths


@torch.no_grad()
def embed_speech(model, wavs: List[np.ndarray], batch_size: int = 16, device: str = "cpu") -> Dict[str, np.ndarray]:
    """Waveforms (16 kHz) -> per-branch embeddings and keywords, stacked in input order."""
    chunks: Dict[str, List[np.ndarray]] = {}
    for start in range(0, len(wavs), batch_size):
        speech, lengths = pad_batch(wavs[start : start + batch_size])
        out = model.encode_speech(speech.to(device), lengths.to(device))
        for k, v in out.items():
            chunks.setdefault(k, []).append(v.float().cpu().numpy() if v.is_floating_point() else v.cpu().numpy())
    return {k: np.concatenate(v) for k, v in chunks.items()}


def load_speech(wav_scp: Dict[str, str], utts: List[str], min_samples: int) -> List[np.ndarray]:
    wavs = []
    for u in utts:
        try:
            wav = load_audio(wav_scp[u])
        except MediaError as e:
            raise MediaError(f"utterance {u}: {e}") from e
        if len(wav) < min_samples:
            raise MediaError(f"utterance {u}: {len(wav)} samples at 16 kHz, shorter than the speech encoder's "
                             f"{min_samples}-sample receptive field")
        wavs.append(wav)
    return wavs


@torch.no_grad()
def embed_images_of(model, clip_conf: dict, image_keys: List[str], img_scp: Dict[str, str],
                    image_emb_scp: Optional[Dict[str, str]], batch_size: int, device: str) -> np.ndarray:
    """(M, D_c) image embeddings: from the cache when given, else through the CLIP image tower."""
    if image_emb_scp is not None:
        missing = [k for k in image_keys if k not in image_emb_scp]
        if missing:
            raise KeyError(f"image embedding cache lacks {len(missing)} image(s), e.g. {missing[:3]}")
        emb = torch.from_numpy(np.stack([np.load(image_emb_scp[k]) for k in image_keys]))
        return torch.nn.functional.normalize(emb.float(), dim=-1).numpy()
    from espnet_speechclip.encoders.clip import CLIPImageEncoder, load_clip

    encoder = model.image_encoder or CLIPImageEncoder(load_clip(**clip_conf)).to(device)
    out = [encoder.embed_images([load_image(img_scp[k]) for k in image_keys[i : i + batch_size]],
                                device=torch.device(device)).float().cpu().numpy()
           for i in range(0, len(image_keys), batch_size)]
    return np.concatenate(out)


def _utterances(data_dir: Path) -> tuple[List[str], Dict[str, str], Dict[str, str]]:
    wav_scp = read_kv(data_dir / "wav.scp")
    utt2img = read_kv(data_dir / "utt2img")
    utts = sorted(wav_scp)
    missing = [u for u in utts if u not in utt2img]
    if missing:
        raise KeyError(f"{data_dir}/utt2img lacks {len(missing)} utterance(s), e.g. {missing[:3]}")
    return utts, wav_scp, utt2img


def embed_utterances(model, data_dir: str | Path, output_dir: str | Path, batch_size: int = 16,
                     device: str = "cpu", split: Optional[tuple[int, int]] = None) -> Path:
    """The per-utterance outputs (speech of every branch, keywords, transcript embeddings) of the
    utterances of ``data_dir``, or of part ``split = (j, n)`` (1-based) of them for parallel jobs."""
    from espnet_speechclip.encoders.clip import decode_token

    data_dir, output_dir = Path(data_dir), Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    utts, wav_scp, _ = _utterances(data_dir)
    if split is not None:
        j, n = split
        if not 1 <= j <= n:
            raise ValueError(f"split {j} of {n} does not exist")
        utts = utts[j - 1 :: n]
    logger.info("embedding %d utterances of %s", len(utts), data_dir)
    wavs = load_speech(wav_scp, utts, model.speech_encoder.min_samples)
    out = embed_speech(model, wavs, batch_size, device) if utts else {}
    (output_dir / "utt_list").write_text("".join(f"{u}\n" for u in utts), encoding="utf-8")
    for branch in model.branches:
        np.save(output_dir / f"speech_{branch}.npy", out.get(branch, np.zeros((0, 0), np.float32)))
    if model.cascaded is not None:
        ids = out.get("keyword_ids", np.zeros((0, model.cascaded.num_keywords), np.int64))
        np.save(output_dir / "keyword_ids.npy", ids)
        np.save(output_dir / "keyword_scores.npy", out.get("keyword_scores", np.zeros(ids.shape, np.float32)))
        with open(output_dir / "keywords", "w", encoding="utf-8") as f:
            for u, row in zip(utts, ids):
                f.write(u + " " + " ".join(decode_token(int(i)) for i in row) + "\n")
    if (data_dir / "text").is_file():
        text = read_kv(data_dir / "text")
        with torch.no_grad():
            emb = model.encode_text([text[u] for u in utts])
        np.save(output_dir / "text.npy", emb.float().cpu().numpy())
    return output_dir


PER_UTTERANCE_ARRAYS = ("speech_parallel.npy", "speech_cascaded.npy", "keyword_ids.npy", "keyword_scores.npy",
                        "text.npy")


def merge_utterance_parts(parts: List[Path], output_dir: str | Path) -> Path:
    """Join the per-utterance outputs of parallel jobs (:func:`embed_utterances` with ``split``) into
    ``output_dir``, in sorted utterance order as a single job writes them."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    for part in parts:
        if not (part / "utt_list").is_file():
            raise FileNotFoundError(f"inference part {part} is incomplete (no utt_list): rerun its job")
    utts = [u for part in parts for u in (part / "utt_list").read_text(encoding="utf-8").split()]
    order = np.argsort(np.array(utts), kind="stable")
    (output_dir / "utt_list").write_text("".join(f"{utts[i]}\n" for i in order), encoding="utf-8")
    for name in PER_UTTERANCE_ARRAYS:
        found = [(part / name).is_file() for part in parts]
        if not any(found):
            continue
        if not all(found):
            raise FileNotFoundError(f"only some inference parts have {name}: rerun the jobs")
        arrays = [np.load(part / name) for part in parts]
        np.save(output_dir / name, np.concatenate([a for a in arrays if a.size] or arrays[:1])[order])
    if all((part / "keywords").is_file() for part in parts):
        lines = [line for part in parts for line in (part / "keywords").read_text(encoding="utf-8").splitlines()]
        (output_dir / "keywords").write_text("".join(f"{lines[i]}\n" for i in order), encoding="utf-8")
    return output_dir


def embed_images_of_datadir(model, clip_conf: dict, data_dir: str | Path, output_dir: str | Path,
                            image_emb_scp: Optional[str | Path] = None, batch_size: int = 16,
                            device: str = "cpu") -> Path:
    """The image side of ``data_dir``: unique images, their embeddings, and the utterance lists.
    ``model`` may be None when ``image_emb_scp`` (the cache) is given."""
    data_dir, output_dir = Path(data_dir), Path(output_dir)
    utts, _, utt2img = _utterances(data_dir)
    image_keys = sorted(set(utt2img[u] for u in utts))
    img_scp = read_kv(data_dir / "img.scp") if image_emb_scp is None else {}
    cache = read_kv(image_emb_scp) if image_emb_scp is not None else None
    np.save(output_dir / "image.npy", embed_images_of(model, clip_conf, image_keys, img_scp, cache, batch_size, device))
    (output_dir / "image_list").write_text("".join(f"{k}\n" for k in image_keys), encoding="utf-8")
    shutil.copyfile(data_dir / "utt2img", output_dir / "utt2img")
    if (data_dir / "text").is_file():
        shutil.copyfile(data_dir / "text", output_dir / "text")
    return output_dir


def embed_datadir(model, clip_conf: dict, data_dir: str | Path, output_dir: str | Path,
                  image_emb_scp: Optional[str | Path] = None, batch_size: int = 16, device: str = "cpu") -> Path:
    """Embed every utterance, image and transcript of ``data_dir``; see the module doc for outputs."""
    embed_utterances(model, data_dir, output_dir, batch_size, device)
    embed_images_of_datadir(model, clip_conf, data_dir, output_dir, image_emb_scp, batch_size, device)
    logger.info("wrote embeddings to %s", output_dir)
    return Path(output_dir)
