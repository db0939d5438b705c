"""One self-contained archive per trained model (recipe stage 8), and its loading.

Archive layout (a zip)::

    config.yaml      training config, local paths rewritten to archive members (files/...)
    model.pth        the trained weights (as saved by training)
    README.md        model card
    files/...        every local file the model is rebuilt from: CLIP weights / open_clip JSON,
                     a local s3prl upstream checkpoint, the cascaded codebook
    meta.json        format version, package version, creation time, sha256 of every other member,
                     and which config keys point at which member

Pretrained tags (CLIP ``openai``, s3prl ``hubert``) and URLs stay as they are: open_clip / s3prl fetch
them on first use, as they did for training.

:func:`unpack_model` extracts into a cache dir keyed by the archive's sha256, checks every member
against meta.json, and writes a config with absolute paths that
:class:`espnet_speechclip.inference.speech2image.Speech2Image` takes as is.
"""

from __future__ import annotations

import copy
import datetime
import hashlib
import json
import logging
import os
import shutil
import tempfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any, Dict, List, Optional, Tuple

import yaml

from espnet_speechclip.config import config_value
from espnet_speechclip.files import sha256_file

logger = logging.getLogger(__name__)

FORMAT = "espnet_speechclip-packed-model"
FORMAT_VERSION = 1
RESOLVED_CONFIG = "config.resolved.yaml"
_COMPLETE = ".complete"

# Keys of the training config that only describe the training run (data, output). Reset to their
# defaults so the packed config rebuilds the model without pointing at files the archive lacks.
TRAINING_ONLY: Dict[str, Any] = {
    "config": None,
    "output_dir": None,
    "train_data_path_and_name_and_type": [],
    "valid_data_path_and_name_and_type": [],
    "train_shape_file": [],
    "valid_shape_file": [],
    "init_param": [],
    "pretrain_path": None,
    "resume": False,
}

# Binary members gain nothing from deflate and can be GBs: store them.
_STORED_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".safetensors", ".npy")


class PackError(ValueError):
    """A model archive that cannot be written or used (missing file, tampered member, bad format)."""


def _get(config: dict, dotted: str) -> Any:
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _set(config: dict, dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    node = config
    for part in parents:
        node = node[part]
    node[last] = value


def default_cache_dir() -> Path:
    """``$ESPNET_SPEECHCLIP_CACHE``, else ``$XDG_CACHE_HOME/espnet_speechclip``, else
    ``~/.cache/espnet_speechclip``."""
    if os.environ.get("ESPNET_SPEECHCLIP_CACHE"):
        return Path(os.environ["ESPNET_SPEECHCLIP_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "espnet_speechclip"


# ----------------------------------------------------------------------------------------------- pack


def _local_files(config: dict, base_dir: Path) -> List[Tuple[str, Path, str]]:
    """-> ``[(config key, local source file, archive member)]`` for every local file the model needs.

    Raises PackError naming the key when a value that must be a local file does not exist.
    """

    def resolve(value: str) -> Path:
        p = Path(value).expanduser()
        return p if p.is_absolute() else base_dir / p

    out: List[Tuple[str, Path, str]] = []

    def add(key: str, src: Path, folder: str) -> None:
        # One folder per role keeps equal basenames apart; the basename itself is kept because
        # open_clip registers a JSON config under its file stem (which must equal model_name).
        out.append((key, src, f"files/{folder}/{src.name}"))

    pretrained = _get(config, "clip_conf.pretrained")
    if pretrained:
        src = resolve(str(pretrained))
        if src.is_file():
            add("clip_conf.pretrained", src, "clip")
        elif "/" in str(pretrained) or os.sep in str(pretrained) or src.suffix in _STORED_SUFFIXES:
            # Looks like a path, not an open_clip tag: packing it as a tag would fail only at load time.
            raise PackError(f"clip_conf.pretrained {pretrained} is not an existing file (looked at {src})")
    config_file = _get(config, "clip_conf.config_file")
    if config_file:
        src = resolve(str(config_file))
        if not src.is_file():
            raise PackError(f"clip_conf.config_file {config_file} does not exist (looked at {src})")
        add("clip_conf.config_file", src, "clip_config")
    ckpt = _get(config, "speech_encoder_conf.path_or_url")
    if ckpt and "://" not in str(ckpt):
        src = resolve(str(ckpt))
        if not src.is_file():
            raise PackError(f"speech_encoder_conf.path_or_url {ckpt} does not exist (looked at {src})")
        add("speech_encoder_conf.path_or_url", src, "upstream")
    codebook = _get(config, "model_conf.cascaded_conf.codebook")
    if codebook and codebook != "full":
        src = resolve(str(codebook))
        if not src.is_file():
            raise PackError(f"model_conf.cascaded_conf.codebook {codebook} does not exist (looked at {src})")
        add("model_conf.cascaded_conf.codebook", src, "codebook")
    return out


def _flatten(results: Any, prefix: str = "") -> List[Tuple[str, Any]]:
    if isinstance(results, dict):
        rows: List[Tuple[str, Any]] = []
        for k, v in results.items():
            rows += _flatten(v, f"{prefix} / {k}" if prefix else str(k))
        return rows
    return [(prefix, results)]


def _fmt(value: Any) -> str:
    return (
        f"{value:.4g}"
        if isinstance(value, float)
        else json.dumps(value)
        if isinstance(value, (list, dict))
        else str(value)
    )


def model_card(
    config: dict,
    packed: List[Tuple[str, Path, str]],
    params: Dict[str, int],
    results: Optional[Any] = None,
    card_text: Optional[str] = None,
    archive_name: str = "model.zip",
) -> str:
    """Markdown model card: what the model is, its results if given, and how to run it."""
    from espnet_speechclip import __version__

    model = config_value(config, "model")
    branches = {
        "hybrid": ["parallel", "cascaded"],
        "hybrid_plus": ["parallel", "cascaded (CIF keywords)"],
        "cascaded_plus": ["cascaded (CIF keywords)"],
    }.get(model, [model])
    packed_keys = {key for key, _, _ in packed}
    upstream = config_value(config, "speech_encoder_conf.upstream")
    upstream_path = config_value(config, "speech_encoder_conf.path_or_url")
    clip = config_value(config, "clip_conf")

    def origin(key: str, value: Any, what: str) -> str:
        return "packed in the archive" if key in packed_keys else f"{what} `{value}`, fetched on first use"

    lines = [f"# SpeechCLIP ({model})", ""]
    if card_text:
        lines += [card_text.strip(), ""]
    lines += [
        f"- Model: `{model}` (branches: {', '.join(branches)})",
        f"- Speech upstream: s3prl `{upstream}` (frozen)"
        + (
            f", checkpoint {origin('speech_encoder_conf.path_or_url', upstream_path, 'URL')}"
            if upstream_path
            else ""
        ),
        f"- CLIP: `{clip.get('model_name')}` (frozen), weights "
        + origin("clip_conf.pretrained", clip.get("pretrained"), "open_clip tag"),
        f"- Image input: `{config_value(config, 'image_input')}`",
    ]
    codebook = _get(config, "model_conf.cascaded_conf.codebook")
    if model != "parallel":
        lines.append(
            "- Keyword codebook: "
            + ("full CLIP vocabulary" if codebook in (None, "full") else "packed in the archive")
        )
    lines += [
        f"- Trainable parameters: {params['trainable']:,} ({params['trainable'] / 1e6:.2f} M); "
        f"total (frozen towers included): {params['total']:,}",
        f"- Packed with espnet_speechclip {__version__}",
        "",
    ]
    if results is not None:
        lines += ["## Results", "", "| metric | value |", "|---|---:|"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in _flatten(results)]
        lines.append("")
    lines += [
        "## Usage",
        "",
        "```sh",
        f"python -m espnet_speechclip.bin.speechclip_inference --model {archive_name} \\",
        "    --data_dir data/<set> --output_dir decode_<set> [--image_emb_scp img_emb.scp]",
        "```",
        "",
        "or in Python:",
        "",
        "```python",
        "from espnet_speechclip.inference import Speech2Image",
        "",
        f's2i = Speech2Image.from_pretrained("{archive_name}")',
        'embeddings = s2i("utterance.wav")  # {branch: (1, D_c)}; cascaded: keyword_ids / _scores / _spans',
        "```",
        "",
        "The archive is extracted once into `~/.cache/espnet_speechclip/` (or "
        "`$ESPNET_SPEECHCLIP_CACHE`), checking every member's sha256 against `meta.json`.",
        "",
    ]
    return "\n".join(lines)


def pack_model(
    config_file: str | Path,
    model_file: str | Path,
    out_zip: str | Path,
    card_text: Optional[str] = None,
    results_json: Optional[str | Path] = None,
    base_dir: Optional[str | Path] = None,
) -> Path:
    """Pack a trained model into one archive usable without the recipe.

    Args:
        config_file: ``config.yaml`` written by training.
        model_file: trained weights (``*.pth``) for that config.
        out_zip: archive to write (replaced atomically if it exists).
        card_text: free text (markdown) put at the top of the model card.
        results_json: test results (any JSON, e.g. ``scores.json``), tabulated in the model card.
        base_dir: directory the config's relative paths are relative to (default: the current
            directory, where the recipe ran training).

    The model is rebuilt from the config and weights first (strict loading), so a config/weights
    mismatch fails here rather than for whoever downloads the archive. Returns ``out_zip``.
    """
    from espnet_speechclip import __version__
    from espnet_speechclip.config import read_config
    from espnet_speechclip.inference.speech2image import Speech2Image
    from espnet_speechclip.models.random_weights import count_parameters

    config_file, model_file, out_zip = Path(config_file), Path(model_file), Path(out_zip)
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    if not model_file.is_file():
        raise FileNotFoundError(f"model file {model_file} does not exist")
    config = read_config(config_file)
    results = None
    if results_json is not None:
        with open(results_json, encoding="utf-8") as f:
            results = json.load(f)

    packed = _local_files(config, base)
    # Rebuild the model from exactly the files being packed (absolute paths, so relative ones resolve
    # against base_dir): checks that the weights load strictly and gives the card's parameter counts.
    check = copy.deepcopy(config)
    for key, src in TRAINING_ONLY.items():
        if key in check:
            check[key] = src
    for key, src, _ in packed:
        _set(check, key, str(src.resolve()))
    params = count_parameters(Speech2Image(check, model_file).model)

    for key, default in TRAINING_ONLY.items():
        if key in config:
            config[key] = default
    for key, _, member in packed:
        _set(config, key, member)

    texts = {
        "config.yaml": yaml.safe_dump(config, sort_keys=False, allow_unicode=True),
        "README.md": model_card(config, packed, params, results, card_text, out_zip.name),
    }
    sha = {name: hashlib.sha256(text.encode("utf-8")).hexdigest() for name, text in texts.items()}
    sha["model.pth"] = sha256_file(model_file)
    for _, src, member in packed:
        sha[member] = sha256_file(src)
    meta = dict(
        format=FORMAT,
        format_version=FORMAT_VERSION,
        package_version=__version__,
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        model=config_value(config, "model"),
        paths={key: member for key, _, member in packed},
        sha256=sha,
        source=dict(config=str(config_file), model_file=str(model_file)),
    )

    out_zip.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_zip.with_name(f".{out_zip.name}.partial")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, text in texts.items():
            zf.writestr(name, text)
        for src, member in [(model_file, "model.pth")] + [(s, m) for _, s, m in packed]:
            stored = src.suffix in _STORED_SUFFIXES
            zf.write(src, member, compress_type=zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED)
        zf.writestr("meta.json", json.dumps(meta, indent=2))
    os.replace(tmp, out_zip)
    logger.info("packed %s (+ %d local files) into %s", model_file, len(packed), out_zip)
    return out_zip


# --------------------------------------------------------------------------------------------- unpack


def _safe_member(archive: Path, name: str) -> str:
    p = PurePosixPath(name)
    if p.is_absolute() or ".." in p.parts or not p.parts or "\\" in name:
        raise PackError(f"{archive}: meta.json names an unsafe member path {name!r}")
    return name


def _read_meta(archive: Path, zf: zipfile.ZipFile) -> dict:
    try:
        meta = json.loads(zf.read("meta.json"))
    except KeyError:
        raise PackError(f"{archive} has no meta.json: not a packed SpeechCLIP model") from None
    except ValueError as e:
        raise PackError(f"{archive}: meta.json is not valid JSON ({e})") from e
    if meta.get("format") != FORMAT:
        raise PackError(f"{archive}: meta.json format {meta.get('format')!r} is not {FORMAT!r}")
    if int(meta.get("format_version", 0)) > FORMAT_VERSION:
        raise PackError(
            f"{archive} has format version {meta['format_version']}; this espnet_speechclip "
            f"reads up to {FORMAT_VERSION}: upgrade the package"
        )
    sha = meta.get("sha256")
    if not isinstance(sha, dict) or "config.yaml" not in sha or "model.pth" not in sha:
        raise PackError(f"{archive}: meta.json lists no sha256 for config.yaml and model.pth")
    for member in list(sha) + list(meta.get("paths", {}).values()):
        _safe_member(archive, member)
    unlisted = set(meta.get("paths", {}).values()) - set(sha)
    if unlisted:
        raise PackError(f"{archive}: config files {sorted(unlisted)} have no sha256 in meta.json")
    return meta


def _extract_verified(archive: Path, zf: zipfile.ZipFile, member: str, digest: str, dest: Path) -> None:
    """Stream ``member`` to ``dest`` while hashing; PackError when absent or not matching ``digest``."""
    try:
        info = zf.getinfo(member)
    except KeyError:
        raise PackError(f"{archive} lacks member {member} listed in its meta.json") from None
    dest.parent.mkdir(parents=True, exist_ok=True)
    h = hashlib.sha256()
    try:
        with zf.open(info) as src, open(dest, "wb") as out:
            for block in iter(lambda: src.read(1 << 20), b""):
                h.update(block)
                out.write(block)
    except zipfile.BadZipFile as e:  # e.g. a CRC mismatch from bytes changed in place
        raise PackError(f"member {member} of {archive} is corrupt ({e})") from e
    if h.hexdigest() != digest:
        raise PackError(
            f"member {member} of {archive} fails its sha256 check (meta.json {digest[:12]}..., "
            f"content {h.hexdigest()[:12]}...): the archive was modified or corrupted"
        )


def _complete(target: Path, meta: dict) -> bool:
    """Whether a cache dir holds a finished extraction of ``meta``'s members."""
    return (
        (target / _COMPLETE).is_file()
        and (target / RESOLVED_CONFIG).is_file()
        and all((target / m).is_file() for m in meta["sha256"])
    )


def unpack_model(archive: str | Path, cache_dir: Optional[str | Path] = None) -> Tuple[Path, Path]:
    """Extract a packed model (once) and return ``(config_path, model_path)`` for
    :class:`espnet_speechclip.inference.speech2image.Speech2Image`.

    The archive goes to ``<cache_dir>/<sha256 of the archive>/`` (default :func:`default_cache_dir`);
    every member is checked against meta.json while extracting, and the config is materialised with
    absolute paths to the extracted files. A second call with the same archive only hashes it.

    Raises:
        FileNotFoundError: no such archive.
        PackError: not a packed model, a member missing, or a member whose sha256 does not match.
    """
    archive = Path(archive)
    if not archive.is_file():
        raise FileNotFoundError(f"model archive {archive} does not exist")
    if not zipfile.is_zipfile(archive):
        raise PackError(f"{archive} is not a zip archive")
    key = sha256_file(archive)
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = root / key
    with zipfile.ZipFile(archive) as zf:
        meta = _read_meta(archive, zf)
        if _complete(target, meta):
            return target / RESOLVED_CONFIG, target / "model.pth"
        root.mkdir(parents=True, exist_ok=True)
        # Extract into a private temporary dir and rename it into place at the end, so a crash or a
        # tampered member never leaves a directory that looks like a finished extraction.
        tmp = Path(tempfile.mkdtemp(prefix=f".{key[:16]}.", dir=root))
        try:
            for member, digest in meta["sha256"].items():
                _extract_verified(archive, zf, member, digest, tmp / member)
            with open(tmp / "config.yaml", encoding="utf-8") as f:
                config = yaml.safe_load(f)
            for dotted, member in meta.get("paths", {}).items():
                if _get(config, dotted) != member:
                    raise PackError(
                        f"{archive}: config.yaml {dotted} is {_get(config, dotted)!r}, "
                        f"meta.json says {member!r}"
                    )
                _set(config, dotted, str((target / member).resolve()))
            (tmp / RESOLVED_CONFIG).write_text(
                yaml.safe_dump(config, sort_keys=False, allow_unicode=True), encoding="utf-8"
            )
            (tmp / _COMPLETE).write_text(json.dumps(dict(archive=str(archive.resolve()))), encoding="utf-8")
            if target.exists():  # an interrupted or hand-edited earlier extraction
                shutil.rmtree(target)
            try:
                os.replace(tmp, target)
            except OSError:
                if not _complete(target, meta):  # not a concurrent unpack that finished first
                    raise
        finally:
            if tmp.exists():
                shutil.rmtree(tmp)
    logger.info("unpacked %s to %s", archive, target)
    return target / RESOLVED_CONFIG, target / "model.pth"
