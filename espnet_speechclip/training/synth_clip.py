"""The stand-in CLIP of the spoken-shapes corpus, trained offline in about two minutes on two cores.

No pretrained CLIP can be downloaded here, and a real one knows nothing of these renderings anyway, so
the default pipeline trains its own small open_clip model (config ``clip_configs/synth-clip.json``,
7.3 M parameters) contrastively on the training images and their captions. Later stages load it like
any open_clip model::

    register_synth_clip()
    model = open_clip.create_model("synth-clip", pretrained="dump/clip/synth-clip.pt")

Half of every batch is freshly rendered random scenes: with the fixed training images alone the
model overfits (the prototype's R@5 fell from 89.8 to 83.7 by 800 steps).

The weights carry a record (``.synth-clip.pt.made_from.json``, :mod:`espnet_speechclip.provenance`) of the
training data's content (captions and image files) and the options that change them (steps, batch size,
learning rate, warm-up, weight decay, seed, model config): a rerun with the same ones reuses the weights,
any other retrains. The evaluation report names the weights and test data it was computed on and is
recomputed when they change.

Usage::

    python -m espnet_speechclip.bin.train_synth_clip --train_dir data/synth_train \\
        --eval_dir data/synth_test --out dump/clip/synth-clip.pt --steps 800 --nj 2
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections import defaultdict
from functools import partial
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from espnet_speechclip.data.datadir import read_datadir
from espnet_speechclip.data.media import load_image
from espnet_speechclip.data.synth.captions import captions
from espnet_speechclip.data.synth.scenes import render, sample_scene
from espnet_speechclip.errors import InputError, MissingFileError
from espnet_speechclip.evaluation.retrieval import retrieval_recall
from espnet_speechclip.files import atomic_path, sha256_file, write_text_atomic
from espnet_speechclip.models.clip import random_init_intended
from espnet_speechclip.provenance import (
    FileHashes,
    check_record,
    clear_record,
    content_digest,
    read_record,
    record_path,
    write_record,
)

logger = logging.getLogger(__name__)

MODEL_NAME = "synth-clip"
CONFIG_PATH = Path(__file__).resolve().parent.parent / "clip_configs" / f"{MODEL_NAME}.json"
RECALL_KS = (1, 5, 10)
RECORD_KIND = "synth-clip"
TRAINER_VERSION = 1  # bumped when training changes, so older weights are retrained rather than reused


def register_synth_clip() -> str:
    """Make ``synth-clip`` known to open_clip (idempotent). Returns the model name."""
    import open_clip

    if MODEL_NAME not in open_clip.list_models():
        if not CONFIG_PATH.is_file():
            raise MissingFileError(f"the synth-clip model config {CONFIG_PATH} is missing from the package")
        open_clip.add_model_config(CONFIG_PATH)
    return MODEL_NAME


def eval_json_path(out_file: str | Path) -> Path:
    """Where :func:`train_synth_clip` writes the retrieval scores:
    ``synth-clip.pt`` -> ``synth-clip.eval.json``."""
    return Path(out_file).with_suffix(".eval.json")


class _Tokenize:
    """open_clip's tokenizer with a cache (captions repeat a lot) and a check that nothing is truncated."""

    def __init__(self, tokenizer, context_length: int):
        self.tokenizer = tokenizer
        self.context_length = context_length
        self.cache: Dict[str, torch.Tensor] = {}

    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        """Token ids (B, context_length)."""
        missing = [t for t in dict.fromkeys(texts) if t not in self.cache]
        if missing:
            for t, ids in zip(missing, self.tokenizer(missing)):
                # open_clip silently truncates; a truncated caption would lose the words that matter.
                # Only a caption that fills the context can have been cut: encode those again to know.
                if int(ids[-1]) != 0 and len(self.tokenizer.encode(t)) + 2 > self.context_length:
                    raise InputError(
                        f"caption {t!r} does not fit synth-clip's context of {self.context_length} "
                        f"tokens (with start and end tokens)"
                    )
                self.cache[t] = ids
        return torch.stack([self.cache[t] for t in texts])


def _load_pairs(data_dir: str | Path) -> Tuple[List[str], List[str], List[Tuple[str, int]]]:
    """Images (sorted, deduplicated by key) and captions of a data dir.

    Returns (image keys, image paths, [(caption, index of its image)]).
    """
    utts = read_datadir(data_dir)
    paths: Dict[str, str] = {}
    for u in utts:
        paths[u.image_key] = u.image_path
    keys = sorted(paths)
    index = {k: i for i, k in enumerate(keys)}
    return keys, [paths[k] for k in keys], [(u.text, index[u.image_key]) for u in utts]


def data_identity(data_dir: str | Path, hashes: Optional[FileHashes] = None) -> Dict[str, str]:
    """What training or evaluation reads from a data dir, by content: captions, the utterance -> image
    map, and every image file."""
    hashes = hashes or FileHashes()
    keys, paths, _ = _load_pairs(data_dir)
    images = hashes.sha256_many(paths)
    return {
        "text": sha256_file(Path(data_dir) / "text"),
        "utt2img": sha256_file(Path(data_dir) / "utt2img"),
        "images": content_digest((k, images[p]) for k, p in zip(keys, paths)),
    }


def _transform(preprocess: Callable, images: Sequence) -> torch.Tensor:
    """PIL images through ``preprocess`` one by one: (N, 3, H, W)."""
    return torch.stack([preprocess(im) for im in images])


def _pixels_at_size(preprocess: Callable, size: int, probe: Sequence) -> Callable:
    """:func:`_transform` of ``preprocess`` (open_clip's val transform), batched for RGB images already
    ``size`` pixels square (where its resize and centre crop change nothing): one uint8 array, ``/ 255``,
    then the transform's own normalisation, the operations of torchvision's ``to_tensor`` and
    ``normalize`` on the whole batch. It is used only if it gives exactly the pixels of the per-image
    transform on the ``probe`` images; otherwise, and for images of another size, the per-image
    transform runs. Maps a list of PIL images to (N, 3, H, W)."""
    import numpy as np
    from torchvision import transforms as T

    per_image = partial(_transform, preprocess)
    steps = getattr(preprocess, "transforms", [])
    norm = [t for t in steps if isinstance(t, T.Normalize)]
    if len(norm) != 1 or not any(isinstance(t, T.ToTensor) for t in steps):
        return per_image
    mean = torch.as_tensor(norm[0].mean, dtype=torch.float32).view(-1, 1, 1)
    std = torch.as_tensor(norm[0].std, dtype=torch.float32).view(-1, 1, 1)

    def pixels(images: Sequence) -> torch.Tensor:
        if any(im.size != (size, size) or im.mode != "RGB" for im in images):
            return per_image(images)
        x = torch.from_numpy(np.stack([np.asarray(im, dtype=np.uint8) for im in images]))  # (N, H, W, 3)
        return x.permute(0, 3, 1, 2).float().div(255).sub_(mean).div_(std)

    return pixels if torch.equal(pixels(probe), per_image(probe)) else per_image


def _images(paths: Sequence[str], preprocess: Callable) -> torch.Tensor:
    """Load and preprocess images: (N, 3, H, W)."""
    return _transform(preprocess, [load_image(p) for p in paths])


@torch.no_grad()
def evaluate_clip(
    model, preprocess: Callable, tokenize: Callable, data_dir: str | Path, batch_size: int = 256
) -> Dict[str, object]:
    """Text->image and image->text recall (%) at 1/5/10 over a data dir's images and captions.

    Images are deduplicated by key. Text->image: the caption's own image among all images.
    Image->text: any of the image's captions among all captions.
    """
    model.eval()
    keys, paths, pairs = _load_pairs(data_dir)
    img = torch.cat(
        [model.encode_image(x, normalize=True) for x in _images(paths, preprocess).split(batch_size)]
    )  # (I, D)
    texts = [t for t, _ in pairs]
    txt = torch.cat(
        [
            model.encode_text(tokenize(texts[i : i + batch_size]), normalize=True)
            for i in range(0, len(texts), batch_size)
        ]
    )  # (T, D)
    target = torch.tensor([i for _, i in pairs])  # (T,)
    # Captions play the utterances' part: text->image ranks the images for each caption, image->text
    # counts an image as found when any of its captions is in the top K (pessimistic ties).
    recall = retrieval_recall(txt @ img.T, target, RECALL_KS)
    return {
        "data_dir": str(data_dir),
        "n_images": len(keys),
        "n_captions": len(texts),
        "text_to_image": {k: round(v, 2) for k, v in recall["speech_to_image"].items()},
        "image_to_text": {k: round(v, 2) for k, v in recall["image_to_speech"].items()},
    }


def _param_groups(model: torch.nn.Module, weight_decay: float) -> List[dict]:
    """Weight decay on matrices only: not on embeddings, biases, LayerNorm or the logit scale (all < 2-D,
    except the embeddings, excluded by name)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim < 2 or "embedding" in name else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def train_synth_clip(
    train_data_dir: str | Path,
    out_file: str | Path,
    steps: int = 800,
    batch_size: int = 128,
    lr: float = 1e-3,
    warmup_steps: int = 50,
    weight_decay: float = 0.05,
    seed: int = 0,
    eval_data_dir: Optional[str | Path] = None,
    threads: int = 2,
) -> Path:
    """Train synth-clip on ``train_data_dir`` and save its state dict to ``out_file``.

    Each batch: ``batch_size // 2`` distinct training images, each with one of its captions, plus freshly
    rendered random scenes with a caption each. Images go through the model's own open_clip
    preprocessing (the val transform), so later stages using that transform see the same pixels.
    AdamW (betas 0.9/0.98), ``warmup_steps`` of linear warm-up then cosine decay to 0, logit scale
    clamped at 100. If ``out_file`` was trained on the same data with the same options (its record says
    so, and the file is intact), training is skipped. With ``eval_data_dir``, recall is written to
    :func:`eval_json_path` (unless that file already holds recall on that data's content for these
    weights). Returns ``out_file``.
    """
    import open_clip

    out_file = Path(out_file)
    torch.set_num_threads(threads)
    register_synth_clip()
    tokenize_fn = open_clip.get_tokenizer(MODEL_NAME)
    tokenize = _Tokenize(tokenize_fn, tokenize_fn.context_length)

    if steps < 1 or batch_size < 2:
        raise InputError(f"need steps >= 1 and batch_size >= 2, got {steps} and {batch_size}")
    record_file = record_path(out_file)
    made_from = dict(
        version=TRAINER_VERSION,
        model_config=sha256_file(CONFIG_PATH),
        train_data=data_identity(train_data_dir),
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        warmup_steps=warmup_steps,
        weight_decay=weight_decay,
        seed=seed,
    )
    stale = check_record(record_file, RECORD_KIND, made_from) if out_file.exists() else "does not exist"
    if stale is None:
        logger.info("%s is up to date (same data and options): skipping synth-clip training", out_file)
        model, _, preprocess = open_clip.create_model_and_transforms(MODEL_NAME, pretrained=str(out_file))
    else:
        logger.info("%s %s: training synth-clip", out_file, stale)
        clear_record(record_file)
        torch.manual_seed(seed)
        rng = random.Random(seed)
        with random_init_intended():  # trained from scratch below
            model, _, preprocess = open_clip.create_model_and_transforms(MODEL_NAME)
        image_size = (
            model.visual.image_size[0]
            if isinstance(model.visual.image_size, tuple)
            else model.visual.image_size
        )

        keys, paths, pairs = _load_pairs(train_data_dir)
        by_image: Dict[int, List[str]] = defaultdict(list)
        for text, i in pairs:
            by_image[i].append(text)
        logger.info(
            "training %s on %d images / %d captions of %s for %d steps (batch %d, half fresh scenes)",
            MODEL_NAME,
            len(keys),
            len(pairs),
            train_data_dir,
            steps,
            batch_size,
        )
        images = _images(paths, preprocess)  # (N, 3, H, W): the val transform is deterministic, so once
        # the fresh scenes of every step through one batched transform, checked on two scenes drawn by
        # their own generator (the training's draws stay the same)
        probe_rng = random.Random(-1)
        probe = [render(sample_scene(probe_rng), image_size) for _ in range(2)]
        pixels = _pixels_at_size(preprocess, image_size, probe)
        n_fixed = min(batch_size // 2, len(keys))
        n_fresh = batch_size - n_fixed

        # fused: one kernel over all parameters; the per-tensor loop spent about a fifth of every step
        # updating the 49408-row token-embedding table.
        optimizer = torch.optim.AdamW(
            _param_groups(model, weight_decay), lr=lr, betas=(0.9, 0.98), eps=1e-6, fused=True
        )

        def lr_factor(step: int) -> float:
            if step < warmup_steps:
                return (step + 1) / warmup_steps
            return 0.5 * (1 + math.cos(math.pi * (step - warmup_steps) / max(1, steps - warmup_steps)))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
        max_log_scale = math.log(100.0)
        order: List[int] = []
        start = time.time()
        model.train()
        for step in range(steps):
            # Distinct training images per batch (a repeated image would be its own negative).
            if len(order) < n_fixed:
                order = list(range(len(keys)))
                rng.shuffle(order)
            idx, order = order[:n_fixed], order[n_fixed:]
            texts = [rng.choice(by_image[i]) for i in idx]
            fresh = [sample_scene(rng) for _ in range(n_fresh)]
            texts += [captions(s, rng, 1)[0] for s in fresh]
            x = torch.cat([images[idx], pixels([render(s, image_size) for s in fresh])])

            img = model.encode_image(x, normalize=True)  # (B, D)
            txt = model.encode_text(tokenize(texts), normalize=True)  # (B, D)
            logits = model.logit_scale.exp() * img @ txt.T  # (B, B)
            labels = torch.arange(len(texts))
            loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, max_log_scale)
            if (step + 1) % 50 == 0 or step + 1 == steps:
                logger.info(
                    "step %d/%d loss %.3f logit scale %.1f lr %.2e (%.0f s)",
                    step + 1,
                    steps,
                    loss.item(),
                    model.logit_scale.exp().item(),
                    scheduler.get_last_lr()[0],
                    time.time() - start,
                )
        train_seconds = time.time() - start
        out_file.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(out_file) as tmp:  # an interrupted run leaves no file that looks finished
            torch.save(model.state_dict(), tmp)
        # the record last: weights without one are retrained
        write_record(
            record_file,
            RECORD_KIND,
            made_from,
            outputs={out_file.name: out_file},
            extra={"steps": steps, "train_seconds": round(train_seconds, 1), "threads": threads},
        )
        logger.info("saved %s after %.0f s", out_file, train_seconds)

    report = eval_json_path(out_file)
    try:
        old = json.loads(report.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        old = {}
    if eval_data_dir is not None:
        evaluated = {"weights": sha256_file(out_file), "eval_data": data_identity(eval_data_dir)}
        scores = old
        if old.get("made_from") != evaluated:
            scores = evaluate_clip(model, preprocess, tokenize, eval_data_dir)
            scores.update((read_record(record_file) or {}).get("extra", {}))  # steps, time, threads
            scores["weights"] = str(out_file)
            scores["made_from"] = evaluated
            write_text_atomic(report, json.dumps(scores, indent=1) + "\n")
        logger.info(
            "%s on %s: text->image R@1/5/10 %s, image->text R@1/5/10 %s (written to %s)",
            MODEL_NAME,
            eval_data_dir,
            "/".join(f"{v:.1f}" for v in scores["text_to_image"].values()),
            "/".join(f"{v:.1f}" for v in scores["image_to_text"].values()),
            report,
        )
    return out_file
