"""Prefix sharing on foreign models: `isoprobe.hook` makes a model whose attention modules sit one per block
of one nn.ModuleList a StagedForeignModel, on which the engine computes the clean residual stream once per
batch and starts each condition at its first intervened layer. Its results equal the reference, one whole
`run_with_hooks` per condition (`run_naive`), or the same analysis with `staged=False`, on PyTorch encoders
(batch-first or not, with a padding mask) and Hugging Face BERT and DistilBERT; models the stages would not
reproduce are left unstaged or refused by name."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from isoprobe.engine.grid import Condition, InterventionEngine, build_conditions, is_staged
from isoprobe.errors import ConfigError
from isoprobe.hook import hook
from isoprobe.hook.model import HookedForeignModel, StagedForeignModel
from isoprobe.models.components.staged import residual_stream, run_from
from tests.hook.test_torch_encoder import LAYOUT, N_LAYERS, Classifier, tokens
from tests.tolerance import assert_close

CLASSES = 5


def padding(n: int = 6) -> torch.Tensor:
    """[batch, pos]: True on padded keys, a different number per window (so the mask belongs to its batch)."""
    padded = torch.zeros(n, len(LAYOUT), dtype=torch.bool)
    for row in range(n):
        padded[row, len(LAYOUT) - row % 3:] = True
    return padded


def bert_like(name: str):
    """A small random BERT or DistilBERT (three layers) fed token embeddings with an attention mask."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    if name == "bert":
        config = transformers.BertConfig(hidden_size=16, num_hidden_layers=N_LAYERS, num_attention_heads=2,
                                         intermediate_size=32, vocab_size=10, max_position_embeddings=32,
                                         hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                                         attn_implementation="eager", initializer_range=0.4)
        return transformers.BertModel(config).eval()
    config = transformers.DistilBertConfig(dim=16, n_layers=N_LAYERS, n_heads=2, hidden_dim=32, vocab_size=10,
                                           max_position_embeddings=32, dropout=0.0, attention_dropout=0.0,
                                           attn_implementation="sdpa", initializer_range=0.4)
    return transformers.DistilBertModel(config).eval()


def cls_output(out) -> torch.Tensor:
    return out.last_hidden_state[:, 0]


def embeddings_and_mask(tokens_, padded):
    return {"inputs_embeds": tokens_, "attention_mask": (~padded).long()}


class SequentialStack(nn.Module):
    """Layers in an nn.Sequential, called as one module (as timm's `blocks`)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.layers = nn.Sequential(*[nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True)
                                      for _ in range(N_LAYERS)])
        self.norm = nn.LayerNorm(16)
        self.head = nn.Linear(16, CLASSES)

    def forward(self, x):
        return self.head(self.norm(self.layers(x))[:, 0])


# name -> (the user's model, the windows the engine passes, hook's options)
CASES = {
    "nn.Sequential of layers": lambda: (SequentialStack(), [tokens()], {}),
    "encoder": lambda: (Classifier(), [tokens()], {}),
    "encoder, batch_first=False": lambda: (Classifier(batch_first=False), [tokens()], {}),
    "encoder, padding mask": lambda: (Classifier(), [tokens(), padding()], {}),
    "encoder, batch_first=False, padding mask": lambda: (Classifier(batch_first=False), [tokens(), padding()], {}),
    "bert, attention mask": lambda: (bert_like("bert"), [tokens(), padding()],
                                     {"logits": cls_output, "inputs": embeddings_and_mask}),
    "distilbert, sdpa, attention mask": lambda: (bert_like("distilbert"), [tokens(), padding()],
                                                 {"logits": cls_output, "inputs": embeddings_and_mask}),
}


def case(name: str, staged: bool = True):
    model, windows, options = CASES[name]()
    return hook(model.eval(), LAYOUT, staged=staged, **options), windows


def blocks_of(hooked: StagedForeignModel) -> tuple[nn.Module, ...]:
    return hooked._blocks


@pytest.mark.parametrize("name", list(CASES))
def test_a_stack_of_layers_is_staged_and_staged_false_is_not(name):
    staged, _ = case(name)
    unstaged, _ = case(name, staged=False)
    assert isinstance(staged, StagedForeignModel) and is_staged(staged)
    assert type(unstaged) is HookedForeignModel and not is_staged(unstaged)


@pytest.mark.parametrize("name", list(CASES))
def test_the_grid_equals_one_whole_run_per_condition(name):
    """Every layer alone and all together, cumulative sets too, three pathways: the staged grid equals
    run_naive (logits and decisions), and block l runs once for the clean stream and once per running
    condition whose first layer is at most l: the prefix below it is shared."""
    hooked, windows = case(name)
    engine = InterventionEngine(hooked)
    conditions = (build_conditions("single", range(N_LAYERS), ["uni", "cross", "readout"])
                  + build_conditions("cumulative", range(N_LAYERS), ["cross"]))
    calls = [0] * N_LAYERS
    handles = [block.register_forward_pre_hook(lambda module, args, layer=layer: calls.__setitem__(layer, calls[layer] + 1))
               for layer, block in enumerate(blocks_of(hooked))]
    with torch.no_grad():
        run = engine.run_grid(windows, conditions)
        for handle in handles:
            handle.remove()
        reference = engine.run_naive(windows, conditions)
        original = hooked(*windows)
    running = [c for c in conditions if engine.runs(c)]
    assert calls == [1 + sum(min(c.layers) <= layer for c in running) for layer in range(N_LAYERS)]
    assert_close(run.clean, original)
    for condition, logits, expected in zip(conditions, run.logits, reference):
        assert_close(logits, expected, msg=str(condition))
        assert torch.equal(logits.argmax(1), expected.argmax(1))
    changed = [float((logits - run.clean).abs().max()) for logits in run.logits]
    assert max(changed) > 1e-2  # the masks did something: the comparison means something


def test_mean_and_resample_equal_one_whole_run_per_condition():
    """Interventions that need clean contributions (computed through residual_stream) on a padded batch."""
    hooked, windows = case("encoder, padding mask")
    donors = [tokens(seed=7), padding().roll(1, dims=0)]
    engine = InterventionEngine(hooked)
    conditions = [Condition((layer,), "cross", intervention=kind) for layer in range(N_LAYERS - 1)
                  for kind in ("mean", "resample")] + [Condition((0, 1), "uni", intervention="resample")]
    with torch.no_grad():
        engine.fit([[tokens(seed=5), padding()], [tokens(4, seed=6), padding(4)]], conditions)
        run = engine.run_grid(windows, conditions, donors=[donors])
        reference = engine.run_naive(windows, conditions, donors=[donors])
    for condition, logits, expected in zip(conditions, run.logits, reference):
        assert_close(logits, expected, msg=str(condition))
        assert (logits - run.clean).abs().max() > 1e-3


@pytest.mark.parametrize("name", ["encoder, batch_first=False, padding mask", "bert, attention mask"])
def test_captured_residuals_equal_the_unstaged_model(name):
    """hook_resid_post per condition (what shift reads), staged against staged=False; and residual_stream
    is the stream the hook points see in a plain forward, batch-first."""
    staged, windows = case(name)
    unstaged, _ = case(name, staged=False)
    sites = [f"blocks.{layer}.hook_resid_post" for layer in range(N_LAYERS)]
    conditions = [Condition((layer,), "cross") for layer in range(N_LAYERS)] + [Condition((1,), "uni")]
    with torch.no_grad():
        first = InterventionEngine(staged).run_grid(windows, conditions, capture=sites)
        second = InterventionEngine(unstaged).run_grid(windows, conditions, capture=sites)
        seen = {}
        staged.run_with_hooks(*windows, fwd_hooks=[(site, lambda x, hook: seen.setdefault(hook.name, x)) for site in sites])
        stream = residual_stream(staged, windows, N_LAYERS)
    for site in sites:
        assert_close(first.clean_activations[site], second.clean_activations[site])
        assert_close(stream[int(site.split(".")[1]) + 1], seen[site])
        for condition, ours, theirs in zip(conditions, first.activations, second.activations):
            assert_close(ours[site], theirs[site], msg=f"{condition} {site}")
    assert stream[0].shape == (len(windows[0]), len(LAYOUT), 16)


@pytest.mark.parametrize("name", ["encoder, batch_first=False, padding mask", "bert, attention mask"])
def test_attention_attribution_and_attribution_patching_equal_the_unstaged_model(name):
    """Integrated gradients run the stages on the batch repeated once per step (unevenly chunked here) and
    need gradients through them; attribution patching needs them from the first intervened layer on."""
    from isoprobe.attribution.attention import layer_attributions
    from isoprobe.engine.attribution_patching import estimate_masking

    staged, windows = case(name)
    unstaged, _ = case(name, staged=False)
    target = torch.arange(len(windows[0])) % 5
    for layer in (0, N_LAYERS - 1):
        ours, our_delta = layer_attributions(staged, windows, target, layer, steps=4, internal_batch_size=15)
        theirs, their_delta = layer_attributions(unstaged, windows, target, layer, steps=4, internal_batch_size=15)
        assert_close(ours, theirs)
        assert_close(our_delta, their_delta)
        assert ours.abs().max() > 1e-3
    conditions = [Condition((1,), "cross"), Condition((1, 2), "uni")]
    ours = estimate_masking(InterventionEngine(staged), windows, conditions, target)
    theirs = estimate_masking(InterventionEngine(unstaged), windows, conditions, target)
    assert_close(ours.estimates, theirs.estimates)
    assert_close(ours.clean, theirs.clean)


def test_a_repeated_batch_runs_as_the_repeated_inputs_and_another_batch_is_refused():
    hooked, (x, padded) = case("encoder, padding mask")
    with torch.no_grad():
        stream = residual_stream(hooked, [x, padded], N_LAYERS)
        twice = torch.cat([stream[1]] * 2)
        repeated = run_from(hooked, 1, twice, N_LAYERS)
        expected = hooked(torch.cat([x] * 2), torch.cat([padded] * 2))
        assert_close(repeated, expected)
        assert_close(run_from(hooked, 1, stream[1], N_LAYERS), hooked(x, padded))  # the batch itself again
        with pytest.raises(ConfigError, match="the batch given to embed_stage"):
            hooked.block_stage(0, stream[0][:4])


def test_a_copy_runs_its_own_stages():
    """copy.deepcopy (sanity's randomised models) after a run: the copy holds no batch and its own blocks."""
    hooked, windows = case("bert, attention mask")
    conditions = [Condition((1,), "cross")]
    with torch.no_grad():
        InterventionEngine(hooked).run_grid(windows, conditions)
        twin = copy.deepcopy(hooked)
        for parameter in twin.model.encoder.layer[2].parameters():
            parameter.add_(0.5)
        run = InterventionEngine(twin).run_grid(windows, conditions)
        reference = InterventionEngine(twin).run_naive(windows, conditions)
        original = InterventionEngine(hooked).run_naive(windows, conditions)
    assert_close(run.logits[0], reference[0])
    assert (run.logits[0] - original[0]).abs().max() > 1e-3  # the copy's own (changed) blocks ran


class Layers(nn.Module):
    """A stack of PyTorch encoder layers that a user wires by hand; `wiring` says how (see the refusals)."""

    def __init__(self, wiring: str = "plain", container=nn.ModuleList):
        super().__init__()
        torch.manual_seed(0)
        self.layers = container([nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True)
                                 for _ in range(N_LAYERS)])
        self.norm = nn.LayerNorm(16)
        self.head = nn.Linear(16, CLASSES)
        self.wiring = wiring

    def forward(self, x):
        states = []
        order = list(range(N_LAYERS))[::-1] if self.wiring == "reversed" else range(N_LAYERS)
        for index in order:
            layer = self.layers[index]
            if self.wiring == "keyword":
                x = layer(src=x)
            elif self.wiring == "per-layer mask":
                x = layer(x, src_mask=torch.zeros(len(LAYOUT), len(LAYOUT)) if index == 1 else None)
            else:
                x = layer(x)
            if self.wiring == "norm between":
                x = self.norm(x)
            if self.wiring == "edited in place":
                x.mul_(1.5)
            states.append(x)
        if self.wiring == "every layer read":
            return self.head(torch.stack(states).mean(0)[:, 0])
        return self.head(self.norm(x)[:, 0] + x[:, 1])  # code after the stack that reads several positions


def test_a_hand_wired_stack_runs_in_stages():
    hooked = hook(Layers().eval(), LAYOUT)
    conditions = build_conditions("single", range(N_LAYERS), ["cross", "uni"])
    engine = InterventionEngine(hooked)
    with torch.no_grad():
        run, reference = engine.run_grid([tokens()], conditions), engine.run_naive([tokens()], conditions)
    assert isinstance(hooked, StagedForeignModel)
    for logits, expected in zip(run.logits, reference):
        assert_close(logits, expected)


@pytest.mark.parametrize("wiring, message", [
    ("reversed", "in the order [2, 1, 0]"),
    ("keyword", "no tensor as its first positional argument"),
    ("per-layer mask", "block 1 gets other arguments than block 0"),
    ("norm between", "block 1 does not get block 0's output as it is"),
    ("edited in place", "block 1 does not get block 0's output as it is"),
    ("every layer read", "block 0's output reaches the logits other than through block 1"),
])
def test_a_model_the_stages_would_not_reproduce_is_refused_by_name(wiring, message):
    hooked = hook(Layers(wiring).eval(), LAYOUT)
    engine = InterventionEngine(hooked)
    with torch.no_grad(), pytest.raises(ConfigError, match="staged=False") as refused:
        engine.run_grid([tokens()], [Condition((1,), "cross")])
    assert message in str(refused.value) and "Layers" in str(refused.value)
    unstaged = hook(Layers(wiring).eval(), LAYOUT, staged=False)  # runs whole per condition
    with torch.no_grad():
        run = InterventionEngine(unstaged).run_grid([tokens()], [Condition((1,), "cross")])
    assert (run.logits[0] - run.clean).abs().max() > 1e-4


def test_a_block_editing_its_input_in_place_is_refused():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.attend = nn.MultiheadAttention(16, 2, batch_first=True)

        def forward(self, x):
            return x.add_(self.attend(x, x, x, need_weights=False)[0])  # the stages reuse each block's input

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = nn.ModuleList([Block() for _ in range(2)])

        def forward(self, x):
            x = x * 1.0
            for block in self.blocks:
                x = block(x)
            return x[:, 0]

    hooked = hook(Model().eval(), LAYOUT)
    with torch.no_grad(), pytest.raises(ConfigError, match="block 0 edits its input in place"):
        residual_stream(hooked, [tokens()], 2)


def test_attention_outside_one_stack_is_not_staged():
    """A ModuleList with a block without attention, attention outside the list, and a TransformerLens module
    taken as it is: run whole per condition."""

    class Extra(Layers):
        def __init__(self):
            super().__init__()
            self.layers.append(nn.Identity())

    class Outside(Layers):
        def __init__(self):
            super().__init__()
            self.pool = nn.MultiheadAttention(16, 2, batch_first=True)

    for hooked in (hook(Extra().eval(), LAYOUT), hook(Outside().eval(), LAYOUT)):
        assert type(hooked) is HookedForeignModel and not is_staged(hooked)

    from transformer_lens import HookedRootModule
    from transformer_lens.hook_points import HookPoint

    class Lens(HookedRootModule):
        def __init__(self):
            super().__init__()
            self.cfg = type("Config", (), {"n_heads": 2})()
            self.blocks = nn.ModuleList([nn.Module()])
            self.blocks[0].attn = nn.Module()
            self.blocks[0].attn.hook_attn_scores = HookPoint()
            self.setup()

    lens = hook(Lens(), LAYOUT)
    assert type(lens) is HookedForeignModel and not is_staged(lens)


@pytest.mark.filterwarnings("ignore:The PyTorch API of nested tensors")
def test_a_nested_tensor_batch_is_refused_with_what_to_change():
    """nn.TransformerEncoder turns a padded batch into a nested tensor on its fast path (the default
    enable_nested_tensor=True): the stages, like the explicit attention, need the dense batch."""
    model = Classifier()
    model.encoder = nn.TransformerEncoder(model.encoder.layers[0], N_LAYERS)  # enable_nested_tensor left True
    hooked = hook(model.eval(), LAYOUT)
    with torch.no_grad(), pytest.raises(ConfigError, match="enable_nested_tensor=False"):
        residual_stream(hooked, [tokens(), padding()], N_LAYERS)
    unstaged = hook(model.eval(), LAYOUT, staged=False)  # the explicit attention refuses it too, naming the fix
    with torch.no_grad(), pytest.raises(ConfigError, match="enable_nested_tensor=False"):
        InterventionEngine(unstaged).run_grid([tokens(), padding()], [Condition((0,), "cross")])
