"""Train SpeechCLIP: ``python -m espnet_speechclip.bin.speechclip_train --config conf/x.yaml ...``
(all of ESPnet's training options; ``--print_config`` shows the full config)."""

from typing import List, Optional

from espnet_speechclip.compat import answer_help_first, quiet_espnet_import
from espnet_speechclip.errors import run_cli


def main(cmd: Optional[List[str]] = None) -> None:
    quiet_espnet_import()  # before the task imports espnet2: keeps `--print_config > conf.yaml` clean
    from espnet_speechclip.training.task import SpeechCLIPTask

    answer_help_first(SpeechCLIPTask.get_parser, cmd)
    SpeechCLIPTask.main(cmd=cmd)


if __name__ == "__main__":
    run_cli(main)
