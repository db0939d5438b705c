"""ESPnet ASR inference for models with ``frontend: speechclip``:
``python -m espnet_speechclip.bin.asr_inference --asr_train_config exp/asr/config.yaml ...``
(the options of ``espnet2.bin.asr_inference``; importing this package registers the frontend first)."""

from typing import List, Optional

from espnet_speechclip.compat import answer_help_first, quiet_espnet_import
from espnet_speechclip.errors import run_cli
from espnet_speechclip.inference.archive import UNPACK_CACHE_NOTE


def main(cmd: Optional[List[str]] = None) -> None:
    quiet_espnet_import()
    from espnet2.bin.asr_inference import get_parser
    from espnet2.bin.asr_inference import main as asr_inference_main

    answer_help_first(get_parser, cmd, epilog=UNPACK_CACHE_NOTE)
    asr_inference_main(cmd)


if __name__ == "__main__":
    run_cli(main)
