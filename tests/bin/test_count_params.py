"""bin/count_params: parameter counts of configs from random weights, as a table or JSON."""

import json

from helpers import TINY

from espnet_speechclip.bin import count_params


def test_table_and_json_agree(capsys):
    configs = [str(TINY / "parallel.yaml"), str(TINY / "cascaded.yaml")]
    count_params.main(["--json", *configs])
    rows = json.loads(capsys.readouterr().out)
    assert list(rows) == configs
    count_params.main(configs)
    table = capsys.readouterr().out.splitlines()
    assert table[0].startswith("| config | model | upstream | CLIP | trainable |")
    for line, (path, r) in zip(table[2:], rows.items()):
        assert (
            r["model"] in ("parallel", "cascaded") and r["upstream"] == "fbank" and r["clip"] == "tiny-clip"
        )
        assert 0 < r["trainable"] < r["total"]
        counts = f"{r['trainable'] / 1e6:.2f} M | {r['total'] / 1e6:.1f} M"
        assert line == f"| {path} | {r['model']} | fbank | tiny-clip | {counts} |"
