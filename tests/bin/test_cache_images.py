"""bin/cache_images: recipe stage 3's command; --print_dir names a config's cache folder."""

import yaml

from espnet_speechclip.bin import cache_images
from espnet_speechclip.training.image_cache import clip_fingerprint


def test_print_dir_names_the_cache_of_the_configs_clip(tiny_clip, tmp_path, capsys):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(dict(clip_conf=dict(tiny_clip))))
    cache_images.main(["--config", str(config), "--cache_root", str(tmp_path / "emb"), "--print_dir"])
    printed = capsys.readouterr().out.strip()
    assert printed == str(tmp_path / "emb" / clip_fingerprint(**tiny_clip))
    assert not (tmp_path / "emb").exists()  # nothing embedded, nothing written


def test_two_configs_with_one_clip_share_a_folder(tiny_clip, tmp_path, capsys):
    printed = []
    for name, extra in (("a", {}), ("b", {"model": "cascaded"})):
        config = tmp_path / f"{name}.yaml"
        config.write_text(yaml.safe_dump(dict(clip_conf=dict(tiny_clip), **extra)))
        cache_images.main(["--config", str(config), "--cache_root", "emb", "--print_dir"])
        printed.append(capsys.readouterr().out.strip())
    assert printed[0] == printed[1]
