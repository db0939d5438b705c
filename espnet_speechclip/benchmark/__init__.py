"""SpeechCLIP on public benchmarks (MTEB's audio-image retrieval tasks).

Importing this package imports nothing heavy: ``mteb`` (the optional extra ``.[mteb]``) is imported
only by the modules that need it (:mod:`.mteb_encoder`, :mod:`.mteb_meta`, :mod:`.mteb_task`);
:mod:`.mteb_scores` reads MTEB's result files without it.
"""
