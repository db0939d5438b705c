"""Trainable and total parameters of training configs, from their architectures with random weights.

    python -m espnet_speechclip.bin.count_params conf/paper/*.yaml

Prints a markdown table. No weights are downloaded or even allocated: the models are built on PyTorch's
meta device (see espnet_speechclip.models.random_weights).
"""

import argparse
import json
import sys
import tempfile

from espnet_speechclip.config import config_value, read_config
from espnet_speechclip.errors import run_cli
from espnet_speechclip.models.builder import option_value
from espnet_speechclip.models.random_weights import build_random, count_parameters


def main(cmd=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("configs", nargs="+", help="training configs (yaml)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a markdown table")
    args = p.parse_args(cmd)
    rows = {}
    with tempfile.TemporaryDirectory() as work:
        for path in args.configs:
            config = read_config(path)
            model = build_random(config, work, image_tower=True, device="meta")
            rows[path] = dict(
                model=config_value(config, "model"),
                upstream=option_value(config, "speech_encoder_conf.upstream"),
                clip=config_value(config, "clip_conf.model_name"),
                **count_parameters(model),
            )
            del model
    if args.json:
        json.dump(rows, sys.stdout, indent=2)
        print()
        return
    print("| config | model | upstream | CLIP | trainable | total (frozen towers included) |")
    print("|---|---|---|---|---:|---:|")
    for path, r in rows.items():
        print(
            f"| {path} | {r['model']} | {r['upstream']} | {r['clip']} | {r['trainable'] / 1e6:.2f} M | "
            f"{r['total'] / 1e6:.1f} M |"
        )


if __name__ == "__main__":
    run_cli(main)
