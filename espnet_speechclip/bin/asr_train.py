"""ESPnet ASR training with ``frontend: speechclip`` available:
``python -m espnet_speechclip.bin.asr_train --config conf/asr/speechclip_ctc.yaml ...``
(the options of ``espnet2.bin.asr_train``; importing this package registers the frontend first)."""

from typing import List, Optional

from espnet_speechclip.compat import quiet_espnet_import
from espnet_speechclip.errors import run_cli


def main(cmd: Optional[List[str]] = None) -> None:
    quiet_espnet_import()
    from espnet2.bin.asr_train import main as asr_train_main

    asr_train_main(cmd)


if __name__ == "__main__":
    run_cli(main)
