"""`--layers` and `--pathway` are parsed once per command (a plan made before the data are read is
what the analysis runs), and their grammar, tried on generated strings, either gives the conditions of
its canonical spelling or is refused with one message (ConfigError), never a traceback."""

from __future__ import annotations

import functools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import isoprobe.attribution.attention
import isoprobe.attribution.compare
import isoprobe.engine.ablate
import isoprobe.layersets
import isoprobe.models.pathways
from isoprobe.errors import ConfigError
from isoprobe.layersets import format_layers, parse_layer_label, parse_layers
from isoprobe.models.pathways import Pathway, parse_pathway
from tests.cli_helpers import invoke

PARSERS = {"parse_layers": (isoprobe.layersets, isoprobe.engine.ablate, isoprobe.attribution.compare,
                            isoprobe.attribution.attention),
           "parse_pathway": (isoprobe.models.pathways,)}  # pathway_rows calls it there


@pytest.fixture
def calls(monkeypatch):
    """How often each parser ran, wherever a module bound it."""
    counts = dict.fromkeys(PARSERS, 0)
    for name, modules in PARSERS.items():
        original = getattr(isoprobe.layersets if name == "parse_layers" else isoprobe.models.pathways, name)

        @functools.wraps(original)
        def counting(*args, _name=name, _original=original, **kwargs):
            counts[_name] += 1
            return _original(*args, **kwargs)

        for module in modules:
            monkeypatch.setattr(module, name, counting)
    return counts


@pytest.mark.parametrize("command, options", [
    ("ablate", ["--pathway", "cross", "--layers", "1-2", "--mode", "joint"]),
    ("ablate", ["--pathway", "cross", "--layers", "1-2", "--approx", "--check", "1"]),
    ("shift", ["--pathway", "cross", "--layers", "1-2", "--intervention", "mask,mean", "--permutations", "10"]),
    ("compare", ["--layers", "1-2", "--steps", "2"]),
])
def test_each_option_is_parsed_once(trained, tmp_path, calls, command, options):
    result = invoke(command, trained, *options, "--bootstrap", 20)
    assert result.exit_code == 0, (result.output, result.exception)
    assert calls["parse_layers"] == 1
    assert calls["parse_pathway"] == (0 if command == "compare" else 1)  # compare looks at cross, fixed


N_LAYERS = 5
LAYER_SPELLINGS = st.text(alphabet="0123456789-, al", max_size=12)


@settings(max_examples=400, deadline=None)
@given(LAYER_SPELLINGS)
def test_layers_parse_like_their_canonical_spelling_or_are_refused(spec):
    try:
        layers = parse_layers(spec, N_LAYERS)
    except ConfigError as error:
        assert error.option == "layers"
        return
    assert layers and all(0 <= layer < N_LAYERS for layer in layers) and list(layers) == sorted(set(layers))
    assert parse_layers(format_layers(layers, prefix=""), N_LAYERS) == layers  # the command line's spelling
    assert parse_layer_label(format_layers(layers)) == layers  # the tables' label


NAMES = ("emg", "acc")
PATHWAY_SPELLINGS = st.lists(st.sampled_from(["uni", "cross", "relay", "readout", "cls", "all", "emg->acc", "acc -> emg",
                                              "emg", "x->acc", "cls->emg", " cross ", "", "->", "+", ",", "foo"]),
                             min_size=1, max_size=4).map(lambda parts: "+".join(parts))


@settings(max_examples=400, deadline=None)
@given(PATHWAY_SPELLINGS)
def test_pathways_parse_like_their_canonical_spelling_or_are_refused(spec):
    try:
        pathway = parse_pathway(spec, NAMES)
    except ConfigError as error:
        assert error.option == "pathway"
        return
    again = parse_pathway(pathway.name, NAMES)
    assert again == pathway  # the canonical name is a fixed point
    groups = torch.tensor([0, 1, 1, 2, 2])
    assert torch.equal(Pathway(spec).edges(groups, NAMES), again.edges(groups, NAMES))
