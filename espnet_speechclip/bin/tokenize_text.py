"""ESPnet's ``espnet2.bin.tokenize_text`` (token lists and tokenisation: char, bpe, word, phn), with the
options of ESPnet's, without the NLTK download tries that its import of g2p_en makes on a machine
without network access (importing this package defers them; see espnet_speechclip.compat):

    python -m espnet_speechclip.bin.tokenize_text --token_type bpe --bpemodel bpe.model --field 2- \
        --input dump/raw/synth_train/text --output tokens.txt --write_vocabulary true \
        --add_symbol '<blank>:0' --add_symbol '<unk>:1' --add_symbol '<sos/eos>:-1'
"""

from typing import List, Optional

from espnet_speechclip.compat import answer_help_first


def main(cmd: Optional[List[str]] = None) -> None:
    from espnet2.bin.tokenize_text import get_parser
    from espnet2.bin.tokenize_text import main as tokenize_text_main

    answer_help_first(get_parser, cmd)
    tokenize_text_main(cmd)


if __name__ == "__main__":
    main()
