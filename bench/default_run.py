"""Wall time of the recipe's default run (what ``make demo`` runs), with the machine's speed beside it.

Copies a checkout's recipe (``egs2/speechclip/sc1``) into a fresh folder and runs ``./run.sh`` there
with that checkout first on ``PYTHONPATH``, between two runs of ``bench/calibrate.py``'s fixed workload.
Reports the wall time of stages 1-8, each stage's share (from the recipe's stage log lines), the
calibration ``step_s`` before and after, ``wall / step_s`` with their mean (the figure that compares
machines), and
the test-set quality of every experiment (``exp/*/results.json``).

Run it on an otherwise idle machine, and compare two commits side by side on the same machine:

    python bench/default_run.py --json new.json
    python bench/default_run.py --repo /path/to/old/checkout --json old.json

Extra arguments after ``--`` go to ``run.sh`` (e.g. ``-- --synth_n_train 200`` for a rehearsal).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

ROOT = Path(__file__).resolve().parent.parent
RECIPE = Path("egs2") / "speechclip" / "sc1"
_STAGE_LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d) \(\S+\) (Stage (\d+): .*|Successfully finished)")


def stage_seconds(log: str) -> Dict[str, float]:
    """Seconds from each ``Stage N: ...`` line of the recipe's output to the next one (the last stage to
    the ``Successfully finished`` line). Returns ``{"stage N: ...": seconds}`` in stage order."""
    marks = []
    for line in log.splitlines():
        m = _STAGE_LINE.match(line)
        if m:
            marks.append((datetime.datetime.fromisoformat(m.group(1)), m.group(2)))
    out: Dict[str, float] = {}
    for (start, name), (end, _) in zip(marks, marks[1:]):
        if name.startswith("Stage"):
            out[name[0].lower() + name[1:]] = (end - start).total_seconds()
    return out


def copy_recipe(repo: Path, dest: Path) -> Path:
    """The recipe of ``repo`` copied to ``dest`` (its ``conf`` linked), so that runs never mix."""
    src = repo / RECIPE
    dest.mkdir(parents=True)
    for item in src.iterdir():
        if item.name in ("data", "dump", "exp", "conf"):
            continue
        if item.is_dir():
            shutil.copytree(item, dest / item.name)
        else:
            shutil.copy2(item, dest / item.name)
    (dest / "conf").symlink_to((src / "conf").resolve())
    return dest


def calibrate() -> float:
    """``step_s`` of bench/calibrate.py's fixed workload, in a fresh process (2 threads)."""
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "calibrate.py")], capture_output=True, text=True, check=True
    ).stdout
    return float(out.split()[-1])


def quality(exp_dir: Path) -> Dict[str, dict]:
    """Test-set figures of every experiment: R@1 both ways, zero-shot speech->text R@1, keyword hit rate."""
    out = {}
    for path in sorted(exp_dir.glob("*/results.json")):
        for test_set, branches in json.loads(path.read_text()).items():
            for branch, r in branches.items():
                row = {
                    "S->I R@1": r["speech_to_image"]["R@1"],
                    "I->S R@1": r["image_to_speech"]["R@1"],
                    "S->T R@1": r["speech_to_text"]["R@1"],
                }
                if "keyword_hit_rate" in r:
                    row["keyword hit rate"] = r["keyword_hit_rate"]["avg"]
                out[f"{path.parent.name} {test_set} {branch}"] = row
    return out


def main(argv: Optional[Sequence[str]] = None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    run_args: List[str] = []
    if "--" in argv:
        run_args = argv[argv.index("--") + 1 :]
        argv = argv[: argv.index("--")]
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repo", default=str(ROOT), help="checkout whose recipe and package run")
    parser.add_argument("--workdir", default=None, help="where the recipe copy runs (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (data, dump, exp)")
    parser.add_argument("--json", default=None, help="write the report here as JSON")
    args = parser.parse_args(argv)

    repo = Path(args.repo).resolve()
    if not (repo / RECIPE / "run.sh").is_file():
        parser.error(f"{repo} has no {RECIPE}/run.sh")
    work = Path(args.workdir or tempfile.mkdtemp(prefix="speechclip_default_run_")).resolve()
    if work.exists() and any(work.iterdir()):
        parser.error(f"--workdir {work} is not empty")
    recipe = copy_recipe(repo, work / "sc1")
    env = dict(os.environ, PYTHONPATH=str(repo))
    env.pop("OMP_NUM_THREADS", None)  # what a user's shell has: the recipe sets its own
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"  # this interpreter's venv

    before = calibrate()
    start = time.perf_counter()
    proc = subprocess.run(["./run.sh", *run_args], cwd=recipe, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = calibrate()
    (work / "run.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        sys.exit(f"run.sh failed (exit {proc.returncode}); its output is in {work / 'run.log'}")

    step_s = (before + after) / 2
    report = {
        "repo": str(repo),
        "run_args": run_args,
        "wall_s": round(wall, 1),
        "calibration_step_s": {"before": before, "after": after},
        "wall_over_step_s": round(wall / step_s),
        "stages_s": stage_seconds(proc.stdout),
        "quality": quality(recipe / "exp"),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
    }
    print(f"default run of {repo}: {wall:.0f} s wall for stages 1-8")
    print(f"calibration step_s {before:.3f} before, {after:.3f} after: wall / step_s = {wall / step_s:.0f}")
    for name, seconds in report["stages_s"].items():
        print(f"  {seconds:6.0f} s  {name}")
    for name, row in report["quality"].items():
        print(f"  {name}: " + ", ".join(f"{k} {v:.1f}" for k, v in row.items()))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
    if not args.keep:
        shutil.rmtree(work)
    return report


if __name__ == "__main__":
    main()
