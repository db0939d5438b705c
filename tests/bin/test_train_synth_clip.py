"""The stand-in CLIP's training command: its options reach the trainer (the training itself is tested in
tests/training/test_synth_clip.py)."""

from espnet_speechclip.bin import train_synth_clip


def test_options_reach_the_trainer(monkeypatch):
    seen = {}
    monkeypatch.setattr(train_synth_clip, "train_synth_clip", lambda *a, **kw: seen.update(args=a, kwargs=kw))
    train_synth_clip.main(
        ["--train_dir", "data/synth_train", "--out", "clip.pt", "--steps", "5", "--lr", "0.5"]
    )
    assert seen["args"] == ("data/synth_train", "clip.pt")
    assert seen["kwargs"] == dict(steps=5, batch_size=128, lr=0.5, seed=0, eval_data_dir=None, threads=2)
