"""isoprobe.hook on Hugging Face encoders (BERT and DistilBERT from configs, random weights, fed token
embeddings): outputs unchanged with no intervention (eager and sdpa, with a padding mask), and masking a
pathway in layer l equals editing that layer's scores by hand in the model's own eager attention function."""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")  # installed with transformer-lens: present on CI
from transformers import AttentionInterface, BertConfig, BertModel, DistilBertConfig, DistilBertModel  # noqa: E402
from transformers.models.bert import modeling_bert  # noqa: E402
from transformers.models.distilbert import modeling_distilbert  # noqa: E402

from isoprobe.engine.grid import Condition, InterventionEngine  # noqa: E402
from isoprobe.hook import TokenLayout, hook  # noqa: E402
from isoprobe.models.pathways import Pathway  # noqa: E402
from tests.tolerance import assert_close  # noqa: E402

LAYOUT = TokenLayout.cls_first({"emg": 4, "acc": 2})  # 7 positions
N_LAYERS = 2


def bert(implementation: str) -> BertModel:
    torch.manual_seed(0)
    config = BertConfig(hidden_size=16, num_hidden_layers=N_LAYERS, num_attention_heads=2, intermediate_size=32,
                        vocab_size=10, max_position_embeddings=32, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0, attn_implementation=implementation,
                        initializer_range=0.4)  # weights large enough for attention to matter
    return BertModel(config).eval()


def distilbert(implementation: str) -> DistilBertModel:
    torch.manual_seed(0)
    config = DistilBertConfig(dim=16, n_layers=N_LAYERS, n_heads=2, hidden_dim=32, vocab_size=10,
                              max_position_embeddings=32, dropout=0.0, attention_dropout=0.0,
                              attn_implementation=implementation, initializer_range=0.4)
    return DistilBertModel(config).eval()


MODELS = {"bert": (bert, modeling_bert, lambda m, layer: m.encoder.layer[layer].attention.self),
          "distilbert": (distilbert, modeling_distilbert, lambda m, layer: m.transformer.layer[layer].attention)}


def cls_output(out) -> torch.Tensor:
    return out.last_hidden_state[:, 0]


def embeddings(n: int = 3) -> torch.Tensor:
    return torch.randn(n, len(LAYOUT), 16, generator=torch.Generator().manual_seed(2))


@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("implementation", ["eager", "sdpa"])
@pytest.mark.parametrize("name", list(MODELS))
def test_with_no_intervention_the_hooked_model_is_the_original(name, implementation, padded):
    build = MODELS[name][0]
    x, padding = embeddings(), torch.ones(3, len(LAYOUT), dtype=torch.long)
    if padded:
        padding[:, -1] = 0  # the last acc token is padding
    with torch.no_grad():
        original = cls_output(build(implementation)(inputs_embeds=x, attention_mask=padding))
        hooked = hook(build(implementation), LAYOUT, logits=cls_output)
        assert (hooked(inputs_embeds=x, attention_mask=padding) - original).abs().max() <= 1e-5
        seen = []
        explicit = hooked.run_with_hooks(inputs_embeds=x, attention_mask=padding, fwd_hooks=[
            (f"blocks.{layer}.attn.hook_pattern", lambda p, hook: seen.append(hook.name)) for layer in range(N_LAYERS)])
    assert seen == ["blocks.0.attn.hook_pattern", "blocks.1.attn.hook_pattern"]  # the explicit path ran
    assert (explicit - original).abs().max() <= 1e-5


@pytest.mark.parametrize("layer", range(N_LAYERS))
@pytest.mark.parametrize("pathway", ["cross", "relay", "acc->emg"])
@pytest.mark.parametrize("name", list(MODELS))
def test_masking_equals_editing_the_scores_by_hand(name, layer, pathway):
    build, modeling, attention_at = MODELS[name]
    edges = Pathway(pathway).edges(LAYOUT.token_modalities, LAYOUT.modality_names)
    reference_model = build("eager")
    target = attention_at(reference_model, layer)

    def edited(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **options):
        """The model's own eager attention with −inf added on the pathway's edges at `layer`."""
        if module is target:
            extra = torch.zeros(edges.shape).masked_fill(edges, float("-inf"))
            attention_mask = extra if attention_mask is None else attention_mask + extra
        return modeling.eager_attention_forward(module, query, key, value, attention_mask, scaling=scaling,
                                                dropout=dropout)

    AttentionInterface.register("hand-edited", edited)
    x = embeddings()
    with torch.no_grad():
        reference_model.config._attn_implementation = "hand-edited"
        reference = cls_output(reference_model(inputs_embeds=x))
        # the engine passes windows positionally; BertModel takes token embeddings by keyword
        engine = InterventionEngine(hook(build("eager"), LAYOUT, logits=cls_output,
                                         inputs=lambda tokens: {"inputs_embeds": tokens}))
        run = engine.run_grid([x], [Condition((layer,), pathway)])
    assert_close(run.logits[0], reference, rel=1e-5)
    if engine.null_by_construction(Condition((layer,), pathway)):  # the last layer's cross/acc->emg: CLS reads none
        assert torch.equal(run.logits[0], run.clean) and layer == N_LAYERS - 1
    else:  # the mask changed something: the comparison means something
        assert (run.logits[0] - run.clean).abs().max() > 1e-4
