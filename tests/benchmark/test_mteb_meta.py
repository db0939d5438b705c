"""benchmark/mteb_meta: the ModelMeta MTEB records of a SpeechCLIP model, and where its fields come from."""

from __future__ import annotations

import pytest

pytest.importorskip("mteb", reason="mteb is not installed (pip install -e '.[mteb]')")

from espnet_speechclip.benchmark.mteb_encoder import SpeechCLIPEncoder  # noqa: E402
from espnet_speechclip.benchmark.mteb_meta import (  # noqa: E402
    CORPUS_TASKS,
    default_name,
    speechclip_model_meta,
    training_corpus,
    training_datasets,
)
from espnet_speechclip.benchmark.mteb_scores import revision_of  # noqa: E402
from espnet_speechclip.identity import model_identity  # noqa: E402
from espnet_speechclip.inference.loader import resolve_model  # noqa: E402


def test_model_meta_describes_the_model(encoder, parallel_exp):
    meta = speechclip_model_meta(encoder, name="org/tiny", license="apache-2.0")
    assert meta.name == "org/tiny"
    assert meta.revision == revision_of(model_identity(*resolve_model(parallel_exp)))
    assert meta.modalities == ["audio", "image", "text"]
    assert meta.embed_dim == 32
    assert meta.license == "apache-2.0"
    # the image tower is outside a model trained on cached image embeddings: counted on top
    in_model = sum(p.numel() for p in encoder.speech2image.model.parameters())
    assert meta.n_parameters > in_model
    assert meta.training_datasets is None  # the test config names no recipe training data
    assert meta.loader_kwargs["source"] == str(parallel_exp)
    assert meta.experiment_kwargs is None  # the default branch


def test_a_packed_folder_takes_its_cards_licence_and_is_the_same_model(
    encoder, parallel_exp, tmp_path, monkeypatch
):
    """A packed model as the Hub holds it (the archive's members in a folder, meta.json with the card), and
    its archive: loaded through a resolved config in the unpack cache, they still give the card's licence."""
    import zipfile

    from espnet_speechclip.inference.packing import pack_model

    monkeypatch.setenv("ESPNET_SPEECHCLIP_CACHE", str(tmp_path / "unpack"))
    archive = pack_model(
        parallel_exp / "config.yaml", parallel_exp / "latest.pth", tmp_path / "m.zip", license="mit"
    )
    folder = tmp_path / "org--tiny_parallel"
    zipfile.ZipFile(archive).extractall(folder)
    packed = SpeechCLIPEncoder("org/tiny", source=str(folder), device="cpu", batch_size=4)
    meta = speechclip_model_meta(packed, public_training_code="https://example.org/code")
    assert meta.license == "mit" and meta.public_training_code == "https://example.org/code"
    assert meta.name == "espnet-speechclip/org--tiny_parallel"
    assert meta.revision == speechclip_model_meta(encoder).revision  # the same model by content
    from_archive = SpeechCLIPEncoder("org/tiny", source=str(archive), device="cpu", batch_size=4)
    assert speechclip_model_meta(from_archive).license == "mit"


def test_training_corpus_and_its_mteb_tasks():
    config = {"train_data_path_and_name_and_type": [["dump/raw/flickr8k_train/wav.scp", "speech", "sound"]]}
    assert training_corpus(config) == "flickr8k"
    assert (
        training_corpus({"train_data_path_and_name_and_type": [["data/x/wav.scp", "speech", "sound"]]})
        is None
    )
    assert training_datasets("SpokenCOCO") == CORPUS_TASKS["spokencoco"]
    assert training_datasets("synth") == set() and training_datasets("librispeech") == set()
    assert training_datasets(None) is None  # unknown is not "none"


def test_default_name_of_a_hub_id_a_folder_and_an_archive(tmp_path):
    assert default_name("org/model") == "org/model"
    exp = tmp_path / "exp" / "flickr8k_parallel_base"
    (exp / "packed").mkdir(parents=True)
    (exp / "packed" / "model.zip").write_bytes(b"")
    assert default_name(str(exp)) == "espnet-speechclip/flickr8k_parallel_base"
    assert default_name(str(exp / "packed" / "model.zip")) == "espnet-speechclip/flickr8k_parallel_base"
    other = tmp_path / "mine.zip"
    other.write_bytes(b"")
    assert default_name(str(other)) == "espnet-speechclip/mine"
