"""Querying an index folder: the exact index ranks as today's exact path does, other models are refused,
damaged files get one line naming them; the web page searches through it."""

import numpy as np
import pytest

from espnet_speechclip.errors import user_message
from espnet_speechclip.index import build, layout
from espnet_speechclip.index.collection import IMAGE, read_collection
from espnet_speechclip.index.embed import embed_items
from espnet_speechclip.index.identity import made_from_of
from espnet_speechclip.index.search import EmbeddingIndex, IndexMismatchError
from espnet_speechclip.inference.result_types import rank

WAVE = (0.1 * np.random.default_rng(3).standard_normal(8000)).astype(np.float32)


def _index(s2i, photos, out, dtype="float16", base=None):
    base = base or made_from_of(s2i, IMAGE, dtype=dtype)
    items = read_collection(photos, IMAGE)
    build.build(out, base, items, lambda its, bar: embed_items(s2i, its, IMAGE, bar=bar), 5, progress=False)
    return EmbeddingIndex(out)


@pytest.mark.parametrize("dtype, atol", [("float32", 1e-6), ("float16", 2e-3)])
def test_the_exact_index_ranks_as_the_exact_path_does(s2i, photos, tmp_path, dtype, atol):
    index = _index(s2i, photos, tmp_path / "idx", dtype)
    paths = [str(p) for p in sorted(photos.iterdir())]
    today = s2i.retrieve_images(WAVE, paths, topk=None)
    hits = s2i.search(index, speech=WAVE, topk=len(paths))
    assert [h.item for h in hits] == [h.item for h in today]
    np.testing.assert_allclose([h.score for h in hits], [h.score for h in today], atol=atol)
    assert [h.index for h in hits] == [paths.index(h.item) for h in hits]  # ids follow the shards
    text_hits = s2i.search(index, text="a red square", topk=3)
    expected = rank(s2i.embed_texts("a red square")[0], s2i.embed_images(paths), paths, 3)
    assert [h.item for h in text_hits] == [h.item for h in expected]


def test_a_query_from_another_model_or_clip_is_refused_saying_which(s2i, photos, tmp_path):
    base = made_from_of(s2i, IMAGE)
    other_model = dict(base, model={"weights": "0" * 64, "options": "x"})
    index = _index(s2i, photos, tmp_path / "a", base=other_model)
    with pytest.raises(IndexMismatchError, match="another SpeechCLIP model .*weights sha256 000000000000"):
        s2i.search(index, speech=WAVE)
    other_clip = dict(base, clip="ViT-B-32__openai")
    index = _index(s2i, photos, tmp_path / "b", base=other_clip)
    with pytest.raises(IndexMismatchError, match="embedded with CLIP ViT-B-32__openai"):
        index.check(s2i)


def test_damaged_files_get_one_line_naming_them(s2i, photos, tmp_path):
    root = tmp_path / "idx"
    _index(s2i, photos, root)
    f = layout.faiss_file(root, IMAGE)
    good = f.read_bytes()
    f.write_bytes(good[: len(good) // 2])
    with pytest.raises(layout.IndexFolderError) as e:
        EmbeddingIndex(root)
    line = user_message(e.value)
    assert str(f) in line and "not a readable FAISS index" in line and "\n" not in line
    f.write_bytes(good)
    meta = layout.metadata_file(root, 1)
    meta.write_bytes(b"PAR1 garbage")
    index = EmbeddingIndex(root)
    with pytest.raises(layout.IndexFolderError, match=f"{meta} is missing or damaged"):
        index.search(np.ones(index.dim, np.float32) / np.sqrt(index.dim), k=12)
    (root / "index.json").write_text("{")
    with pytest.raises(layout.IndexFolderError, match="index.json is damaged"):
        EmbeddingIndex(root)
    (root / "index.json").unlink()
    with pytest.raises(layout.IndexFolderError, match="is not a finished index"):
        EmbeddingIndex(root)


def test_the_page_searches_an_index_without_embedding_the_collection(s2i, photos, tmp_path, monkeypatch):
    from espnet_speechclip.web.app import DemoPage
    from espnet_speechclip.web.index import IndexedImages

    index = _index(s2i, photos, tmp_path / "idx")
    page = DemoPage(s2i, IndexedImages(index), topk=3)
    monkeypatch.setattr(s2i, "embed_images", None)  # nothing of the collection is embedded from here on
    answer = page.search_text("a red square", "images", 3)
    assert answer.ok and answer.panels[0].count("data-rank=") == 3
    best = s2i.search(index, text="a red square", topk=1)[0].item
    assert f'data-key="{best}"' in answer.panels[0]
    assert "12 images" in page.description() and page.image_choices()[0] == str(sorted(photos.iterdir())[0])
