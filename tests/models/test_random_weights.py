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
