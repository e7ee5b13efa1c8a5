"""A check the adapters' tests share: the engine's masked logits against the model run with a mask
written in the test."""

from __future__ import annotations

import torch

from isoprobe.engine.grid import Condition
from tests.tolerance import assert_close


def assert_masked_as_written(engine, run, reference: torch.Tensor, layer: int, pathway: str, n_layers: int) -> None:
    """`run` (the engine's grid of the one condition pathway at `layer`) equals `reference`, the model run
    with −inf written on those edges; a condition null by construction returns the clean logits exactly,
    and any other changed something, so that the comparison means something."""
    assert_close(run.logits[0], reference, rel=1e-5)
    if engine.null_by_construction(Condition((layer,), pathway)):  # e.g. cross at the last layer: CLS reads none
        assert torch.equal(run.logits[0], run.clean) and layer == n_layers - 1
    else:
        assert (run.logits[0] - run.clean).abs().max() > 1e-4
