"""The MTEB encoder gives exactly Speech2Image's embeddings, through MTEB's own data loaders."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("mteb", reason="mteb is not installed (pip install -e '.[mteb]')")

from mteb._create_dataloaders import create_dataloader  # noqa: E402
from mteb.types import PromptType  # noqa: E402

from espnet_speechclip.benchmark.mteb_encoder import SpeechCLIPEncoder  # noqa: E402
from espnet_speechclip.benchmark.mteb_task import build_datasets, datadir_tasks, read_pairs  # noqa: E402
from espnet_speechclip.inference.speech2image import Speech2Image  # noqa: E402


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from helpers.corpora import make_tiny_corpus

    return make_tiny_corpus(tmp_path_factory.mktemp("mteb_corpus"), n_images=3, captions=2, split="test")


def encode(encoder, dataset, task, prompt_type, batch_size=4):
    loader = create_dataloader(
        dataset, task_metadata=task.metadata, prompt_type=prompt_type, batch_size=batch_size
    )
    return encoder.encode(
        loader, task_metadata=task.metadata, hf_split="test", hf_subset="default", prompt_type=prompt_type
    )


def test_embeddings_equal_speech2image(encoder, parallel_exp, corpus, tmp_path):
    a2i, i2a = datadir_tasks(corpus, cache_dir=tmp_path)
    data = build_datasets(corpus, "r", tmp_path)
    wavs, _, images = read_pairs(corpus)
    s2i = Speech2Image.from_pretrained(parallel_exp, batch_size=4)
    speech = encode(encoder, data["audio"], a2i, PromptType.query)
    assert speech.dtype == np.float32 and speech.shape == (len(wavs), 32)
    np.testing.assert_array_equal(speech, s2i([wavs[u] for u in data["audio"]["id"]])["parallel"])
    image = encode(encoder, data["image"], a2i, PromptType.document)
    np.testing.assert_array_equal(image, s2i.embed_images([images[k] for k in data["image"]["id"]]))
    # the same audio as I2A's corpus: same vectors in either role
    np.testing.assert_array_equal(encode(encoder, data["audio"], i2a, PromptType.document), speech)
    texts = ["a red square", "a blue square", "a green square"]
    np.testing.assert_allclose(encoder.embed_texts(texts), s2i.embed_texts(texts))


def test_unsupported_inputs_and_branches_fail_clearly(encoder, parallel_exp, corpus):
    import datasets
    from torch.utils.data import DataLoader

    (a2i,) = datadir_tasks(corpus, directions=("A2I",))
    video = DataLoader(datasets.Dataset.from_dict({"id": ["x"], "video": [[0.0]]}))
    with pytest.raises(ValueError, match=f"{a2i.metadata.name}: SpeechCLIP embeds audio, image and text"):
        encoder.encode(video, task_metadata=a2i.metadata, hf_split="test", hf_subset="default")
    with pytest.raises(ValueError, match="not 'cascaded'"):
        SpeechCLIPEncoder("org/tiny", speech2image=encoder.speech2image, branch="cascaded")
