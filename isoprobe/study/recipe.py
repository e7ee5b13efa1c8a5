"""A study recipe: a TOML file saying which data, which models in which modality configurations and
seeds, and which analyses; read and checked completely before any work starts.

    title = "Quick study"
    seeds = [0]                     # training seeds; every run is repeated for each
    device = "cpu"                  # cpu, cuda or auto
    bootstrap = 1000                # cluster-bootstrap resamples of every CI
    threads = 1                     # CPU threads per job: float sums depend on the thread count, so
                                    # it is fixed here, not by the number of workers

    [data]
    dataset = "ninapro-db2"         # or hdsemg65
    subjects = [1, 2]
    root = "path/to/DB2"            # a data folder (relative to the recipe), or instead:
    [data.synthetic]                # synthetic data written into the study folder
    preset = "mixed"
    synergy_fraction = 0.3

    [[models]]                      # one table per architecture (or per variant)
    arch = "hierarchical"
    config = "models/hierarchical-db2.toml"   # optional: a model configuration
    modalities = ["emg,acc", "emg", "acc"]    # each is one run per subject and seed
    epochs = 20                     # training options override the configuration's

    [ablate]                        # each analysis runs on every attention model with two or
    layers = "1-5"                  # more modality groups; leave a table out to skip it
    pathway = "uni,cross,relay,readout"
    [compare]
    [shift]

Every key is checked against the ones below; an unknown key, a missing data folder or an impossible
combination (an analysis on an MLP only, a modality the data set lacks) is refused naming the key
(`models[1].modalities`) or the path.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from isoprobe.errors import ConfigError, IsoprobeError

TOP_KEYS = {"title", "description", "seeds", "device", "bootstrap", "threads", "data", "models", "ablate", "compare", "shift"}
DATA_KEYS = {"dataset", "subjects", "root", "synthetic"}
SYNTHETIC_KEYS = {"preset", "synergy_fraction", "gestures", "repetitions", "seconds_per_repetition", "rest_seconds", "seed"}
# A [[models]] table: these, and any key of a model configuration file (isoprobe.models.modelspec:
# d_model, n_layers, epochs, lr, patch, window_ms, …), which override the file's values.
MODEL_KEYS = {"name", "arch", "config", "modalities", "pathway_dropout"}
ABLATE_KEYS = {"layers", "pathway", "intervention", "mode", "heads", "donor", "draws", "permutations"}
COMPARE_KEYS = {"layers", "baseline", "steps", "draws"}
SHIFT_KEYS = {"layers", "pathway", "interventions", "mode", "max_windows", "permutations"}
ARCHS = ("mlp", "mmt", "hierarchical")


class RecipeError(IsoprobeError, ValueError):
    """A recipe that cannot run: names the recipe file and the key (or path) at fault."""

    def __init__(self, path: Path, key: str, message: str):
        self.path, self.key = Path(path), key
        super().__init__(f"{path}: {key}: {message}")


@dataclass(frozen=True)
class ModelRuns:
    """One [[models]] table: an architecture's configuration (a model configuration file, then the
    table's keys over it), its modality configurations and pathway dropout."""

    name: str
    arch: str
    modalities: tuple[str, ...]
    spec: dict  # ModelSpec.to_dict(): model, tokens, windows and training, as in a models/*.toml file
    pathway_dropout: str | None = None
    config: str | None = None  # the model configuration file it started from

    def model_spec(self, modalities: str):
        """The isoprobe.models.modelspec.ModelSpec of this table for one modality configuration."""
        from isoprobe.models.modelspec import ModelSpec

        return ModelSpec.from_dict({**self.spec, "modalities": modalities})


@dataclass(frozen=True)
class Recipe:
    path: str
    title: str
    description: str
    seeds: tuple[int, ...]
    device: str
    bootstrap: int
    threads: int
    dataset: str
    subjects: tuple[int, ...]
    root: str | None  # a data folder, or None with `synthetic`
    synthetic: dict | None
    models: tuple[ModelRuns, ...]
    ablate: dict | None
    compare: dict | None
    shift: dict | None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def load_recipe(path: Path, data: Path | None = None) -> Recipe:
    """Read and check a recipe. data: a data folder replacing the recipe's `data.root` (`--data`)."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError(path, "recipe", "no such file")
    try:
        values = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise RecipeError(path, "recipe", f"not valid TOML ({error})") from None
    return parse_recipe(values, path, data)


def parse_recipe(values: dict, path: Path, data: Path | None = None) -> Recipe:
    check = _Checker(path)
    check.keys("", values, TOP_KEYS)
    data_table = check.table("data", values.get("data"), required=True)
    check.keys("data", data_table, DATA_KEYS)
    dataset = check.string("data.dataset", data_table.get("dataset", "ninapro-db2"))
    from isoprobe.data.datasets import dataset_spec

    spec = check.call("data.dataset", dataset_spec, dataset)
    subjects = check.integers("data.subjects", data_table.get("subjects", [1]), minimum=1)
    synthetic = data_table.get("synthetic")
    root = data if data is not None else data_table.get("root")
    if synthetic is not None and data is None:
        if "root" in data_table:
            raise RecipeError(path, "data", "give either root or [data.synthetic], not both")
        synthetic = check.table("data.synthetic", synthetic)
        check.keys("data.synthetic", synthetic, SYNTHETIC_KEYS)
        synthetic = _synthetic(check, dataset, subjects, synthetic)
        root = None
    elif root is None:
        raise RecipeError(path, "data", "needs root (a data folder) or a [data.synthetic] table")
    else:
        synthetic = None
        root = Path(root) if data is not None else (path.parent / str(root))
        if not root.is_dir():
            raise RecipeError(path, "data.root" if data is None else "--data", f"no such data folder: {root}")
        root = str(root.resolve())
    models_list = values.get("models")
    if not isinstance(models_list, list) or not models_list:
        raise RecipeError(path, "models", "needs at least one [[models]] table")
    models = tuple(_model(check, f"models[{index}]", table, spec) for index, table in enumerate(models_list))
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise RecipeError(path, "models", f"two [[models]] tables share a name ({', '.join(names)}); set name = …")
    analyses = {}
    for key, allowed in (("ablate", ABLATE_KEYS), ("compare", COMPARE_KEYS), ("shift", SHIFT_KEYS)):
        table = values.get(key)
        if table is not None:
            check.keys(key, check.table(key, table), allowed)
        analyses[key] = table
    if any(analyses.values()) and not any(m.arch != "mlp" and any(_groups(c) > 1 for c in m.modalities) for m in models):
        raise RecipeError(path, next(k for k, v in analyses.items() if v is not None),
                          "needs an mmt or hierarchical model with two or more modality groups; "
                          "the multimodal MLP has no attention to intervene on")
    recipe = Recipe(path=str(path), title=str(values.get("title", path.stem)), description=str(values.get("description", "")),
                    seeds=check.integers("seeds", values.get("seeds", [0]), minimum=0),
                    device=check.choice("device", values.get("device", "cpu"), ("cpu", "cuda", "auto")),
                    bootstrap=check.integer("bootstrap", values.get("bootstrap", 1000), minimum=0),
                    threads=check.integer("threads", values.get("threads", 1), minimum=1),
                    dataset=dataset, subjects=subjects, root=root, synthetic=synthetic, models=models, **analyses)
    _check_analyses(check, recipe)
    return recipe


def configuration_kind(modalities: str) -> str:
    """unimodal (one group), equal-channel (several groups of one modality: emg[0:6],emg[6:12]) or
    multimodal."""
    sources = [part.split("[")[0].strip() for part in modalities.split(",") if part.strip()]
    if len(sources) == 1:
        return "unimodal"
    return "equal-channel" if len(set(sources)) == 1 else "multimodal"


def _groups(modalities: str) -> int:
    return len([part for part in modalities.split(",") if part.strip()])


def _synthetic(check: "_Checker", dataset: str, subjects: tuple[int, ...], table: dict) -> dict:
    from isoprobe.data.synth.generate import SynthConfig

    values = {"layout": dataset, "subjects": max(subjects), **table}
    config = check.call("data.synthetic", SynthConfig, **values)
    return dataclasses.asdict(config)


def _model(check: "_Checker", key: str, table, spec) -> ModelRuns:
    from isoprobe.data.modalities import check_sources
    from isoprobe.errors import DataFormatError
    from isoprobe.models.modelspec import _key_sections, default_model_spec, load_model_config

    table = check.table(key, table)
    check.keys(key, table, MODEL_KEYS | set(_key_sections()) - {"dataset", "description"})
    config = table.get("config")
    if config is not None:
        config_path = check.path.parent / str(config)
        if not config_path.is_file():
            config_path = Path(str(config))  # recipes in analyses/ may name model files from the repository root
        if not config_path.is_file():
            raise check.error(f"{key}.config", f"no such model configuration: {config}")
        config = str(config_path.resolve())
        try:
            base = load_model_config(config_path)
        except (ConfigError, DataFormatError) as error:
            raise check.error(f"{key}.config", str(error)) from None
        if base.dataset != spec.name:
            raise check.error(f"{key}.config", f"{config_path.name} is for {base.dataset}, the recipe's data are {spec.name}")
    else:
        base = default_model_spec(spec.name, check.choice(f"{key}.arch", table.get("arch", "hierarchical"), ARCHS))
    if "arch" in table:
        check.choice(f"{key}.arch", table["arch"], ARCHS)
    overrides = {name: value for name, value in table.items() if name not in MODEL_KEYS | {"modalities"} or name == "arch"}
    model_spec = check.call(key, base.with_overrides, **overrides)
    modalities = table.get("modalities", [model_spec.resolved_modalities])
    if isinstance(modalities, str):
        modalities = [modalities]
    if not isinstance(modalities, list) or not modalities or not all(isinstance(m, str) for m in modalities):
        raise check.error(f"{key}.modalities", "a list of modality configurations, e.g. [\"emg,acc\", \"emg\"]")
    for value in modalities:
        check.call(f"{key}.modalities", check_sources, value, spec.modalities)
    dropout = table.get("pathway_dropout")
    if dropout is not None:
        from isoprobe.training.dropout import parse_pathway_dropout

        if model_spec.arch == "mlp":
            raise check.error(f"{key}.pathway_dropout", "the multimodal MLP has no attention; use mmt or hierarchical")
        check.call(f"{key}.pathway_dropout", parse_pathway_dropout, dropout)
    name = str(table.get("name", model_spec.arch))
    return ModelRuns(name=name, arch=model_spec.arch, modalities=tuple(modalities), spec=model_spec.to_dict(),
                     pathway_dropout=dropout, config=config)


def _check_analyses(check: "_Checker", recipe: Recipe) -> None:
    """Build each analysis's configuration once, so a bad value fails here, before any training."""
    from isoprobe.diagnostics.shift import ShiftConfig
    from isoprobe.engine.ablate import AblationConfig
    from isoprobe.attribution.compare import CompareConfig

    builders = {"ablate": AblationConfig, "compare": CompareConfig, "shift": ShiftConfig}
    for key, builder in builders.items():
        table = getattr(recipe, key)
        if table is not None:
            check.call(key, builder, **{name: value for name, value in table.items()})


class _Checker:
    """Type checks that name the recipe file and the key."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def error(self, key: str, message: str) -> RecipeError:
        return RecipeError(self.path, key, message)

    def keys(self, where: str, table: dict, allowed: set[str]) -> None:
        unknown = sorted(set(table) - allowed)
        if unknown:
            name = f"{where}.{unknown[0]}" if where else unknown[0]
            raise self.error(name, f"unknown key; {where or 'the recipe'} knows {', '.join(sorted(allowed))}")

    def table(self, key: str, value, required: bool = False) -> dict:
        if value is None and not required:
            return {}
        if not isinstance(value, dict):
            raise self.error(key, "missing" if value is None else f"expected a table, got {value!r}")
        return value

    def string(self, key: str, value) -> str:
        if not isinstance(value, str):
            raise self.error(key, f"expected a string, got {value!r}")
        return value

    def choice(self, key: str, value, allowed: tuple[str, ...]) -> str:
        if value not in allowed:
            raise self.error(key, f"got {value!r}; choose one of {', '.join(allowed)}")
        return value

    def integer(self, key: str, value, minimum: int) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise self.error(key, f"got {value!r}; expected an integer ≥ {minimum}")
        return value

    def integers(self, key: str, value, minimum: int) -> tuple[int, ...]:
        if isinstance(value, int) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, list) or not value:
            raise self.error(key, f"got {value!r}; expected a list of integers")
        values = tuple(self.integer(key, v, minimum) for v in value)
        if len(set(values)) != len(values):
            raise self.error(key, f"got {value!r}; each value once")
        return values

    def call(self, key: str, function, *args: Any, **kwargs: Any):
        """function(*args, **kwargs), its ConfigError renamed to the recipe key (and field)."""
        try:
            return function(*args, **kwargs)
        except ConfigError as error:
            option = error.option.lstrip("-").replace("-", "_")
            name = key if option in ("", key.rsplit(".", 1)[-1]) else f"{key}.{option}"
            raise self.error(name, f"got {error.value!r}; {error.allowed}") from None
        except TypeError as error:  # an unexpected keyword of a configuration class
            raise self.error(key, str(error)) from None
