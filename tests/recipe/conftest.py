"""The one miniature recipe run that the recipe, fault and reuse tests share: ``./run.sh`` stages 1-9 on a
miniature Flickr8k with the tiny hybrid+ config (:mod:`helpers.recipe`). Tests that
rerun stages on it leave it a finished run: what they break they restore, or they work on a
:func:`helpers.recipe.copy_of_run`."""

import pytest
from helpers.corpora import make_flickr8k_tree
from helpers.recipe import MINI_CAPTIONS, MINI_CONFIGS, MINI_EPOCHS, MINI_IMAGES, RecipeRun, copy_recipe
from helpers.stand_ins import make_tiny_clip


@pytest.fixture(scope="session")
def flickr8k_run(tmp_path_factory) -> RecipeRun:
    tmp = tmp_path_factory.mktemp("flickr8k_run")
    corpus = make_flickr8k_tree(tmp / "flickr8k", n_images=MINI_IMAGES, captions=MINI_CAPTIONS)
    rec = copy_recipe(tmp / "sc1")
    (rec / "exp" / "clip").mkdir(parents=True)
    make_tiny_clip(rec / "exp" / "clip" / "tiny-clip.pt")
    run = RecipeRun(rec, corpus, "")
    # one training thread, one inference job per set (the split into jobs and their merge run in
    # test_recipe.py's Hub round trip)
    run.out = run.run(
        *("--train_config", " ".join(MINI_CONFIGS), "--nj", "1", "--inference_nj", "1"),
        *("--train_args", f"--max_epoch {MINI_EPOCHS}"),
    )
    return run
