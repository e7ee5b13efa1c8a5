"""Extending the engine is one class and one registration: an intervention defined and registered here,
which needs donors, runs through `isoprobe ablate` and `shift` without any other file knowing it."""

from __future__ import annotations

import pandas as pd
import pytest

from isoprobe.diagnostics.shift import ShiftConfig, shift
from isoprobe.engine.interventions import INTERVENTIONS, Resample, register
from tests.cli_helpers import invoke


class Halfway(Resample):
    """The pathway's contribution replaced by the mean of its own and a donor window's."""

    name = "toy-halfway"

    def replacement(self, engine, condition, layer, state):
        donor = super().replacement(engine, condition, layer, state)
        return lambda contribution: 0.5 * (contribution + donor(contribution))


@pytest.fixture
def halfway():
    register(Halfway)
    yield Halfway.name
    del INTERVENTIONS[Halfway.name]


def test_a_registered_intervention_with_donors_runs_in_ablate(trained, tmp_path, halfway):
    result = invoke("ablate", trained, "--layers", "all", "--pathway", "cross", "--intervention", halfway, "--draws", 2,
                    "--mode", "joint", "--bootstrap", 20, "--out", tmp_path)
    assert result.exit_code == 0, (result.output, result.exception)
    table = pd.read_csv(tmp_path / "ablation.csv")
    assert list(table.intervention) == [halfway] and table.draws.iloc[0] == 2
    # halfway to a donor moves the logits (the margin changes) less than resampling the whole contribution
    resampled = invoke("ablate", trained, "--layers", "all", "--pathway", "cross", "--intervention", "resample",
                       "--mode", "joint", "--bootstrap", 20, "--out", tmp_path / "resample")
    assert resampled.exit_code == 0
    whole = pd.read_csv(tmp_path / "resample" / "ablation.csv")
    assert 0 < abs(table.logit_margin_change.iloc[0]) < abs(whole.logit_margin_change.iloc[0])


def test_a_registered_intervention_runs_in_shift(db2, hier, halfway):
    windows = db2.splits["test"]
    table = shift(hier, windows, ShiftConfig(layers="1", interventions=(halfway,), permutations=20, bootstrap=20)).table
    assert set(table.intervention) == {halfway} and (table.cosine < 1).any()


def test_an_unregistered_name_is_refused_with_the_registered_ones(trained, tmp_path):
    result = invoke("ablate", trained, "--intervention", "toy-halfway", "--out", tmp_path / "out")
    assert result.exit_code == 2 and "mask, mean, resample" in result.output and not (tmp_path / "out").exists()
