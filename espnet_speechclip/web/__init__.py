"""The web page: try a trained SpeechCLIP in a browser (``python -m espnet_speechclip.bin.demo``).

The last stage of the pipeline, a view over :class:`espnet_speechclip.inference.Speech2Image`:

- :mod:`~espnet_speechclip.web.index`          the image set (and a data dir's utterances), embedded once;
- :mod:`~espnet_speechclip.web.keyword_figure` each keyword's attention over the utterance (SVG);
- :mod:`~espnet_speechclip.web.app`            the Gradio page, offline, and its handlers;
- :mod:`~espnet_speechclip.web.browser`        headless system Chromium: screenshots and the browser test.

A package of its own because it is the only part that needs the ``web`` extra (Gradio) and a browser;
nothing else in espnet_speechclip imports it.
"""
