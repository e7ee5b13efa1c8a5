"""isoprobe.hook's cost: the hooked model's forward pass with no intervention against the original's,
same model, same inputs, in the same run (median of interleaved repeats), for a PyTorch
nn.TransformerEncoder classifier and a Hugging Face BERT encoder. Target: hooked / original ≤ 1.1.

    python benchmarks/bench_hook.py [--batch 256] [--repeats 15]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
from torch import nn

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=15)
    options = parser.parse_args()
    torch.manual_seed(0)
    tokens = torch.randn(options.batch, len(LAYOUT), D_MODEL)
    rows = [compare("nn.TransformerEncoder (5 layers)", Encoder(), lambda m: hook(m, LAYOUT), tokens, options.repeats),
            compare("Hugging Face BERT, sdpa (5 layers)", bert(),
                    lambda m: hook(m, LAYOUT, logits=lambda out: out.last_hidden_state[:, 0]),
                    {"inputs_embeds": tokens}, options.repeats)]
    print("| model | batch | original ms | hooked ms | hooked / original | max abs diff |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for row in rows:
        print(f"| {row['model']} | {options.batch} | {row['original ms']:.1f} | {row['hooked ms']:.1f} | "
              f"**{row['ratio']:.3f}** | {row['max |Δ|']:.1e} |")


if __name__ == "__main__":
    main()
