"""Running the recipe egs2/speechclip/sc1 from the tests: a copy of it, ``run.sh``, the reuse example."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional

from . import RECIPE, ROOT


def copy_recipe(dest: Path) -> Path:
    """A copy of egs2/speechclip/sc1 at ``dest`` (conf/ linked), to run without touching the real one."""
    dest.mkdir(parents=True)
    for name in ("run.sh", "speechclip.sh", "path.sh", "cmd.sh", "db.sh"):
        shutil.copy(RECIPE / name, dest / name)
    for name in ("utils", "local"):
        shutil.copytree(RECIPE / name, dest / name)
    (dest / "conf").symlink_to(ROOT / "conf")
    return dest


def run_in(folder: Path, cmd: List[str], env: Optional[Dict[str, str]] = None) -> subprocess.CompletedProcess:
    """``cmd`` in ``folder`` with this interpreter first on PATH and one thread per process (any exit
    status)."""
    env = dict(os.environ, **(env or {}))
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    env["OMP_NUM_THREADS"] = "1"
    env.pop("SPEECHCLIP_DEBUG", None)  # its tracebacks would hide the one-line messages under test
    return subprocess.run(cmd, cwd=folder, env=env, capture_output=True, text=True, timeout=1800)


def succeeded(proc: subprocess.CompletedProcess) -> str:
    """The output of a finished command that must have succeeded, or an AssertionError with its tail."""
    out = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(proc.args)} failed:\n{out[-4000:]}")
    return out


def failed(proc: subprocess.CompletedProcess) -> str:
    """The output of a command that must have failed with a one-line cause, not a stack."""
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-4000:]
    assert "Traceback" not in out, out[-4000:]
    return out


def run_recipe(recipe: Path, *args: str, env=None) -> str:
    """``./run.sh args`` in ``recipe``; its output, or an AssertionError with the tail of it."""
    return succeeded(run_in(recipe, ["./run.sh", *args], env))


# A budget that only checks the ASR commands run: one epoch of a few steps.
REUSE_TEST_ASR_ARGS = "--max_epoch 1 --num_iters_per_epoch 3 --batch_size 4 --num_workers 0"


def run_reuse_example(recipe: Path, exp: str, asr: bool = True) -> str:
    """``local/reuse_example.sh --exp <exp>`` in a recipe folder after ``run.sh``, as the README has
    it, with ASR training at :data:`REUSE_TEST_ASR_ARGS` (``asr=False``: ``--skip_asr true``, the API and
    the query only); its output, or an AssertionError with the tail."""
    cmd = ["local/reuse_example.sh", "--exp", exp, "--asr_args", REUSE_TEST_ASR_ARGS]
    return succeeded(run_in(recipe, cmd + ([] if asr else ["--skip_asr", "true"])))


def check_reuse_example_output(
    out: str, recipe: Path, exp: str, corpus: str, n_test_images: int, asr: bool = True, dumpdir: str = "dump"
) -> None:
    """What the reuse example prints and writes after a run on ``corpus`` (with ``asr``: the ASR's too)."""
    import json

    test = f"{corpus}_test"
    assert "Hit(index=" in out  # the API's retrievals
    assert re.search(rf"^query: \S+  \(model {exp}/packed/model.zip, \w+ branch\)$", out, re.M)
    assert f"images (top {min(5, n_test_images)} of {n_test_images}):" in out
    assert "nltk" not in out and "initialized randomly" not in out
    if not asr:
        assert "ASR example skipped (--skip_asr true)" in out and "CER" not in out
        assert not (recipe / "exp" / f"asr_{Path(exp).name}").exists()
        return
    assert re.search(r"^CER \d+\.\d\d % \(\d+ errors / \d+ reference chars", out, re.M)
    decode = recipe / "exp" / f"asr_{Path(exp).name}" / f"decode_{test}"
    hyps = (decode / "1best_recog" / "text").read_text().splitlines()
    refs = (recipe / dumpdir / "raw" / test / "text").read_text().splitlines()
    assert [h.split()[0] for h in hyps] == [r.split()[0] for r in refs]
    assert json.loads((decode / "cer.json").read_text())["char"]["n_utts"] == len(refs)
    assert (recipe / dumpdir / "token_list" / f"{corpus}_train_bpe100" / "bpe.model").is_file()


# The shared miniature Flickr8k run (tests/recipe/conftest.py): its configs, dump folder (a name with a
# space), epochs and corpus size.
# hybrid+: a parallel branch and a CIF cascaded one, and the transcripts its unit targets need. The plain
# parallel and K-token cascaded configs, two configs in one run, run in the synth miniature
# (test_synth_default_run.py).
MINI_CONFIGS = ("conf/tiny/hybrid_plus.yaml",)
MINI_DUMP = "dump dir"
MINI_EPOCHS = 2
MINI_IMAGES = {"train": 8, "dev": 4, "test": 4}
MINI_CAPTIONS = 2


@dataclass
class RecipeRun:
    """A finished miniature run: the recipe folder, the corpus it read and run.sh's output."""

    rec: Path
    corpus: Path
    out: str

    def attempt(self, *args: str, env=None) -> subprocess.CompletedProcess:
        """``./run.sh --corpus flickr8k --dumpdir MINI_DUMP ...`` in the run's folder (any exit status)."""
        cmd = ["./run.sh", "--corpus", "flickr8k", "--dumpdir", MINI_DUMP, *args]
        return run_in(self.rec, cmd, dict(env or {}, FLICKR8K=str(self.corpus)))

    def run(self, *args: str, env=None) -> str:
        """:meth:`attempt` that must succeed: its output, or an AssertionError with the tail of it."""
        return succeeded(self.attempt(*args, env=env))

    def image_cache(self) -> Path:
        """The image-embedding cache folder of the tiny CLIP that the configs share."""
        from espnet_speechclip.files import sha256_file

        digest = sha256_file(self.rec / "exp" / "clip" / "tiny-clip.pt")[:12]
        (cache,) = [p for p in (self.rec / MINI_DUMP / "image_emb").iterdir() if digest in p.name]
        return cache


def copy_of_run(run: RecipeRun, dest: Path) -> RecipeRun:
    """A copy of the run's recipe folder and corpus, for tests that change them for good."""
    rec = dest / "sc1"
    shutil.copytree(run.rec, rec, symlinks=True)
    corpus = Path(shutil.copytree(run.corpus, dest / "flickr8k"))
    return RecipeRun(rec, corpus, run.out)


@contextlib.contextmanager
def lock_held_elsewhere(folder: Path, what: str = "training") -> Iterator[subprocess.Popen]:
    """Another process holding ``folder``'s lock (:mod:`espnet_speechclip.locks`) while the block runs;
    it is killed with SIGKILL at the end, as a crashed holder would be."""
    code = (
        "import time\n"
        "from espnet_speechclip.locks import folder_lock\n"
        f"with folder_lock({str(folder)!r}, {what!r}):\n"
        "    print('held', flush=True)\n"
        "    time.sleep(120)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout.readline().strip() == "held"
        yield proc
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
