"""The throughput benchmarks (bench/) on CPU with the tiny configs: what their reports hold and how their
figures relate (rates from times, ratios from rates). No assertion on the times themselves: they depend
on the machine."""

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import ROOT

TINY = [str(ROOT / "conf" / "tiny" / f"{m}.yaml") for m in ("parallel", "cascaded", "hybrid")]


def load_bench(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory):
    """bench/gpu_checks.sh, the GPU measurement in one command, rehearsed on the CPU with the tiny configs."""
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
    # each training-step run timed its imports before its steps (large, then base)
    assert len(re.findall(r"^imports: \d+\.\d s$", log, re.M)) == 2
    assert "## conf/tiny/parallel.yaml step, bf16, 4 x 1 s" in (rehearsal / "profile_large.txt").read_text()


def test_train_step_reports_every_variant(rehearsal):
    report = json.loads((rehearsal / "train_step_base.json").read_text())
    configs = [str(Path(c).relative_to(ROOT)) for c in TINY]
    by_config = {}
    assert report["device"] == "cpu" and report["steps"] == 1 and report["warmup"] == 0
    assert isinstance(report["import_s"], float)  # the seconds its imports took, before any step
    for r in report["results"]:
        by_config.setdefault(r["config"], []).append(r)
        assert r["utt_per_s"] > 0 and r["ms_per_iter"] > 0 and r["peak_mem_mib"] > 0
        # one timed iteration: its time is the median, the minimum and the maximum; the rate follows from it
        assert r["ms_min"] == r["ms_per_iter"] == r["ms_max"]
        assert r["utt_per_s"] == pytest.approx(r["batch_size"] / (r["ms_per_iter"] / 1000))
        assert r["batch_size"] == 4 and r["seconds"] == 1.0
        assert r["dtype"] == "bf16"  # the authors' fp16 only on a GPU: a CPU emulates fp16
        assert 0 < r["trainable_params"] < r["total_params"]  # the frozen towers count in the total only
    assert sorted(by_config) == sorted(configs)
    for rows in by_config.values():
        assert [r["variant"] for r in rows] == ["bound", "step", "authors_step", "inference"]
        assert rows[0]["ratio_to_bound"] == 1.0
        for r in rows:
            assert r["ratio_to_bound"] == pytest.approx(r["utt_per_s"] / rows[0]["utt_per_s"])
    assert [s["config"] for s in report["summary"]] == configs
    for s in report["summary"]:
        assert set(s) == {"config", "step_over_bound", "step_over_authors", "inference_over_bound"}
        rate = {r["variant"]: r["utt_per_s"] for r in by_config[s["config"]]}
        assert s["step_over_bound"] == pytest.approx(rate["step"] / rate["bound"])
        assert s["step_over_authors"] == pytest.approx(rate["step"] / rate["authors_step"])
        assert s["inference_over_bound"] == pytest.approx(rate["inference"] / rate["bound"])
    # the large run: the GPU run's first config, profiled
    large = json.loads((rehearsal / "train_step_large.json").read_text())
    assert [r["config"] for r in large["results"]] == [configs[0]] * 4


def test_authors_text_pass_is_the_same_function(tiny_clip):
    """The 77-position pass of the authors'-style step computes what the K+2-position pass does."""
    ts = load_bench("train_step")
    from espnet_speechclip.models.clip import CLIPTextEncoder, load_clip

    text = CLIPTextEncoder(load_clip(**tiny_clip))
    emb = torch.randn(3, 10, text.width)
    torch.testing.assert_close(
        ts.full_context_encode(text, emb), text.encode_embeddings(emb), rtol=1e-5, atol=1e-5
    )


def test_scoring_bench_small(tmp_path, capsys):
    scoring = load_bench("scoring")
    out = tmp_path / "scoring.json"
    args = ["--num_utts", "200", "--num_images", "40", "--repeats", "1", "--json", str(out)]
    report = scoring.main(args)
    assert json.loads(out.read_text()) == report
    parts = ["similarity", "retrieval_recall", "text_similarity", "grouped_recall", "keyword_hit_rate"]
    assert list(report["seconds"]) == parts + ["retrieval_total"]
    # what was measured, as asked; the retrieval total is its two parts
    assert {k: report[k] for k in ("num_utts", "num_images", "dim", "keywords", "repeats")} == dict(
        num_utts=200, num_images=40, dim=512, keywords=8, repeats=1
    )
    assert report["torch_threads"] == torch.get_num_threads() and report["cpus"] >= 1
    seconds = report["seconds"]
    assert seconds["retrieval_total"] == seconds["similarity"] + seconds["retrieval_recall"]
    # the printed table: one row per part, in the report's order and figures
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")][1:]
    assert rows == [f"| {part} | {s:.2f} |" for part, s in seconds.items()]
    # every image needs a caption
    with pytest.raises(SystemExit):
        scoring.main(["--num_utts", "10", "--num_images", "40"])


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


def test_calibrate_prints_the_median_step(capsys):
    """bench/calibrate.py: the fixed workload that README wall times are quoted against."""
    calibrate = load_bench("calibrate")
    times = calibrate.step_seconds(passes=2, warmup=0, threads=1)
    assert len(times) == 2 and all(t > 0 for t in times)
    calibrate.main(["--passes", "1"])  # on 2 threads, then back to the caller's
    assert torch.get_num_threads() == 1
    words = capsys.readouterr().out.split()
    assert words[:2] == ["calibration", "step_s"] and float(words[2]) > 0
    with pytest.raises(SystemExit):
        calibrate.main(["--passes", "0"])


def test_default_run_stage_seconds_and_recipe_copy(tmp_path):
    """bench/default_run.py: per-stage seconds from the recipe's own log lines; a clean recipe copy."""
    default_run = load_bench("default_run")
    log = "\n".join(
        [
            "2026-11-30T10:00:00 (speechclip.sh:97) Stage 1: data preparation (synth)",
            "some output",
            "2026-11-30T10:00:40 (speechclip.sh:102) Stage 2: audio format (16 kHz mono)",
            "2026-11-30T10:00:45 (speechclip.sh:140) Stage 5: training",
            "2026-11-30T10:04:05 (speechclip.sh:250) Successfully finished. Results: exp/x/RESULTS.md",
        ]
    )
    assert default_run.stage_seconds(log) == {
        "stage 1: data preparation (synth)": 40.0,
        "stage 2: audio format (16 kHz mono)": 5.0,
        "stage 5: training": 200.0,
    }
    rec = default_run.copy_recipe(ROOT, tmp_path / "sc1")
    assert (rec / "run.sh").is_file() and (rec / "utils" / "run.pl").is_file()
    assert (rec / "conf").resolve() == (ROOT / "conf").resolve()
    assert not (rec / "exp").exists() and not (rec / "dump").exists()


def test_index_bench_small():
    """bench/index.py at a toy size, its budget forcing the compressed index: every figure is there and
    the recall and size are what such an index gives."""
    report = load_bench("index").main(
        ["--n", "3000", "--dim", "32", "--clusters", "20", "--queries", "20", "--memory_gb", "0.0001"]
    )["vector"]
    assert report["factory"] == "IVF128,SQ6" and 1 <= report["nprobe"] <= 128
    assert 0.9 <= report["recall_at_10"] <= 1.0 and report["build_recall_at_10"] >= 0.95
    assert report["index_fraction"] < 0.5 and report["serving"]["rss_mib"] > 0
    assert report["search"]["p50_ms"] <= report["search"]["p99_ms"]
