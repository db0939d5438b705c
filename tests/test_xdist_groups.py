"""``make test`` keeps a group of tests on one worker (tests/conftest.py): xdist reads the group from the
test's id, where its worker adds it. A pytest that ignores that (pytest 9 with xdist 3.8) would split the
groups silently and build shared recipe runs once per worker; this test fails instead."""

import pytest


def test_a_test_carries_its_group_under_make_test(request):
    if not getattr(request.config.option, "loadgroup", False):
        pytest.skip("not run by pytest-xdist with --dist loadgroup (make test)")
    assert request.node.nodeid.endswith("@tests/test_xdist_groups.py")
