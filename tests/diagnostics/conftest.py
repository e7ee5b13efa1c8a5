"""The engine tests' fixtures (tiny DB2 data, small randomised transformers, a short trained
checkpoint), shared with the diagnostics tests."""

from tests.engine.conftest import _one_thread, db2, db2_emg, hier, mmt, randomise, small, trained, trained_mlp, windows  # noqa: F401
