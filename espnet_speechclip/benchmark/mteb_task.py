"""MTEB retrieval tasks built from a data dir of this recipe, of the kind of MTEB's SpokenCOCO tasks.

    tasks = datadir_tasks("dump/raw/synth_test")     # [SynthTestA2IRetrieval, SynthTestI2ARetrieval]
    mteb.evaluate(encoder, tasks, cache=mteb.ResultCache("results"))

MTEB's public audio-image tasks download their data from the Hugging Face Hub; these run the same
evaluator (``Any2AnyRetrieval``, categories ``a2i`` / ``i2a``, main score nDCG@10) on local data:

* ``<Name>A2IRetrieval``: every utterance of ``wav.scp`` is a query, the unique images of ``img.scp``
  named by ``utt2img`` are the corpus, the utterance's image is its one relevant document;
* ``<Name>I2ARetrieval``: every such image is a query, all utterances are the corpus, and all of the
  image's captions are relevant (relevance 1 each), as in MTEB's ``SpokenCOCOI2ARetrieval``.

The data are MTEB's own formats: queries / corpus are ``datasets.Dataset`` with ``id`` and ``audio``
(``{"array": float32 16 kHz, "sampling_rate": 16000}``, read with this package's audio loader) or
``image`` (datasets' ``Image`` feature over the image files) columns. The audio is written once into
datasets' cache (``cache_dir``), keyed by the data dir's content digest, which is also the tasks'
dataset revision in MTEB's result files. Relative paths in the lists are relative to the current
directory, as everywhere in the recipe.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from mteb.abstasks.retrieval import AbsTaskRetrieval
from mteb.abstasks.task_metadata import TaskMetadata

from espnet_speechclip.benchmark.mteb_scores import revision_of, task_prefix
from espnet_speechclip.errors import InputError, MissingFileError

DIRECTIONS = ("A2I", "I2A")


def read_pairs(data_dir: str | Path) -> Tuple[Dict[str, str], Dict[str, str], Dict[str, str]]:
    """``(wav.scp, utt2img, img.scp)`` of a data dir, checked against each other and the files they
    name before any audio is read.

    Raises:
        FileNotFoundError: a missing list, audio or image file (named).
        ValueError: lists that disagree (naming the first utterance / image that does).
    """
    from espnet_speechclip.data.datadir import read_kv

    data_dir = Path(data_dir)
    lists = []
    for name in ("wav.scp", "utt2img", "img.scp"):
        if not (data_dir / name).is_file():
            raise MissingFileError(f"data dir {data_dir} has no {name}")
        lists.append(read_kv(data_dir / name))
    wavs, utt2img, images = lists
    if not wavs:
        raise InputError(f"{data_dir}/wav.scp lists no utterance")
    no_image = sorted(set(wavs) - set(utt2img))
    if no_image:
        raise InputError(
            f"{data_dir}/utt2img has no image for utterance {no_image[0]} ({len(no_image)} in all)"
        )
    unknown = sorted({utt2img[u] for u in wavs} - set(images))
    if unknown:
        raise InputError(f"{data_dir}/img.scp lacks image {unknown[0]} named by utt2img")
    used = {utt2img[u]: images[utt2img[u]] for u in sorted(wavs)}
    for path in [*wavs.values(), *used.values()]:
        if not Path(path).is_file():
            raise MissingFileError(f"{data_dir}: file {path} does not exist")
    return wavs, {u: utt2img[u] for u in wavs}, used


def _audio_rows(utts: List[Tuple[str, str]], revision: str):
    """(utt, wav path) -> MTEB audio rows; ``revision`` only keys datasets' cache."""
    from espnet_speechclip.data.media import SAMPLE_RATE, load_audio

    for utt, path in utts:
        yield {"id": utt, "audio": {"array": load_audio(path), "sampling_rate": SAMPLE_RATE}}


def build_datasets(
    data_dir: str | Path, revision: str, cache_dir: Optional[str | Path] = None
) -> Dict[str, Any]:
    """The audio and image datasets of a data dir and the qrels of both directions.

    Returns:
        ``{"audio": Dataset(id, audio), "image": Dataset(id, image), "A2I": qrels, "I2A": qrels}``,
        qrels ``{query id: {document id: 1}}``; images in order of first appearance in ``utt2img``.
    """
    import datasets

    wavs, utt2img, images = read_pairs(data_dir)
    audio_features = datasets.Features(
        {
            "id": datasets.Value("string"),
            "audio": {
                "array": datasets.List(datasets.Value("float32")),
                "sampling_rate": datasets.Value("int32"),
            },
        }
    )
    audio = datasets.Dataset.from_generator(
        _audio_rows,
        features=audio_features,
        gen_kwargs={"utts": sorted(wavs.items()), "revision": revision},
        cache_dir=str(cache_dir) if cache_dir is not None else None,
    )
    image = datasets.Dataset.from_dict(
        {"id": list(images), "image": [str(Path(p).resolve()) for p in images.values()]},
        features=datasets.Features({"id": datasets.Value("string"), "image": datasets.Image()}),
    )
    i2a: Dict[str, Dict[str, int]] = {}
    for utt in sorted(utt2img):
        i2a.setdefault(utt2img[utt], {})[utt] = 1
    return {
        "audio": audio,
        "image": image,
        "A2I": {utt: {img: 1} for utt, img in utt2img.items()},
        "I2A": i2a,
    }


class DatadirRetrieval(AbsTaskRetrieval):
    """An audio<->image retrieval task over a data dir (subclassed per data dir by :func:`datadir_tasks`)."""

    data_dir: str = ""
    direction: str = "A2I"
    cache_dir: Optional[str] = None
    # the datasets, built once for both directions: datadir_tasks gives the two task classes of a data
    # dir one dict through their common base class
    _shared: Dict[str, Any] = {}

    def load_data(self, num_proc: Optional[int] = None, **kwargs: Any) -> None:
        if self.data_loaded:
            return
        shared = self._shared
        if not shared:
            shared.update(build_datasets(self.data_dir, self.metadata.dataset["revision"], self.cache_dir))
        queries, corpus = ("audio", "image") if self.direction == "A2I" else ("image", "audio")
        split = {
            "queries": shared[queries],
            "corpus": shared[corpus],
            "relevant_docs": shared[self.direction],
            "top_ranked": None,
        }
        self.dataset = {"default": {"test": split}}
        self.data_loaded = True


def datadir_tasks(
    data_dir: str | Path,
    name: Optional[str] = None,
    directions: Tuple[str, ...] = DIRECTIONS,
    cache_dir: Optional[str | Path] = None,
) -> List[DatadirRetrieval]:
    """MTEB tasks ``<name>A2IRetrieval`` / ``<name>I2ARetrieval`` over ``data_dir`` (``name`` default
    :func:`task_prefix`). The lists and the files they name are checked here, before any evaluation;
    the data dir's content digest (:func:`espnet_speechclip.data.datadir.datadir_identity`) is the
    dataset revision MTEB records."""
    from espnet_speechclip.data.identity import datadir_identity

    bad = [d for d in directions if d not in DIRECTIONS]
    if bad:
        raise InputError(f"direction must be one of {DIRECTIONS}, got {bad[0]!r}")
    read_pairs(data_dir)
    revision = revision_of(datadir_identity(data_dir))
    prefix = name or task_prefix(data_dir)
    base = type(
        f"{prefix}Retrieval",
        (DatadirRetrieval,),
        {
            "data_dir": str(data_dir),
            "cache_dir": None if cache_dir is None else str(cache_dir),
            "_shared": {},
        },
    )
    tasks = []
    for direction in directions:
        a2i = direction == "A2I"
        metadata = TaskMetadata(
            name=f"{prefix}{direction}Retrieval",
            description=(
                f"Speech->image retrieval over the data dir {Path(data_dir).name}: each spoken caption "
                "retrieves its image."
                if a2i
                else f"Image->speech retrieval over the data dir {Path(data_dir).name}: each image "
                "retrieves the spoken captions that describe it."
            ),
            dataset={"path": str(Path(data_dir).resolve()), "revision": revision},
            type="Any2AnyRetrieval",
            category="a2i" if a2i else "i2a",
            modalities=["audio", "image"] if a2i else ["image", "audio"],
            eval_splits=["test"],
            eval_langs=["eng-Latn"],
            main_score="ndcg_at_10",
            domains=["Spoken"],
            task_subtypes=["Cross-Modal Retrieval"],
            license="not specified",
            annotations_creators="human-annotated",
            dialect=[],
            sample_creation="created",
            bibtex_citation="",
            is_public=False,
        )
        cls = type(metadata.name, (base,), {"metadata": metadata, "direction": direction})
        tasks.append(cls())
    return tasks
