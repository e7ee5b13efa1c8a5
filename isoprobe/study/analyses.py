"""The analyses a study runs on every run with attention across two or more modality groups: the recipe
table that configures each, its configuration class and the function that runs it. The recipe's keys,
the recipe's checks and the study's steps all read this one declaration.

A configuration class is imported when it is asked for, not with the study: torch stays off the CLI's
start-up path."""

from __future__ import annotations

import dataclasses
import importlib
from typing import Callable

# step -> (module, configuration class, analysis function), imported when the step runs
WHERE = {
    "ablate": ("isoprobe.engine.ablate", "AblationConfig", "run_ablation"),
    "compare": ("isoprobe.attribution.compare", "CompareConfig", "compare"),
    "shift": ("isoprobe.diagnostics.shift", "ShiftConfig", "shift"),
    "knockout": ("isoprobe.engine.ablate", "KnockoutConfig", "run_ablation"),
    "emap": ("isoprobe.attribution.emap", "EmapConfig", "emap"),
    "pid": ("isoprobe.diagnostics.pid", "PIDConfig", "run_pid"),
}
ANALYSES = tuple(WHERE)  # recipe tables, and the study's steps after train and eval
STUDY_LEVEL = frozenset({"bootstrap"})  # set once for the whole study, at the recipe's top level
NEEDS_TRUTH = frozenset({"pid"})  # given the synthetic sidecar (truth=…, None on real data): planted values


def analysis(step: str, where: dict[str, tuple[str, str, str]] = WHERE) -> tuple[type, Callable]:
    """(configuration class, analysis): the analysis takes the model, the evaluated windows, the
    configuration, the reference windows and the device, and returns a result that writes itself.
    where: the declaration to read (the Python API's extends this one)."""
    module, options, run = where[step]
    imported = importlib.import_module(module)
    return getattr(imported, options), getattr(imported, run)


def check_against(step: str, model, config) -> None:
    """Check `config` against a model built for the data set (layers, heads, pathways, modality groups)
    before any data are read; a bad value raises ConfigError naming its field."""
    if step == "compare":
        from isoprobe.engine.grid import attention_layers
        from isoprobe.layersets import parse_layers

        parse_layers(config.layers, attention_layers(model))
    elif step == "emap":
        from isoprobe.attribution.emap import check_modalities

        check_modalities(model)
    elif step == "pid":
        if len(model.modality_names) != 2:
            from isoprobe.errors import ConfigError

            raise ConfigError("modalities", ",".join(model.modality_names), "the PID decomposes over two modality groups")
    else:
        from isoprobe.engine.ablate import plan_grid

        plan_grid(model, config)


def recipe_keys(step: str) -> frozenset[str]:
    """The keys of the recipe's [step] table: every field of its configuration but the study-level ones."""
    options, _ = analysis(step)
    return frozenset(f.name for f in dataclasses.fields(options)) - STUDY_LEVEL
