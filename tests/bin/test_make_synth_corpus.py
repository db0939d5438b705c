"""The spoken-shapes corpus command: its options reach the generator (the generator itself is tested in
tests/data/synth and by the recipe)."""

from espnet_speechclip.bin import make_synth_corpus


def test_options_reach_the_generator(monkeypatch, tmp_path):
    seen = {}
    monkeypatch.setattr(make_synth_corpus, "generate", lambda *a, **kw: seen.update(args=a, kwargs=kw))
    make_synth_corpus.main(
        ["--out_dir", str(tmp_path / "dump"), "--data_dir", "data", "--n_dev", "7", "--nj", "3"]
    )
    assert seen["args"] == (str(tmp_path / "dump"), "data")
    assert seen["kwargs"] == dict(seed=0, n_train=1600, n_dev=7, n_test=200, captions_per_image=3, workers=3)
