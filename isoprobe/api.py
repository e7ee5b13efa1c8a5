"""The analyses as Python functions on any model the engine can hook: an isoprobe model, or a model
isoprobe did not build once `isoprobe.hook` has put its hook points on it. Each takes the model, its
inputs (tensors per modality, or a DataLoader of batches), the labels and the segment of each window,
and the analysis's options as keywords, and returns the result object the CLI writes (`.table`,
`.write(folder)`):

    import isoprobe
    hooked = isoprobe.hook(my_model, isoprobe.TokenLayout.cls_first({"emg": 4, "acc": 2}))
    result = isoprobe.ablate(hooked, {"emg": emg, "acc": acc}, labels, segments, layers="all", pathway="cross")

A segment is one repetition of one gesture: its overlapping windows share their errors, so every
confidence interval resamples segments, stratified by class (DESIGN §4). That is why `segments` is
not optional."""

from __future__ import annotations

import hashlib
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import torch

from isoprobe.data.pipeline import WindowSet
from isoprobe.errors import ConfigError
from isoprobe.study.analyses import WHERE, analysis

__all__ = ["ablate", "attribute", "compare", "emap", "figure", "interact", "knockout", "pid", "sanity", "shift", "windows"]

# name -> (module, configuration class, analysis function): each function takes (model, windows, config,
# reference=, device=, progress=) and returns a result that writes itself. The analyses a study runs are
# declared once, in isoprobe.study.analyses; the API adds those a study does not run.
ANALYSES = {**WHERE,
            "interact": ("isoprobe.attribution.interaction", "InteractConfig", "interact"),
            "sanity": ("isoprobe.attribution.sanity", "SanityConfig", "sanity")}

Inputs = Mapping[str, Any] | Sequence[Any] | Iterable | WindowSet


def windows(inputs: Inputs, labels=None, segments=None, modality_names: Sequence[str] | None = None) -> WindowSet:
    """isoprobe's windows from a user's data. inputs: {modality: [window, time, channel]} (tensors or
    arrays), a sequence of them in `modality_names` order, or an iterable of batches (a DataLoader)
    each `(inputs, labels, segments)`; labels: [window] class indices; segments: [window] the segment
    (repetition) each window was cut from — windows of one segment and class are resampled together."""
    if isinstance(inputs, WindowSet):
        return inputs
    if not isinstance(inputs, (Mapping, Sequence, torch.Tensor, np.ndarray)):  # a DataLoader: batches
        return _from_batches(inputs, modality_names)
    x = _per_modality(inputs, modality_names)
    n = len(next(iter(x.values())))
    y = _vector(labels, "labels", n)
    segment = _vector(segments, "segments", n)
    return WindowSet(x, y, y.copy(), segment, content_keys(x))


def content_keys(x: dict[str, np.ndarray]) -> np.ndarray:
    """[window] int64: each window's key, from its values (a 7-byte BLAKE2b digest of its bytes in every
    modality). Donors, subsamples and permutations are drawn per key, so they follow the windows, not the
    order they were given in (isoprobe's own windows are keyed by where they start in the recording).
    Identical windows are told apart by their order among themselves."""
    names = sorted(x)
    keys = np.empty(len(x[names[0]]), dtype=np.int64)
    seen: dict[bytes, int] = {}
    for index in range(len(keys)):
        digest = hashlib.blake2b(b"".join(x[name][index].tobytes() for name in names), digest_size=7).digest()
        repeat = seen.get(digest, 0)
        seen[digest] = repeat + 1
        if repeat:  # the same values again: a key of its own, still independent of the other windows' order
            digest = hashlib.blake2b(digest + repeat.to_bytes(8, "little"), digest_size=7).digest()
        keys[index] = int.from_bytes(digest, "little")
    return keys


def _per_modality(inputs, modality_names: Sequence[str] | None) -> dict[str, np.ndarray]:
    if isinstance(inputs, (torch.Tensor, np.ndarray)):
        inputs = (inputs,)
    if isinstance(inputs, Mapping):
        named = dict(inputs)
        if modality_names is not None and list(named) != list(modality_names):
            raise ConfigError("inputs", sorted(named), f"name the model's modalities, in its order: {', '.join(modality_names)}")
    else:
        names = list(modality_names) if modality_names is not None else [f"m{i}" for i in range(len(inputs))]
        if len(names) != len(inputs):
            raise ConfigError("inputs", f"{len(inputs)} tensors", f"give one per modality of the model ({', '.join(names)})")
        named = dict(zip(names, inputs))
    x = {}
    for name, value in named.items():
        array = (value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)).astype(np.float32)
        if array.ndim != 3:
            raise ConfigError(f"inputs[{name}]", tuple(array.shape), "must be [window, time, channel]")
        if not np.isfinite(array).all():
            raise ConfigError(f"inputs[{name}]", "NaN or inf", "every value must be finite")
        x[name] = array
    counts = {name: len(a) for name, a in x.items()}
    if len(set(counts.values())) != 1:
        raise ConfigError("inputs", counts, "every modality needs the same number of windows")
    return x


def _vector(values, field: str, n: int) -> np.ndarray:
    if values is None:
        why = ("each window's class index" if field == "labels" else
               "each window's segment (the repetition it was cut from): overlapping windows of one repetition are "
               "not independent, and the confidence intervals resample segments")
        raise ConfigError(field, None, f"give {why}")
    array = values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
    if array.shape != (n,) or not np.issubdtype(array.dtype, np.integer):
        raise ConfigError(field, f"{array.dtype}{list(array.shape)}", f"must be {n} integers, one per window")
    if (array < 0).any():
        raise ConfigError(field, int(array.min()), "must be ≥ 0")
    return array.astype(np.int64)


def _from_batches(batches: Iterable, modality_names: Sequence[str] | None) -> WindowSet:
    parts = []
    for index, batch in enumerate(batches):
        if not isinstance(batch, (tuple, list)) or len(batch) != 3:
            raise ConfigError("inputs", f"batch {index}", "a DataLoader's batches must be (inputs, labels, segments)")
        parts.append(windows(*batch, modality_names=modality_names))
    if not parts:
        raise ConfigError("inputs", "an empty DataLoader", "give at least one batch")
    first = parts[0]
    x = {name: np.concatenate([p.x[name] for p in parts]) for name in first.x}
    y = np.concatenate([p.y for p in parts])
    segment = np.concatenate([p.repetition for p in parts])
    return WindowSet(x, y, y.copy(), segment, content_keys(x))


def _run(name: str, config_class: type, function: Callable, model: torch.nn.Module, inputs: Inputs, labels, segments,
         reference, device, progress, options: dict) -> Any:
    names = getattr(model, "modality_names", None)
    evaluated = windows(inputs, labels, segments, names)
    if reference is not None and not isinstance(reference, WindowSet):
        reference = windows(*reference, modality_names=names) if isinstance(reference, tuple) else windows(reference, modality_names=names)
    try:
        config = config_class(**options)
    except TypeError as exc:
        known = ", ".join(f for f in config_class.__dataclass_fields__)
        raise ConfigError(name, sorted(options), f"unknown option ({exc}); {name} takes {known}") from None
    return function(model, evaluated, config, reference=reference, device=device, progress=progress)


def _analysis(name: str) -> Callable:
    module, config, function = ANALYSES[name]

    def run(model: torch.nn.Module, inputs: Inputs, labels=None, segments=None, *, reference=None,
            device: str | torch.device = "cpu", progress: Callable[[int, int], None] | None = None, **options):
        return _run(name, *analysis(name, ANALYSES), model, inputs, labels, segments, reference, device, progress,
                    options)

    run.__name__ = run.__qualname__ = name
    run.__doc__ = (f"`isoprobe {name}` on `model` (an isoprobe model or one `isoprobe.hook` returned): the options are "
                   f"{module}.{config}'s fields; reference: the training windows (a WindowSet or (inputs, labels, "
                   f"segments)) where a baseline is fitted. Returns {module}.{function}'s result.")
    return run


ablate = _analysis("ablate")
knockout = _analysis("knockout")
compare = _analysis("compare")
shift = _analysis("shift")
interact = _analysis("interact")
emap = _analysis("emap")
pid = _analysis("pid")
sanity = _analysis("sanity")


def attribute(model: torch.nn.Module, inputs: Inputs, labels=None, segments=None, *, method: str = "ig", reference=None,
              device: str | torch.device = "cpu", progress: Callable[[int, int], None] | None = None, **options):
    """`isoprobe attribute --method METHOD` on `model`: the methods of `isoprobe.attribution.methods`
    (ig, attention, …), each with its configuration's fields as options."""
    from isoprobe.attribution.methods import ATTRIBUTIONS

    if method not in ATTRIBUTIONS:
        raise ConfigError("method", method, f"choose one of {', '.join(ATTRIBUTIONS)}")
    chosen = ATTRIBUTIONS[method]
    config_class, function = chosen.load()
    return _run("attribute", config_class, function, model, inputs, labels, segments, reference, device, progress,
                {**options, **chosen.fixed})


def figure(result, name: str = "model"):
    """The report's figure of one analysis's result (a matplotlib Figure; `.savefig(path)`): an ablation's
    accuracy drop per layer and pathway, or compare's estimates per method, each with its 95% CI and ∅ on
    the conditions null by construction. `name` labels the panel. The report's figures summarise many
    runs; one result is shown as one run (subject 1, seed 0), its CIs the result's own."""
    from isoprobe.attribution.compare import CompareResult
    from isoprobe.engine.ablate import AblationResult
    from isoprobe.reports import aggregate, plots

    if isinstance(result, AblationResult):
        summary = aggregate.ablation_summary(_one_run(result.table, name), bootstrap=0, seed=0)
        single = summary[summary.layer.notna()]
        if not len(single):
            raise ConfigError("result", "no single-layer condition", "the figure shows drops per layer: run "
                              "ablate with layers such as \"all\" in single mode")
        return plots.static_layer_drop(single)
    if isinstance(result, CompareResult):
        return plots.static_compare(aggregate.compare_summary(_one_run(result.table, name), bootstrap=0, seed=0))
    raise ConfigError("result", type(result).__name__, "a figure is drawn for ablate's and compare's results")


def _one_run(table, name: str):
    """One analysis's table with the columns a study adds to name its run."""
    return table.assign(subject=1, seed=0, arch=name)
