"""Logit masking and replacement against an independent reference (explicit loops over heads,
queries and keys in float64), and the identities masking must satisfy (DESIGN §4): every edge of a
layer masked = no attention at all, an empty edge set or no head = no change (bit for bit: no hook
runs), a condition null by construction = the clean logits, cross on the multimodal transformer =
no change, never NaN forward or backward, the staged grid = one run per condition. Float32 results
are compared with tolerances scaled to their magnitude (tests/tolerance.py)."""

from __future__ import annotations

import copy

import pytest
import torch

import isoprobe.models.components.attention as attention_module
from isoprobe.engine.grid import Condition, InterventionEngine
from isoprobe.errors import ConfigError

from tests.engine import reference as ref
from tests.engine.conftest import randomise, small, windows
from tests.tolerance import assert_close


@pytest.fixture(scope="module")
def inputs(db2):
    return windows(db2, 6)[0]


@pytest.fixture(scope="module")
def clean(hier, inputs):
    with torch.no_grad():
        return hier(*inputs)


def reference_edits(model, condition: Condition, mask_self: bool, **edit) -> dict[int, ref.Edit]:
    edges = ref.naive_edges(model.token_modalities.tolist(), condition.pathway, model.modality_names, mask_self)
    heads = range(model.blocks[0].attn.n_heads) if condition.heads is None else condition.heads
    return {layer: ref.Edit(edges, list(heads), **edit) for layer in condition.layers}


MASKS = [
    # (layers, pathway, heads, mask_self)
    ((0,), "cross", None, False),
    ((1,), "uni", (1,), False),
    ((0, 1, 2), "cls", None, False),
    ((2,), "all", None, True),
    ((0, 2), "emg->acc", (0,), False),
    ((1,), "uni+cls", None, True),
    ((0, 1, 2), "acc->emg+cls->emg", (1,), False),
    ((1, 2), "cross", (0, 1), True),
]


@pytest.mark.parametrize("layers, pathway, heads, mask_self", MASKS)
def test_mask_matches_loop_reference(hier, inputs, clean, layers, pathway, heads, mask_self):
    condition = Condition(layers, pathway, heads)
    engine = InterventionEngine(hier, mask_self=mask_self)
    expected, _ = ref.hierarchical_forward(hier, inputs, reference_edits(hier, condition, mask_self))
    run = engine.run_grid(inputs, [condition])
    grid_clean, (grid,) = run.clean, run.logits
    (naive,) = engine.run_naive(inputs, [condition])
    assert_close(grid, expected)
    assert_close(naive, expected)
    assert_close(grid_clean, clean)
    assert (grid - clean).abs().max() > 1e-3  # the condition really changes the logits


def test_a_different_mask_per_layer_matches_the_reference(hier, inputs, clean):
    """Hooks of several conditions compose: L1 cross (all heads), L2 emg->acc (head 0), L3 cls (head 1)."""
    engine = InterventionEngine(hier)
    parts = [Condition((0,), "cross"), Condition((1,), "emg->acc", (0,)), Condition((2,), "cls", (1,))]
    hooks = [hook for condition in parts for hook in engine.hooks(condition)]
    with torch.no_grad():
        out = hier.run_with_hooks(*inputs, fwd_hooks=hooks)
    ids = hier.token_modalities.tolist()
    edits = {layer: ref.Edit(ref.naive_edges(ids, c.pathway, hier.modality_names), heads)
             for layer, c, heads in zip(range(3), parts, ([0, 1], [0], [1]))}
    expected, _ = ref.hierarchical_forward(hier, inputs, edits)
    assert_close(out, expected)
    assert (out - clean).abs().max() > 1e-3


def test_clean_reference_matches_the_model(hier, inputs, clean):
    expected, _ = ref.hierarchical_forward(hier, inputs)
    assert_close(clean, expected)


def test_in_float64_the_engine_matches_the_reference_to_rounding(hier, inputs):
    model = copy.deepcopy(hier).double()
    double = [x.double() for x in inputs]
    conditions = [Condition((0, 2), "cross", (1,)), Condition((1,), "cls"), Condition((0, 1, 2), "uni+emg->acc")]
    engine = InterventionEngine(model, mask_self=True)
    outs = engine.run_grid(double, conditions).logits
    for condition, out in zip(conditions, outs):
        expected, _ = ref.hierarchical_forward(hier, inputs, reference_edits(hier, condition, True))
        torch.testing.assert_close(out, expected, atol=1e-10, rtol=0)  # float64 both: ~1e5 ulps


@pytest.fixture
def explicit_calls(monkeypatch) -> list[int]:
    """Counts attention calls on the explicit-scores path (they call `safe_softmax`): every
    intervention's hook puts its layer there, so a count of 0 means no intervention hook ran."""
    calls, original = [0], attention_module.safe_softmax

    def counted(scores):
        calls[0] += 1
        return original(scores)

    monkeypatch.setattr(attention_module, "safe_softmax", counted)
    return calls


def test_uni_or_cross_in_the_last_layer_returns_the_clean_logits(hier, inputs, clean):
    """Only non-CLS queries lose keys there, and the CLS head reads the CLS token alone: null by
    construction, so the engine returns the clean logits themselves. That the hooks really leave the
    prediction alone is checked here, not assumed; captured activations come from a real run (the
    non-CLS positions do change). `cls` in the last layer is the negative control."""
    engine = InterventionEngine(hier)
    conditions = [Condition((2,), "uni"), Condition((2,), "cross"), Condition((2,), "cls")]
    assert [engine.null_by_construction(c) for c in conditions] == [True, True, False]
    assert not any(engine.touches_nothing(c) for c in conditions)
    for condition in conditions[:2]:
        with torch.no_grad():
            assert_close(hier.run_with_hooks(*inputs, fwd_hooks=engine.hooks(condition)), clean)
    names = ["blocks.2.hook_resid_post"]
    for capture in ((), names):
        run = engine.run_grid(inputs, conditions, capture=capture)
        assert torch.equal(run.logits[0], run.clean) and torch.equal(run.logits[1], run.clean)
        assert (run.logits[2] - run.clean).abs().max() > 1e-2
    naive = engine.run_naive(inputs, conditions)
    assert torch.equal(naive[0], naive[1]) and (naive[2] - naive[0]).abs().max() > 1e-2
    assert_close(naive[0], clean)
    for activations in run.activations[:2]:
        resid, clean_resid = activations[names[0]], run.clean_activations[names[0]]
        assert (resid[:, 1:] - clean_resid[:, 1:]).abs().max() > 1e-2
        assert_close(resid[:, 0], clean_resid[:, 0])


# --- every edge masked ---------------------------------------------------------------------------

def _zero(value, hook):
    return torch.zeros_like(value)


@pytest.mark.parametrize("layer", [0, 1, 2])
def test_masking_every_edge_of_a_layer_equals_zeroing_its_z(hier, inputs, clean, layer):
    """With every key masked each pattern row is zero, so z = 0 and the attention output is the output
    projection's bias alone: the run equals one with blocks.{l}.attn.hook_z set to zero — not one with
    hook_attn_out zeroed (the bias stays)."""
    engine = InterventionEngine(hier, mask_self=True)
    condition = Condition((layer,), "all")
    seen = {}

    def keep(name):
        def hook(value, hook):
            seen[name] = value.detach().clone()
        return hook

    with torch.no_grad():
        masked = hier.run_with_hooks(*inputs, fwd_hooks=engine.hooks(condition) + [
            (f"blocks.{layer}.attn.hook_pattern", keep("pattern")), (f"blocks.{layer}.hook_attn_out", keep("attn_out"))])
        zero_z = hier.run_with_hooks(*inputs, fwd_hooks=[(f"blocks.{layer}.attn.hook_z", _zero)])
        zero_out = hier.run_with_hooks(*inputs, fwd_hooks=[(f"blocks.{layer}.hook_attn_out", _zero)])
    assert torch.equal(seen["pattern"], torch.zeros_like(seen["pattern"]))
    bias = hier.blocks[layer].attn.out.bias[0]
    assert torch.equal(seen["attn_out"], bias.expand_as(seen["attn_out"]))
    assert_close(masked, zero_z)
    (grid,) = engine.run_grid(inputs, [condition]).logits
    assert_close(grid, zero_z)
    assert (masked - clean).abs().max() > 1e-2
    assert (masked - zero_out).abs().max() > 1e-3


# --- empty edge sets -----------------------------------------------------------------------------

def test_an_empty_edge_set_changes_nothing(db2_emg, explicit_calls):
    """A single-modality model has no cross-modal edge: `cross` selects nothing, so no hook runs, by
    any intervention, and the logits and captured activations are the clean ones, bit for bit (on
    any CPU: nothing is recomputed). Masking `uni`, which does select edges, is the negative control."""
    model = randomise(small(db2_emg, "hierarchical", n_layers=2, n_encoder_layers=1), seed=3)
    inputs = windows(db2_emg, 6)[0]
    engine = InterventionEngine(model, mask_self=True)
    assert not engine.edges("cross").any()
    assert torch.equal(engine.edges("emg->emg"), engine.edges("uni"))  # every non-CLS edge is unimodal
    conditions = [Condition((0, 1), "cross"), Condition((0,), "cross", (1,)), Condition((0, 1), "cross", None, "mean"),
                  Condition((1,), "cross", None, "resample")]
    assert all(engine.touches_nothing(c) and engine.null_by_construction(c) for c in conditions)
    engine.fit([windows(db2_emg, 4, split="validation")[0]], conditions)
    donors = [windows(db2_emg, 6, offset=3)[0]]
    names = ["blocks.0.hook_resid_post", "hook_cls"]
    with torch.no_grad():
        reference = model(*inputs)
    explicit_calls[0] = 0
    run = engine.run_grid(inputs, conditions, donors=donors, capture=names)
    naive = engine.run_naive(inputs, conditions, donors=donors)
    assert explicit_calls[0] == 0
    for out in run.logits:
        assert torch.equal(out, run.clean)
    for out in naive:
        assert torch.equal(out, reference)
    for activations in run.activations:
        assert all(torch.equal(activations[name], run.clean_activations[name]) for name in names)
    (masked,) = engine.run_grid(inputs, [Condition((0, 1), "uni")]).logits
    assert explicit_calls[0] == 2 and (masked - run.clean).abs().max() > 1e-2


def test_no_heads_selected_changes_nothing(hier, inputs, explicit_calls):
    engine = InterventionEngine(hier, mask_self=True)
    conditions = [Condition((0, 1, 2), "all", heads=()), Condition((0, 1, 2), "all", heads=(0,))]
    assert engine.touches_nothing(conditions[0]) and not engine.null_by_construction(conditions[1])
    run = engine.run_grid(inputs, conditions)
    assert explicit_calls[0] == 3  # the three layers of the second condition only
    assert torch.equal(run.logits[0], run.clean)
    assert (run.logits[1] - run.clean).abs().max() > 1e-2


def test_masking_cross_on_the_multimodal_transformer_is_a_no_op(mmt, db2, explicit_calls):
    """The mmt's encoders never attend across modalities (DESIGN §3): the built-in control. Its cross
    edges exist in the token layout but not in the model, so conditions on them touch nothing: no
    hook runs and the logits are the clean ones, exactly. That masking them would change nothing is
    checked too, through the hooks."""
    inputs = windows(db2, 6)[0]
    engine = InterventionEngine(mmt)
    assert engine.edges("cross").sum() > 0  # the edges exist in the layout; the model ignores them
    assert not engine.edges("cls").any()  # and it has no CLS token
    conditions = [Condition((0,), "cross"), Condition((0, 1), "cross"), Condition((0, 1), "emg->acc+acc->emg"),
                  Condition((0, 1), "cls"), Condition((0, 1), "uni")]
    assert [engine.touches_nothing(c) for c in conditions] == [True] * 4 + [False]
    with torch.no_grad():
        reference = mmt(*inputs)
        hooked = mmt.run_with_hooks(*inputs, fwd_hooks=engine.hooks(conditions[2]))
    assert_close(hooked, reference)  # explicit-scores path against the fused one: float rounding only
    explicit_calls[0] = 0
    run = engine.run_grid(inputs, conditions[:4])
    naive = engine.run_naive(inputs, conditions[:4])
    assert explicit_calls[0] == 0
    assert_close(run.clean, reference)
    assert all(torch.equal(out, run.clean) for out in run.logits)
    assert all(torch.equal(out, reference) for out in naive)
    outs, naive = engine.run_grid(inputs, conditions).logits, engine.run_naive(inputs, conditions)
    assert (outs[4] - reference).abs().max() > 1e-2  # unimodal masking does act on it
    assert_close(outs[4], naive[4])


# --- never NaN -----------------------------------------------------------------------------------

@pytest.mark.parametrize("layers, pathway, reads_input", [
    ((0, 1, 2), "all", False),  # nothing attends anywhere: the CLS head sees the CLS embedding alone
    ((0, 1, 2), "cls", False),  # CLS isolated in every layer, its own row empty
    ((1,), "cls", True),  # CLS row empty in L2 only: it read the windows in L1
    ((0, 2), "all", True),
])
def test_fully_masked_rows_give_finite_outputs_and_gradients(hier, db2, layers, pathway, reads_input):
    model = copy.deepcopy(hier)
    engine = InterventionEngine(model, mask_self=True)
    inputs = [x.clone().requires_grad_(True) for x in windows(db2, 4)[0]]
    rows = {}

    def count_empty_rows(pattern, hook):
        rows[hook.name] = int((pattern.sum(-1) == 0).sum())

    hooks = engine.hooks(Condition(layers, pathway)) + [(f"blocks.{l}.attn.hook_pattern", count_empty_rows) for l in layers]
    logits = model.run_with_hooks(*inputs, fwd_hooks=hooks)
    assert all(count > 0 for count in rows.values()) and len(rows) == len(layers)  # rows with no key left
    assert torch.isfinite(logits).all()
    torch.log_softmax(logits, dim=-1)[:, 0].sum().backward()
    for x in inputs:
        assert x.grad is not None and torch.isfinite(x.grad).all()
        assert bool(x.grad.abs().sum() > 0) == reads_input
    for name, parameter in model.named_parameters():
        assert parameter.grad is None or torch.isfinite(parameter.grad).all(), name
    assert model.embed.cls_token.grad.abs().sum() > 0
    for layer in layers:
        assert model.blocks[layer].attn.qkv.weight.grad is not None


def test_fully_masked_mmt_rows_are_finite_too(mmt, db2):
    model = copy.deepcopy(mmt)
    engine = InterventionEngine(model, mask_self=True)
    inputs = [x.clone().requires_grad_(True) for x in windows(db2, 4)[0]]
    logits = model.run_with_hooks(*inputs, fwd_hooks=engine.hooks(Condition((0, 1), "uni")))
    assert torch.isfinite(logits).all()
    logits.sum().backward()
    assert all(torch.isfinite(x.grad).all() for x in inputs)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


# --- replacement interventions -------------------------------------------------------------------

@pytest.fixture(scope="module")
def donor_inputs(db2, inputs):
    """Six other windows, row-aligned with `inputs`: the donors of one resample draw."""
    return windows(db2, 6, offset=5)[0]


@pytest.mark.parametrize("layers, pathway, heads", [((1,), "cross", (1,)), ((0, 1, 2), "uni+relay", None),
                                                    ((0, 2), "cls", (0,))])
def test_resample_takes_each_donors_clean_contribution_at_every_layer(hier, inputs, donor_inputs, layers, pathway, heads):
    """At every intervened layer the window takes its donor's contribution from the donor's clean
    run, not one already changed by the intervention at a lower layer (DESIGN §4). The reference
    records the donors' clean contributions with its own loops, then replaces layer by layer."""
    condition = Condition(layers, pathway, heads, "resample")
    edits = reference_edits(hier, condition, False)
    _, donor_parts = ref.hierarchical_forward(hier, donor_inputs, record=edits[layers[0]].edges)
    for layer in layers:
        edits[layer] = ref.Edit(edits[layer].edges, edits[layer].heads, "replace", replace=lambda c, d=donor_parts[layer]: d)
    expected, _ = ref.hierarchical_forward(hier, inputs, edits)
    engine = InterventionEngine(hier)
    run = engine.run_grid(inputs, [condition], donors=[donor_inputs])
    (naive,) = engine.run_naive(inputs, [condition], donors=[donor_inputs])
    assert_close(run.logits[0], expected)
    assert_close(naive, expected)
    assert (run.logits[0] - run.clean).abs().max() > 1e-3
    if len(layers) > 1:
        # The negative control: had the donors' contributions above the first layer been taken from
        # donors that were themselves intervened on there (the old behaviour; here each donor's donor
        # is the window it gives to), the logits would differ, so the test tells the two apart.
        _, input_parts = ref.hierarchical_forward(hier, inputs, record=edits[layers[0]].edges)
        swapped = ref.Edit(edits[layers[0]].edges, edits[layers[0]].heads, "replace", replace=lambda c: input_parts[layers[0]])
        _, chained_parts = ref.hierarchical_forward(hier, donor_inputs, {layers[0]: swapped}, record=edits[layers[0]].edges)
        chained = dict(edits)
        for layer in layers[1:]:
            chained[layer] = ref.Edit(edits[layer].edges, edits[layer].heads, "replace", replace=lambda c, d=chained_parts[layer]: d)
        old, _ = ref.hierarchical_forward(hier, inputs, chained)
        assert (run.logits[0].double() - old).abs().max() > 1e-3


def test_a_window_that_is_its_own_donor_is_unchanged(hier, inputs):
    engine = InterventionEngine(hier)
    run = engine.run_grid(inputs, [Condition((0, 1, 2), "all", None, "resample")], donors=[inputs])
    assert_close(run.logits[0], run.clean)


def test_each_draw_takes_its_own_donors(hier, inputs, donor_inputs, db2):
    other = windows(db2, 6, offset=9)[0]
    conditions = [Condition((1,), "cross", None, "resample", draw) for draw in (0, 1)]
    engine = InterventionEngine(hier)
    both = engine.run_grid(inputs, conditions, donors=[donor_inputs, other]).logits
    alone = [engine.run_grid(inputs, [Condition((1,), "cross", None, "resample")], donors=[d]).logits[0]
             for d in (donor_inputs, other)]
    torch.testing.assert_close(both[0], alone[0], atol=0, rtol=0)
    torch.testing.assert_close(both[1], alone[1], atol=0, rtol=0)
    assert (both[0] - both[1]).abs().max() > 1e-3


@pytest.mark.parametrize("donors, fragment", [((), "pass donors="), ("short", "one donor per window")])
def test_resample_without_fitting_donors_is_refused(hier, inputs, donors, fragment):
    engine = InterventionEngine(hier)
    donors = [[x[:3] for x in inputs]] if donors == "short" else donors
    with pytest.raises(ConfigError, match=fragment):
        engine.run_grid(inputs, [Condition((0,), "cross", None, "resample")], donors=donors)
    with pytest.raises(ConfigError, match="pass donors="):
        engine.hooks(Condition((0,), "cross", None, "resample"))


@pytest.mark.parametrize("layers, pathway, heads", [((0,), "cross", None), ((1, 2), "uni+cls", (0,))])
def test_mean_matches_loop_reference(hier, db2, inputs, layers, pathway, heads):
    condition = Condition(layers, pathway, heads, "mean")
    reference_inputs = windows(db2, 10, split="validation")[0]
    engine = InterventionEngine(hier)
    # fit in two batches: the mean is over windows, not over batch means of unequal batches
    engine.fit([[x[:7] for x in reference_inputs], [x[7:] for x in reference_inputs]], [condition])
    edges = ref.naive_edges(hier.token_modalities.tolist(), pathway, hier.modality_names)
    # The mean contribution of the pathway in a clean run over the reference windows, per layer.
    _, recorded = ref.hierarchical_forward(hier, reference_inputs, record=edges)
    for layer in layers:
        assert_close(engine.strategy("mean").means[(layer, pathway)], recorded[layer].mean(0))
    # Replacing layer by layer: the reference forward applies each layer's own mean.
    heads_list = [0, 1] if heads is None else list(heads)
    edits = {layer: ref.Edit(edges, heads_list, "replace", replace=lambda c, m=recorded[layer].mean(0): m.expand_as(c))
             for layer in layers}
    expected, _ = ref.hierarchical_forward(hier, inputs, edits)
    run = engine.run_grid(inputs, [condition])
    clean, (grid,) = run.clean, run.logits
    assert_close(grid, expected)
    assert (grid - clean).abs().max() > 1e-3


def test_mean_without_fit_is_refused(hier, inputs):
    with pytest.raises(ConfigError, match=r"fit\(\)"):
        InterventionEngine(hier).run_grid(inputs, [Condition((0,), "cross", None, "mean")])


# --- the staged grid equals the loop -------------------------------------------------------------

def test_grid_equals_one_run_per_condition(hier, db2, inputs, clean):
    layers = range(3)
    conditions = [Condition((l,), p) for l in layers for p in ("uni", "cross", "cls")]
    conditions += [Condition((0, 1, 2), p) for p in ("uni", "cross", "cls", "emg->acc")]
    conditions += [Condition((1,), "cross", (0,)), Condition((0, 2), "uni", (1,)), Condition((0, 1, 2), "cls", (0, 1))]
    conditions += [Condition((l,), p, h, "mean") for l in (0, 2) for p, h in (("cross", None), ("uni", (1,)))]
    conditions += [Condition((0, 1, 2), "cross", None, "mean")]
    conditions += [Condition((l,), p, h, "resample") for l in (1, 2) for p, h in (("cross", None), ("cls", (0,)))]
    conditions += [Condition((0, 1, 2), "uni", None, "resample")]
    donors = windows(db2, len(inputs[0]), offset=5)[0]
    for mask_self in (False, True):
        engine = InterventionEngine(hier, mask_self=mask_self)
        assert engine.staged
        engine.fit([windows(db2, 8, split="validation")[0]], conditions)
        run = engine.run_grid(inputs, conditions, donors=[donors])
        grid_clean, grid = run.clean, run.logits
        naive = engine.run_naive(inputs, conditions, donors=[donors])
        assert_close(grid_clean, clean)
        assert len(grid) == len(naive) == len(conditions)
        for condition, a, b in zip(conditions, grid, naive):
            assert_close(a, b, msg=lambda m, c=condition: f"{c}: {m}")
        for condition, a in zip(conditions, grid):
            # Non-CLS queries of the last layer cannot reach the CLS head: the clean logits themselves.
            silent = condition.layers == (2,) and "cls" not in condition.pathway
            assert engine.null_by_construction(condition) == silent, condition
            assert torch.equal(a, grid_clean) if silent else ((a - clean).abs().max() > 1e-3), condition


def test_grid_on_the_multimodal_transformer_equals_the_loop(mmt, db2):
    inputs = windows(db2, 5)[0]
    conditions = [Condition((0,), "uni"), Condition((1,), "uni", (1,)), Condition((0, 1), "all"),
                  Condition((0,), "uni", None, "resample"), Condition((1,), "emg->emg", None, "mean")]
    engine = InterventionEngine(mmt, mask_self=True)
    engine.fit([windows(db2, 6, split="validation")[0]], conditions)
    donors = [windows(db2, 5, offset=3)[0]]
    grid = engine.run_grid(inputs, conditions, donors=donors).logits
    for a, b in zip(grid, engine.run_naive(inputs, conditions, donors=donors)):
        assert_close(a, b)


def test_masks_are_built_once_per_pathway_heads_and_device(hier, db2, inputs, monkeypatch):
    """Every hook call would otherwise copy its masks to the activations' device (a sync on a GPU):
    over two grids and a naive loop, each (pathway, heads, kind) builds its head mask once."""
    import isoprobe.engine.interventions as interventions

    built = []
    original = interventions.head_mask
    monkeypatch.setattr(interventions, "head_mask", lambda *args: built.append(args[0]) or original(*args))
    conditions = [Condition((0,), "cross", None, "mean"), Condition((0, 1, 2), "cross", None, "mean"),
                  Condition((1,), "uni", (1,), "resample"), Condition((1, 2), "uni", (1,), "resample"),
                  Condition((0,), "cls"), Condition((0, 1, 2), "cls")]
    engine = InterventionEngine(hier)
    engine.fit([windows(db2, 8, split="validation")[0]], conditions)
    donors = [windows(db2, len(inputs[0]), offset=4)[0]]
    first = engine.run_grid(inputs, conditions, donors=donors).logits
    second = engine.run_grid(inputs, conditions, donors=donors).logits
    engine.run_naive(inputs, conditions, donors=donors)
    # replacement masks: (cross, all heads) for the means and the donors' contributions, (uni, all
    # heads) for the donors' contributions, (uni, head 1) for the resample; the score mask: (cls, all)
    assert sorted(built, key=str) == [(1,), None, None, None]
    for a, b in zip(first, second):  # the same donors give the same logits, resample included
        assert torch.equal(a, b)


def test_the_engine_evaluates_in_eval_mode_and_restores_the_callers_mode(db2, inputs):
    """A model left in train mode with dropout gives the eval-mode result, and gets its mode back."""
    model = randomise(small(db2, "hierarchical", n_layers=2, n_encoder_layers=1, dropout=0.5), seed=4)
    conditions = [Condition((0,), "cross"), Condition((0, 1), "cls", None, "mean"), Condition((1,), "uni", None, "resample")]
    donors = [windows(db2, len(inputs[0]), offset=2)[0]]
    reference = [windows(db2, 8, split="validation")[0]]
    expected_engine = InterventionEngine(model.eval())
    expected_engine.fit(reference, conditions)
    expected = expected_engine.run_grid(inputs, conditions, donors=donors)
    model.train()
    model.encoders.eval()  # a mixed mode, to check each submodule gets its own mode back
    engine = InterventionEngine(model)
    engine.fit(reference, conditions)
    torch.testing.assert_close(engine.strategy("mean").means[(0, "cls")], expected_engine.strategy("mean").means[(0, "cls")],
                               atol=0, rtol=0)
    run = engine.run_grid(inputs, conditions, donors=donors)
    naive = engine.run_naive(inputs, conditions, donors=donors)
    torch.testing.assert_close(run.clean, expected.clean, atol=0, rtol=0)
    for a, b, c in zip(run.logits, naive, expected.logits):
        torch.testing.assert_close(a, c, atol=0, rtol=0)
        assert_close(b, c)
    assert model.training and model.blocks[0].training and not model.encoders.training
    # the negative control: in train mode the same model's dropout does change its output
    with torch.no_grad():
        assert (model(*inputs) - expected.clean).abs().max() > 1e-3


def test_activations_come_from_the_same_forward_pass(hier, inputs, donor_inputs):
    """run_grid hands back chosen activations per condition: the residual stream after each layer
    and the CLS representation, equal to run_with_cache with the condition's hooks; layers below a
    condition's first intervened layer keep their clean values."""
    names = [f"blocks.{l}.hook_resid_post" for l in range(3)] + ["hook_cls"]
    engine = InterventionEngine(hier)
    conditions = [Condition((1,), "cross"), Condition((2,), "cls", None, "resample")]
    run = engine.run_grid(inputs, conditions, donors=[donor_inputs], capture=names)
    _, clean_cache = hier.run_with_cache(*inputs, names_filter=lambda n: n in names)
    for name in names:
        assert_close(run.clean_activations[name], clean_cache[name])
    state = engine.prepare_batch(inputs, conditions, [donor_inputs])
    for condition, activations in zip(conditions, run.activations):
        assert set(activations) == set(names)
        with hier.hooks(fwd_hooks=engine.hooks(condition, state)):
            _, cache = hier.run_with_cache(*inputs, names_filter=lambda n: n in names)
        for name in names:
            assert_close(activations[name], cache[name])
        first = min(condition.layers)
        assert torch.equal(activations[f"blocks.{first - 1}.hook_resid_post"], run.clean_activations[f"blocks.{first - 1}.hook_resid_post"]) \
            if first > 0 else True
        assert (activations["hook_cls"] - run.clean_activations["hook_cls"]).abs().max() > 1e-3
    with pytest.raises(ConfigError, match="hook points"):
        engine.run_grid(inputs, conditions[:1], capture=["blocks.9.hook_resid_post"])
