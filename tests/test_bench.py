"""Smoke tests of the throughput benchmarks (bench/) on CPU with the tiny configs, and the length-grouped
batch sampler. No timing assertions: the numbers depend on the machine."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from espnet_speechclip.sampler import EpochShuffleSampler, padding_fraction

ROOT = Path(__file__).resolve().parent.parent
TINY = [str(ROOT / "conf" / "tiny" / f"{m}.yaml") for m in ("parallel", "cascaded", "hybrid")]


def load_bench(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def step_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "train_step.json"
    report = load_bench("train_step").main(
        [a for c in TINY for a in ("--config", c)]
        + ["--device", "cpu", "--batch_size", "4", "--seconds", "0.5", "--steps", "2", "--warmup", "1",
           "--json", str(out)])
    return report, out


def test_train_step_reports_every_variant(step_report, capsys):
    report, out = step_report
    assert json.loads(out.read_text()) == report
    by_config = {}
    for r in report["results"]:
        by_config.setdefault(r["config"], []).append(r)
        assert r["utt_per_s"] > 0 and r["ms_per_iter"] > 0 and r["peak_mem_mib"] > 0
        assert r["batch_size"] == 4 and r["seconds"] == 0.5
        assert r["dtype"] == "fp32"  # the authors' fp16 only on a GPU: a CPU emulates fp16
    assert sorted(by_config) == sorted(TINY)
    for rows in by_config.values():
        assert [r["variant"] for r in rows] == ["bound", "step", "authors_step", "inference"]
        assert rows[0]["ratio_to_bound"] == 1.0
    assert [s["config"] for s in report["summary"]] == TINY
    for s in report["summary"]:
        assert set(s) == {"config", "step_over_bound", "step_over_authors", "inference_over_bound"}


def test_train_step_prints_markdown_and_profiles(tmp_path, capsys):
    profile = tmp_path / "profile.txt"
    load_bench("train_step").main(["--config", TINY[0], "--device", "cpu", "--batch_size", "2", "--seconds", "0.5",
                                   "--steps", "1", "--warmup", "0", "--profile", str(profile)])
    table = capsys.readouterr().out
    assert "| config | variant | dtype |" in table and "| authors_step | fp32 |" in table
    assert "step / authors' step" in table
    assert f"## {TINY[0]} step, fp32, 2 x 0.5 s" in profile.read_text()


def test_authors_text_pass_is_the_same_function(tiny_clip):
    """The 77-position pass of the authors'-style step computes what the K+2-position pass does."""
    ts = load_bench("train_step")
    from espnet_speechclip.encoders.clip import CLIPTextEncoder, load_clip

    text = CLIPTextEncoder(load_clip(**tiny_clip))
    emb = torch.randn(3, 10, text.width)
    torch.testing.assert_close(ts.full_context_encode(text, emb), text.encode_embeddings(emb), rtol=1e-5, atol=1e-5)


def test_scoring_bench_small():
    report = load_bench("scoring").main(["--num_utts", "200", "--num_images", "40", "--repeats", "1"])
    assert set(report["seconds"]) == {"similarity", "retrieval_recall", "text_similarity", "grouped_recall",
                                      "keyword_hit_rate", "retrieval_total"}
    assert all(s >= 0 for s in report["seconds"].values())


def test_data_pipeline_on_tiny_fixture(step_report, tmp_path):
    _, step_json = step_report
    out = tmp_path / "data.json"
    r = load_bench("data_pipeline").main(
        ["--config", TINY[0], "--batch_size", "4", "--num_workers", "1", "--num_utts", "24", "--seconds", "1.0",
         "--min_seconds", "0.3", "--step_json", str(step_json), "--json", str(out)])
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
    shares = [EpochShuffleSampler(keys, 32, rank, world, lengths=lengths, group=5).generate(7) for rank in range(world)]
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
