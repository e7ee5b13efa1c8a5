"""Shared fixtures: small synthetic data sets written once per test session in the real layouts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io

from isoprobe.data.synth import SynthConfig, generate


def make_synth(root: Path, **options) -> Path:
    """Write a small synthetic data set (defaults: DB2 layout, 1 subject, 6 gestures, 1.2 s repetitions)."""
    settings = dict(layout="ninapro-db2", preset="redundant", subjects=1, gestures=6,
                    seconds_per_repetition=1.2, rest_seconds=0.6, seed=0) | options
    generate(SynthConfig(**settings), root)
    return root


@pytest.fixture(scope="session")
def db2_redundant(tmp_path_factory) -> Path:
    return make_synth(tmp_path_factory.mktemp("db2_redundant"))


@pytest.fixture(scope="session")
def hd_redundant(tmp_path_factory) -> Path:
    return make_synth(tmp_path_factory.mktemp("hd_redundant"), layout="hdsemg65", gestures=4,
                      seconds_per_repetition=1.0, rest_seconds=0.5)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Every test gets its own window cache, so no test sees another's entries."""
    monkeypatch.setenv("ISOPROBE_CACHE", str(tmp_path / "cache"))


@pytest.fixture(autouse=True)
def _restore_root_logger():
    """The CLI's root callback reconfigures logging (logging.basicConfig(force=True)); undo it."""
    import logging

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


SMALL_DB2_SAMPLES = 4000  # rest, then gesture 1 repetitions 1–2 of the fixture's E1 file


@pytest.fixture(scope="session")
def db2_small_vars(db2_redundant) -> dict[str, np.ndarray]:
    """A valid small DB2 exercise-1 file's variables: the fixture's first SMALL_DB2_SAMPLES samples.
    Tests alter copies of these to build bad files."""
    loaded = scipy.io.loadmat(str(db2_redundant / "DB2_s1" / "S1_E1_A1.mat"))
    n = len(loaded["emg"])
    return {k: (v[:SMALL_DB2_SAMPLES] if v.shape[0] == n else v) for k, v in loaded.items() if not k.startswith("__")}
