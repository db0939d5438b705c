"""Recipe stage 9: put a packed model on the Hugging Face Hub, with its model card.

    python -m espnet_speechclip.bin.hub_upload --model exp/x/packed/model.zip --hf_repo <namespace>/<name>

The archive's members are checked and unpacked into ``--folder`` (default
``<archive folder>/hf_<namespace>_<name>``), README.md becomes the model card with the repo's usage
lines, and the folder is uploaded to the repo's main branch in one commit (the repo is created if
needed). Log in first (``hf auth login``) or set ``HF_TOKEN``; ``HF_ENDPOINT`` selects another Hub.
``--stage_only`` lays the folder out without uploading. Afterwards:

    Speech2Image.from_pretrained("<namespace>/<name>")
    ./run.sh --download_model <namespace>/<name> --skip_train true
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import List, Optional


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="packed archive (.zip of espnet_speechclip.bin.pack)")
    p.add_argument("--hf_repo", required=True, help="Hub model repo id, <namespace>/<name>")
    p.add_argument("--folder", default=None, help="where to lay the repo out (replaced)")
    p.add_argument("--private", action="store_true", help="create the repo private (if it does not exist)")
    p.add_argument("--commit_message", default="Upload SpeechCLIP model")
    p.add_argument("--stage_only", action="store_true", help="lay the repo folder out, do not upload")
    return p


def main(cmd: Optional[List[str]] = None) -> None:
    parser = get_parser()
    args = parser.parse_args(cmd)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (%(module)s) %(levelname)s: %(message)s")
    from espnet_speechclip.inference.archive import PackError
    from espnet_speechclip.inference.hub import HubError, parse_repo_id, quiet_http_logs, stage_repo, upload

    quiet_http_logs()

    if parse_repo_id(args.hf_repo) is None or "@" in args.hf_repo:
        parser.error(f"--hf_repo {args.hf_repo} is not a Hub repo id (<namespace>/<name>)")
    folder = Path(args.folder or Path(args.model).parent / f"hf_{args.hf_repo.replace('/', '_')}")
    try:
        stage_repo(args.model, folder, args.hf_repo)
        logging.info("laid out %s for %s", folder, args.hf_repo)
        if args.stage_only:
            return
        url = upload(folder, args.hf_repo, private=args.private, commit_message=args.commit_message)
    except (FileNotFoundError, PackError, HubError) as e:
        parser.exit(1, f"{parser.prog}: error: {e}\n")
    logging.info("uploaded %s to %s", folder, url)


if __name__ == "__main__":
    main()
