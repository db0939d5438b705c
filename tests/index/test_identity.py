"""index/identity: what an index is made from: the model by content, the CLIP by name and weights' hash."""

import shutil

from espnet_speechclip.identity import model_identity
from espnet_speechclip.index.identity import made_from


def test_an_index_records_the_model_by_content_and_the_clip_by_its_weights(parallel_exp, tmp_path):
    config, weights = parallel_exp / "config.yaml", parallel_exp / "latest.pth"
    record = made_from(config, weights, "speech", branch="parallel")
    assert record["model"] == model_identity(config, weights)
    assert record["clip"].startswith("tiny-clip__file-")
    assert (record["modality"], record["branch"], record["dtype"]) == ("speech", "parallel", "float16")
    # the same model from another folder: the same record
    copy = tmp_path / "copy"
    shutil.copytree(parallel_exp, copy)
    assert made_from(copy / "config.yaml", copy / "latest.pth", "speech", branch="parallel") == record
    # a branch names a space of speech embeddings only; no weights file: random trainable weights
    image = made_from(config, None, "image", branch="parallel", dtype="float32")
    assert image["branch"] is None and image["model"] == {"weights": "random"} and image["dtype"] == "float32"
    assert image["clip"] == record["clip"]
