"""The packed model format: a zip archive (or the same members unpacked into a folder), its checks, and
the unpack cache.

Archive layout (a zip, written by :func:`espnet_speechclip.inference.packing.pack_model`)::

    config.yaml      training config, local paths rewritten to archive members (files/...)
    model.pth        the trained weights (as saved by training)
    README.md        model card (:mod:`espnet_speechclip.inference.model_card`)
    files/...        every local file the model is rebuilt from: CLIP weights / open_clip JSON,
                     a local s3prl upstream checkpoint, the cascaded codebook
    meta.json        format version, package version, creation time, sha256 and size of every other
                     member, which config keys point at which member, and the model card's inputs

:func:`unpack_model` extracts into a cache dir keyed by the archive's sha256, checks every member
against meta.json, and writes a config with absolute paths that
:class:`espnet_speechclip.inference.speech2image.Speech2Image` takes as is. The same members unpacked
into a folder (:func:`extract_archive`; a Hub repo holds exactly that, see
:mod:`espnet_speechclip.inference.hub`) load in place through :func:`resolve_packed_folder`.

Extraction is bounded (see :data:`LIMITS_NOTE`): before anything is written, the archive's member
count, each member's size as meta.json declares it (which must be the size the zip lists) and their
total are checked against limits and the free disk space, and links are refused; each member is then
streamed with its declared size as a cap, and checked against its sha256. Archives packed before sizes
were recorded have each member hashed before it is written.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import stat
import tempfile
import textwrap
import zipfile
from pathlib import Path, PurePosixPath
from typing import Dict, Optional, Tuple

import yaml

from espnet_speechclip.config import dotted_get, dotted_set
from espnet_speechclip.errors import InputError, MissingFileError
from espnet_speechclip.files import atomic_path, sha256_file
from espnet_speechclip.locks import folder_lock

logger = logging.getLogger(__name__)

FORMAT = "espnet_speechclip-packed-model"
FORMAT_VERSION = 1
RESOLVED_CONFIG = "config.resolved.yaml"
_COMPLETE = ".complete"
_BLOCK = 1 << 20


class PackError(InputError):
    """A model archive that cannot be written or used (missing file, tampered member, bad format)."""


CACHE_ENV = "ESPNET_SPEECHCLIP_CACHE"
# Extraction limits, adjustable through these variables or the functions' ``limits`` argument.
MAX_MEMBERS_ENV = "ESPNET_SPEECHCLIP_UNPACK_MAX_MEMBERS"
MAX_BYTES_ENV = "ESPNET_SPEECHCLIP_UNPACK_MAX_BYTES"
# A packed model has config, weights, card, meta and a handful of files/; 1000 leaves room for more.
DEFAULT_MAX_MEMBERS = 1000
# The largest SpeechCLIP (HuBERT Large and CLIP ViT-L/14 packed as local files) is about 4 GB.
DEFAULT_MAX_BYTES = 16 * 1024**3

LIMITS_NOTE = textwrap.fill(
    f"Unpacking refuses, before writing anything, an archive of more than ${MAX_MEMBERS_ENV} members "
    f"(default {DEFAULT_MAX_MEMBERS}) or whose members add up to more than ${MAX_BYTES_ENV} bytes "
    f"(default {DEFAULT_MAX_BYTES // 1024**3} GiB) or to more than the free disk space, a member "
    f"larger than meta.json declares, and links.",
    width=100,
)
# Where packed archives are unpacked, and within which limits, for the help of the entry points that
# take one.
UNPACK_CACHE_NOTE = (
    textwrap.fill(
        f"A packed model (.zip) is unpacked once, into <cache>/<sha256 of the archive>/, where <cache> is "
        f"${CACHE_ENV} if set, else $XDG_CACHE_HOME/espnet_speechclip, else ~/.cache/espnet_speechclip. "
        f"Set {CACHE_ENV} to keep it elsewhere; a folder there can be deleted at any time (the next use "
        f"unpacks the archive again).",
        width=100,
    )
    + "\n"
    + LIMITS_NOTE
)


def default_cache_dir() -> Path:
    """``$ESPNET_SPEECHCLIP_CACHE``, else ``$XDG_CACHE_HOME/espnet_speechclip``, else
    ``~/.cache/espnet_speechclip`` (see :data:`UNPACK_CACHE_NOTE`)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "espnet_speechclip"


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        number = int(value)
    except ValueError:
        number = -1
    if number < 1:
        raise PackError(f"${name} must be a positive whole number, got {value!r}")
    return number


def unpack_limits(max_members: Optional[int] = None, max_bytes: Optional[int] = None) -> Tuple[int, int]:
    """``(max_members, max_bytes)`` of an extraction: the arguments where given, else
    ``$ESPNET_SPEECHCLIP_UNPACK_MAX_MEMBERS`` / ``$ESPNET_SPEECHCLIP_UNPACK_MAX_BYTES``, else the
    defaults (:data:`DEFAULT_MAX_MEMBERS`, :data:`DEFAULT_MAX_BYTES`)."""
    return (
        max_members if max_members is not None else _env_int(MAX_MEMBERS_ENV, DEFAULT_MAX_MEMBERS),
        max_bytes if max_bytes is not None else _env_int(MAX_BYTES_ENV, DEFAULT_MAX_BYTES),
    )


# Members that document the model without being part of it: a Hub repo's card is edited on the Hub,
# so a packed folder's README.md is not held to the sha256 that meta.json recorded at packing.
DOCUMENTATION = ("README.md",)


def _safe_member(where: Path, name: str) -> str:
    p = PurePosixPath(name)
    if p.is_absolute() or ".." in p.parts or not p.parts or "\\" in name:
        raise PackError(f"{where}: meta.json names an unsafe member path {name!r}")
    return name


def _parse_meta(where: Path, raw: bytes) -> dict:
    """meta.json of an archive or packed folder ``where`` -> the checked dict; PackError otherwise."""
    try:
        meta = json.loads(raw)
    except ValueError as e:
        raise PackError(f"{where}: meta.json is not valid JSON ({e})") from e
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else meta
        raise PackError(f"{where}: meta.json format {found!r} is not {FORMAT!r}")
    if int(meta.get("format_version", 0)) > FORMAT_VERSION:
        raise PackError(
            f"{where} has format version {meta['format_version']}; this espnet_speechclip "
            f"reads up to {FORMAT_VERSION}: upgrade the package"
        )
    sha = meta.get("sha256")
    if not isinstance(sha, dict) or "config.yaml" not in sha or "model.pth" not in sha:
        raise PackError(f"{where}: meta.json lists no sha256 for config.yaml and model.pth")
    for member in list(sha) + list(meta.get("paths", {}).values()):
        _safe_member(where, member)
    unlisted = set(meta.get("paths", {}).values()) - set(sha)
    if unlisted:
        raise PackError(f"{where}: config files {sorted(unlisted)} have no sha256 in meta.json")
    sizes = meta.get("size")
    if sizes is not None and (
        not isinstance(sizes, dict)
        or set(sizes) != set(sha)
        or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in sizes.values())
    ):
        raise PackError(f"{where}: meta.json's size must give a byte count for each member it hashes")
    return meta


def _read_meta(archive: Path, zf: zipfile.ZipFile) -> dict:
    try:
        raw = zf.read("meta.json")
    except KeyError:
        raise PackError(f"{archive} has no meta.json: not a packed SpeechCLIP model") from None
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise PackError(f"{archive}: meta.json cannot be read ({e}): the archive is damaged") from e
    return _parse_meta(archive, raw)


def _is_link(info: zipfile.ZipInfo) -> bool:
    """Whether a zip entry is a symbolic link (Unix mode bits in the upper external attributes)."""
    return stat.S_ISLNK(info.external_attr >> 16)


def _plan(archive: Path, zf: zipfile.ZipFile, meta: dict, dest_root: Path, limits: Tuple[int, int]) -> Dict:
    """Check an extraction before writing anything: member count, links, one member under another,
    each member's declared size against the zip's, and the total against the limit and the free disk
    space at ``dest_root``. Returns ``{member: ZipInfo}`` of the members to extract."""
    max_members, max_bytes = limits
    entries = zf.infolist()
    if len(entries) > max_members:
        raise PackError(
            f"{archive} holds {len(entries)} members, more than the {max_members} a packed model may "
            f"have (set ${MAX_MEMBERS_ENV} to allow more)"
        )
    links = [i.filename for i in entries if _is_link(i)]
    if links:
        raise PackError(f"{archive} holds links ({', '.join(links[:3])}): a packed model holds files only")
    infos = {}
    for member in meta["sha256"]:
        try:
            infos[member] = zf.getinfo(member)
        except KeyError:
            raise PackError(f"{archive} lacks member {member} listed in its meta.json") from None
        if infos[member].is_dir():
            raise PackError(f"{archive}: member {member} is a folder, not a file")
    names = set(infos) | {"meta.json", RESOLVED_CONFIG, _COMPLETE}
    for member in infos:
        parents = {str(p) for p in PurePosixPath(member).parents if str(p) != "."}
        clash = sorted(parents & names)
        if clash:
            raise PackError(f"{archive}: member {member} lies under member {clash[0]}, which is a file")
    sizes = meta.get("size") or {}
    for member, info in infos.items():
        if member in sizes and info.file_size != sizes[member]:
            raise PackError(
                f"member {member} of {archive} is {info.file_size} bytes in the zip, but meta.json "
                f"declares {sizes[member]}: the archive was modified or corrupted"
            )
    total = sum(info.file_size for info in infos.values())
    if total > max_bytes:
        raise PackError(
            f"{archive} unpacks to {total} bytes, more than the limit of {max_bytes} "
            f"(set ${MAX_BYTES_ENV} to allow more)"
        )
    dest_root.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(dest_root).free
    if total > free:
        raise PackError(f"{archive} unpacks to {total} bytes, but {dest_root} has only {free} bytes free")
    return infos


def _stream(archive: Path, zf: zipfile.ZipFile, info: zipfile.ZipInfo, out=None) -> str:
    """Read one member (into the open file ``out`` if given) while hashing, never past its listed
    size; returns the sha256 hex. PackError for a corrupt member or one that inflates past its size."""
    h = hashlib.sha256()
    left = info.file_size
    try:
        with zf.open(info) as src:
            while True:
                block = src.read(min(_BLOCK, left + 1))
                if not block:
                    break
                if len(block) > left:
                    raise PackError(
                        f"member {info.filename} of {archive} inflates past its declared {info.file_size} "
                        f"bytes: the archive was modified or corrupted"
                    )
                left -= len(block)
                h.update(block)
                if out is not None:
                    out.write(block)
    except (zipfile.BadZipFile, EOFError, OSError) as e:  # e.g. a CRC mismatch from bytes changed in place
        raise PackError(f"member {info.filename} of {archive} is corrupt ({e})") from e
    return h.hexdigest()


def _mismatch(archive: Path, member: str, digest: str, actual: str) -> PackError:
    return PackError(
        f"member {member} of {archive} fails its sha256 check (meta.json {digest[:12]}..., "
        f"content {actual[:12]}...): the archive was modified or corrupted"
    )


def _extract_verified(
    archive: Path, zf: zipfile.ZipFile, info: zipfile.ZipInfo, digest: str, dest: Path, sized: bool
) -> None:
    """Stream member ``info`` to ``dest`` (capped at its size) while hashing; PackError when it does not
    match ``digest``. Without a size from meta.json (``sized``), the member is hashed before any byte
    of it is written."""
    if not sized:
        actual = _stream(archive, zf, info)
        if actual != digest:
            raise _mismatch(archive, info.filename, digest, actual)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(dest, "wb") as out:
        actual = _stream(archive, zf, info, out)
    if actual != digest:
        raise _mismatch(archive, info.filename, digest, actual)


def _extract_all(archive: Path, zf: zipfile.ZipFile, meta: dict, dest: Path, limits: Tuple[int, int]) -> None:
    infos = _plan(archive, zf, meta, dest, limits)
    sized = meta.get("size") is not None
    for member, digest in meta["sha256"].items():
        _extract_verified(archive, zf, infos[member], digest, dest / member, sized)


def _resolved_config(where: Path, meta: dict, config_text: str, root: Path) -> str:
    """The packed config.yaml with every packed file's key pointing at ``root/<member>`` (absolute)."""
    config = yaml.safe_load(config_text)
    for dotted, member in meta.get("paths", {}).items():
        if dotted_get(config, dotted) != member:
            raise PackError(
                f"{where}: config.yaml {dotted} is {dotted_get(config, dotted)!r}, meta.json says {member!r}"
            )
        dotted_set(config, dotted, str(root / member))
    return yaml.safe_dump(config, sort_keys=False, allow_unicode=True)


def _complete(target: Path, meta: dict) -> bool:
    """Whether a cache dir holds a finished extraction of ``meta``'s members."""
    return (
        (target / _COMPLETE).is_file()
        and (target / RESOLVED_CONFIG).is_file()
        and all((target / m).is_file() for m in meta["sha256"])
    )


def _open_archive(archive: Path) -> zipfile.ZipFile:
    if not archive.is_file():
        raise MissingFileError(f"model archive {archive} does not exist")
    if not zipfile.is_zipfile(archive):
        raise PackError(f"{archive} is not a zip archive")
    try:
        return zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as e:
        raise PackError(f"{archive} is not a readable zip archive ({e})") from e


def extract_archive(
    archive: str | Path, dest: str | Path, max_members: Optional[int] = None, max_bytes: Optional[int] = None
) -> dict:
    """Extract every member of a packed archive into the new folder ``dest``, checking each against
    meta.json (the Hub repo layout: the packed model unpacked). Returns the archive's meta.json.
    ``max_members`` / ``max_bytes``: the extraction's limits (see :func:`unpack_limits`).

    Raises:
        FileNotFoundError: no such archive.
        FileExistsError: ``dest`` exists and is not empty.
        PackError: not a packed model, a member missing, a link, over a limit, or a member whose size
            or sha256 does not match.
    """
    archive, dest = Path(archive), Path(dest)
    limits = unpack_limits(max_members, max_bytes)
    with _open_archive(archive) as zf:
        if dest.exists() and any(dest.iterdir()):
            raise FileExistsError(f"{dest} is not empty: extract a packed model into a new folder")
        meta = _read_meta(archive, zf)
        _extract_all(archive, zf, meta, dest, limits)
        (dest / "meta.json").write_bytes(zf.read("meta.json"))
    return meta


def unpack_model(
    archive: str | Path,
    cache_dir: Optional[str | Path] = None,
    max_members: Optional[int] = None,
    max_bytes: Optional[int] = None,
) -> Tuple[Path, Path]:
    """Extract a packed model (once) and return ``(config_path, model_path)`` for
    :class:`espnet_speechclip.inference.speech2image.Speech2Image`.

    The archive goes to ``<cache_dir>/<sha256 of the archive>/`` (default :func:`default_cache_dir`);
    every member is checked against meta.json while extracting, and the config is materialised with
    absolute paths to the extracted files. A second call with the same archive only hashes it.
    ``max_members`` / ``max_bytes``: the extraction's limits (default: :func:`unpack_limits`; see
    :data:`LIMITS_NOTE`), checked before anything is written.

    Raises:
        FileNotFoundError: no such archive.
        PackError: not a packed model, a member missing, a link, over a limit, or a member whose size
            or sha256 does not match.
    """
    archive = Path(archive)
    limits = unpack_limits(max_members, max_bytes)
    with _open_archive(archive) as zf:
        key = sha256_file(archive)
        root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        target = root / key
        meta = _read_meta(archive, zf)
        if _complete(target, meta):
            return target / RESOLVED_CONFIG, target / "model.pth"
        root.mkdir(parents=True, exist_ok=True)
        # Extract into a private temporary dir and rename it into place at the end, so a crash or a
        # tampered member never leaves a directory that looks like a finished extraction.
        tmp = Path(tempfile.mkdtemp(prefix=f".{key[:16]}.", dir=root))
        try:
            _extract_all(archive, zf, meta, tmp, limits)
            config_text = (tmp / "config.yaml").read_text(encoding="utf-8")
            resolved = _resolved_config(archive, meta, config_text, target.resolve())
            (tmp / RESOLVED_CONFIG).write_text(resolved, encoding="utf-8")
            (tmp / _COMPLETE).write_text(json.dumps(dict(archive=str(archive.resolve()))), encoding="utf-8")
            # one process at a time replaces an earlier extraction (never a concurrent one's, just finished)
            with folder_lock(root, "unpacking", wait=True, name=f".{key}.lock"):
                if not _complete(target, meta):
                    if target.exists():  # an interrupted or hand-edited earlier extraction
                        shutil.rmtree(target)
                    os.replace(tmp, target)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp)
    logger.info(
        "unpacked %s into %s (the unpack cache; set %s to use another folder)", archive, target, CACHE_ENV
    )
    return target / RESOLVED_CONFIG, target / "model.pth"


def is_packed_folder(path: str | Path) -> bool:
    """Whether ``path`` is a packed model unpacked (a downloaded Hub repo, an extracted archive)."""
    return (Path(path) / "meta.json").is_file()


def packed_meta(source: str | Path) -> Optional[dict]:
    """The checked meta.json (format, card, sha256 of every member) of a packed model folder or archive
    ``source``; None for anything else (an experiment folder).

    Raises:
        PackError: a packed model whose meta.json is damaged.
    """
    path = Path(source)
    if path.is_dir():
        return _parse_meta(path, (path / "meta.json").read_bytes()) if is_packed_folder(path) else None
    if path.is_file() and zipfile.is_zipfile(path):
        with _open_archive(path) as zf:
            return _read_meta(path, zf)
    return None


def resolve_packed_folder(folder: str | Path, cache_dir: Optional[str | Path] = None) -> Tuple[Path, Path]:
    """``(config_path, model_path)`` of a packed model unpacked into ``folder`` (a Hub repo snapshot,
    :func:`extract_archive`'s output), for :class:`Speech2Image`.

    Every member meta.json lists, but the card (:data:`DOCUMENTATION`), is checked against its sha256
    on each call. The files stay where they are: only the config with absolute paths to them is written,
    into ``<cache_dir>/<sha256 of meta.json and the folder's path>/``. Paths keep the folder's own names
    (a Hub snapshot's files are symlinks to content-named blobs; open_clip finds a JSON config by its
    file name).

    Raises:
        FileNotFoundError: no such folder, or a member missing.
        PackError: no or a bad meta.json, or a member whose sha256 does not match.
    """
    folder = Path(os.path.abspath(folder))
    if not folder.is_dir():
        raise MissingFileError(f"packed model folder {folder} does not exist")
    if not is_packed_folder(folder):
        raise PackError(f"{folder} has no meta.json: not a packed SpeechCLIP model")
    raw = (folder / "meta.json").read_bytes()
    meta = _parse_meta(folder, raw)
    for member, digest in meta["sha256"].items():
        if member in DOCUMENTATION:
            continue
        path = folder / member
        if not path.is_file():
            raise MissingFileError(f"{folder} lacks {member}, listed in its meta.json")
        actual = sha256_file(path)
        if actual != digest:
            raise PackError(
                f"{path} fails its sha256 check (meta.json {digest[:12]}..., content {actual[:12]}...): "
                f"the file was modified or corrupted"
            )
    resolved = _resolved_config(folder, meta, (folder / "config.yaml").read_text(encoding="utf-8"), folder)
    key = hashlib.sha256(raw + b"\0" + str(folder).encode("utf-8")).hexdigest()
    target = (Path(cache_dir) if cache_dir is not None else default_cache_dir()) / key
    target.mkdir(parents=True, exist_ok=True)
    # atomic: a concurrent reader never sees half a config
    with atomic_path(target / RESOLVED_CONFIG, unique=True) as tmp:
        tmp.write_text(resolved, encoding="utf-8")
    return target / RESOLVED_CONFIG, folder / "model.pth"
