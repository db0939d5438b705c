"""Trainable parameter counts of the paper configs, from the architectures with random weights."""

import json
from pathlib import Path

import pytest
from helpers import ROOT

from espnet_speechclip.bin import count_params

PAPER = ROOT / "conf" / "paper"


def test_paper_trainable_parameter_counts(capsys):
    configs = [PAPER / f"{name}.yaml" for name in ("parallel_base", "cascaded_base", "parallel_large")]
    count_params.main(["--json", *map(str, configs)])
    rows = json.loads(capsys.readouterr().out)
    millions = {Path(k).stem: v["trainable"] / 1e6 for k, v in rows.items()}
    # the paper: Parallel Base ~7.5 M, Cascaded Base ~2.8 M, Parallel Large ~13.4 M
    assert millions["parallel_base"] == pytest.approx(7.5, abs=0.05)
    assert millions["cascaded_base"] == pytest.approx(2.8, abs=0.05)
    assert millions["parallel_large"] == pytest.approx(13.4, abs=0.05)
    totals = {Path(k).stem: v["total"] / 1e6 for k, v in rows.items()}
    # HuBERT Base (94.7 M) + CLIP ViT-B/32 (151.3 M) around the branch; Large: 316.6 M + 427.6 M
    assert totals["parallel_base"] == pytest.approx(7.5 + 94.7 + 151.3, abs=1.0)
    assert totals["parallel_large"] == pytest.approx(13.4 + 316.6 + 427.6, abs=1.5)


# SpeechCLIP+'s trainable parameters per released config, counted from its modules' shapes: attention
# layer (4 D^2 + 4 D + LayerNorm 2 D), CIF alpha network (layers x (k D^2 + D) + D + 1), keyword
# projection (Linear D -> D_t, or MLP D -> D -> D_t for Large), keyword BatchNorm (2 D_t), hybrid+'s CLS
# (D) and Linear(D, D_c), HuBERT layer weights (13 / 25) and the learnable temperature (1).
SPEECHCLIP_PLUS_TRAINABLE = {
    "cascaded_plus_base_flickr": 2_363_904 + 1_771_009 + 393_728 + 1_024 + 14,
    "hybrid_plus_base_flickr": 2_363_904 + 1_771_009 + 393_728 + 1_024 + 768 + 393_728 + 14,
    "cascaded_plus_large_flickr": 4_200_448 + 3_147_777 + 1_836_800 + 1_536 + 26,
    "hybrid_plus_large_flickr": 4_200_448 + 3_147_777 + 1_836_800 + 1_536 + 1_024 + 787_200 + 26,
    "cascaded_plus_large_coco": 4_200_448 + 10_488_833 + 1_836_800 + 1_536 + 26,
    "hybrid_plus_large_coco": 4_200_448 + 3_147_777 + 1_836_800 + 1_536 + 1_024 + 787_200 + 26,
}


def test_speechclip_plus_configs_build_with_the_published_shapes(capsys):
    configs = [PAPER / f"{name}.yaml" for name in SPEECHCLIP_PLUS_TRAINABLE]
    count_params.main(["--json", *map(str, configs)])
    rows = json.loads(capsys.readouterr().out)
    assert {Path(k).stem: v["trainable"] for k, v in rows.items()} == SPEECHCLIP_PLUS_TRAINABLE
    assert {Path(k).stem: v["model"] for k, v in rows.items()} == {
        name: name.split("_base")[0].split("_large")[0] for name in SPEECHCLIP_PLUS_TRAINABLE
    }
