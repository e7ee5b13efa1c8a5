"""One batch loop for every command that runs a grid of conditions over an evaluated set (`ablate`,
`shift`, `compare`'s ablations): it gives each intervention what it declares it needs — a fit on
reference windows (`needs_reference`), donor windows per draw (`takes_donors`, drawn by
`isoprobe.engine.donors` from the seed alone) — and runs `InterventionEngine.run_grid` batch by batch.
No number depends on the batch size."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

from isoprobe.data.batches import window_batches
from isoprobe.data.pipeline import WindowSet
from isoprobe.engine.donors import DonorRule, donor_indices
from isoprobe.engine.grid import Condition, GridRun, InterventionEngine
from isoprobe.engine.interventions import INTERVENTIONS
from isoprobe.errors import ConfigError


@dataclass(frozen=True)
class GridBatch:
    """One batch of the evaluated set: its positions in the set and what `run_grid` returned."""

    rows: slice
    run: GridRun


def grid_batches(engine: InterventionEngine, windows: WindowSet, conditions: Sequence[Condition], *,
                 reference: WindowSet | None = None, batch_size: int = 512, device="cpu", seed: int = 0,
                 donor: DonorRule = "any", capture: Sequence[str] = ()) -> Iterator[GridBatch]:
    """Fit, draw donors, then yield each batch's grid run (the model is on `device` already).

    reference: the windows interventions that need reference windows fit on (the training split;
    default `windows`); donors are drawn over all of `windows`, keyed by `windows.start`."""
    if not len(windows):
        raise ConfigError("windows", 0, "no windows to evaluate")
    names = tuple(engine.model.modality_names)
    strategies = [INTERVENTIONS[name] for name in dict.fromkeys(c.intervention for c in conditions)]
    if any(strategy.needs_reference for strategy in strategies):
        fitted = reference if reference is not None else windows
        engine.fit(window_batches(fitted.x, names, batch_size, device), conditions)
    draws = {c.draw for c in conditions if INTERVENTIONS[c.intervention].takes_donors}
    donors = [donor_indices(len(windows), seed, draw, windows.y, windows.start, donor)
              for draw in range(max(draws) + 1)] if draws else []
    batches = zip(window_batches(windows.x, names, batch_size, device),
                  *(window_batches(windows.x, names, batch_size, device, index=d) for d in donors))
    for index, (inputs, *donor_inputs) in enumerate(batches):
        start = index * batch_size
        yield GridBatch(slice(start, start + len(inputs[0])),
                        engine.run_grid(inputs, conditions, donors=donor_inputs, capture=capture))
