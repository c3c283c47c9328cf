"""The two real projects the attack suites share, each built once per module."""

from __future__ import annotations

import pytest

from tests.e2e_verification.attacks import Project, make_project


@pytest.fixture(scope="module")
def ini(tmp_path_factory: pytest.TempPathFactory) -> Project:
    return make_project("iniconfig", tmp_path_factory.mktemp("ini"))


@pytest.fixture(scope="module")
def six(tmp_path_factory: pytest.TempPathFactory) -> Project:
    return make_project("six", tmp_path_factory.mktemp("six"))
