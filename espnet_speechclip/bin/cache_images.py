"""Recipe stage 3: cache the frozen CLIP image embeddings of data dirs, once per unique image.

    python -m espnet_speechclip.bin.cache_images --config conf/train.yaml \
        --data_dir dump/raw/flickr8k_train --data_dir dump/raw/flickr8k_dev --cache_root dump/image_emb

For each data dir ``<set>`` it writes, under ``<cache_root>/<clip fingerprint>/``, one ``<image>.npy``
per image, ``img_emb.scp`` (image -> npy) and ``<set>.scp`` (utterance -> npy, ESPnet's ``npy`` type).
``--print_dir`` prints that folder and exits (the recipe uses it to find the files of a config).
"""

import argparse
import logging
from pathlib import Path

from espnet_speechclip.config import config_value, read_config
from espnet_speechclip.errors import run_cli
from espnet_speechclip.training.image_cache import cache_image_embeddings, clip_fingerprint, write_utt_emb_scp


def main(cmd=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="training config whose clip_conf names the CLIP")
    p.add_argument("--data_dir", action="append", default=[], help="data dir with img.scp and utt2img")
    p.add_argument("--cache_root", default="dump/image_emb")
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--device", default="cpu")
    p.add_argument("--num_threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--print_dir", action="store_true", help="print the cache folder of --config and exit")
    args = p.parse_args(cmd)
    clip_conf = config_value(read_config(args.config), "clip_conf")
    if args.print_dir:
        print(Path(args.cache_root) / clip_fingerprint(**clip_conf))
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (%(module)s) %(levelname)s: %(message)s")
    if args.num_threads:
        import torch

        torch.set_num_threads(args.num_threads)
    for data_dir in map(Path, args.data_dir):
        folder = cache_image_embeddings(
            data_dir / "img.scp", clip_conf, args.cache_root, args.batch_size, args.device
        )
        out = write_utt_emb_scp(data_dir / "utt2img", folder / "img_emb.scp", folder / f"{data_dir.name}.scp")
        logging.info("wrote %s", out)


if __name__ == "__main__":
    run_cli(main)
