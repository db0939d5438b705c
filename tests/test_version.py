"""version: the one place the package's version is written, read by the package and its metadata."""

import configparser

from helpers import ROOT
from packaging.version import Version

import espnet_speechclip
from espnet_speechclip.version import __version__


def test_the_version_is_one_pep440_version_the_package_and_its_metadata_read():
    assert str(Version(__version__)) == __version__
    assert espnet_speechclip.__version__ == __version__
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    assert setup["metadata"]["version"] == "attr: espnet_speechclip.version.__version__"
