"""Search a whole collection: embeddings in clip-retrieval's layout, indexed with FAISS.

- :mod:`.collection`: what a collection is (folder, ``img.scp`` / ``wav.scp``, list file) and how it is
  cut into shards;
- :mod:`.layout`: the folder on disk (``img_emb/``, ``metadata/``, ``index/``) and its manifest;
- :mod:`.embed`: embedding a shard with a trained SpeechCLIP, unreadable files counted, not fatal;
- :mod:`.build`: the resumable, shardable build (``python -m espnet_speechclip.bin.index``);
- :mod:`.kind`: which FAISS index a size and a memory budget get, and its measured recall;
- :mod:`.search`: :class:`~espnet_speechclip.index.search.EmbeddingIndex`, what every door queries.
"""
