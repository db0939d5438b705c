"""The model card of a packed model: what the Hub reads, RESULTS.md's tables, usage and config."""

import json
import zipfile

import yaml

from espnet_speechclip.inference.model_card import model_card
from espnet_speechclip.inference.packing import pack_model


def test_model_card_is_what_the_hub_reads(sc, tmp_path):
    """The card's YAML header parses with huggingface_hub's own card classes; its results tables are
    RESULTS.md's; the config and usage lines are in it; the Hub's card is the same with the repo id."""
    from huggingface_hub import ModelCard, ModelCardData

    results = {
        "tiny_test": {
            "parallel": {
                "speech_to_image": {"R@1": 12.5, "R@5": 50.0, "R@10": 75.0},
                "image_to_speech": {"R@1": 25.0, "R@5": 62.5, "R@10": 100.0},
            },
            "cascaded": {
                "speech_to_image": {"R@1": 10.0, "R@5": 40.0, "R@10": 70.0},
                "keyword_hit_rate": {"kw1": 12.0, "kw2": 8.0, "avg": 10.0},
                "keyword_timing": {
                    "spans_from": "attention",
                    "tolerance": 0.02,
                    "boundary_precision": 40.0,
                    "boundary_recall": 20.0,
                    "boundary_f1": 26.7,
                    "boundary_r_value": 35.0,
                    "boundary_f1_equal": 18.0,
                    "over_segmentation": -0.5,
                    "span_contains_word": 30.0,
                    "span_overlaps_word": 60.0,
                    "mean_span": 0.25,
                },
            },
        }
    }
    (tmp_path / "results.json").write_text(json.dumps(results))
    archive = pack_model(
        sc["exp"] / "config.yaml",
        sc["weights"],
        tmp_path / "model.zip",
        results_json=tmp_path / "results.json",
        hand_written_results=True,
        dataset="flickr8k",
        card_text="Trained for the test suite.",
    )
    with zipfile.ZipFile(archive) as zf:
        text = zf.read("README.md").decode()
        meta = json.loads(zf.read("meta.json"))
        config = yaml.safe_load(zf.read("config.yaml"))
    card = ModelCard(text)
    assert isinstance(card.data, ModelCardData)
    data = card.data.to_dict()
    assert data["library_name"] == "espnet-speechclip"
    assert data["tags"] == [
        "espnet",
        "speechclip",
        "audio",
        "image-retrieval",
        "visually-grounded-speech",
    ] + ["speechclip-hybrid"]
    assert data["datasets"] == ["flickr8k"] and data["license"] == "cc-by-4.0" and data["language"] == "en"
    body = card.text
    for needle in (
        "Trained for the test suite.",
        "### tiny_test",
        "| parallel | S→I | 12.5 | 50.0 | 75.0 |",
        "| parallel | I→S | 25.0 | 62.5 | 100.0 |",
        "| cascaded | S→I | 10.0 | 40.0 | 70.0 |",
        "| kw1 | kw2 | avg |",
        "| 12.0 | 8.0 | 10.0 |",
        "Keyword timing (cascaded):",
        "| boundary F1 | 26.7 | 18.0 |",
        "| boundary precision / recall | 40.0 / 20.0 | |",
        "| R-value | 35.0 | |",
        "| over-segmentation | -0.50 | |",
        "| span overlaps its word (%) | 60.0 | – |",
        "| span contains its word (%) | 30.0 | – |",
        "| mean span / mean word | 0.25 s | – |",
        'Speech2Image.from_pretrained("model.zip")',
        "--model model.zip",
        "```yaml\n" + yaml.safe_dump(config, sort_keys=False, allow_unicode=True),
        "@inproceedings{shih2022speechclip",
    ):
        assert needle in body, needle
    # the card's inputs travel in meta.json: the same card, for a Hub repo, from the archive alone
    assert meta["card"]["results"] == results and meta["card"]["dataset"] == "flickr8k"
    assert model_card(config, meta) == text
    hub_card = ModelCard(model_card(config, meta, repo_id="me/tiny"))
    assert hub_card.data.to_dict() == data
    assert "./run.sh --download_model me/tiny --skip_train true --corpus flickr8k" in hub_card.text
