"""ESPnet ASR training with ``frontend: speechclip`` available:
``python -m espnet_speechclip.bin.asr_train --config conf/asr/speechclip_ctc.yaml ...``
(the options of ``espnet2.bin.asr_train``; importing this package registers the frontend first)."""

from typing import List, Optional

from espnet_speechclip.compat import answer_help_first, quiet_espnet_import
from espnet_speechclip.errors import run_cli
from espnet_speechclip.inference.archive import UNPACK_CACHE_NOTE

FRONTEND_HELP = f"""\
frontend speechclip (--frontend speechclip): the speech encoder of a trained SpeechCLIP, as
  --frontend_conf packed_model=exp/<tag>/packed/model.zip, or as
  --frontend_conf config_file=exp/<tag>/config.yaml --frontend_conf model_file=exp/<tag>/<weights>.pth;
  freeze (true), branch_layers (false). See conf/asr/speechclip_ctc.yaml.
{UNPACK_CACHE_NOTE}"""


def main(cmd: Optional[List[str]] = None) -> None:
    quiet_espnet_import()
    from espnet2.bin.asr_train import main as asr_train_main
    from espnet2.tasks.asr import ASRTask

    answer_help_first(ASRTask.get_parser, cmd, epilog=FRONTEND_HELP)
    asr_train_main(cmd)


if __name__ == "__main__":
    run_cli(main)
