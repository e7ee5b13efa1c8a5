"""Activation patching: a corruption of the inputs alone is fully undone by patching any activation
that everything downstream depends on (the input of the shared stage, blocks.0.hook_resid_pre, or the
last residual stream), and partly by activations that carry only part of the signal."""

from __future__ import annotations

import pytest
import torch

from isoprobe.engine.patching import margin_metric, patch_activations
from isoprobe.errors import ConfigError

from tests.engine.conftest import windows
from tests.tolerance import FLOAT32


@pytest.fixture(scope="module")
def runs(db2):
    clean, labels = windows(db2, 8)
    corrupted = [x[torch.roll(torch.arange(len(x)), 1)] for x in clean]  # each window gets another's signals
    return clean, corrupted, labels


def test_patching_the_shared_stage_input_restores_the_clean_metric(hier, runs):
    clean, corrupted, labels = runs
    hooks = ["blocks.0.hook_resid_pre", "hook_embed", "blocks.2.hook_resid_post", "blocks.1.hook_resid_mid",
             "blocks.0.attn.hook_z", "encoders.emg.blocks.0.hook_resid_post"]
    table = patch_activations(hier, clean, corrupted, hooks, margin_metric(labels))
    assert list(table.columns) == ["hook", "clean", "corrupted", "patched", "restored"]
    assert list(table.hook) == hooks
    rows = table.set_index("hook")
    metric = margin_metric(labels)
    with torch.no_grad():
        # float32 metrics: tolerances of 1e-5 · max(1, |value|)
        assert rows.clean.iloc[0] == pytest.approx(metric(hier(*clean)), rel=FLOAT32, abs=FLOAT32)
        assert rows.corrupted.iloc[0] == pytest.approx(metric(hier(*corrupted)), rel=FLOAT32, abs=FLOAT32)
    assert abs(rows.clean.iloc[0] - rows.corrupted.iloc[0]) > 0.05  # the corruption matters
    for full in ("blocks.0.hook_resid_pre", "hook_embed", "blocks.2.hook_resid_post", "blocks.1.hook_resid_mid"):
        assert rows.patched[full] == pytest.approx(rows.clean[full], rel=FLOAT32, abs=FLOAT32), full
        assert rows.restored[full] == pytest.approx(1.0, abs=1e-4), full
    # one modality's encoder output or one layer's attention carries only part of the signal
    for partial in ("blocks.0.attn.hook_z", "encoders.emg.blocks.0.hook_resid_post"):
        assert abs(rows.restored[partial] - 1.0) > 1e-3, partial


def test_patching_with_no_gap_reports_nan(hier, runs):
    clean, _, labels = runs
    table = patch_activations(hier, clean, clean, ["blocks.1.hook_resid_pre"], margin_metric(labels))
    assert table.restored.isna().all()
    assert table.patched.iloc[0] == pytest.approx(table.clean.iloc[0], rel=FLOAT32, abs=FLOAT32)


def test_unknown_hook_is_refused(hier, runs):
    clean, corrupted, labels = runs
    with pytest.raises(ConfigError, match="blocks.7.hook_resid_pre"):
        patch_activations(hier, clean, corrupted, ["blocks.0.hook_resid_pre", "blocks.7.hook_resid_pre"],
                          margin_metric(labels))
