"""Import a released SpeechCLIP or SpeechCLIP+ checkpoint as one of our experiments.

:func:`import_checkpoint` reads the file (:mod:`.unpickling`), derives the architecture
(:mod:`.architecture`, :mod:`.plus`), maps the keys (:mod:`.keys`), recovers the keyword vocabulary
(:mod:`.vocabulary`), identifies the release from the content (:mod:`.releases`), gathers all of it in an
:class:`ImportPlan`, checks it against the frozen towers (:mod:`.checks`) and writes::

    out_dir/config.yaml              our training config
    out_dir/valid.mean_r10.best.pth  our trainable state dict (loads with ``strict=True``)
    out_dir/codebook.txt             the keyword vocabulary, in the authors' order (cascaded models)
    out_dir/import.json              source sha256, the release, key mapping, ignored keys, checks done
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

import torch
import yaml

from espnet_speechclip.authors.architecture import Architecture, clip_shape, derive_architecture
from espnet_speechclip.authors.checks import check_clip_file, check_frozen_towers
from espnet_speechclip.authors.keys import Mapped, classify_keys, map_state_dict
from espnet_speechclip.authors.plus import PLUS_FAMILY, extra_weights
from espnet_speechclip.authors.releases import identify_release
from espnet_speechclip.authors.spec import AUTHORS_VQ_MASKED_POSITIONS
from espnet_speechclip.authors.unpickling import (
    AuthorsCheckpointError,
    load_authors_checkpoint,
    one_line,
    to_plain,
)
from espnet_speechclip.authors.vocabulary import codebook_from_vocabulary, recover_vocabulary
from espnet_speechclip.errors import MissingFileError
from espnet_speechclip.files import sha256_file
from espnet_speechclip.models.builder import build_model
from espnet_speechclip.models.codebook import write_codebook

logger = logging.getLogger(__name__)

WEIGHTS_NAME = "valid.mean_r10.best.pth"
CODEBOOK_NAME = "codebook.txt"
IMPORT_FORMAT = "espnet_speechclip-authors-import"
IMPORT_FORMAT_VERSION = 2
REPOSITORIES = {
    "SpeechCLIP": "github.com/atosystem/SpeechCLIP",
    PLUS_FAMILY: "github.com/ShampooWang/SpeechCLIP_plus",
}

# Where an imported model can still differ from the authors' code (recorded in import.json).
KNOWN_MISMATCHES = [
    "batched frame lengths: our speech encoder attends each utterance's own HuBERT frames, "
    "(n - 400) // 320 + 1; the authors attend min(round(n / 320), frames of the padded batch), which for "
    "most utterances shorter than their batch's longest is one frame more, computed over the batch's "
    "padding. One utterance alone (and the longest of any batch) is framed identically; the authors "
    "evaluated in batches of 8 (data.dev_batch_size), so recall on an imported model can differ "
    "slightly from theirs",
    "HuBERT Base's GroupNorm feature extractor sees the zero padding of a batch, in their code and ours: "
    "features depend slightly on an utterance's batch-mates (inference batch_size 16 here, 8 there)",
    "vector quantiser: their cosine is F.cosine_similarity (eps 1e-8 on the product of norms), ours "
    "normalize(z) @ normalize(C).T (eps 1e-12 per norm), ~1e-7 apart: a near-tie could pick another row",
    "keyword hit rate: their top-5 neighbours are searched over the whole reduced table, pad/SOT/EOT rows "
    "included, ours over the codebook (those rows excluded), and special tokens never count as hits here",
]
# SpeechCLIP+ only, on top of the above.
PLUS_MISMATCHES = [
    "CIF weights: their convolutions see the frames of the padded batch beyond an utterance's end (the "
    "HuBERT/attention outputs there); ours zero them, so an utterance's keywords never depend on its "
    "batch-mates. One utterance alone is computed identically",
    "CIF at inference: their unit count is floor(sum of alphas) in fp32 cumulative sums; ours decides in "
    "fp64 and forgives 1e-5 of a unit: an utterance whose alphas sum within 1e-5 of an integer can get "
    "one unit more here",
    "SpeechCLIP+ Base layer-normalised each waveform in its data loader (data.dataset.normalize_waveform); "
    "our HuBERT Base gets the waveform as SpeechCLIP's did",
]


@dataclass
class ImportPlan:
    """Everything an import writes, derived from the checkpoint before anything is written."""

    ckpt_path: Path
    out_dir: Path
    ckpt: Mapping[str, Any]  # the loaded Lightning checkpoint
    config: Mapping[str, Any]  # its stored config as plain data
    state: Mapping[str, torch.Tensor]
    arch: Architecture
    weights: Dict[str, torch.Tensor]  # our trainable state dict
    mapping: List[Mapped]
    ignored: List[Dict[str, Any]]
    hubert_keys: List[str]
    clip_keys: List[str]
    vocabulary: List[int]
    vocab_source: str
    codebook: Optional[List[int]]
    clip_pretrained: str
    clip_config_file: Optional[str]
    upstream: Optional[Path]
    max_scale: float
    release: Dict[str, Any] = field(default_factory=dict)


def authors_config(ckpt: Mapping[str, Any]) -> Dict[str, Any]:
    """The stored avssl config as plain data ({} when the checkpoint has none)."""
    # Lightning >= 0.9 stores hyper_parameters; older versions hparams
    hp = to_plain(ckpt.get("hyper_parameters") or ckpt.get("hparams") or {})
    config = hp.get("config", hp) if isinstance(hp, dict) else {}
    if not isinstance(config, dict):
        raise AuthorsCheckpointError(
            f"hyper_parameters.config is a {type(config).__name__}, not the authors' config"
        )
    return config


def our_config(plan: ImportPlan, codebook_file: Optional[Path]) -> Dict[str, Any]:
    """The training config (our format) that rebuilds the imported model."""
    arch = plan.arch
    clip_conf: Dict[str, Any] = dict(model_name=arch.clip_model_name, pretrained=plan.clip_pretrained)
    if plan.clip_config_file:
        clip_conf["config_file"] = str(Path(plan.clip_config_file).resolve())
    if plan.upstream is not None:
        speech: Dict[str, Any] = dict(upstream="hubert_local", path_or_url=str(plan.upstream.resolve()))
    else:
        speech = dict(upstream=arch.upstream)
    speech.update(
        layer_norm=arch.layer_norm,
        max_train_samples=arch.max_train_samples,
        raw_last_layer=arch.raw_last_layer,
    )
    model_conf: Dict[str, Any] = {}
    if arch.parallel is not None:
        model_conf["parallel_conf"] = dict(arch.parallel)
    if arch.cascaded is not None:
        model_conf["cascaded_conf"] = dict(arch.cascaded, codebook=str(codebook_file))
    if arch.model in ("hybrid", "hybrid_plus", "hybrid_shared"):
        model_conf.update(parallel_weight=arch.parallel_weight, cascaded_weight=arch.cascaded_weight)
    if arch.model in ("cascaded_plus", "hybrid_plus"):
        model_conf["quantity_weight"] = arch.quantity_weight
    model_conf.update(
        temperature=arch.temperature,
        learnable_temperature=arch.learnable_temperature,
        max_scale=plan.max_scale,
    )
    return dict(
        clip_conf=clip_conf,
        speech_encoder="s3prl",
        speech_encoder_conf=speech,
        model=arch.model,
        model_conf=model_conf,
        image_input="embedding",
        # on GPU, inference in the precision the authors trained and evaluated in
        use_amp=arch.amp_dtype is not None,
        amp_dtype=arch.amp_dtype or "float16",
    )


def _check_inputs(
    clip_pretrained: str, clip_config_file: Optional[str | Path], upstream: Optional[Path]
) -> str:
    """Fail on a missing local file before reading the checkpoint; a local CLIP file becomes absolute."""
    if upstream is not None and not upstream.is_file():
        raise MissingFileError(f"upstream checkpoint {upstream} does not exist")
    if os.path.isfile(clip_pretrained):  # a local weights file: absolute, so the config works from anywhere
        clip_pretrained = str(Path(clip_pretrained).resolve())
    elif os.sep in clip_pretrained or Path(clip_pretrained).suffix in (".pt", ".pth", ".bin", ".safetensors"):
        raise MissingFileError(f"CLIP weights {clip_pretrained} do not exist")
    if clip_config_file is not None and not Path(clip_config_file).is_file():
        raise MissingFileError(f"open_clip config {clip_config_file} does not exist")
    return clip_pretrained


def plan_import(
    ckpt_path: Path,
    out_dir: Path,
    vocab_usage: Optional[str | Path],
    clip_pretrained: str,
    upstream: Optional[Path],
    clip_model_name: Optional[str],
    clip_config_file: Optional[str],
) -> ImportPlan:
    """Read and understand the checkpoint: everything :func:`write_import` needs, nothing written."""
    ckpt = load_authors_checkpoint(ckpt_path)
    state: Dict[str, torch.Tensor] = dict(ckpt["state_dict"])
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise AuthorsCheckpointError(
            f"state_dict entry {bad[0]} is a {type(state[bad[0]]).__name__}, not a tensor"
        )
    config = authors_config(ckpt)
    arch = derive_architecture(state, config, clip_model_name, clip_config_file, upstream)
    if os.path.isfile(clip_pretrained):
        check_clip_file(
            Path(clip_pretrained), arch.clip_model_name, clip_shape(arch.clip_model_name, clip_config_file)
        )
    expected, hubert_keys, clip_keys, ignored = classify_keys(state, arch)
    vocabulary, vocab_source = recover_vocabulary(state, vocab_usage)
    codebook = codebook_from_vocabulary(vocabulary) if arch.cascaded is not None else None
    weights, mapping = map_state_dict(state, arch, expected, codebook)
    global_step = to_plain(ckpt.get("global_step"))
    for key, value in extra_weights(arch, global_step if isinstance(global_step, int) else None).items():
        weights[key] = value
        mapping.append(
            Mapped(key, None, list(value.shape), "set past the CIF's alpha-scaling period (training only)")
        )
    max_scale = 100.0
    if arch.learnable_temperature:
        scale = math.exp(float(weights["loss.log_scale"]))
        if scale > max_scale:  # the authors do not clamp: keep their scale exact
            max_scale = float(math.ceil(scale) + 1)
            arch.notes.append(
                f"the imported logit scale {scale:.4g} exceeds our default clamp 100; max_scale set to "
                f"{max_scale} so that it is used as is"
            )
    plan = ImportPlan(
        ckpt_path=ckpt_path,
        out_dir=out_dir,
        ckpt=ckpt,
        config=config,
        state=state,
        arch=arch,
        weights=weights,
        mapping=mapping,
        ignored=ignored,
        hubert_keys=hubert_keys,
        clip_keys=clip_keys,
        vocabulary=vocabulary,
        vocab_source=vocab_source,
        codebook=codebook,
        clip_pretrained=clip_pretrained,
        clip_config_file=clip_config_file,
        upstream=upstream,
        max_scale=max_scale,
    )
    plan.release = identify_release(plan.arch, ckpt, len(vocabulary))
    return plan


def import_checkpoint(
    ckpt_path: str | Path,
    out_dir: str | Path,
    vocab_usage: Optional[str | Path] = None,
    clip_pretrained: str = "openai",
    upstream_path: Optional[str | Path] = None,
    clip_model_name: Optional[str] = None,
    clip_config_file: Optional[str | Path] = None,
    verify: bool = True,
) -> Path:
    """Import one of the authors' checkpoints into ``out_dir`` (see the module doc); returns ``out_dir``.

    Args:
        ckpt_path: the authors' Lightning ``.ckpt`` (SpeechCLIP or SpeechCLIP+, any file name).
        out_dir: experiment folder to write (created; our four files in it are replaced).
        vocab_usage: the authors' ``text_clip_vocab_usage_byfreq.npy``; by default the vocabulary is recovered
            from the checkpoint itself.
        clip_pretrained: open_clip pretrained tag (``openai``, the weights the authors froze) or a local file.
        upstream_path: a local s3prl converted HuBERT checkpoint (``hubert_local``) instead of the
            public name.
        clip_model_name, clip_config_file: build another open_clip architecture than the one the checkpoint
            names (a local test CLIP; the checkpoint's CLIP shapes must match it).
        verify: rebuild our model from the written config, compare the checkpoint's frozen HuBERT and
            CLIP with the towers it builds, and load the weights with ``strict=True`` before writing
            anything (needs the CLIP / HuBERT weights; without it only shapes are checked).
    Raises:
        FileNotFoundError, AuthorsCheckpointError (UnsafeCheckpointError for a refused pickle global).
    """
    ckpt_path, out_dir = Path(ckpt_path), Path(out_dir)
    upstream = Path(upstream_path) if upstream_path is not None else None
    clip_pretrained = _check_inputs(clip_pretrained, clip_config_file, upstream)
    plan = plan_import(
        ckpt_path,
        out_dir,
        vocab_usage,
        clip_pretrained,
        upstream,
        clip_model_name,
        str(clip_config_file) if clip_config_file else None,
    )
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        write_import(plan, verify)
    except BaseException:
        if created and not any(out_dir.iterdir()):
            out_dir.rmdir()  # leave nothing behind for a failed import into a new folder
        raise
    arch = plan.arch
    logger.info(
        "imported %s (%s, %s + %s) into %s",
        ckpt_path,
        arch.model,
        arch.upstream,
        arch.clip_model_name,
        out_dir,
    )
    if not plan.release.get("identified"):
        logger.warning("%s: %s", ckpt_path, plan.release.get("summary"))
    return out_dir


def _verify(plan: ImportPlan, config_out: Dict[str, Any], work_dir: Path) -> Dict[str, Any]:
    """Build our model from the config, compare the frozen towers, load the weights strictly."""
    check = json.loads(json.dumps(config_out))
    if plan.codebook is not None:
        check["model_conf"]["cascaded_conf"]["codebook"] = str(work_dir / CODEBOOK_NAME)
    try:
        model = build_model(check, clip_weights=True, image_tower=True)
    except (RuntimeError, ValueError, OSError) as e:  # e.g. no network for the public weights
        raise AuthorsCheckpointError(
            f"could not build the frozen towers the config names, to check the checkpoint against "
            f"them ({type(e).__name__}: {one_line(str(e))}); give local files (clip_pretrained, "
            f"upstream_path) or skip the check (verify=False / --no_verify)"
        ) from None
    frozen = check_frozen_towers(model, plan.state, plan.hubert_keys, plan.clip_keys, plan.vocabulary)
    try:
        model.load_state_dict(plan.weights, strict=True)
    except RuntimeError as e:
        raise AuthorsCheckpointError(
            f"the mapped weights do not load into our model: {one_line(str(e))}"
        ) from None
    frozen["verified"] = "frozen tensors equal the towers built from config.yaml; weights load strict=True"
    return frozen


def import_record(plan: ImportPlan, frozen: Dict[str, Any]) -> Dict[str, Any]:
    """The ``import.json`` record of an import."""
    ckpt, path, arch, vocabulary = plan.ckpt, plan.ckpt_path, plan.arch, plan.vocabulary
    return dict(
        format=IMPORT_FORMAT,
        format_version=IMPORT_FORMAT_VERSION,
        source=dict(
            path=str(path.resolve()),
            name=path.name,
            sha256=sha256_file(path),
            bytes=path.stat().st_size,
            epoch=to_plain(ckpt.get("epoch")),
            global_step=to_plain(ckpt.get("global_step")),
            lightning_version=to_plain(ckpt.get("pytorch-lightning_version")),
            family=arch.family,
            repository=REPOSITORIES[arch.family],
            release=plan.release,
        ),
        architecture=asdict(arch),
        vocabulary=dict(
            size=len(vocabulary),
            source=plan.vocab_source,
            vq_masked_positions=list(AUTHORS_VQ_MASKED_POSITIONS),
            vq_masked_ids=[vocabulary[i] for i in AUTHORS_VQ_MASKED_POSITIONS if i < len(vocabulary)],
            codebook_size=len(plan.codebook) if plan.codebook is not None else None,
        ),
        mapping=[asdict(m) for m in plan.mapping],
        ignored=plan.ignored,
        frozen=frozen,
        known_mismatches=KNOWN_MISMATCHES + (PLUS_MISMATCHES if arch.family == PLUS_FAMILY else []),
        authors_config={
            k: plan.config.get(k)
            for k in ("model_settings", "cl_loss", "clip", "audio_encoder", "data", "trainer")
            if k in plan.config
        },
    )


def write_import(plan: ImportPlan, verify: bool) -> None:
    """Verify (optionally) in a scratch folder inside ``out_dir``, then move the four files in place."""
    out_dir = plan.out_dir
    final_codebook = (out_dir / CODEBOOK_NAME).resolve()
    frozen: Dict[str, Any] = dict(hubert_keys=len(plan.hubert_keys), clip_keys=len(plan.clip_keys))
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".importing-") as work:
        work_dir = Path(work)
        if plan.codebook is not None:
            write_codebook(work_dir / CODEBOOK_NAME, plan.codebook)
        config_out = our_config(plan, final_codebook if plan.codebook is not None else None)
        if verify:
            frozen.update(_verify(plan, config_out, work_dir))
        else:
            frozen["verified"] = "no (shapes only): the towers were not built"
        torch.save(plan.weights, work_dir / WEIGHTS_NAME)
        header = (
            f"# {plan.arch.family} imported from the authors' checkpoint {plan.ckpt_path.name}\n"
            f"# by espnet_speechclip.bin.import_authors_ckpt (see import.json)\n"
        )
        (work_dir / "config.yaml").write_text(
            header + yaml.safe_dump(config_out, sort_keys=False), encoding="utf-8"
        )
        record = import_record(plan, frozen)
        (work_dir / "import.json").write_text(json.dumps(record, indent=2, default=str), encoding="utf-8")
        names = ("config.yaml", WEIGHTS_NAME, "import.json") + (
            (CODEBOOK_NAME,) if plan.codebook is not None else ()
        )
        for name in names:
            os.replace(work_dir / name, out_dir / name)
    if plan.codebook is None and (out_dir / CODEBOOK_NAME).exists():
        (out_dir / CODEBOOK_NAME).unlink()  # a stale codebook of an earlier cascaded import


def import_card_text(out_dir: str | Path) -> str:
    """The model-card paragraph of an imported experiment folder (from its ``import.json``)."""
    record = json.loads((Path(out_dir) / "import.json").read_text(encoding="utf-8"))
    src = record["source"]
    repository = src.get("repository", REPOSITORIES["SpeechCLIP"])
    release = src.get("release") or {}
    which = f" ({release['summary']})" if release.get("summary") else ""
    return (
        f"Weights imported from the authors' released checkpoint `{src['name']}` (sha256 {src['sha256']}) "
        f"of {repository}{which}; see import.json for the key mapping and known differences."
    )
