"""The built-in "spoken shapes" corpus: scenes (:mod:`.scenes`), captions (:mod:`.captions`), speech
(:mod:`.speech`) and the corpus writer (:mod:`.corpus`)."""
