"""Multi-process training without GPUs: two ranks on the CPU (gloo) reach the model of one process with
the same global batch.

ESPnet's own multi-GPU mode (``--multiprocessing_distributed true --ngpu N``) spawns one process per GPU
and asserts ``ngpu > 1`` (``AbsTask.main``), then moves each to ``cuda:<rank>``: it cannot run on CPUs.
Its launcher mode can: one process per rank, started by the user (or torchrun, Slurm's srun, or
``espnet2.bin.launch``), each with ``--dist_world_size N --dist_rank R`` (or the RANK / WORLD_SIZE
variables they set) and ``--multiprocessing_distributed false``; with ``--ngpu 0`` ESPnet skips every
CUDA call and wraps the model in DistributedDataParallel on the CPU. That is the path tested here, with
ESPnet's options only. It exercises what differs from one process: each rank loads half of every batch
(:class:`EpochShuffleSampler`'s ``batch[rank::world_size]``), the loss all-gathers the embeddings with
their gradient so negatives span the global batch, DDP averages the gradients, and validation gathers
the shards before computing recall.
"""

import os
import subprocess
import sys

import torch
from helpers import ROOT
from helpers.corpora import make_tiny_corpus
from helpers.stand_ins import training_data_args

from espnet_speechclip.bin import speechclip_train
from espnet_speechclip.training.image_cache import cache_image_embeddings, write_utt_emb_scp


def _options(data, tiny_clip, out, *extra):
    return [
        "--config",
        str(ROOT / "conf" / "tiny" / "parallel.yaml"),
        "--output_dir",
        str(out),
        "--ngpu",
        "0",
        "--max_epoch",
        "1",
        "--batch_size",
        "8",
        # no dropout: its random masks are drawn per process, so they cannot match one process's
        "--model_conf",
        "parallel_conf.dropout=0.0",
        # plain SGD: Adam divides by the gradient's own magnitude, which turns float noise in gradients
        # that are zero in theory (e.g. attention key biases) into full-size steps
        "--optim",
        "sgd",
        "--optim_conf",
        "lr=0.5",
        "--clip_conf",
        f"pretrained={tiny_clip['pretrained']}",
        "--clip_conf",
        f"config_file={tiny_clip['config_file']}",
        *training_data_args(data),
        *extra,
    ]


def test_two_cpu_ranks_with_gloo_equal_one_process(tmp_path, tiny_clip):
    # 8 images x 2 captions, 0.4-0.75 s each: below the training crop, so no random crop either
    data = make_tiny_corpus(tmp_path / "corpus", 8, 2, seed=0, split="train")
    cache = cache_image_embeddings(data / "img.scp", tiny_clip, tmp_path / "image_emb", progress=False)
    write_utt_emb_scp(data / "utt2img", cache / "img_emb.scp", data / "image_emb.scp")
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")

    train = [sys.executable, "-m", "espnet_speechclip.bin.speechclip_train"]
    ranks = [
        subprocess.Popen(
            train
            + _options(
                data,
                tiny_clip,
                tmp_path / "two",
                "--multiprocessing_distributed",
                "false",
                "--dist_backend",
                "gloo",
                "--dist_init_method",
                f"file://{tmp_path / 'rendezvous'}",
                "--dist_world_size",
                "2",
                "--dist_rank",
                str(rank),
            ),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for rank in (0, 1)
    ]
    # the single process runs here while the two ranks run beside it
    speechclip_train.main(_options(data, tiny_clip, tmp_path / "one"))
    logs = [p.communicate(timeout=600)[0] for p in ranks]
    for p, log in zip(ranks, logs):
        assert p.returncode == 0, log[-3000:]
    # rank 0 logged its share of each batch: the sampler split 8 utterances over 2 ranks
    assert "world_size=2" in logs[0]

    a = torch.load(tmp_path / "one" / "1epoch.pth", map_location="cpu", weights_only=True)
    b = torch.load(tmp_path / "two" / "1epoch.pth", map_location="cpu", weights_only=True)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-5, atol=1e-6, msg=f"{k} differs between 1 and 2 ranks")
    # the same two steps were taken: the same training loss, and the same dev recall over all dev data
    stats = [
        torch.load(tmp_path / run / "checkpoint.pth", map_location="cpu", weights_only=False)["reporter"][
            "stats"
        ][1]
        for run in ("one", "two")
    ]
    torch.testing.assert_close(stats[1]["train"]["loss"], stats[0]["train"]["loss"], rtol=1e-5, atol=1e-6)
    assert stats[1]["valid"]["parallel_mean_r10"] == stats[0]["valid"]["parallel_mean_r10"]
