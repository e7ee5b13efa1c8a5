# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Bring your own model
#
# isoprobe asks how much a multimodal transformer's prediction runs through attention *between*
# modalities (sEMG tokens reading accelerometer tokens and back) rather than within each one. Its
# analyses run on models isoprobe did not build: this notebook writes an ordinary PyTorch classifier
# over sEMG and accelerometer windows, trains it for a few seconds, puts isoprobe's hook points on it
# with `isoprobe.hook`, and runs the pathway ablation grid (`isoprobe.ablate`) and the method
# comparison (`isoprobe.compare`) on it.
#
# Everything runs on a small synthetic data set on the CPU in about a minute. The file
# `examples/bring_your_own_model.py` is the source of this notebook (jupytext's percent format);
# `tests/test_tutorial.py` executes the notebook on every CI run.

# %%
# %matplotlib inline
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from einops import rearrange
from torch import nn

import isoprobe
from isoprobe.data.pipeline import DataConfig, prepare
from isoprobe.data.synth import SynthConfig, generate

torch.manual_seed(0)
torch.set_num_threads(1)  # tensors this small gain nothing from more threads, which contend for busy cores
started = time.perf_counter()

# %% [markdown]
# ## 1. Data: a small synthetic NinaPro DB2 recording
#
# With real data you would point `DataConfig(root=...)` at your NinaPro DB2 folder. Here we write a
# synthetic one in the same file layout (`S1_E1_A1.mat`, ...): one subject, six gestures, six
# repetitions each, 1.2 s per repetition. The `redundant` preset plants gestures that either modality
# can tell apart on its own, so a model may, but need not, use the cross-modal pathway.
#
# `prepare` filters and normalises the signals and cuts them into 200 ms windows, split by repetition
# as DB2's standard protocol does (the test repetitions are never seen in training). Each split is a
# `WindowSet`: `.x` holds one `[window, time, channel]` array per modality, `.y` the class of each
# window and `.segment` the segment each window was cut from — one repetition of one gesture.
# Overlapping windows of one segment are not independent, so isoprobe's confidence intervals resample
# whole segments; that is why every analysis asks for them.

# %%
workdir = tempfile.TemporaryDirectory(prefix="isoprobe-tutorial-")  # removed when the kernel exits
root = Path(workdir.name)
generate(SynthConfig(layout="ninapro-db2", preset="redundant", subjects=1, gestures=6,
                     seconds_per_repetition=1.2, rest_seconds=0.6, seed=0), root)
data = prepare(DataConfig(root=str(root)), cache_dir=None)

train, test = data.splits["train"], data.splits["test"]
for name, split in (("train", train), ("test", test)):
    shapes = ", ".join(f"{m} {tuple(a.shape)}" for m, a in split.x.items())
    print(f"{name}: {len(split)} windows, {len(np.unique(split.segment))} segments; {shapes}")
print(f"{data.n_classes} classes: {', '.join(data.class_names)}")

# %% [markdown]
# ## 2. A plain PyTorch model
#
# Nothing here is isoprobe's: a classifier as you might write it yourself. Each modality's window is
# cut into time patches, each patch embedded with a linear layer (one token per patch), a learned CLS
# token goes first, learned positions are added, and PyTorch's own `nn.TransformerEncoder` mixes the
# tokens. The head reads CLS. The token order — CLS, then the sEMG tokens, then the accelerometer
# tokens — is all isoprobe will need to know about the model.

# %%
PATCHES = {"emg": 8, "acc": 4}  # tokens per modality: each 400-sample window cut into this many patches


class EmgAccClassifier(nn.Module):
    def __init__(self, channels: dict[str, int], time: int, n_classes: int, d_model: int = 32, n_heads: int = 4,
                 n_layers: int = 3):
        super().__init__()
        # one token per patch: a patch of time // n samples of every channel, flattened and embedded
        self.embed = nn.ModuleDict({name: nn.Linear(time // n * channels[name], d_model)
                                    for name, n in PATCHES.items()})
        self.cls = nn.Parameter(0.02 * torch.randn(1, 1, d_model))
        self.position = nn.Parameter(0.02 * torch.randn(1, 1 + sum(PATCHES.values()), d_model))
        layer = nn.TransformerEncoderLayer(d_model, n_heads, dim_feedforward=2 * d_model, dropout=0.1, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.head = nn.Linear(d_model, n_classes)

    def forward(self, emg: torch.Tensor, acc: torch.Tensor) -> torch.Tensor:
        """emg, acc: [batch, time, channel] -> logits [batch, class]."""
        tokens = [self.cls.expand(len(emg), -1, -1)]
        for name, x in (("emg", emg), ("acc", acc)):
            patches = rearrange(x, "batch (patch time) channel -> batch patch (time channel)", patch=PATCHES[name])
            tokens.append(self.embed[name](patches))
        x = torch.cat(tokens, dim=1) + self.position
        return self.head(self.encoder(x)[:, 0])


channels = {name: train.x[name].shape[2] for name in PATCHES}
model = EmgAccClassifier(channels, train.x["emg"].shape[1], data.n_classes)
print(f"{sum(p.numel() for p in model.parameters()):,} parameters; "
      f"{1 + sum(PATCHES.values())} tokens: CLS, {PATCHES['emg']} sEMG, {PATCHES['acc']} accelerometer")

# %% [markdown]
# ## 3. Train it briefly
#
# A plain training loop: Adam, cross-entropy, a few epochs over the training windows. The synthetic
# gestures are easy, so a few seconds suffice; what matters for the analyses below is a model that
# classifies well above chance, since an ablation can only remove accuracy the model has.


# %%
def tensors(split) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.as_tensor(split.x["emg"]), torch.as_tensor(split.x["acc"])


def accuracy(model: nn.Module, split) -> float:
    model.eval()
    with torch.no_grad():
        return float((model(*tensors(split)).argmax(1).numpy() == split.y).mean())


emg, acc = tensors(train)
labels = torch.as_tensor(train.y)
optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
generator = torch.Generator().manual_seed(0)
for epoch in range(30):
    model.train()
    for batch in torch.randperm(len(labels), generator=generator).split(32):
        loss = nn.functional.cross_entropy(model(emg[batch], acc[batch]), labels[batch])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
model.eval()
print(f"train accuracy {accuracy(model, train):.3f}, test accuracy {accuracy(model, test):.3f} "
      f"(chance {1 / data.n_classes:.3f})")

# %% [markdown]
# ## 4. Hook it
#
# `isoprobe.hook` finds every attention module of the model (here the three `nn.MultiheadAttention`
# inside the encoder) and puts isoprobe's hook points on them, in place: the weights are not copied.
# The `TokenLayout` says which positions are CLS and which belong to which modality, so that the
# pathways isoprobe names mean on this model what they mean on isoprobe's own: `uni` is attention
# between tokens of one modality, `cross` between tokens of different modalities, `relay` modality
# tokens reading CLS, `readout` CLS reading modality tokens.
#
# The hooked model's forward takes one tensor per modality in the layout's order (emg, acc), which is
# already how our model's forward takes them. (A model with another signature takes
# `inputs=lambda emg, acc: ...` to map them onto its arguments.) `example=` runs one batch to check
# that the layout has as many positions as the model has tokens.

# %%
layout = isoprobe.TokenLayout.cls_first(PATCHES)
test_emg, test_acc = tensors(test)
hooked = isoprobe.hook(model, layout, example=(test_emg[:2], test_acc[:2]))
print(f"{hooked.cfg.n_layers} layers, {hooked.cfg.n_heads} heads; token groups {layout.groups}")

# %% [markdown]
# ## 5. Is the hooked model the same model?
#
# With no intervention attached the model runs its own code (PyTorch's fused attention included), so
# its outputs must not change. While an intervention is attached, isoprobe computes the same attention
# explicitly, so that it can reach the attention logits; with a hook that changes nothing, that
# explicit path must give the model's outputs too (up to float rounding). Every number below would be
# meaningless if either differed, so we check both.

# %%
scores = [name for name in hooked.hook_dict if name.endswith("hook_attn_scores")]  # one per layer
with torch.no_grad():
    clean = model(test_emg, test_acc)
    delta = (clean - hooked(test_emg, test_acc)).abs().max().item()
    explicit = hooked.run_with_hooks(test_emg, test_acc, fwd_hooks=[(name, lambda x, hook: x) for name in scores])
    delta_explicit = (clean - explicit).abs().max().item()
print(f"max |Δ| between model and hooked outputs: {delta:.2e}")
print(f"max |Δ| with a do-nothing hook on the attention scores of all {len(scores)} layers: {delta_explicit:.2e}")

# %% [markdown]
# ## 6. The IsoNet grid: mask each pathway in each layer
#
# `isoprobe.ablate` masks a pathway's attention edges (sets their logits to −∞ before the softmax, so
# the other edges share the attention) in one layer at a time and in all layers at once, and reports
# how much test accuracy drops. The drop's confidence interval resamples segments within each class;
# the p-value is a paired sign-flip permutation test over segments, Holm-corrected across the grid.
# `null_by_construction` marks conditions that cannot change the prediction: in the last layer only
# CLS reaches the head, and CLS's attention is neither `uni` nor `cross`, so those rows are not
# measurements.
#
# The inputs are the test windows as one tensor per modality, their labels and their segments. (A
# `WindowSet` such as `test` could be passed as it is.) The resample counts are small so that the
# notebook runs quickly; use the defaults (1000 bootstrap resamples, 9999 permutations) for results
# you report.

# %%
result = isoprobe.ablate(hooked, {"emg": test_emg, "acc": test_acc}, test.y, test.segment,
                         layers="all", pathway="uni,cross", bootstrap=200, permutations=199)
columns = ["layers", "pathway", "base_accuracy", "accuracy", "drop", "drop_ci_low", "drop_ci_high", "p_holm",
           "null_by_construction"]
result.table[columns]

# %% [markdown]
# How to read it: `L1`, `L2`, `L3` mask the pathway in that layer alone, `L1-L3` in all three at once;
# `drop` is base minus masked accuracy. On the `redundant` preset either modality suffices for every
# gesture, so expect small drops whose CIs include 0: taking cross-modal attention away leaves the
# model enough to classify by. `compare` below shows whether it still costs confidence (the logit
# margin) where it costs no accuracy.
#
# Your data may come as a `DataLoader`. Any iterable of `(inputs, labels, segments)` batches works,
# with `inputs` a dict of one tensor per modality; the windows are collected first, so the result is
# the same as above.

# %%
batches = [({"emg": e, "acc": a}, y, s) for e, a, y, s in zip(test_emg, test_acc, test.y, test.segment)]
loader = torch.utils.data.DataLoader(batches, batch_size=64)
from_loader = isoprobe.ablate(hooked, loader, layers="all", pathway="uni,cross", bootstrap=200, permutations=199)
same = np.allclose(from_loader.table["drop"], result.table["drop"])
print(f"same drops from the DataLoader: {same}")

# %% [markdown]
# ## 7. Compare the methods
#
# Masking is one way to take a pathway out. `isoprobe.compare` asks how much runs through cross-modal
# attention by several methods at once — masking, mean ablation, resample ablation, attribution
# patching, attention attribution, the interaction index of the two modalities, EMAP's additive gap and
# the data's own synergy (partial information decomposition) — so that you can see where they agree.
# Each row says what it estimates (`estimand`) and in which units (`block`): only rows of one block are
# shares of the same thing. `reference=` gives the training windows: the mean ablation substitutes
# each pathway's mean contribution over them, and the data's PID codes are fitted on them. Again the
# resample counts are kept small here.

# %%
compared = isoprobe.compare(hooked, test, reference=train, steps=2, bootstrap=30, shift_permutations=10,
                            shift_windows=40)
compared.table[["block", "method", "layers", "estimate", "ci_low", "ci_high", "estimand"]]

# %% [markdown]
# The accuracy block and the margin block answer different questions: a pathway can carry part of
# the model's confidence (its margin) while the other pathways still carry enough to keep every
# prediction right. `interaction index` and `EMAP gap` look at the inputs rather than at attention:
# how much the model's accuracy needs both modalities together. `data synergy (PID)` asks the data
# itself, whatever the model: on the redundant preset the labels need no synergy, so a model that
# leans on cross-modal attention here does so by choice, not by necessity.

# %% [markdown]
# ## 8. Figures
#
# `isoprobe.figure` draws a result as the report (`isoprobe report`) draws a study's: the bars are
# accuracy drops with their 95 % CIs over segments; hollow ∅ markers are the conditions null by
# construction (masking there cannot change what CLS reads). `figure.savefig("ablation.png")` keeps it.

# %%
figure = isoprobe.figure(result, "EmgAccClassifier")
figure

# %%
figure = isoprobe.figure(compared, "EmgAccClassifier")
figure

# %%
print(f"notebook ran in {time.perf_counter() - started:.0f} s")
