"""The MTEB ``ModelMeta`` of a SpeechCLIP model: what MTEB's results and leaderboard say about it.

:func:`speechclip_model_meta` describes a loaded :class:`SpeechCLIPEncoder` (name, revision,
modalities, embedding size, parameters, licence, training data) and names the encoder as its loader,
so ``mteb.evaluate(meta, tasks)`` loads the same model again, and the ModelMeta is what a submission to
MTEB's model registry adds.

* ``revision``: a Hub model's revision when given; otherwise a content digest of the weights and the
  model-defining options (:func:`espnet_speechclip.inference.loader.model_identity`): the same trained
  model has the same revision whether loaded from its experiment folder, its archive or the Hub.
* ``n_parameters``: every parameter the embeddings go through, the frozen speech upstream and the CLIP
  towers included (a model trained on cached image embeddings gets its image tower's count added).
* ``training_datasets``: the MTEB tasks whose data the model was trained on (its corpus, read from the
  training config; ``None`` = unknown, e.g. a packed model, whose config no longer names its data).
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Set

from mteb.models.model_meta import ModelMeta

from espnet_speechclip.benchmark.mteb_encoder import SpeechCLIPEncoder
from espnet_speechclip.benchmark.mteb_scores import revision_of
from espnet_speechclip.inference.model_card import CITATION

# The recipe's corpora -> the MTEB tasks built from the same recordings and images (a model trained on
# a corpus' train split is not zero-shot on them). The built-in synthetic corpus is not in MTEB.
CORPUS_TASKS: Dict[str, Set[str]] = {
    "spokencoco": {"SpokenCOCOA2IRetrieval", "SpokenCOCOI2ARetrieval"},
    "flickr8k": {"FlickrAudioToImageRetrieval", "FlickrImageToAudioRetrieval"},
    "synth": set(),
}
DEFAULT_ORG = "espnet-speechclip"
REFERENCE = "https://arxiv.org/abs/2210.00705"  # SpeechCLIP (Shih et al., SLT 2022)


def training_corpus(config: dict) -> Optional[str]:
    """The recipe corpus a training config was trained on (``dump/raw/<corpus>_train``), else None."""
    from espnet_speechclip.config import ConfigError
    from espnet_speechclip.naming import experiment_data_dir

    try:
        train_dir = experiment_data_dir(config, "train")
    except ConfigError:
        return None
    return train_dir.name[: -len("_train")]


def training_datasets(corpus: Optional[str]) -> Optional[Set[str]]:
    """MTEB task names of ``corpus`` (empty for a corpus MTEB lacks; None when ``corpus`` is unknown)."""
    if corpus is None:
        return None
    return set(CORPUS_TASKS.get(corpus.lower(), set()))


def default_name(source: str) -> str:
    """MTEB's ``organization/model_name`` for a model source: a Hub id as it is, else
    ``espnet-speechclip/<folder or archive name>`` (an archive ``exp/x/packed/model.zip`` -> ``x``)."""
    from pathlib import Path

    path = Path(source)
    if not path.exists() and source.count("/") == 1:
        return source
    parts = [p for p in path.resolve().parts if p not in ("packed", "model.zip")]
    stem = Path(parts[-1]).stem if parts else "model"
    return f"{DEFAULT_ORG}/{stem}"


def _n_parameters(encoder: SpeechCLIPEncoder) -> int:
    """Parameters of the model plus, when it was trained on cached image embeddings (no image tower
    inside), those of the CLIP image tower its config names."""
    s2i = encoder.speech2image
    total = sum(p.numel() for p in s2i.model.parameters())
    if getattr(s2i.model, "image_encoder", None) is None:
        from espnet_speechclip.models.clip import CLIPImageEncoder

        tower = CLIPImageEncoder.from_config(s2i.clip_conf)
        total += sum(p.numel() for p in tower.parameters())
    return int(total)


def speechclip_model_meta(
    encoder: SpeechCLIPEncoder,
    *,
    name: Optional[str] = None,
    license: Optional[str] = None,
    corpus: Optional[str] = None,
    release_date: Optional[str] = None,
    **meta: Any,
) -> ModelMeta:
    """The ModelMeta of ``encoder`` (and of the model it loaded: its ``source``, ``model_file``,
    ``hub_revision``).

    Args:
        name: ``organization/model_name`` (default :func:`default_name` of the source).
        license: the weights' licence, a Hub licence id (default: a packed model's card's, else the
            package's model-card default).
        corpus: the training corpus (default: read from the training config).
        meta: other ModelMeta fields (``public_training_code``, ``contacts``, ...).
    """
    from espnet_speechclip.identity import model_identity
    from espnet_speechclip.inference.loader import resolve_model
    from espnet_speechclip.inference.model_card import CARD_DEFAULTS

    source, hub_revision = encoder.source, encoder.hub_revision
    config, weights = resolve_model(source, encoder.model_file, revision=hub_revision)
    revision = hub_revision or revision_of(model_identity(config, weights))
    card = _packed_card(source, hub_revision)
    n_parameters = _n_parameters(encoder)
    dim = int(encoder.embed_texts(["a"]).shape[1])
    corpus = corpus or training_corpus(encoder.speech2image.config) or card.get("dataset")
    fields: Dict[str, Any] = dict(
        loader=SpeechCLIPEncoder,
        loader_kwargs={
            "source": source,
            "hub_revision": hub_revision,
            "model_file": encoder.model_file,
            "branch": encoder.branch,
        },
        name=name or default_name(source),
        revision=revision,
        release_date=release_date,
        languages=["eng-Latn"],
        n_parameters=n_parameters,
        memory_usage_mb=round(n_parameters * 4 / 2**20, 1),  # float32 weights
        max_tokens=77,  # CLIP's text context (speech has no token limit)
        embed_dim=dim,
        license=license or card.get("license") or CARD_DEFAULTS["license"],
        open_weights=True,
        public_training_code=None,  # give its URL (meta) when the training code is published
        public_training_data=None,
        framework=["PyTorch"],
        reference=REFERENCE,
        similarity_fn_name="cosine",
        use_instructions=False,
        training_datasets=training_datasets(corpus),
        modalities=["audio", "image", "text"],
        citation=CITATION,
        # a non-default branch is another embedder of the same weights: MTEB files its results apart
        experiment_kwargs=(
            None if encoder.branch == encoder.speech2image.branches[0] else {"branch": encoder.branch}
        ),
    )
    fields.update(meta)
    return ModelMeta(**fields)


def _packed_card(source: str, revision: Optional[str] = None) -> dict:
    """The card options a packed model was packed with (its meta.json's ``card``), else {}. The meta.json
    is the packed folder's or archive's own: the config a packed model is loaded from is a resolved copy
    in the unpack cache, without it."""
    from pathlib import Path

    from espnet_speechclip.inference import hub
    from espnet_speechclip.inference.archive import packed_meta

    path = Path(source)
    if not path.exists():  # a Hub repo id: its snapshot, downloaded when the encoder loaded it
        parsed = hub.parse_repo_id(source)
        if parsed is None:
            return {}
        path = hub.download(parsed[0], parsed[1] or revision)
    return dict((packed_meta(path) or {}).get("card") or {})
