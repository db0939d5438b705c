"""The published numbers of the released checkpoints, and which release an import came from."""

import pytest

from espnet_speechclip.evaluation.published import RELEASES, comparison_section, release_of


def record(name: str, upstream: str = "hubert", corpus: str = "flickr", model: str = "cascaded") -> dict:
    return {
        "source": {"name": name},
        "architecture": {"upstream": upstream, "corpus": corpus, "model": model},
    }


def test_six_releases_with_their_dev_metric_from_the_file_name():
    assert len(RELEASES) == 6
    for r in RELEASES:
        assert r.url.startswith("https://huggingface.co/speechclip/models/resolve/main/")
        k, value = r.file_name.rsplit("val_recall_mean_", 1)[1][: -len(".ckpt")].split("_")
        assert (int(k), float(value)) == (r.dev_k, r.dev_value)
    cascaded = {(r.size, r.corpus): r.test for r in RELEASES if r.model == "cascaded"}
    assert {k: v["keyword_hit_rate_top5_neighbours"]["avg"] for k, v in cascaded.items()} == {
        ("base", "flickr8k"): 22.7,
        ("large", "flickr8k"): 32.7,
        ("large", "spokencoco"): 38.2,
    }


def test_release_by_file_name_then_by_stored_config():
    base_cascaded = RELEASES[1]
    assert (
        release_of(record(base_cascaded.file_name, "hubert_large_ll60k", "coco", "parallel")) is base_cascaded
    )
    renamed = release_of(record("mine.ckpt", "hubert_large_ll60k", "coco", "parallel"))
    assert renamed.path.startswith("large/coco/parallel/")
    assert release_of(record("mine.ckpt", "hubert", "coco", "parallel")) is None  # never released
    assert release_of(record("mine.ckpt", "hubert", "flickr", "hybrid")) is None
    assert release_of(record("mine.ckpt", "hubert", None, "parallel")) is None  # corpus unknown


def test_comparison_puts_paper_and_ours_side_by_side():
    coco_cascaded = RELEASES[5]
    test = {
        "cascaded": {
            "speech_to_image": {"R@1": 6.0, "R@5": 20.0, "R@10": 30.04},
            "image_to_speech": {"R@1": 9.0, "R@5": 27.0, "R@10": 40.0},
            "keyword_hit_rate": {"avg": 20.0},
            "keyword_hit_rate_top5_neighbours": {"avg": 37.5},
        }
    }
    dev = {"cascaded": {"speech_to_image": {"R@10": 30.0}, "image_to_speech": {"R@10": 41.0}}}
    md = "\n".join(comparison_section(coco_cascaded, "coco_test", test, "coco_dev", dev))
    assert "| dev mean R@10 (speech→image, image→speech) | 36.15 | 35.50 |" in md
    assert "| speech→image R@10 | 31.0 | 30.0 |" in md
    assert "| keyword hit rate, top-5 neighbours avg | 38.2 | 37.5 |" in md
    assert "does not compare with it" in md
    # without a dev set scored, our dev value is left blank, never guessed
    md = "\n".join(comparison_section(coco_cascaded, "coco_test", test))
    assert "| dev mean R@10 (speech→image, image→speech) | 36.15 | – |" in md


@pytest.mark.parametrize("release", [r for r in RELEASES if r.corpus == "flickr8k"])
def test_flickr_recall_points_to_the_paper(release):
    md = "\n".join(comparison_section(release, "flickr8k_test", {}))
    assert "Table 1" in md and "| dev mean R@" in md
