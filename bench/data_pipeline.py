"""Throughput of the real training data loader, to compare with what a GPU training step consumes.

Writes a fixture in a temporary folder: ``--num_utts`` 16 kHz PCM-16 wavs with lengths uniform in
[``--min_seconds``, ``--seconds``], five captions per image, one cached CLIP image embedding (``.npy``,
the config's CLIP width) per image, and the data-dir lists the recipe writes (wav.scp, utt2img,
image_emb.scp, utt2num_samples). Then it builds the training iterator exactly as training does
(``SpeechCLIPTask.build_iter_factory``: ESPnet dataset with the ``sound_16k``/``text``/``npy`` types, the
task's preprocessor, collate function and batch sampler, ``--num_workers`` worker processes, pinned
memory and the copy to the GPU when one is present) and reads one pass over the fixture.

Reported: utterances/s over the whole pass (worker start-up included; ESPnet starts workers anew every
epoch) and over its second half (the steady rate: the consumer here takes batches as fast as they
come, so this is what the workers deliver), the padding share of the delivered batches after the
training crop, and the padding that random batches (``--length_group_batches 1``) would have on the
same lengths. With ``--step_json`` (outputs of ``bench/train_step.py``) it divides the steady rate by the
fastest training step in them, in seconds of audio per second (both costs grow with utterance
length, and the fixture's lengths differ from the step's fixed one): a loader that keeps a GPU busy
needs >= 2.

Note: the wavs were just written, so they are read from the page cache, as a corpus that fits in memory
is from the second epoch on.

    python bench/data_pipeline.py --config conf/paper/parallel_large.yaml --batch_size 64 \\
        --num_workers 4 --num_utts 4096 --step_json train_step.json --json data_pipeline.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_RATE = 16000
CAPTIONS_PER_IMAGE = 5


def clip_embed_dim(clip_conf: dict) -> int:
    """The joint embedding width of the config's CLIP, from open_clip's architecture config (no model
    is built)."""
    import open_clip

    from espnet_speechclip.models.clip import _register_config

    config_file = clip_conf.get("config_file")
    if config_file and not Path(config_file).is_file():
        config_file = str(ROOT / config_file)  # the tiny configs name it relative to the repository
    _register_config(clip_conf["model_name"], config_file)
    model_cfg = open_clip.get_model_config(clip_conf["model_name"])
    if model_cfg is None:
        raise ValueError(f"unknown CLIP model {clip_conf['model_name']!r}")
    return int(model_cfg["embed_dim"])


def write_fixture(
    root: Path, num_utts: int, min_seconds: float, seconds: float, embed_dim: int, seed: int = 0
) -> Dict[str, Path]:
    """Wavs, embeddings and lists under ``root``; returns the list files by name."""
    import soundfile

    rng = np.random.RandomState(seed)
    (root / "wav").mkdir(parents=True)
    (root / "emb").mkdir()
    lists = {name: root / name for name in ("wav.scp", "utt2img", "image_emb.scp", "utt2num_samples")}
    files = {name: open(path, "w", encoding="utf-8") for name, path in lists.items()}
    try:
        for i in range(num_utts):
            image = f"img{i // CAPTIONS_PER_IMAGE:06d}"
            emb = root / "emb" / f"{image}.npy"
            if i % CAPTIONS_PER_IMAGE == 0:
                e = rng.randn(embed_dim).astype(np.float32)
                np.save(emb, e / np.linalg.norm(e))
            n = int(rng.uniform(min_seconds, seconds) * SAMPLE_RATE)
            utt = f"utt{i:06d}"
            wav = root / "wav" / f"{utt}.wav"
            soundfile.write(wav, (0.1 * rng.randn(n)).clip(-1, 1), SAMPLE_RATE, subtype="PCM_16")
            files["wav.scp"].write(f"{utt} {wav}\n")
            files["utt2img"].write(f"{utt} {image}\n")
            files["image_emb.scp"].write(f"{utt} {emb}\n")
            files["utt2num_samples"].write(f"{utt} {n}\n")
    finally:
        for f in files.values():
            f.close()
    return lists


def build_loader(
    config: str, lists: Dict[str, Path], batch_size: int, num_workers: int, ngpu: int, num_batches: int
):
    """The training iterator of epoch 1, as ``speechclip_train`` builds it; and the parsed args."""
    from espnet2.train.distributed_utils import DistributedOption

    from espnet_speechclip.training.task import SpeechCLIPTask

    argv = [
        "--config",
        config,
        "--ngpu",
        str(ngpu),
        "--batch_size",
        str(batch_size),
        "--num_workers",
        str(num_workers),
        "--num_iters_per_epoch",
        str(num_batches),
        "--train_data_path_and_name_and_type",
        f"{lists['wav.scp']},speech,sound_16k",
        "--train_data_path_and_name_and_type",
        f"{lists['utt2img']},image_id,text",
        "--train_data_path_and_name_and_type",
        f"{lists['image_emb.scp']},image_emb,npy",
        "--train_shape_file",
        str(lists["utt2num_samples"]),
    ]
    args = SpeechCLIPTask.get_parser().parse_args(argv)
    factory = SpeechCLIPTask.build_iter_factory(
        args, DistributedOption(distributed=False, ngpu=ngpu), "train"
    )
    return factory.build_iter(1), args


def read_pass(loader, device: Optional[str]) -> Dict[str, object]:
    """Consume every batch (copied to ``device`` as ESPnet's Trainer does); arrival times and lengths."""
    import torch
    from espnet2.torch_utils.device_funcs import to_device

    start = time.perf_counter()
    arrivals: List[float] = []
    sizes: List[int] = []
    lengths: List[np.ndarray] = []
    for _, batch in loader:
        if device is not None:
            batch = to_device(batch, device)
            torch.cuda.synchronize()
        arrivals.append(time.perf_counter() - start)
        sizes.append(int(batch["speech"].shape[0]))
        lengths.append(batch["speech_lengths"].cpu().numpy())
        if batch["image_emb"].shape[0] != sizes[-1]:
            raise RuntimeError("a batch without one image embedding per utterance")
    return dict(arrivals=arrivals, sizes=sizes, lengths=lengths)


def padding_of(lengths: List[np.ndarray], crop: Optional[int]) -> float:
    real = padded = 0
    for ls in lengths:
        ls = np.minimum(ls, crop) if crop else ls
        real += int(ls.sum())
        padded += int(ls.max()) * len(ls)
    return 1.0 - real / padded


def random_batch_padding(shape_file: Path, batch_size: int, crop: Optional[int], epochs: int = 3) -> float:
    """Padding share of plain random batches (group 1) over the same utterances, mean of a few epochs."""
    from espnet_speechclip.data.datadir import read_kv
    from espnet_speechclip.training.sampler import EpochShuffleSampler, padding_fraction

    lengths = {k: int(v.split(",")[0]) for k, v in read_kv(shape_file).items()}
    sampler = EpochShuffleSampler(list(lengths), batch_size)
    return float(np.mean([padding_fraction(sampler.generate(seed), lengths, crop) for seed in range(epochs)]))


def step_consumption(step_jsons: List[str]) -> Dict[str, object]:
    """The fastest training step (utterances/s) in ``bench/train_step.py`` JSON files: the loader must
    keep up with the most demanding consumer."""
    steps = []
    for path in step_jsons:
        report = json.loads(Path(path).read_text(encoding="utf-8"))
        steps += [dict(r, machine=report["machine"]) for r in report["results"] if r["variant"] == "step"]
    if not steps:
        raise ValueError(f"{step_jsons} hold no training-step result")
    fastest = max(steps, key=lambda r: r["utt_per_s"])
    return {k: fastest[k] for k in ("config", "utt_per_s", "batch_size", "seconds", "machine")}


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--config",
        default=str(ROOT / "conf" / "paper" / "parallel_large.yaml"),
        help="training config: CLIP width, crop, sampler and (by default) worker count",
    )
    parser.add_argument("--batch_size", type=int, default=64, help="utterances per batch (one GPU's share)")
    parser.add_argument(
        "--num_workers", type=int, default=None, help="loader workers (default: the config's)"
    )
    parser.add_argument("--num_utts", type=int, default=2048, help="utterances in the fixture")
    parser.add_argument("--seconds", type=float, default=6.4, help="longest utterance")
    parser.add_argument("--min_seconds", type=float, default=2.0, help="shortest utterance")
    parser.add_argument(
        "--step_json",
        action="append",
        help="bench/train_step.py output to compare the loader with (repeatable)",
    )
    parser.add_argument("--json", help="write the results here as JSON")
    args = parser.parse_args(argv)
    if not 0 < args.min_seconds <= args.seconds:
        parser.error("need 0 < min_seconds <= seconds")
    if args.num_utts < 2 * args.batch_size:
        parser.error("need at least two batches of utterances (the rate is taken over the second half)")
    return args


def main(argv: Optional[List[str]] = None) -> dict:
    import torch

    args = parse_args(argv)
    from espnet_speechclip.config import read_config
    from espnet_speechclip.models.builder import option_value

    config = read_config(args.config)
    num_workers = config.get("num_workers", 1) if args.num_workers is None else args.num_workers
    ngpu = 1 if torch.cuda.is_available() else 0
    crop = option_value(config, "speech_encoder_conf.max_train_samples")
    num_batches = args.num_utts // args.batch_size
    with tempfile.TemporaryDirectory(prefix="speechclip_data_bench_") as tmp:
        embed_dim = clip_embed_dim(config["clip_conf"])
        start = time.perf_counter()
        lists = write_fixture(Path(tmp), args.num_utts, args.min_seconds, args.seconds, embed_dim)
        fixture_s = time.perf_counter() - start
        loader, task_args = build_loader(args.config, lists, args.batch_size, num_workers, ngpu, num_batches)
        run = read_pass(loader, "cuda" if ngpu else None)
        random_padding = random_batch_padding(lists["utt2num_samples"], args.batch_size, crop)
    arrivals, sizes = run["arrivals"], run["sizes"]
    half = len(arrivals) // 2
    window = arrivals[-1] - arrivals[half]
    steady = sum(sizes[half + 1 :]) / window
    audio_steady = sum(int(ls.sum()) for ls in run["lengths"][half + 1 :]) / SAMPLE_RATE / window
    result = dict(
        date=datetime.datetime.now().isoformat(timespec="seconds"),
        config=args.config,
        cpus=os.cpu_count(),
        gpu=torch.cuda.get_device_name() if ngpu else None,
        num_workers=num_workers,
        pin_memory=bool(ngpu),
        batch_size=args.batch_size,
        num_utts=sum(sizes),
        batches=len(sizes),
        seconds=[args.min_seconds, args.seconds],
        fixture_write_s=fixture_s,
        first_batch_s=arrivals[0],
        utt_per_s_epoch=sum(sizes) / arrivals[-1],
        utt_per_s_steady=steady,
        audio_s_per_s_steady=audio_steady,
        length_group_batches=task_args.length_group_batches,
        padding=padding_of(run["lengths"], crop),
        padding_random_batches=random_padding,
    )
    if args.step_json:
        consumer = step_consumption(args.step_json)
        result["gpu_step"] = consumer
        # In audio seconds: both sides' cost grows with utterance length, and the fixture's lengths
        # differ from the step's fixed one (at equal lengths this is the utterance ratio).
        result["loader_over_step"] = audio_steady / (consumer["utt_per_s"] * consumer["seconds"])
    print(markdown(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return result


def markdown(r: dict) -> str:
    lines = [
        "| workers | pinned | batch | utts | first batch s | utt/s (pass) | utt/s (steady) | "
        "audio s/s (steady) | padding | padding, random batches |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {r['num_workers']} | {r['pin_memory']} | {r['batch_size']} | {r['num_utts']} | "
        f"{r['first_batch_s']:.2f} | {r['utt_per_s_epoch']:.0f} | {r['utt_per_s_steady']:.0f} | "
        f"{r['audio_s_per_s_steady']:.0f} | "
        f"{100 * r['padding']:.1f}% (groups of {r['length_group_batches']}) | "
        f"{100 * r['padding_random_batches']:.1f}% |",
    ]
    if "gpu_step" in r:
        s = r["gpu_step"]
        lines += [
            "",
            f"loader {r['audio_s_per_s_steady']:.0f} s of audio/s; fastest training step "
            f"{s['config']}: {s['utt_per_s']:.0f} utt/s x {s['seconds']:g} s = "
            f"{s['utt_per_s'] * s['seconds']:.0f} s of audio/s on {s['machine']}; "
            f"loader / step = {r['loader_over_step']:.2f}x (target >= 2)",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    main(sys.argv[1:])
