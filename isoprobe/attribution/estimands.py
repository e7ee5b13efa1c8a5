"""What a row of `isoprobe compare` estimates (DESIGN §5), without torch: the blocks whose rows are
shares of one thing, and the `Estimate` each method registers. The report colours and lists compare's
methods from these and from the table's own `block` and `method` columns."""

from __future__ import annotations

from dataclasses import dataclass

ACCURACY, MARGIN, RELATED = "share of clean accuracy", "share of clean logit margin", "related quantities"
DATA = "property of the data"  # what the labels need, whatever the model: not an estimate about the model
BLOCKS = (ACCURACY, MARGIN, RELATED, DATA)  # printed in this order; rows are comparable within a block only


@dataclass(frozen=True)
class Estimate:
    """One kind of row of compare: what it is called (`short` in narrow tables), its block, what it
    estimates (one line for the terminal), whether it also has per-layer rows, and `sanity`: the
    method of `isoprobe.attribution.sanity` that checks it under cascading randomisation (None: none)."""

    name: str
    block: str
    estimand: str
    short: str
    layered: bool = False
    sanity: str | None = None
