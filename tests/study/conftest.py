"""The engine tests' fixtures (tiny DB2 data, small randomised transformers), for the planted checks run
on real ablation tables."""

from tests.engine.conftest import _one_thread, db2, mmt  # noqa: F401
