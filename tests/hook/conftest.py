"""The hook tests' shared pieces: the prepared synthetic DB2 windows the analyses run on."""

from __future__ import annotations

import pytest

from isoprobe.data.pipeline import DataConfig, prepare


@pytest.fixture(scope="session")
def data(db2_redundant):
    """The small synthetic DB2 data set (tests/conftest.py), windowed and split, not cached."""
    return prepare(DataConfig(root=str(db2_redundant)), cache_dir=None)
