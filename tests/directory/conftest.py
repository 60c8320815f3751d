"""Fixtures of the directory's tests."""

from __future__ import annotations

import pytest

from tests.factories import DirectoryFactory


@pytest.fixture
def directory(factory) -> DirectoryFactory:
    return DirectoryFactory(factory)
