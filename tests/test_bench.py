"""Smoke tests of the throughput benchmarks (bench/) on CPU with the tiny configs, and the length-grouped
batch sampler. No timing assertions: the numbers depend on the machine."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from espnet_speechclip.training.sampler import EpochShuffleSampler, padding_fraction

ROOT = Path(__file__).resolve().parent.parent
TINY = [str(ROOT / "conf" / "tiny" / f"{m}.yaml") for m in ("parallel", "cascaded", "hybrid")]


def load_bench(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory):
    """bench/gpu_checks.sh, the one command a lent GPU gets, rehearsed on the CPU with the tiny configs."""
    out = tmp_path_factory.mktemp("gpu_checks")
    env = dict(
        os.environ,
        REHEARSAL="1",
        OUT=str(out),
        TMPDIR=str(out.parent),
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    )
    proc = subprocess.run(
        ["bash", "bench/gpu_checks.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out


def test_gpu_checks_rehearsal_writes_every_result(rehearsal):
    assert sorted(p.name for p in rehearsal.iterdir()) == [
        "data_pipeline.json",
        "env.txt",
        "log.txt",
        "profile_large.txt",
        "train_step_base.json",
        "train_step_large.json",
    ]
    log = (rehearsal / "log.txt").read_text()
    assert "| config | variant | dtype |" in log and "step / authors' step" in log and "loader / step" in log
    assert "imports:" in log
    assert "## conf/tiny/parallel.yaml step, bf16, 4 x 1 s" in (rehearsal / "profile_large.txt").read_text()


def test_train_step_reports_every_variant(rehearsal):
    report = json.loads((rehearsal / "train_step_base.json").read_text())
    configs = [str(Path(c).relative_to(ROOT)) for c in TINY]
    by_config = {}
    for r in report["results"]:
        by_config.setdefault(r["config"], []).append(r)
        assert r["utt_per_s"] > 0 and r["ms_per_iter"] > 0 and r["peak_mem_mib"] > 0
        assert r["batch_size"] == 4 and r["seconds"] == 1.0
        assert r["dtype"] == "bf16"  # the authors' fp16 only on a GPU: a CPU emulates fp16
    assert sorted(by_config) == sorted(configs)
    for rows in by_config.values():
        assert [r["variant"] for r in rows] == ["bound", "step", "authors_step", "inference"]
        assert rows[0]["ratio_to_bound"] == 1.0
    assert [s["config"] for s in report["summary"]] == configs
    for s in report["summary"]:
        assert set(s) == {"config", "step_over_bound", "step_over_authors", "inference_over_bound"}


def test_authors_text_pass_is_the_same_function(tiny_clip):
    """The 77-position pass of the authors'-style step computes what the K+2-position pass does."""
    ts = load_bench("train_step")
    from espnet_speechclip.models.clip import CLIPTextEncoder, load_clip

    text = CLIPTextEncoder(load_clip(**tiny_clip))
    emb = torch.randn(3, 10, text.width)
    torch.testing.assert_close(
        ts.full_context_encode(text, emb), text.encode_embeddings(emb), rtol=1e-5, atol=1e-5
    )


def test_scoring_bench_small():
    report = load_bench("scoring").main(["--num_utts", "200", "--num_images", "40", "--repeats", "1"])
    assert set(report["seconds"]) == {
        "similarity",
        "retrieval_recall",
        "text_similarity",
        "grouped_recall",
        "keyword_hit_rate",
        "retrieval_total",
    }
    assert all(s >= 0 for s in report["seconds"].values())


def test_data_pipeline_with_a_worker(rehearsal, tmp_path):
    out = tmp_path / "data.json"
    r = load_bench("data_pipeline").main(
        [
            "--config",
            TINY[0],
            "--batch_size",
            "4",
            "--num_workers",
            "1",
            "--num_utts",
            "24",
            "--seconds",
            "1.0",
            "--min_seconds",
            "0.3",
            "--step_json",
            str(rehearsal / "train_step_large.json"),
            "--json",
            str(out),
        ]
    )
    assert json.loads(out.read_text()) == r
    assert r["num_utts"] == 24 and r["batches"] == 6 and r["num_workers"] == 1
    assert r["utt_per_s_steady"] > 0 and r["loader_over_step"] > 0
    # the task's sampler groups by length: the delivered batches pad less than random ones would
    assert r["length_group_batches"] == 50
    assert r["padding"] < r["padding_random_batches"]


# ------------------------------------------------------------------------------------------ sampler
def varied_lengths(n: int = 400, seed: int = 0):
    rng = np.random.RandomState(seed)
    keys = [f"utt{i:04d}" for i in range(n)]
    return keys, dict(zip(keys, rng.randint(16000, 102400, n).tolist()))


@pytest.mark.parametrize("group", [1, 5])
def test_sampler_new_batches_each_epoch_each_utterance_once(group):
    keys, lengths = varied_lengths(403)
    s = EpochShuffleSampler(keys, 16, lengths=lengths, group=group)
    epochs = [s.generate(seed) for seed in range(3)]
    for batches in epochs:
        assert len(batches) == len(s) == 403 // 16
        flat = [k for b in batches for k in b]
        assert len(flat) == len(set(flat)) == len(batches) * 16  # at most once, remainder dropped
        assert all(len(b) == 16 for b in batches)
    sets = [{frozenset(b) for b in batches} for batches in epochs]
    assert sets[0] != sets[1] and sets[1] != sets[2]
    assert s.generate(1) == epochs[1]  # a seed reproduces its epoch (resume)


def test_sampler_ranks_get_equal_disjoint_shares():
    keys, lengths = varied_lengths()
    world = 4
    shares = [
        EpochShuffleSampler(keys, 32, rank, world, lengths=lengths, group=5).generate(7)
        for rank in range(world)
    ]
    assert len({len(s) for s in shares}) == 1
    for step in zip(*shares):
        assert all(len(part) == 32 // world for part in step)
        merged = [k for part in step for k in part]
        assert len(set(merged)) == 32
    flat = [k for s in shares for b in s for k in b]
    assert len(flat) == len(set(flat))


def test_sampler_length_groups_pad_less_than_random_batches():
    keys, lengths = varied_lengths(2000)
    plain = EpochShuffleSampler(keys, 32, lengths=lengths, group=1)
    grouped = EpochShuffleSampler(keys, 32, lengths=lengths, group=20)
    for seed in range(3):
        random_pad = padding_fraction(plain.generate(seed), lengths)
        grouped_pad = padding_fraction(grouped.generate(seed), lengths)
        assert grouped_pad < random_pad / 4
    # the crop caps lengths before padding is counted
    assert padding_fraction([("utt0000", "utt0001")], {"utt0000": 10, "utt0001": 30}, max_length=20) == 0.25


def test_sampler_group_one_is_the_plain_random_partition():
    """group=1 keeps the batches that earlier versions drew for a seed, so resumed runs see the same data."""
    keys, _ = varied_lengths(100)
    batches = EpochShuffleSampler(keys, 10).generate(3)
    order = np.random.RandomState(3).permutation(100)
    assert batches == [tuple(sorted(keys)[j] for j in order[i * 10 : (i + 1) * 10]) for i in range(10)]


def test_sampler_grouping_needs_lengths():
    keys, lengths = varied_lengths(50)
    with pytest.raises(ValueError, match="lengths"):
        EpochShuffleSampler(keys, 10, group=5)
    with pytest.raises(KeyError, match="utt0049"):
        EpochShuffleSampler(keys, 10, lengths={k: lengths[k] for k in keys[:-1]}, group=5)
    with pytest.raises(ValueError, match="group"):
        EpochShuffleSampler(keys, 10, lengths=lengths, group=0)
