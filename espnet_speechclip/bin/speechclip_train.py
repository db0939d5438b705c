"""Train SpeechCLIP: ``python -m espnet_speechclip.bin.speechclip_train --config conf/x.yaml ...``
(all of ESPnet's training options; ``--print_config`` shows the full config)."""

from typing import List, Optional

from espnet_speechclip.task import SpeechCLIPTask


def main(cmd: Optional[List[str]] = None) -> None:
    SpeechCLIPTask.main(cmd=cmd)


if __name__ == "__main__":
    main()
