"""isoprobe.hook's cost: the hooked model's forward pass with no intervention against the original's,
same model, same inputs, in the same run (median of interleaved repeats), for a PyTorch
nn.TransformerEncoder classifier and a Hugging Face BERT encoder. Target: hooked / original ≤ 1.1.

Then the engine's grid on the same hooked models (every layer alone and all together × uni, cross; mask),
staged (a StagedForeignModel: the clean stream once, each condition from its first intervened layer)
against the same engine forced to run the whole model per condition, same model, same windows,
interleaved: staged / whole, and the largest logit difference between the two.

    python benchmarks/bench_hook.py [--batch 256] [--repeats 15] [--grid-repeats 11]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
from torch import nn

from isoprobe.engine.grid import InterventionEngine, build_conditions
from isoprobe.hook import TokenLayout, hook

LAYOUT = TokenLayout.cls_first({"emg": 48, "acc": 12})  # 61 tokens, DB2-like: 12 channels × 4 patches, 3 × 4
D_MODEL = 64


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        layer = nn.TransformerEncoderLayer(D_MODEL, 4, 4 * D_MODEL, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 5, enable_nested_tensor=False)
        self.head = nn.Linear(D_MODEL, 49)

    def forward(self, tokens):
        return self.head(self.encoder(tokens)[:, 0])


def bert():
    from transformers import BertConfig, BertModel

    config = BertConfig(hidden_size=D_MODEL, num_hidden_layers=5, num_attention_heads=4, intermediate_size=4 * D_MODEL,
                        vocab_size=10, max_position_embeddings=128, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0, attn_implementation="sdpa")
    return BertModel(config)


def timed(run, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return times


def compare(name: str, original: nn.Module, hooked_of, x: torch.Tensor, repeats: int) -> dict:
    original = original.eval()
    hooked = hooked_of(copy.deepcopy(original)).eval()
    call = (lambda model: model(**x)) if isinstance(x, dict) else (lambda model: model(x))
    with torch.no_grad():
        base = call(original)
        base = base if torch.is_tensor(base) else base.last_hidden_state[:, 0]  # BERT: the CLS output, as hooked
        difference = call(hooked) - base
        first, second = [], []
        for _ in range(repeats):  # interleaved, so drift in the machine's speed hits both
            first += timed(lambda: call(original), 1)
            second += timed(lambda: call(hooked), 1)
    a, b = statistics.median(first), statistics.median(second)
    return {"model": name, "original ms": 1000 * a, "hooked ms": 1000 * b, "ratio": b / a,
            "max |Δ|": float(difference.abs().max())}


def grid(name: str, original: nn.Module, hooked_of, windows: list[torch.Tensor], repeats: int) -> dict:
    """The grid on one hooked model, staged against whole (the same engine with `staged` turned off)."""
    hooked = hooked_of(copy.deepcopy(original).eval())
    staged = InterventionEngine(hooked)
    whole = InterventionEngine(hooked)
    whole.staged = False  # forced: one whole forward per condition, as for a model with no stack
    conditions = build_conditions("single", range(staged.n_layers), ["uni", "cross"])
    with torch.no_grad():
        start = time.perf_counter()
        first = staged.run_grid(windows, conditions)  # the first batch also checks the stack (once)
        first_s = time.perf_counter() - start
        reference = whole.run_grid(windows, conditions)
        difference = max(float((a - b).abs().max()) for a, b in zip(first.logits, reference.logits))
        a_times, b_times = [], []
        for _ in range(repeats):
            a_times += timed(lambda: whole.run_grid(windows, conditions), 1)
            b_times += timed(lambda: staged.run_grid(windows, conditions), 1)
    a, b = statistics.median(a_times), statistics.median(b_times)
    return {"model": name, "conditions": f"{sum(map(staged.runs, conditions))} of {len(conditions)}",
            "whole ms": 1000 * a, "staged ms": 1000 * b, "first staged ms": 1000 * first_s, "ratio": b / a,
            "max |Δ|": difference}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--grid-repeats", type=int, default=11)
    options = parser.parse_args()
    torch.manual_seed(0)
    tokens = torch.randn(options.batch, len(LAYOUT), D_MODEL)
    encoder, encoder_hooked = Encoder(), lambda m: hook(m, LAYOUT)
    bert_model = bert()
    bert_hooked = lambda m: hook(m, LAYOUT, logits=lambda out: out.last_hidden_state[:, 0],
                                 inputs=lambda x: {"inputs_embeds": x})
    rows = [compare("nn.TransformerEncoder (5 layers)", encoder, encoder_hooked, tokens, options.repeats),
            compare("Hugging Face BERT, sdpa (5 layers)", bert_model,
                    lambda m: hook(m, LAYOUT, logits=lambda out: out.last_hidden_state[:, 0]),
                    {"inputs_embeds": tokens}, options.repeats)]
    print("| model | batch | original ms | hooked ms | hooked / original | max abs diff |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for row in rows:
        print(f"| {row['model']} | {options.batch} | {row['original ms']:.1f} | {row['hooked ms']:.1f} | "
              f"**{row['ratio']:.3f}** | {row['max |Δ|']:.1e} |")
    grids = [grid("nn.TransformerEncoder (5 layers)", encoder, encoder_hooked, [tokens], options.grid_repeats),
             grid("Hugging Face BERT, sdpa (5 layers)", bert_model, bert_hooked, [tokens], options.grid_repeats)]
    print()
    print("| model | batch | conditions run | whole ms | staged ms | staged / whole | first staged ms | max abs diff |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for row in grids:
        print(f"| {row['model']} | {options.batch} | {row['conditions']} | {row['whole ms']:.0f} | {row['staged ms']:.0f} | "
              f"**{row['ratio']:.3f}** | {row['first staged ms']:.0f} | {row['max |Δ|']:.1e} |")


if __name__ == "__main__":
    main()
