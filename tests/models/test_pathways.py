"""Pathway edge sets against hand-enumerated edges, and the parsers of --pathway, --layers and --heads
(DESIGN §4): uni, cross, relay, readout, cls, all, directed pairs, `+` unions, self edges kept unless
mask_self."""

from __future__ import annotations

import itertools

import pytest
import torch

from isoprobe.layersets import parse_layers
from isoprobe.models.pathways import Pathway, parse_heads, parse_pathway, split_rows
from isoprobe.errors import ConfigError

from tests.engine.reference import as_tensor, naive_edges

# Position: 0 = CLS, 1-2 = emg, 3-4 = acc.
GROUPS = torch.tensor([0, 1, 1, 2, 2])
NAMES = ("emg", "acc")
EMG, ACC = (1, 2), (3, 4)
SELF = {(i, i) for i in range(5)}

HAND = {
    "uni": {(1, 2), (2, 1), (3, 4), (4, 3)},
    "cross": {(q, k) for q in EMG for k in ACC} | {(q, k) for q in ACC for k in EMG},
    "cls": {(0, k) for k in range(1, 5)} | {(q, 0) for q in range(1, 5)},
    "relay": {(q, 0) for q in range(1, 5)},
    "readout": {(0, k) for k in range(1, 5)},
    "cross+relay": {(q, k) for q in EMG for k in ACC} | {(q, k) for q in ACC for k in EMG} | {(q, 0) for q in range(1, 5)},
    "all": {(q, k) for q in range(5) for k in range(5) if q != k},
    "emg->acc": {(1, 3), (1, 4), (2, 3), (2, 4)},
    "acc->emg": {(3, 1), (3, 2), (4, 1), (4, 2)},
    "emg->emg": {(1, 2), (2, 1)},
    "cls->acc": {(0, 3), (0, 4)},
    "acc->cls": {(3, 0), (4, 0)},
    "uni+cls": {(1, 2), (2, 1), (3, 4), (4, 3)} | {(0, k) for k in range(1, 5)} | {(q, 0) for q in range(1, 5)},
    "emg->acc+ acc->emg": {(q, k) for q in EMG for k in ACC} | {(q, k) for q in ACC for k in EMG},
    " emg -> acc +cls->emg": {(1, 3), (1, 4), (2, 3), (2, 4), (0, 1), (0, 2)},
}
# Self edges a pathway would hold if they were not excluded by default.
HAND_SELF = {
    "uni": {(1, 1), (2, 2), (3, 3), (4, 4)},
    "cross": set(),
    "cls": {(0, 0)},
    "relay": set(),
    "readout": set(),
    "cross+relay": set(),
    "all": SELF,
    "emg->acc": set(),
    "acc->emg": set(),
    "emg->emg": {(1, 1), (2, 2)},
    "cls->acc": set(),
    "acc->cls": set(),
    "uni+cls": SELF,
    "emg->acc+ acc->emg": set(),
    " emg -> acc +cls->emg": set(),
}


def pairs(edges: torch.Tensor) -> set[tuple[int, int]]:
    return {(int(q), int(k)) for q, k in edges.nonzero().tolist()}


@pytest.mark.parametrize("spec", list(HAND))
def test_edges_match_hand_enumeration(spec):
    edges = Pathway(spec).edges(GROUPS, NAMES)
    assert edges.dtype == torch.bool and edges.shape == (5, 5)
    assert pairs(edges) == HAND[spec]


@pytest.mark.parametrize("spec", list(HAND))
def test_mask_self_adds_exactly_the_pathways_self_edges(spec):
    assert pairs(Pathway(spec).edges(GROUPS, NAMES, mask_self=True)) == HAND[spec] | HAND_SELF[spec]


def test_named_pathways_partition_every_edge():
    """uni, cross, relay and readout partition the edges between distinct tokens; cls is relay,
    readout and CLS's own edge."""
    uni, cross, relay, readout, cls = (Pathway(p).edges(GROUPS, NAMES, mask_self=True)
                                       for p in ("uni", "cross", "relay", "readout", "cls"))
    parts = [uni, cross, relay, readout]
    for i, a in enumerate(parts):
        for b in parts[i + 1:]:
            assert not (a & b).any()
    off_diagonal = ~torch.eye(5, dtype=torch.bool)
    assert torch.equal((uni | cross | relay | readout) & off_diagonal, off_diagonal)
    cls_self = torch.zeros(5, 5, dtype=torch.bool)
    cls_self[0, 0] = True
    assert torch.equal(relay | readout | cls_self, cls)
    assert torch.equal(Pathway("uni+cross+cls").edges(GROUPS, NAMES), Pathway("all").edges(GROUPS, NAMES))
    assert torch.equal(Pathway("relay+readout").edges(GROUPS, NAMES), Pathway("cls").edges(GROUPS, NAMES))


@pytest.mark.parametrize("mask_self", [False, True])
def test_edges_match_pairwise_reference_on_a_three_modality_layout(mask_self):
    groups = [0, 2, 1, 1, 3, 2, 3, 3, 1]  # not contiguous, three modalities
    names = ("emg", "acc", "force")
    directed = [f"{a}->{b}" for a, b in itertools.product(("cls",) + names, repeat=2)]
    for spec in ["uni", "cross", "cls", "relay", "readout", "all", "uni+cross", "cross+cls", "cross+relay", *directed,
                 "force->emg+emg->force"]:
        expected = as_tensor(naive_edges(groups, spec, names, mask_self))
        assert torch.equal(Pathway(spec).edges(torch.tensor(groups), names, mask_self), expected), spec


def test_parse_pathway_normalises_and_validates():
    assert parse_pathway(" cross + relay ", NAMES).name == "cross+relay"
    assert parse_pathway("emg->acc", NAMES).name == "emg->acc"
    assert parse_pathway("cls->emg", NAMES).name == "cls->emg"


def test_split_rows_keeps_unions_together():
    assert split_rows("uni, cross+relay ,cls") == ["uni", "cross+relay", "cls"]


def test_a_comma_inside_one_condition_is_refused():
    with pytest.raises(ConfigError, match=r"\+") as caught:
        parse_pathway("cross,relay", NAMES)
    assert "comma separates rows" in str(caught.value)


def test_parse_pathway_unknown_name_lists_the_valid_ones():
    with pytest.raises(ConfigError) as caught:
        parse_pathway("diagonal", NAMES)
    message = str(caught.value)
    assert message.startswith("pathway:") and "'diagonal'" in message
    for valid in ("uni", "cross", "relay", "readout", "cls", "all", "emg->acc", "acc->emg", "cross+relay"):
        assert valid in message


@pytest.mark.parametrize("spec", ["emg->foo", "foo->acc", "cross+emg->foo"])
def test_parse_pathway_unknown_modality_names_the_model_modalities(spec):
    with pytest.raises(ConfigError, match="foo") as caught:
        parse_pathway(spec, NAMES)
    assert "emg, acc" in str(caught.value)


@pytest.mark.parametrize("spec", ["", " + ", "->acc", "emg->", "cross+", "+relay"])
def test_parse_pathway_refuses_empty_or_half_pairs(spec):
    with pytest.raises(ConfigError, match="pathway"):
        parse_pathway(spec, NAMES)


@pytest.mark.parametrize("spec, n_layers, expected", [
    ("all", 3, (0, 1, 2)),
    ("1-3", 5, (0, 1, 2)),
    ("2,4", 5, (1, 3)),
    ("1-2,5", 5, (0, 1, 4)),
    ("3,1,3", 3, (0, 2)),
    ("2", 2, (1,)),
])
def test_parse_layers_counts_from_one(spec, n_layers, expected):
    assert parse_layers(spec, n_layers) == expected


@pytest.mark.parametrize("spec", ["0", "1-9", "4", "3-1", "a", "1-", "1-2-3", ""])
def test_parse_layers_refuses_out_of_range_or_malformed(spec):
    with pytest.raises(ConfigError, match="^layers"):
        parse_layers(spec, 3)


@pytest.mark.parametrize("spec", ["5-1", "1,5-1", "1-2,3-2"])
def test_a_reversed_range_is_an_error_never_dropped(spec):
    """`5-1,3` once became just L3: a backwards range now fails and says how to write it."""
    with pytest.raises(ConfigError, match="runs backwards"):
        parse_layers(spec, 5)


def test_parse_heads():
    assert parse_heads("all", 2) is None
    assert parse_heads("1,0", 2) == (0, 1)
    assert parse_heads("1", 4) == (1,)
    for bad in ("2", "-1", "x", "0;1", ""):
        with pytest.raises(ConfigError, match="^heads"):
            parse_heads(bad, 2)
