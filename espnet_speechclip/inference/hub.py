"""A packed SpeechCLIP on the Hugging Face Hub: repo ids, download, and the upload of recipe stage 9.

Repo layout: the packed model UNPACKED, as ESPnet's upload stage puts its packed models on the Hub::

    README.md        the model card (model_card.model_card with the repo id in its usage lines)
    config.yaml      \
    model.pth         | the members of the packed archive, byte for byte
    meta.json         | (meta.json: sha256 of each, which config keys point at which file)
    files/...        /

so the Hub shows the card and the config, and a download fetches the files themselves.
:func:`download` fetches a repo through ``huggingface_hub.snapshot_download``, which honours the Hub's
own settings: ``HF_HUB_OFFLINE=1`` (use the cached snapshot, no network), ``HF_HUB_CACHE`` / ``HF_HOME``
(cache location), ``HF_ENDPOINT`` and ``HF_TOKEN``. The loader
(:func:`espnet_speechclip.inference.loader.resolve_model`) checks every file but the card against
meta.json before the model is built.

:func:`upload` creates the repo if needed and uploads such a folder with ``HfApi.upload_folder``; the
token is the Hub's usual one (``hf auth login``, or ``HF_TOKEN``).
"""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path
from typing import Optional, Tuple, Union

import yaml

from espnet_speechclip.errors import InputError, RunError
from espnet_speechclip.inference.archive import PackError, extract_archive
from espnet_speechclip.inference.model_card import model_card
from espnet_speechclip.version import __version__

PathLike = Union[str, Path]

# ``namespace/name`` as the Hub spells repo ids (letters, digits, ``-``, ``_``, ``.``), optionally
# ``@revision`` (branch, tag or commit) for doors that take one string (CLI, ESPnet and s3prl configs).
_REPO_ID = re.compile(r"^(?P<repo>[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*)(?:@(?P<revision>[\w./-]+))?$")
# The files of a repo that make the model; anything else a user adds to the repo is not downloaded.
REPO_FILES = ["README.md", "meta.json", "config.yaml", "model.pth", "files/*"]


class HubError(RunError):
    """A Hub repo that cannot be fetched or written (not found, not cached while offline, refused)."""


def quiet_http_logs() -> None:
    """Keep the Hub client's per-request INFO lines (its HTTP library logs every request) out of a
    command's log; warnings still show."""
    for name in ("httpx", "httpx2"):
        logging.getLogger(name).setLevel(logging.WARNING)


def parse_repo_id(source: str) -> Optional[Tuple[str, Optional[str]]]:
    """``"org/name"`` -> ``("org/name", None)``, ``"org/name@v1"`` -> ``("org/name", "v1")``; ``None``
    for anything that is not a Hub repo id (a path with more parts, a file name, a URL).

    The one place a Hub id is read: the id and its revision name folders (the Hub cache, the recipe's
    ``exp/<namespace>/<name>[@revision]``), so a revision with an empty, ``.`` or ``..`` part is refused.

    Raises:
        InputError: a repo id with such a revision.
    """
    m = _REPO_ID.match(str(source))
    if m is None or m.group("repo").endswith((".zip", ".pth", ".yaml")):
        return None
    revision = m.group("revision")
    if revision is not None and any(part in ("", ".", "..") for part in revision.split("/")):
        raise InputError(
            f"{source}: revision {revision!r} is not a branch, tag or commit name (it has an empty, "
            f"'.' or '..' part)"
        )
    return m.group("repo"), revision


def exp_folder_name(source: str) -> str:
    """The experiment folder the recipe's ``--download_model`` fills, under its ``exp/``: a packed
    model's file name without ``.zip`` (a local archive or folder), else the Hub repo id as ESPnet lays
    them out (``<namespace>/<name>``, ``@<revision>`` appended when pinned).

    Raises:
        InputError: neither an existing path nor a Hub repo id (or one with an unsafe revision).
    """
    path = Path(source)
    if path.exists():
        name = path.name[: -len(".zip")] if path.name.endswith(".zip") else path.name
        if name in ("", ".", ".."):
            raise InputError(f"{source}: a packed model's folder or file name names no experiment folder")
        return name
    parsed = parse_repo_id(source)
    if parsed is None:
        raise InputError(f"{source} is neither a local packed model nor a Hub repo id <namespace>/<name>")
    repo_id, revision = parsed
    return repo_id if revision is None else f"{repo_id}@{revision}"


def download(repo_id: str, revision: Optional[str] = None) -> Path:
    """The snapshot folder of a Hub model repo at ``revision`` (default: its main branch), downloaded
    into the Hub cache or, offline, found there.

    Raises:
        HubError: no such repo or revision, or offline / unreachable with no cached snapshot.
    """
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import (
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    where = f"Hub model {repo_id}" + (f" at revision {revision}" if revision else "")
    try:
        folder = snapshot_download(
            repo_id,
            revision=revision,
            allow_patterns=REPO_FILES,
            library_name="espnet_speechclip",
            library_version=__version__,
        )
    except RevisionNotFoundError as e:
        raise HubError(f"{where}: no such revision ({e})") from e
    except RepositoryNotFoundError as e:
        raise HubError(f"{where}: no such repo, or a private one (log in or set HF_TOKEN) ({e})") from e
    except LocalEntryNotFoundError as e:
        mode = "HF_HUB_OFFLINE is set" if constants.HF_HUB_OFFLINE else "the Hub could not be reached"
        raise HubError(
            f"{where} is not (completely) in the Hub cache ({constants.HF_HUB_CACHE}) and {mode}: "
            f"download it once with network access, or point HF_HUB_CACHE / HF_HOME at a cache that "
            f"holds it ({str(e).splitlines()[0]})"
        ) from e
    except (HfHubHTTPError, OSError) as e:
        raise HubError(f"{where}: {e}") from e
    return Path(folder)


def stage_repo(archive: PathLike, folder: PathLike, repo_id: str) -> Path:
    """Lay out a packed archive as the Hub repo ``repo_id``: its members, checked against meta.json,
    unpacked into ``folder`` (replaced), and README.md the model card with the repo's usage lines.

    Raises:
        FileNotFoundError: no such archive.
        PackError: not a packed model, or a member that fails its sha256 check.
    """
    if parse_repo_id(repo_id) is None or "@" in repo_id:
        raise InputError(f"{repo_id!r} is not a Hub repo id (<namespace>/<name>)")
    folder = Path(folder)
    if folder.exists():
        shutil.rmtree(folder)
    meta = extract_archive(archive, folder)
    config = yaml.safe_load((folder / "config.yaml").read_text(encoding="utf-8"))
    (folder / "README.md").write_text(model_card(config, meta, repo_id=repo_id), encoding="utf-8")
    return folder


def upload(
    folder: PathLike,
    repo_id: str,
    private: bool = False,
    commit_message: str = "Upload SpeechCLIP model",
    endpoint: Optional[str] = None,
    token: Optional[str] = None,
) -> str:
    """Create the Hub model repo ``repo_id`` if needed and upload ``folder`` (:func:`stage_repo`'s) to
    its main branch in one commit. ``endpoint``: another Hub than ``HF_ENDPOINT``'s; ``token``: default
    the logged-in user's. Returns the commit URL.

    Raises:
        PackError: ``folder`` is not a staged packed model.
        HubError: the Hub refused (no token, no write access, ...).
    """
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    folder = Path(folder)
    if not (folder / "meta.json").is_file() or not (folder / "README.md").is_file():
        raise PackError(f"{folder} is not a packed model laid out for the Hub (no meta.json / README.md)")
    api = HfApi(endpoint=endpoint, token=token, library_name="espnet_speechclip")
    try:
        api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        info = api.upload_folder(
            repo_id=repo_id, folder_path=folder, repo_type="model", commit_message=commit_message
        )
    except HfHubHTTPError as e:
        raise HubError(f"uploading {folder} to the Hub model repo {repo_id} failed: {e}") from e
    return str(info.commit_url)
