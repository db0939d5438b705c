import pytest
from helpers.corpora import make_photos


@pytest.fixture(scope="session")
def photos(tmp_path_factory):
    """A folder of 12 distinct photos."""
    folder = tmp_path_factory.mktemp("photos")
    make_photos(folder, 12)
    return folder


@pytest.fixture(scope="session")
def s2i(parallel_exp):
    from espnet_speechclip.inference.speech2image import Speech2Image

    return Speech2Image.from_pretrained(parallel_exp, batch_size=4)
