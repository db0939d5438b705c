"""One writer per folder: a second process is refused and told who holds the folder; a killed holder's
lock is gone at once."""

import os
import subprocess
import sys

import pytest
from helpers import ROOT, TINY
from helpers.recipe import lock_held_elsewhere
from helpers.stand_ins import training_data_args

from espnet_speechclip.locks import FolderLockedError, check_free, folder_lock, lock_path


def test_a_second_writer_is_refused_with_the_holder_named_and_a_killed_holder_frees_the_folder(tmp_path):
    folder = tmp_path / "exp" / "h4"
    with lock_held_elsewhere(folder) as proc:
        with pytest.raises(FolderLockedError) as err:
            with folder_lock(folder, "training"):
                pytest.fail("entered a folder another process holds")
        message = str(err.value)
        assert f"{folder} is in use by training (pid {proc.pid} on " in message
        assert "-c" in message and "started 20" in message  # the holder's command and start time
        assert f"delete {lock_path(folder)}" in message
        with pytest.raises(FolderLockedError):
            check_free(folder)
    # kill -9 leaves the lock file, but not the lock: the rerun goes ahead
    assert lock_path(folder).is_file()
    with folder_lock(folder, "training") as path:
        assert path == lock_path(folder) and f'"pid": {os.getpid()}' in path.read_text()
        with folder_lock(folder, "scoring"):  # the same process may nest
            pass
    assert path.read_text() == ""  # released: names nobody


def test_without_file_locks_a_dead_holder_on_this_host_is_stale(tmp_path, monkeypatch):
    import errno
    import fcntl

    folder = tmp_path / "cache"
    with lock_held_elsewhere(folder) as proc:
        pass
    # what the lock file says after kill -9 on a filesystem without flock: the dead holder
    holder = lock_path(folder).read_text()
    assert f'"pid": {proc.pid}' in holder

    def no_flock(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_flock)
    with folder_lock(folder, "image caching"):  # stale: same host, pid gone
        assert f'"pid": {os.getpid()}' in lock_path(folder).read_text()
    lock_path(folder).write_text(holder.replace(f'"pid": {proc.pid}', f'"pid": {os.getppid()}'))
    with pytest.raises(FolderLockedError, match=f"pid {os.getppid()}"):  # a live holder
        with folder_lock(folder, "image caching"):
            pass


def test_the_recipe_checks_the_lock_before_opening_the_log(tmp_path):
    folder = tmp_path / "exp"
    with lock_held_elsewhere(folder) as proc:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        command = [sys.executable, "-m", "espnet_speechclip.locks", str(folder)]
        out = subprocess.run(command, capture_output=True, text=True, env=env)
    assert out.returncode == 1 and f"error: {folder} is in use by training (pid {proc.pid}" in out.stderr


def test_every_stage_writing_a_folder_takes_its_lock_first(tmp_path):
    from espnet_speechclip.bin import make_results, pack, speechclip_inference, speechclip_train
    from espnet_speechclip.training.image_cache import cache_image_embeddings, clip_fingerprint

    exp = tmp_path / "exp"
    exp.mkdir()
    for name in ("config.yaml", "latest.pth"):  # never read: the lock comes first
        (exp / name).write_text("")
    model = ["--config", str(exp / "config.yaml"), "--model_file", str(exp / "latest.pth")]
    clip = {"model_name": "ViT-B-32"}
    decode = tmp_path / "decode_test"
    train = ["--config", str(TINY / "parallel.yaml"), "--ngpu", "0", *training_data_args(tmp_path)]
    stages = {
        tmp_path / "h4": lambda: speechclip_train.main([*train, "--output_dir", str(tmp_path / "h4")]),
        # folder held elsewhere -> the stage, refused before it reads or writes anything there
        exp: lambda: make_results.main(["--exp_dir", str(exp), "--test_set", "test"]),
        tmp_path / "packed": lambda: pack.main([*model, "--out", str(tmp_path / "packed" / "model.zip")]),
        decode: lambda: speechclip_inference.main(
            [*model, "--data_dir", str(tmp_path), "--output_dir", str(decode)]
        ),
        tmp_path / "emb" / clip_fingerprint(**clip): lambda: cache_image_embeddings(
            tmp_path / "img.scp", clip, tmp_path / "emb", progress=False
        ),
    }
    for folder, stage in stages.items():
        with lock_held_elsewhere(folder, "a test"):
            with pytest.raises(FolderLockedError, match=f"{folder} is in use by a test"):
                stage()
    for folder in stages:  # nothing but the lock file: no config.yaml, train.log, archive, decode
        assert {p.name for p in folder.iterdir()} - {"config.yaml", "latest.pth"} == {".lock"}
