"""One writer per folder: the lock a stage holds on the folder it writes (an experiment, a decode folder,
a cache), so that a second process is refused before it writes anything, instead of interleaving with the
first.

The lock is ``flock`` on ``<folder>/.lock`` (no stage empties a folder it locks, so the file cannot be
deleted while held). Why ``flock``: the kernel releases it when its
holder dies, however it dies (``kill -9``, a lost node's reboot), so a killed run never leaves a stale
lock behind and rerunning just works. The file also names its holder (pid, host, command, start time),
which the refusal quotes.

Caveats: a lock is advisory (only the package's own stages take it); on NFS, Linux implements ``flock``
with the server's byte-range locks, which work across machines but may outlive a client that crashed
until the server notices. A filesystem without locks (some FUSE mounts) falls back to the holder's pid:
a lock whose holder ran on this host and is gone counts as stale; one of another host is refused, and
the message says to delete the lock file once that process no longer runs.

Holding a lock twice in one process is allowed (a stage calling another that locks the same folder).
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import json
import logging
import os
import socket
import sys
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Union

from espnet_speechclip.errors import RunError, run_cli

logger = logging.getLogger(__name__)

PathLike = Union[str, Path]
LOCK_NAME = ".lock"
_HELD: Dict[str, int] = {}  # lock files this process holds -> nesting depth


class FolderLockedError(RunError):
    """Another process writes the folder; the message names it and says how to clear a stale lock."""


def lock_path(folder: PathLike) -> Path:
    """The lock file of ``folder``: ``<folder>/.lock``."""
    return Path(folder) / LOCK_NAME


def _holder_info(what: str) -> Dict[str, object]:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "what": what,
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def read_holder(path: PathLike) -> Optional[Dict[str, object]]:
    """Who holds (or last held) the lock file ``path``, or None when it names nobody."""
    try:
        holder = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return holder if isinstance(holder, dict) and "pid" in holder else None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _refusal(folder: Path, path: Path, holder: Optional[Dict[str, object]], alive: Optional[bool]) -> str:
    if holder is None:
        who = "another process (it has not written its name yet)"
    else:
        who = (
            f"{holder.get('what', 'a stage')} (pid {holder.get('pid')} on {holder.get('host')}, started "
            f"{holder.get('started')}: {holder.get('command')})"
        )
    gone = (
        " That pid no longer runs: a process it started (e.g. a data-loader worker) still holds the lock; "
        "stop it."
        if alive is False
        else ""
    )
    return (
        f"{folder} is in use by {who}.{gone} Wait for it to finish or stop it, then rerun. If no such "
        f"process runs any more (e.g. its machine went down), delete {path} and rerun."
    )


def _stale(holder: Optional[Dict[str, object]]) -> bool:
    """Whether a holder named in a lock file we cannot ``flock`` is certainly gone."""
    if holder is None:
        return True
    return holder.get("host") == socket.gethostname() and not _pid_alive(int(holder.get("pid", 0)))


@contextlib.contextmanager
def folder_lock(folder: PathLike, what: str, wait: bool = False, name: str = LOCK_NAME) -> Iterator[Path]:
    """Hold the lock of ``folder`` (created if missing) while the block runs; yields the lock file.

    Args:
        what: the stage, for the refusal another process gets (``"training"``, ``"inference"``).
        wait: wait for the holder to finish instead of refusing (for a cache that many readers fill
            on demand, e.g. the unpack cache).
        name: the lock file in ``folder``, for several locks in one folder (one per cache entry).

    Raises:
        FolderLockedError: another live process holds it, named in the message (not with ``wait``).
    """
    folder = Path(folder)
    path = folder / name
    key = os.path.abspath(path)  # one entry per file, however the caller spells its folder
    if key in _HELD:
        _HELD[key] += 1
        try:
            yield path
        finally:
            _HELD[key] -= 1
        return
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if wait:
                logger.info("%s: waiting for %s", folder, read_holder(path) or "another process")
                fcntl.flock(fd, fcntl.LOCK_EX)
            else:
                holder = read_holder(path)
                same_host = holder is not None and holder.get("host") == socket.gethostname()
                alive = _pid_alive(int(holder["pid"])) if same_host else None
                raise FolderLockedError(_refusal(folder, path, holder, alive)) from None
        except OSError as e:
            if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
                raise
            # no flock on this filesystem: trust the holder's pid
            holder = read_holder(path)
            if not _stale(holder):
                raise FolderLockedError(_refusal(folder, path, holder, None)) from None
            logger.warning("%s: no file locks on this filesystem; relying on the holder's pid", path)
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(_holder_info(what)) + "\n").encode(), 0)
        _HELD[key] = 1
        try:
            yield path
        finally:
            del _HELD[key]
            os.ftruncate(fd, 0)  # names nobody once released
    finally:
        os.close(fd)  # releases the flock


def check_free(folder: PathLike) -> None:
    """Raise :class:`FolderLockedError` if another process holds ``folder``'s lock (taken and released
    at once: for a caller about to start a process that will take it, e.g. before opening its log)."""
    with folder_lock(folder, "a check"):
        pass


def main(argv: Optional[List[str]] = None) -> None:
    """``python -m espnet_speechclip.locks FOLDER...``: exit 1 with the holder's name when one is in use."""
    for folder in argv if argv is not None else sys.argv[1:]:
        check_free(folder)


if __name__ == "__main__":
    run_cli(main)
