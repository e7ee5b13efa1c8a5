"""The dropout sweep: one run per rate, clean and masked accuracy against the rate with CIs equal to
an evaluation written here, rate 1 masked = clean by construction, a rerun resumes instead of
training again, and bad options exit 2 with one message."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from isoprobe.analysis import load_analysis
from isoprobe.data.pipeline import DataConfig
from isoprobe.engine.grid import Condition, InterventionEngine
from isoprobe.errors import ConfigError
from isoprobe.study.sweep import COLUMNS, SweepConfig, dropout_sweep
from isoprobe.training.trainer import TrainConfig
from tests.cli_helpers import assert_user_error, invoke

OPTIONS = dict(d_model=16, n_layers=2, n_heads=2, d_mlp=32, n_encoder_layers=1)


@pytest.fixture(scope="module")
def swept(db2_redundant, tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep")
    config = SweepConfig(pathway="cross", rates=(0.0, 0.5, 1.0), bootstrap=50)
    train_config = TrainConfig(epochs=2, batch_size=64, device="cpu")
    data_config = DataConfig(root=str(db2_redundant))
    return dropout_sweep(data_config, config, train_config, out, model_options=OPTIONS), out, (data_config, config, train_config)


def test_one_run_per_rate_and_the_table(swept):
    result, out, _ = swept
    table = result.table
    assert tuple(table.columns) == COLUMNS and list(table.rate) == [0.0, 0.5, 1.0]
    assert {p.name for p in out.iterdir()} == {"p0", "p0.5", "p1"}
    removed = load_analysis(out / "p1" / "checkpoint.pt").model
    assert removed.config.removed_pathways == ("cross",)
    assert load_analysis(out / "p0.5" / "checkpoint.pt").checkpoint.train_config["pathway_dropout"] == (("cross", 0.5),)
    row = table[table.rate == 1.0].iloc[0]
    assert row.masked_accuracy == row.clean_accuracy and row["drop"] == 0.0  # nothing left to mask


def test_numbers_equal_an_evaluation_written_here(swept):
    result, out, _ = swept
    row = result.table[result.table.rate == 0.0].iloc[0]
    analysis = load_analysis(out / "p0" / "checkpoint.pt")
    windows = analysis.windows
    inputs = [torch.as_tensor(np.asarray(windows.x[name])) for name in analysis.model.modality_names]
    engine = InterventionEngine(analysis.model)
    run = engine.run_grid(inputs, [Condition(tuple(range(engine.n_layers)), "cross")])
    target = torch.as_tensor(windows.y)
    assert row.clean_accuracy == pytest.approx(float((run.clean.argmax(1) == target).double().mean()))
    assert row.masked_accuracy == pytest.approx(float((run.logits[0].argmax(1) == target).double().mean()))
    assert row.clean_ci_low <= row.clean_accuracy <= row.clean_ci_high
    assert row.segments == len(np.unique(windows.segment))


def test_a_rerun_resumes_the_finished_runs(swept):
    result, out, (data_config, config, train_config) = swept
    before = {p: (out / p / "checkpoint.pt").stat().st_mtime_ns for p in ("p0", "p0.5", "p1")}
    again = dropout_sweep(data_config, config, train_config, out, model_options=OPTIONS)
    pd.testing.assert_frame_equal(again.table.drop(columns="checkpoint"), result.table.drop(columns="checkpoint"))
    history = load_analysis(out / "p0" / "checkpoint.pt").checkpoint.history
    assert len(history) == train_config.epochs  # resumed at the end: no epoch trained twice
    assert all((out / p / "checkpoint.pt").stat().st_mtime_ns >= t for p, t in before.items())


@pytest.mark.parametrize("values, field", [({"rates": (0.2, 1.5)}, "rates"), ({"rates": ()}, "rates"),
                                           ({"rates": (0.1, 0.1)}, "rates"), ({"arch": "mlp"}, "arch")])
def test_config_refuses_bad_values(values, field):
    with pytest.raises(ConfigError, match=f"^{field}"):
        SweepConfig(**values)


@pytest.mark.parametrize("options, fragments", [
    (["--rates", "0,1.5"], ["--rates", "[0, 1]"]),
    (["--rates", "0,half"], ["--rates", "half"]),
    (["--pathway", "crossy"], ["--pathway", "crossy"]),
    (["--arch", "mlp"], ["--arch", "mlp"]),
])
def test_cli_refuses_bad_options(db2_redundant, tmp_path, options, fragments):
    assert_user_error(invoke("sweep-dropout", "--data", db2_redundant, "--out", tmp_path / "s", "--epochs", 1, *options),
                      *fragments)
