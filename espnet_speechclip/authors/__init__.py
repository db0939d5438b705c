"""Import of the authors' released checkpoints: SpeechCLIP (github atosystem/SpeechCLIP, six files) and
SpeechCLIP+ (github ShampooWang/SpeechCLIP_plus, nine files), as experiments of this package.

Modules, in the order an import runs them: :mod:`.unpickling` (read the file without running its code),
:mod:`.architecture` and :mod:`.plus` (what model it is; :mod:`.spec` holds the record and its tables),
:mod:`.keys` (where each tensor goes), :mod:`.vocabulary` (the keyword vocabulary's CLIP ids),
:mod:`.releases` (which release it is, from content), :mod:`.checks` (the frozen towers are the ones we
build), :mod:`.importer` (the plan and the files written).
"""

from espnet_speechclip.authors.importer import import_card_text, import_checkpoint
from espnet_speechclip.authors.unpickling import (
    AuthorsCheckpointError,
    UnsafeCheckpointError,
    load_authors_checkpoint,
)

__all__ = [
    "AuthorsCheckpointError",
    "UnsafeCheckpointError",
    "import_card_text",
    "import_checkpoint",
    "load_authors_checkpoint",
]
