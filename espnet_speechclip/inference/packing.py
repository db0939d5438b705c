"""One self-contained archive per trained model (recipe stage 8), its model card, and its loading.

Archive layout (a zip)::

    config.yaml      training config, local paths rewritten to archive members (files/...)
    model.pth        the trained weights (as saved by training)
    README.md        model card (:func:`model_card`: the Hub's YAML header, results, usage, config)
    files/...        every local file the model is rebuilt from: CLIP weights / open_clip JSON,
                     a local s3prl upstream checkpoint, the cascaded codebook
    meta.json        format version, package version, creation time, sha256 of every other member,
                     which config keys point at which member, and the model card's inputs

Pretrained tags (CLIP ``openai``, s3prl ``hubert``) and URLs stay as they are: open_clip / s3prl fetch
them on first use, as they did for training.

:func:`unpack_model` extracts into a cache dir keyed by the archive's sha256, checks every member
against meta.json, and writes a config with absolute paths that
:class:`espnet_speechclip.inference.speech2image.Speech2Image` takes as is. The same members unpacked
into a folder (:func:`extract_archive`; a Hub repo holds exactly that, see
:mod:`espnet_speechclip.inference.hub`) load in place through :func:`resolve_packed_folder`.
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
import textwrap
import zipfile
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Tuple

import yaml

from espnet_speechclip.config import config_value, dotted_get
from espnet_speechclip.errors import InputError, MissingFileError
from espnet_speechclip.files import atomic_path, sha256_file

if TYPE_CHECKING:
    from huggingface_hub import ModelCardData

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


class PackError(InputError):
    """A model archive that cannot be written or used (missing file, tampered member, bad format)."""


def _set(config: dict, dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    node = config
    for part in parents:
        node = node[part]
    node[last] = value


CACHE_ENV = "ESPNET_SPEECHCLIP_CACHE"
# Where packed archives are unpacked, for the help of the entry points that take one.
UNPACK_CACHE_NOTE = textwrap.fill(
    f"A packed model (.zip) is unpacked once, into <cache>/<sha256 of the archive>/, where <cache> is "
    f"${CACHE_ENV} if set, else $XDG_CACHE_HOME/espnet_speechclip, else ~/.cache/espnet_speechclip. "
    f"Set {CACHE_ENV} to keep it elsewhere; a folder there can be deleted at any time (the next use "
    f"unpacks the archive again).",
    width=100,
)


def default_cache_dir() -> Path:
    """``$ESPNET_SPEECHCLIP_CACHE``, else ``$XDG_CACHE_HOME/espnet_speechclip``, else
    ``~/.cache/espnet_speechclip`` (see :data:`UNPACK_CACHE_NOTE`)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
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

    pretrained = dotted_get(config, "clip_conf.pretrained")
    if pretrained:
        src = resolve(str(pretrained))
        if src.is_file():
            add("clip_conf.pretrained", src, "clip")
        elif "/" in str(pretrained) or os.sep in str(pretrained) or src.suffix in _STORED_SUFFIXES:
            # Looks like a path, not an open_clip tag: packing it as a tag would fail only at load time.
            raise PackError(f"clip_conf.pretrained {pretrained} is not an existing file (looked at {src})")
    config_file = dotted_get(config, "clip_conf.config_file")
    if config_file:
        src = resolve(str(config_file))
        if not src.is_file():
            raise PackError(f"clip_conf.config_file {config_file} does not exist (looked at {src})")
        add("clip_conf.config_file", src, "clip_config")
    ckpt = dotted_get(config, "speech_encoder_conf.path_or_url")
    if ckpt and "://" not in str(ckpt):
        src = resolve(str(ckpt))
        if not src.is_file():
            raise PackError(f"speech_encoder_conf.path_or_url {ckpt} does not exist (looked at {src})")
        add("speech_encoder_conf.path_or_url", src, "upstream")
    codebook = dotted_get(config, "model_conf.cascaded_conf.codebook")
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


# The model card's defaults: CLIP's text side (its BPE vocabulary and text tower) is English, and
# ESPnet's model cards on the Hub default to CC-BY-4.0.
CARD_DEFAULTS: Dict[str, Any] = {"license": "cc-by-4.0", "language": "en"}
# The Hub's metadata: the tags ESPnet users and SpeechCLIP users filter by.
CARD_TAGS = ("espnet", "speechclip", "audio", "image-retrieval", "visually-grounded-speech")
LIBRARY_NAME = "espnet-speechclip"

_CITATION = """@inproceedings{shih2022speechclip,
  title     = {{SpeechCLIP}: Integrating Speech with Pre-Trained Vision and Language Model},
  author    = {Shih, Yi-Jen and Wang, Hsuan-Fu and Chang, Heng-Jui and Berry, Layne and Lee, Hung-yi
               and Harwath, David},
  booktitle = {IEEE Spoken Language Technology Workshop (SLT)},
  year      = {2022},
}"""


def card_metadata(config: dict, card: Mapping[str, Any]) -> ModelCardData:
    """The YAML header the Hub reads (library, tags, datasets, license, language), as
    ``huggingface_hub``'s own :class:`ModelCardData`."""
    from huggingface_hub import ModelCardData

    model = config_value(config, "model")
    dataset = card.get("dataset")
    return ModelCardData(
        library_name=LIBRARY_NAME,
        license=card.get("license") or CARD_DEFAULTS["license"],
        language=card.get("language") or CARD_DEFAULTS["language"],
        datasets=[dataset] if dataset else None,
        tags=[*CARD_TAGS, f"speechclip-{model}"],
    )


def _results_section(results: Any) -> List[str]:
    """results.json -> the tables of RESULTS.md (one per test set); any other JSON -> a metric table."""
    from espnet_speechclip.evaluation.results import (
        hit_rate_table,
        is_results,
        keyword_timing_table,
        retrieval_table,
    )

    lines = ["## Results", ""]
    if not is_results(results):
        lines += ["| metric | value |", "|---|---:|"]
        return lines + [f"| {k} | {_fmt(v)} |" for k, v in _flatten(results)] + [""]
    lines += [
        "Recall in percent over the test set's unique images (an image query hits if any of its captions "
        "is in the top K; zero-shot speech↔text uses CLIP text embeddings of the transcripts).",
        "",
    ]
    for test_set, scores in results.items():
        lines += [f"### {test_set}", "", *retrieval_table(scores), ""]
        if "keyword_hit_rate" in scores.get("cascaded", {}):
            lines += ["Keyword hit rate (cascaded):", "", *hit_rate_table(scores["cascaded"]), ""]
        if "keyword_timing" in scores.get("cascaded", {}):
            lines += [
                "Keyword timing (cascaded):",
                "",
                *keyword_timing_table(scores["cascaded"]["keyword_timing"]),
                "",
            ]
    return lines


def model_card(
    config: dict,
    meta: Mapping[str, Any],
    repo_id: Optional[str] = None,
    archive_name: str = "model.zip",
) -> str:
    """The model card of a packed model: the Hub's YAML header, what the model is, its results, usage
    lines, the config and a citation. The archive's ``README.md`` and the Hub repo's are this card:
    with ``repo_id`` the usage lines load the Hub repo, else the archive ``archive_name``.

    Args:
        config: the packed ``config.yaml`` (paths are archive members).
        meta: the archive's ``meta.json`` (``paths``: config keys packed as files; ``card``: the
            parameter counts, results, free text, dataset, license and language given at packing).
    """
    card = meta.get("card", {})
    model = config_value(config, "model")
    branches = {
        "hybrid": ["parallel", "cascaded"],
        "hybrid_plus": ["parallel", "cascaded (CIF keywords)"],
        "cascaded_plus": ["cascaded (CIF keywords)"],
    }.get(model, [model])
    packed_keys = set(meta.get("paths", {}))
    upstream = config_value(config, "speech_encoder_conf.upstream")
    upstream_path = config_value(config, "speech_encoder_conf.path_or_url")
    clip = config_value(config, "clip_conf")
    source = repo_id or archive_name

    def origin(key: str, value: Any, what: str) -> str:
        return "packed with the model" if key in packed_keys else f"{what} `{value}`, fetched on first use"

    header = card_metadata(config, card).to_yaml()
    title = f"# SpeechCLIP ({model})" + (f": `{repo_id}`" if repo_id else "")
    lines = ["---", header, "---", "", title, ""]
    if card.get("card_text"):
        lines += [card["card_text"].strip(), ""]
    lines += [
        "A SpeechCLIP model (Shih et al., IEEE SLT 2022) trained with "
        "[espnet_speechclip](https://pypi.org/project/espnet-speechclip/), the ESPnet plugin for "
        "SpeechCLIP: a frozen s3prl speech upstream aligned with a frozen CLIP through images.",
        "",
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
    if card.get("dataset"):
        lines.append(f"- Trained on: `{card['dataset']}`")
    codebook = dotted_get(config, "model_conf.cascaded_conf.codebook")
    if model != "parallel":
        lines.append(
            "- Keyword codebook: "
            + ("full CLIP vocabulary" if codebook in (None, "full") else "packed with the model")
        )
    params = card.get("params")
    if params:
        lines.append(
            f"- Trainable parameters: {params['trainable']:,} ({params['trainable'] / 1e6:.2f} M); "
            f"total (frozen towers included): {params['total']:,}"
        )
    lines += [f"- Packed with espnet_speechclip {meta.get('package_version', '?')}", ""]
    if card.get("results") is not None:
        lines += _results_section(card["results"])
    lines += [
        "## Usage",
        "",
        "`pip install espnet-speechclip`, then in Python:",
        "",
        "```python",
        "from espnet_speechclip.inference import Speech2Image",
        "",
        f's2i = Speech2Image.from_pretrained("{source}")',
        'embeddings = s2i("utterance.wav")  # {branch: (1, D_c)}; keyword_ids / keyword_scores (cascaded)',
        's2i.retrieve_images("utterance.wav", ["a.jpg", "b.jpg"], topk=1)',
        's2i.keywords("utterance.wav", timing=True)  # cascaded: keywords, scores, where heard (seconds)',
        "```",
        "",
        "or in a web page (speech -> images with the keywords, text -> images or utterances, "
        "image -> utterances; `pip install 'espnet-speechclip[web]'`):",
        "",
        "```sh",
        f"python -m espnet_speechclip.bin.demo --model {source} --images <image folder or data/<set>>",
        "```",
        "",
        "A data dir (Kaldi-style `wav.scp`, `utt2img`, `img.scp`, `text`), embedded and scored:",
        "",
        "```sh",
        f"python -m espnet_speechclip.bin.speechclip_inference --model {source} \\",
        "    --data_dir data/<set> --output_dir decode_<set>",
        "```",
        "",
    ]
    if repo_id:
        lines += [
            "Evaluated in the recipe without training (downloads the data of `--corpus`, see its `db.sh`):",
            "",
            "```sh",
            "cd egs2/speechclip/sc1",
            f"./run.sh --download_model {repo_id} --skip_train true"
            + (f" --corpus {card['dataset']}" if card.get("dataset") else ""),
            "```",
            "",
        ]
    lines += [
        "Its speech encoder as an s3prl upstream (the upstream's hidden states, then the branch layers'), "
        "for s3prl's Featurizer and SUPERB downstreams:",
        "",
        "```python",
        "import espnet_speechclip  # registers the speechclip upstreams with s3prl",
        "from s3prl.nn import Featurizer, S3PRLUpstream",
        "",
        f'upstream = S3PRLUpstream("speechclip", path_or_url="{source}")',
        "featurizer = Featurizer(upstream)",
        "```",
        "",
    ]
    if repo_id:
        lines += [
            "The repo holds the packed model unpacked: `config.yaml`, `model.pth`, `meta.json` (format, "
            "sha256 of every file, which config keys point at which file) and `files/` (local files the "
            "model is rebuilt from). Loading checks every file but this card against `meta.json`; "
            "`HF_HUB_OFFLINE=1` loads the cached snapshot (`HF_HUB_CACHE` / `HF_HOME`) without network.",
            "",
        ]
    else:
        lines += [
            f"`{archive_name}` is extracted once into `$ESPNET_SPEECHCLIP_CACHE/<sha256>/`, else "
            "`$XDG_CACHE_HOME/espnet_speechclip/<sha256>/`, else `~/.cache/espnet_speechclip/<sha256>/`, "
            "checking every member's sha256 against `meta.json`; set `ESPNET_SPEECHCLIP_CACHE` to keep "
            "it elsewhere.",
            "",
        ]
    lines += [
        "## Config",
        "",
        "<details><summary>config.yaml</summary>",
        "",
        "```yaml",
        yaml.safe_dump(config, sort_keys=False, allow_unicode=True).rstrip(),
        "```",
        "",
        "</details>",
        "",
        "## Citation",
        "",
        "```bibtex",
        _CITATION,
        "```",
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
    dataset: Optional[str] = None,
    license: Optional[str] = None,
    language: Optional[str] = None,
) -> Path:
    """Pack a trained model into one archive usable without the recipe.

    Args:
        config_file: ``config.yaml`` written by training.
        model_file: trained weights (``*.pth``) for that config.
        out_zip: archive to write (replaced atomically if it exists).
        card_text: free text (markdown) put at the top of the model card.
        results_json: test results (``results.json`` of the recipe, or any JSON), tabulated in the card.
        base_dir: directory the config's relative paths are relative to (default: the current
            directory, where the recipe ran training).
        dataset: the corpus the model was trained on (the card's ``datasets``, e.g. ``flickr8k``).
        license, language: the card's (default :data:`CARD_DEFAULTS`).

    The model is rebuilt from the config and weights first (strict loading), so a config/weights
    mismatch fails here rather than for whoever downloads the archive. The card's inputs are kept in
    ``meta.json`` (``card``), so the Hub upload writes the same card from the archive alone.
    Returns ``out_zip``.
    """
    from espnet_speechclip import __version__
    from espnet_speechclip.config import read_config
    from espnet_speechclip.inference.speech2image import Speech2Image
    from espnet_speechclip.models.random_weights import count_parameters

    config_file, model_file, out_zip = Path(config_file), Path(model_file), Path(out_zip)
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    if not model_file.is_file():
        raise MissingFileError(f"model file {model_file} does not exist")
    config = read_config(config_file)
    results = None
    if results_json is not None:
        from espnet_speechclip.inference.loader import model_identity
        from espnet_speechclip.provenance import explain, read_record, record_path

        # results written by the recipe record the model they were computed for (a hand-written file
        # has no record and is taken as given)
        recorded = ((read_record(record_path(results_json)) or {}).get("made_from") or {}).get("model")
        model = model_identity(config_file, model_file)
        if recorded is not None and recorded != model:
            raise PackError(
                f"{results_json} was computed for another model ({'; '.join(explain(recorded, model))}): "
                f"rerun the scoring stage (stage 7) for {model_file} before packing"
            )
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

    card = dict(
        params=params,
        results=results,
        card_text=card_text,
        dataset=dataset,
        license=license or CARD_DEFAULTS["license"],
        language=language or CARD_DEFAULTS["language"],
    )
    meta: Dict[str, Any] = dict(
        format=FORMAT,
        format_version=FORMAT_VERSION,
        package_version=__version__,
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        model=config_value(config, "model"),
        paths={key: member for key, _, member in packed},
        card=card,
    )
    texts = {
        "config.yaml": yaml.safe_dump(config, sort_keys=False, allow_unicode=True),
        "README.md": model_card(config, meta, archive_name=out_zip.name),
    }
    sha = {name: hashlib.sha256(text.encode("utf-8")).hexdigest() for name, text in texts.items()}
    sha["model.pth"] = sha256_file(model_file)
    for _, src, member in packed:
        sha[member] = sha256_file(src)
    meta.update(sha256=sha, source=dict(config=str(config_file), model_file=str(model_file)))

    out_zip.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_zip) as tmp, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, text in texts.items():
            zf.writestr(name, text)
        for src, member in [(model_file, "model.pth")] + [(s, m) for _, s, m in packed]:
            stored = src.suffix in _STORED_SUFFIXES
            zf.write(src, member, compress_type=zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED)
        zf.writestr("meta.json", json.dumps(meta, indent=2))
    logger.info("packed %s (+ %d local files) into %s", model_file, len(packed), out_zip)
    return out_zip


# --------------------------------------------------------------------------------------------- unpack

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
    return meta


def _read_meta(archive: Path, zf: zipfile.ZipFile) -> dict:
    try:
        raw = zf.read("meta.json")
    except KeyError:
        raise PackError(f"{archive} has no meta.json: not a packed SpeechCLIP model") from None
    return _parse_meta(archive, raw)


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


def _resolved_config(where: Path, meta: dict, config_text: str, root: Path) -> str:
    """The packed config.yaml with every packed file's key pointing at ``root/<member>`` (absolute)."""
    config = yaml.safe_load(config_text)
    for dotted, member in meta.get("paths", {}).items():
        if dotted_get(config, dotted) != member:
            raise PackError(
                f"{where}: config.yaml {dotted} is {dotted_get(config, dotted)!r}, meta.json says {member!r}"
            )
        _set(config, dotted, str(root / member))
    return yaml.safe_dump(config, sort_keys=False, allow_unicode=True)


def _complete(target: Path, meta: dict) -> bool:
    """Whether a cache dir holds a finished extraction of ``meta``'s members."""
    return (
        (target / _COMPLETE).is_file()
        and (target / RESOLVED_CONFIG).is_file()
        and all((target / m).is_file() for m in meta["sha256"])
    )


def extract_archive(archive: str | Path, dest: str | Path) -> dict:
    """Extract every member of a packed archive into the new folder ``dest``, checking each against
    meta.json (the Hub repo layout: the packed model unpacked). Returns the archive's meta.json.

    Raises:
        FileNotFoundError: no such archive.
        FileExistsError: ``dest`` exists and is not empty.
        PackError: not a packed model, a member missing, or a member whose sha256 does not match.
    """
    archive, dest = Path(archive), Path(dest)
    if not archive.is_file():
        raise MissingFileError(f"model archive {archive} does not exist")
    if not zipfile.is_zipfile(archive):
        raise PackError(f"{archive} is not a zip archive")
    if dest.exists() and any(dest.iterdir()):
        raise FileExistsError(f"{dest} is not empty: extract a packed model into a new folder")
    with zipfile.ZipFile(archive) as zf:
        meta = _read_meta(archive, zf)
        for member, digest in meta["sha256"].items():
            _extract_verified(archive, zf, member, digest, dest / member)
        (dest / "meta.json").write_bytes(zf.read("meta.json"))
    return meta


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
        raise MissingFileError(f"model archive {archive} does not exist")
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
            config_text = (tmp / "config.yaml").read_text(encoding="utf-8")
            resolved = _resolved_config(archive, meta, config_text, target.resolve())
            (tmp / RESOLVED_CONFIG).write_text(resolved, encoding="utf-8")
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
    logger.info(
        "unpacked %s into %s (the unpack cache; set %s to use another folder)", archive, target, CACHE_ENV
    )
    return target / RESOLVED_CONFIG, target / "model.pth"


def is_packed_folder(path: str | Path) -> bool:
    """Whether ``path`` is a packed model unpacked (a downloaded Hub repo, an extracted archive)."""
    return (Path(path) / "meta.json").is_file()


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
