"""The page's search set: an image folder or a data dir, checked, then embedded once."""

import shutil

import numpy as np
import pytest

from espnet_speechclip.data.datadir import read_kv
from espnet_speechclip.data.media import MediaError
from espnet_speechclip.inference.speech2image import Speech2Image
from espnet_speechclip.web.index import SearchIndex, read_media_lists


def test_a_data_dir_gives_images_utterances_transcripts_and_truth(sc):
    lists = read_media_lists(sc["data"], max_utterances=3)
    img_scp, wav_scp = read_kv(sc["data"] / "img.scp"), read_kv(sc["data"] / "wav.scp")
    assert lists.images == dict(sorted(img_scp.items()))
    assert list(lists.utterances) == sorted(wav_scp)[:3]
    assert set(lists.transcripts) == set(lists.utt2img) == set(lists.utterances)


def test_a_folder_gives_images_only(sc):
    folder = next(iter(read_kv(sc["data"] / "img.scp").values())).rsplit("/", 1)[0]
    lists = read_media_lists(folder)
    assert list(lists.images) == sorted(p.split("/")[-1] for p in read_kv(sc["data"] / "img.scp").values())
    assert lists.utterances == {} and lists.utt2img == {}


def test_bad_sets_are_refused_before_any_embedding(sc, tmp_path):
    with pytest.raises(FileNotFoundError, match="neither an image folder nor a data dir"):
        read_media_lists(tmp_path / "nope")
    with pytest.raises(MediaError, match="holds no image files"):
        read_media_lists(tmp_path)
    data = tmp_path / "data"
    shutil.copytree(sc["data"], data)
    wav_scp = read_kv(data / "wav.scp")
    first = sorted(wav_scp)[0]
    (data / "wav.scp").write_text(
        "".join(f"{u} {tmp_path / 'gone.wav' if u == first else p}\n" for u, p in sorted(wav_scp.items()))
    )
    with pytest.raises(
        FileNotFoundError, match=f"wav.scp: audio file {tmp_path / 'gone.wav'} of {first} does"
    ):
        read_media_lists(data)
    (data / "wav.scp").write_text(f"{first} sox x.flac -t wav - |\n")
    with pytest.raises(ValueError, match=f"utterance {first} is a command, not a file"):
        read_media_lists(data)
    (data / "img.scp").unlink()
    with pytest.raises(FileNotFoundError, match="has wav.scp but no img.scp"):
        read_media_lists(data)


def test_index_embeds_once_and_ranks_like_the_api(sc):
    s2i = Speech2Image.from_pretrained(sc["archive"])
    index = SearchIndex.build(s2i, sc["data"], progress=False)
    img_scp, wav_scp = read_kv(sc["data"] / "img.scp"), read_kv(sc["data"] / "wav.scp")
    np.testing.assert_allclose(
        index.image_emb, s2i.embed_images([img_scp[k] for k in index.image_keys]), atol=1e-6
    )
    out = s2i([wav_scp[u] for u in index.utt_ids])
    for branch in ("parallel", "cascaded"):
        np.testing.assert_allclose(index.utt_emb[branch], out[branch], atol=1e-6)
    assert [k.id for k in index.keywords[index.utt_ids[1]]] == list(out["keyword_ids"][1])
    utt = index.utt_ids[0]
    hits = index.images_for(s2i(wav_scp[utt])["parallel"][0], 2)  # alone, as the API embeds it
    api = s2i.retrieve_images(wav_scp[utt], [img_scp[k] for k in index.image_keys], topk=2)
    assert [h.item for h in hits] == [index.image_keys[h.index] for h in api]
    assert [h.score for h in hits] == pytest.approx([h.score for h in api], abs=1e-5)
    assert len(index.utterances_for(index.image_emb[0], "cascaded", None)) == len(wav_scp)
    assert index.folders() == sorted(
        {str(sc["data"].parent.parent / "images"), str(sc["data"].parent.parent / "wavs")}
    )

    folder = SearchIndex.build(s2i, sc["data"].parent.parent / "images", progress=False)
    assert not folder.has_utterances and len(folder.image_keys) == len(img_scp)
    with pytest.raises(ValueError, match="image folder: it has no utterances"):
        folder.utterances_for(index.image_emb[0], "parallel", 3)
