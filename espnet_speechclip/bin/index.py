"""Embed a collection of images (or recordings) and index it with FAISS, for search by voice.

    python -m espnet_speechclip.bin.index build --model exp/synth_parallel --images photos/ --out photos.idx
    python -m espnet_speechclip.bin.index build --model M --speech data/test/wav.scp --out talks.idx
    python -m espnet_speechclip.bin.index build --model M --images list.txt --out IDX --shard 3/8  # part 3/8
    python -m espnet_speechclip.bin.index build --model M --images list.txt --out IDX             # merge
    python -m espnet_speechclip.bin.index add --model M --images new_photos/ --out photos.idx

``--images`` / ``--speech`` take a folder (every image / audio file under it), an ``img.scp`` /
``wav.scp`` (``key path`` lines) or a list file (one path per line). The embeddings are written in
clip-retrieval's layout (``img_emb/img_emb_<i>.npy`` + ``metadata/metadata_<i>.parquet``; float16, or
float32 for collections small enough for an exact index),
``--shard_size`` items a shard; then a FAISS index is built over them (exact up to 50 000 items, else
an IVF index sized by ``--memory``, with its measured recall@10 in ``index.json``). Files that cannot
be read are counted and listed in ``IDX/unreadable.tsv``. A build killed at any point continues from
the last finished shard when rerun. ``--shard i/N`` embeds only every N-th shard (run N of them, on
as many machines, sharing IDX); the same command without ``--shard`` then finds every shard done and
builds the index. ``add`` embeds only files the index does not hold and adds them to it.
"""

from __future__ import annotations

import argparse
import logging
import re
from typing import List, Optional

from espnet_speechclip.errors import run_cli


def parse_bytes(text: str) -> int:
    """``"4G"``, ``"512M"``, ``"1.5GB"``, ``"1000000"`` -> bytes."""
    m = re.fullmatch(r"\s*([0-9.]+)\s*([KMGT]?)i?B?\s*", text, re.IGNORECASE)
    if not m:
        raise argparse.ArgumentTypeError(f"expected a size such as 4G or 512M, got {text!r}")
    return int(float(m.group(1)) * 1024 ** " KMGT".index(m.group(2).upper() or " "))


def _dtype(args: argparse.Namespace, n_items: int) -> str:
    """--dtype auto: the existing index's (add), else float32 for collections an exact index serves."""
    from espnet_speechclip.index import kind, layout

    if args.dtype != "auto":
        return args.dtype
    manifest = layout.read_manifest(args.out) if args.command == "add" else None
    if manifest is not None:
        return manifest["made_from"]["dtype"]
    return "float32" if n_items <= kind.EXACT_MAX else "float16"


def get_parser() -> argparse.ArgumentParser:
    from espnet_speechclip.index.build import DEFAULT_SHARD_SIZE

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=["build", "add"], help="build (or resume / merge) an index; add files")
    p.add_argument("--model", required=True, help="packed model (.zip), experiment folder or Hub repo id")
    p.add_argument("--model_file", default=None, help="weights in the experiment folder")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--images", help="image folder, img.scp or list file")
    what.add_argument("--speech", help="audio folder, wav.scp or list file")
    p.add_argument("--out", required=True, help="the index folder")
    p.add_argument("--branch", default=None, choices=["parallel", "cascaded"], help="speech: branch embedded")
    p.add_argument("--shard", default=None, help="i/N: embed only part i of N (no index is built)")
    p.add_argument("--shard_size", type=int, default=DEFAULT_SHARD_SIZE, help="items per shard")
    p.add_argument("--memory", type=parse_bytes, default="4G", help="memory budget of the FAISS index")
    p.add_argument(
        "--dtype",
        default="auto",
        choices=["auto", "float16", "float32"],
        help="embedding files; auto: float32 while the index is exact (its scores then equal a full "
        "ranking's), else float16 as clip-retrieval writes",
    )
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--no_progress", action="store_true")
    return p


def main(cmd: Optional[List[str]] = None) -> None:
    parser = get_parser()
    args = parser.parse_args(cmd)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s (%(module)s) %(levelname)s: %(message)s")
    logging.getLogger("espnet_speechclip").setLevel(logging.INFO)
    from espnet_speechclip.index import build
    from espnet_speechclip.index.collection import IMAGE, SPEECH, parse_part, read_collection
    from espnet_speechclip.index.embed import embed_items
    from espnet_speechclip.index.identity import made_from
    from espnet_speechclip.inference.loader import resolve_model

    part = parse_part(args.shard) if args.shard else None
    if part is not None and args.command == "add":
        parser.error("--shard applies to build")
    modality = IMAGE if args.images else SPEECH
    # every input is checked, and the model identified, before any model is loaded
    items = read_collection(args.images or args.speech, modality)
    config, weights = resolve_model(args.model, args.model_file)
    base = made_from(config, weights, modality, args.branch, _dtype(args, len(items)))
    loaded = []

    def embed(chunk, bar):
        if not loaded:  # only when a shard is left to embed: a merge loads no model
            from espnet_speechclip.inference.speech2image import Speech2Image

            loaded.append(Speech2Image(config, weights, device=args.device, batch_size=args.batch_size))
        return embed_items(loaded[0], chunk, modality, args.branch, bar)

    progress = not args.no_progress
    if args.command == "add":
        result = build.add_items(args.out, base, items, embed, progress)
    else:
        result = build.build(args.out, base, items, embed, args.shard_size, part, args.memory, progress)
    print(f"{len(result.embedded)} shard(s) embedded, {len(result.reused)} already done", end="")
    if result.unreadable:
        print(f"; {len(result.unreadable)} file(s) could not be read, e.g. {result.unreadable[0][1]}", end="")
    print()
    if result.manifest is None:
        print(f"part {args.shard} done; when every part is, run the same command without --shard to index")
        return
    m = result.manifest
    recall = f"recall@10 {m['recall_at_10']:.3f} at nprobe {m['nprobe']}" if m["nprobe"] else "exact"
    print(
        f"{args.out}: {m['count']} embeddings, FAISS {m['factory']} ({recall}), {m['index_bytes']} bytes"
        + (f"; unreadable files listed in {args.out}/unreadable.tsv" if m["unreadable"] else "")
    )


if __name__ == "__main__":
    run_cli(main)
