import pytest


@pytest.fixture(scope="session")
def encoder(parallel_exp):
    """The MTEB encoder of the untrained tiny parallel model."""
    pytest.importorskip("mteb", reason="mteb is not installed (pip install -e '.[mteb]')")
    from espnet_speechclip.benchmark.mteb_encoder import SpeechCLIPEncoder

    return SpeechCLIPEncoder("org/tiny", source=str(parallel_exp), device="cpu", batch_size=4)
