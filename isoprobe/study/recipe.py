"""A study recipe: a TOML file saying which data, which models in which modality configurations and
seeds, and which analyses; read and checked completely before any work starts.

    title = "Quick study"
    seeds = [0]                     # training seeds; every run is repeated for each
    device = "cpu"                  # cpu, cuda or auto
    bootstrap = 1000                # cluster-bootstrap resamples of every CI
    threads = 1                     # CPU threads per job: float sums depend on the thread count, so
                                    # it is fixed here, not by the number of workers

    [data]                          # or several [[data]] tables (each with a name)
    dataset = "ninapro-db2"         # or hdsemg65
    subjects = [1, 2]               # or "all": every subject found in root
    root = "path/to/DB2"            # a data folder (relative to the recipe; --data replaces it), or:
    [data.synthetic]                # synthetic data written into the study folder
    preset = "mixed"
    synergy_fraction = 0.3

    [[models]]                      # one table per architecture (or per variant)
    config = "../models/hierarchical-db2.toml"  # optional: a model configuration (else arch = …)
    modalities = ["emg,acc", "emg", "acc"]    # each is one run per subject and seed
    epochs = 20                     # any model configuration key overrides the file's value
    data = ["db2"]                  # optional: the [[data]] it trains on (default: every one of its
                                    # data set; all of them without a configuration file)

    [[models]]                      # a model you trained elsewhere: a function (given the prepared
    name = "mine"                   # data of each subject) returning isoprobe.hook(model, layout);
    model = "my_models:build"       # it is imported, so its code runs: `isoprobe study --trust-code`
    modalities = ["emg,acc"]        # (no training: eval and the analyses run on it; one run per
                                    # subject, not per seed)

    [ablate]                        # each analysis runs on every attention model with two or
    layers = "1-5"                  # more modality groups; leave a table out to skip it
    pathway = "uni,cross,relay,readout"
    [compare]
    [shift]
    [knockout]                      # ablate as knockout studies report it: windows of 3 layers,
                                    # correct windows only, directed pairs, relay, readout

The keys of each analysis table are the fields of its configuration (isoprobe.study.analyses).
Every key is checked; an unknown key, a missing data folder or an impossible combination (an
analysis on an MLP only, a modality the data set lacks, a model file for another data set) is
refused naming the key (`models[1].modalities`) or the path.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from isoprobe.errors import ConfigError, IsoprobeError
from isoprobe.models.config import has_attention
from isoprobe.study.analyses import ANALYSES, analysis, check_against, recipe_keys

TOP_KEYS = {"title", "description", "seeds", "device", "bootstrap", "threads", "data", "models", *ANALYSES, "report"}
DATA_KEYS = {"name", "dataset", "subjects", "root", "synthetic"}
SYNTHETIC_KEYS = {"preset", "synergy_fraction", "gestures", "repetitions", "seconds_per_repetition", "rest_seconds", "seed"}
# A [[models]] table: these, and any key of a model configuration file (isoprobe.training.runspec:
# d_model, n_layers, epochs, lr, patch, window_ms, …), which override the file's values.
MODEL_KEYS = {"name", "arch", "config", "modalities", "pathway_dropout", "data"}
# A [[models]] table naming your own model (`model = "package.module:function"`): only these.
FOREIGN_MODEL_KEYS = {"name", "model", "modalities", "data"}
FOREIGN = "foreign"  # the arch column of such a model's runs
# [ablate], [compare], [shift]: the fields of each analysis's configuration (isoprobe.study.analyses)
# [report]: isoprobe.reports.html.ReportConfig — its bootstrap is over subjects across runs (`subject_bootstrap`),
# where the top-level `bootstrap` resamples segments within each run's analyses
REPORT_KEYS = {"subject_bootstrap", "seed", "runs_shown"}
ARCHS = ("mlp", "mmt", "hierarchical")


class RecipeError(IsoprobeError, ValueError):
    """A recipe that cannot run: names the recipe file and the key (or path) at fault."""

    def __init__(self, path: Path, key: str, message: str):
        self.path, self.key = Path(path), key
        super().__init__(f"{path}: {key}: {message}")


@dataclass(frozen=True)
class DataSource:
    """One [data] table: a data set's subjects, in a folder or synthesised into the study."""

    name: str  # folder name under OUT/runs and OUT/data
    dataset: str
    subjects: tuple[int, ...]
    root: str | None  # a data folder, or None with `synthetic`
    synthetic: dict | None  # SynthConfig fields

    @property
    def label(self) -> str:
        if self.synthetic is None:
            return Path(self.root).name
        fraction = self.synthetic.get("synergy_fraction")
        return f"synthetic {self.synthetic['preset']}" + (f" (synergy {fraction:g})" if fraction is not None else "")


@dataclass(frozen=True)
class ModelRuns:
    """One [[models]] table: an architecture's configuration (a model configuration file, then the
    table's keys over it) per data set it trains on, its modality configurations and pathway dropout."""

    name: str
    arch: str
    specs: tuple[tuple[str, dict], ...]  # (data set, ModelSpec.to_dict()) for each data set it trains on
    modalities: tuple[str, ...] | None  # None: each data set's modalities
    data: tuple[str, ...]  # the DataSource names it trains on
    pathway_dropout: str | None = None
    config: str | None = None  # the model configuration file it started from
    function: str | None = None  # your own model: package.module:function (arch "foreign", no training)
    code_path: str | None = None  # the recipe's folder, searched for the function's module

    @property
    def foreign(self) -> bool:
        return self.function is not None

    @property
    def has_attention(self) -> bool:
        """isoprobe.hook refuses a model without attention, so a foreign model has some."""
        return self.foreign or has_attention(self.arch)

    def model_spec(self, dataset: str, modalities: str):
        """The isoprobe.training.runspec.ModelSpec of this table on `dataset` for one modality configuration."""
        from isoprobe.training.runspec import ModelSpec

        return ModelSpec.from_dict({**dict(self.specs)[dataset], "modalities": modalities})

    def modalities_for(self, dataset: str) -> tuple[str, ...]:
        if self.modalities is not None:
            return self.modalities
        from isoprobe.data.datasets import dataset_spec

        return (",".join(dataset_spec(dataset).modalities),)


@dataclass(frozen=True)
class Recipe:
    path: str
    title: str
    description: str
    seeds: tuple[int, ...]
    device: str
    bootstrap: int
    threads: int
    data: tuple[DataSource, ...]
    models: tuple[ModelRuns, ...]
    ablate: dict | None
    compare: dict | None
    shift: dict | None
    report: dict | None = None
    knockout: dict | None = None
    emap: dict | None = None
    pid: dict | None = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def load_recipe(path: Path, data: Path | dict[str, Path] | None = None, trust_code: bool = False) -> Recipe:
    """Read and check a recipe. data (`--data`): a data folder replacing the recipe's data (a recipe
    with one [data] table), or {data table name: folder}. trust_code (`--trust-code`): import the
    functions that [[models]] tables name (their code runs); without it such a recipe is refused."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError(path, "recipe", "no such file")
    try:
        values = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise RecipeError(path, "recipe", f"not valid TOML ({error})") from None
    return parse_recipe(values, path, data, trust_code)


def parse_recipe(values: dict, path: Path, data: Path | dict[str, Path] | None = None, trust_code: bool = False) -> Recipe:
    check = _Checker(path)
    _check_trust(check, values.get("models"), trust_code)  # before anything is imported or read
    check.keys("", values, TOP_KEYS)
    tables = values.get("data")
    if isinstance(tables, dict):
        tables, keys = [tables], ["data"]
    elif isinstance(tables, list) and tables:
        keys = [f"data[{i}]" for i in range(len(tables))]
    else:
        raise check.error("data", "needs a [data] table (or [[data]] tables)")
    if isinstance(data, dict):
        named = [t.get("name") if isinstance(t, dict) else None for t in tables]
        unknown = sorted(set(data) - set(named))
        if unknown:
            raise check.error("--data", f"no [[data]] table named {unknown[0]!r}; the recipe has {', '.join(map(str, named))}")
        folders = [data.get(name) for name in named]
    elif data is not None and len(tables) > 1:
        raise check.error("--data", "this recipe has several [[data]] tables: give NAME=FOLDER for each")
    else:
        folders = [data] * len(tables)
    sources = tuple(_data_source(check, key, table, folder) for key, table, folder in zip(keys, tables, folders))
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        raise check.error("data", f"two [[data]] tables share the name {names}; set name = … in each")
    models_list = values.get("models")
    if not isinstance(models_list, list) or not models_list:
        raise check.error("models", "needs at least one [[models]] table")
    models = tuple(_model(check, f"models[{index}]", table, sources) for index, table in enumerate(models_list))
    model_names = [m.name for m in models]
    if len(set(model_names)) != len(model_names):
        raise check.error("models", f"two [[models]] tables share a name ({', '.join(model_names)}); set name = …")
    analyses = {}
    for key in ANALYSES:
        table = values.get(key)
        if table is not None:
            check.keys(key, check.table(key, table), recipe_keys(key))
        analyses[key] = table
    analysable = any(m.has_attention and _groups(c) > 1 for m in models for s in sources if s.name in m.data
                     for c in m.modalities_for(s.dataset))
    if any(v is not None for v in analyses.values()) and not analysable:
        raise check.error(next(k for k, v in analyses.items() if v is not None),
                          "needs an mmt or hierarchical model with two or more modality groups; "
                          "the multimodal MLP has no attention to intervene on")
    recipe = Recipe(path=str(path), title=str(values.get("title", path.stem)), description=str(values.get("description", "")),
                    seeds=check.integers("seeds", values.get("seeds", [0]), minimum=0),
                    device=check.choice("device", values.get("device", "cpu"), ("cpu", "cuda", "auto")),
                    bootstrap=check.integer("bootstrap", values.get("bootstrap", 1000), minimum=0),
                    threads=check.integer("threads", values.get("threads", 1), minimum=1),
                    data=sources, models=models, report=_report_options(check, values.get("report")), **analyses)
    _check_analyses(check, recipe)
    return recipe


def _report_options(check: "_Checker", table) -> dict | None:
    """The [report] table, checked by building the report's configuration (no plotting imported)."""
    if table is None:
        return None
    from isoprobe.reports.html import ReportConfig

    check.keys("report", check.table("report", table), REPORT_KEYS)
    check.call("report", ReportConfig, **table)
    return dict(table)


def _data_source(check: "_Checker", key: str, table, data: Path | None) -> DataSource:
    from isoprobe.data.datasets import dataset_spec

    table = check.table(key, table, required=True)
    check.keys(key, table, DATA_KEYS)
    dataset = check.string(f"{key}.dataset", table.get("dataset", "ninapro-db2"))
    spec = check.call(f"{key}.dataset", dataset_spec, dataset)
    subjects_value = table.get("subjects", [1])
    every_subject = subjects_value == "all"
    subjects = (1,) if every_subject else check.integers(f"{key}.subjects", subjects_value, minimum=1)
    synthetic = table.get("synthetic")
    root = data if data is not None else table.get("root")
    if synthetic is not None and data is None:
        if "root" in table:
            raise check.error(key, "give either root or a synthetic table, not both")
        if every_subject:
            raise check.error(f"{key}.subjects", "\"all\" needs a data folder (root or --data); list the synthetic subjects")
        synthetic = check.table(f"{key}.synthetic", synthetic)
        check.keys(f"{key}.synthetic", synthetic, SYNTHETIC_KEYS)
        values = {"layout": dataset, "subjects": max(subjects), **synthetic}
        from isoprobe.data.synth.generate import SynthConfig

        synthetic = dataclasses.asdict(check.call(f"{key}.synthetic", SynthConfig, **values))
        root = None
        fraction = synthetic.get("synergy_fraction")
        default_name = f"synth-{synthetic['preset']}" + (f"-{fraction:g}" if fraction is not None else "")
    elif root is None:
        raise check.error(key, "needs root (a data folder) or a synthetic table")
    else:
        synthetic = None
        root = Path(root) if data is not None else (check.path.parent / str(root))
        if not root.is_dir():
            raise check.error(f"{key}.root" if data is None else "--data", f"no such data folder: {root}")
        root = root.resolve()
        present = sorted(spec.subjects_in(root))
        if every_subject:
            subjects = tuple(present)
        missing = sorted(set(subjects) - set(present))
        if missing or not subjects:
            raise check.error(f"{key}.subjects", f"subject(s) {missing or subjects_value} have no {dataset} files in "
                              f"{root} (found: {', '.join(map(str, present)) or 'none'})")
        default_name, root = root.name, str(root)
    name = check.string(f"{key}.name", table.get("name", default_name))
    if not name or "/" in name or name.startswith("."):
        raise check.error(f"{key}.name", f"got {name!r}; a folder name (no '/')")
    return DataSource(name=name, dataset=dataset, subjects=subjects, root=root, synthetic=synthetic)


def configuration_kind(modalities: str, dataset: str = "ninapro-db2") -> str:
    """unimodal (one channel group); equal-channel (several groups of one modality, emg[0:6],emg[6:12],
    or groups of equal channel counts, emg,acc[0:12] on DB2 — counted on the data set's recordings);
    otherwise multimodal."""
    from isoprobe.data.datasets import dataset_spec
    from isoprobe.data.modalities import parse_modalities

    groups = parse_modalities(modalities, dataset_spec(dataset).channels)
    if len(groups) == 1:
        return "unimodal"
    same_source = len({g.source for g in groups}) == 1
    return "equal-channel" if same_source or len({len(g.channels) for g in groups}) == 1 else "multimodal"


def _groups(modalities: str) -> int:
    from isoprobe.data.modalities import split_groups

    return len(split_groups(modalities))


def _model(check: "_Checker", key: str, table, sources: tuple[DataSource, ...]) -> ModelRuns:
    from isoprobe.data.datasets import dataset_spec
    from isoprobe.data.modalities import check_sources
    from isoprobe.errors import DataFormatError
    from isoprobe.training.runspec import _key_sections, default_model_spec, load_model_config

    table = check.table(key, table)
    if "model" in table:
        return _foreign_model(check, key, table, sources)
    check.keys(key, table, MODEL_KEYS | set(_key_sections()) - {"dataset", "description"})
    if "arch" in table:
        check.choice(f"{key}.arch", table["arch"], ARCHS)
    config, base = table.get("config"), None
    if config is not None:
        config_path = check.path.parent / str(config)
        if not config_path.is_file():
            config_path = Path(str(config))  # recipes may name model files from the current folder too
        if not config_path.is_file():
            raise check.error(f"{key}.config", f"no such model configuration: {config}")
        config = str(config_path.resolve())
        try:
            base = load_model_config(config_path)
        except (ConfigError, DataFormatError) as error:
            raise check.error(f"{key}.config", str(error)) from None
    names = table.get("data")
    if names is None:
        chosen = [s for s in sources if base is None or s.dataset == base.dataset]
        if not chosen:
            raise check.error(f"{key}.config", f"{Path(config).name} is for {base.dataset}; no [data] table has that data set")
    else:
        chosen = _named_data(check, key, names, sources)
        if base is not None and any(s.dataset != base.dataset for s in chosen):
            raise check.error(f"{key}.data", f"{Path(config).name} is for {base.dataset}, not for every data named")
    modalities = _modalities(check, key, table.get("modalities"))
    overrides = {name: value for name, value in table.items() if name not in MODEL_KEYS or name == "arch"}
    specs = {}
    for dataset in dict.fromkeys(s.dataset for s in chosen):
        start = base if base is not None else default_model_spec(dataset, table.get("arch", "hierarchical"))
        specs[dataset] = check.call(key, start.with_overrides, **overrides)
        for value in modalities or ():
            check.call(f"{key}.modalities", check_sources, value, dataset_spec(dataset).modalities)
    arch = next(iter(specs.values())).arch
    dropout = table.get("pathway_dropout")
    if dropout is not None:
        from isoprobe.training.dropout import parse_pathway_dropout

        if not has_attention(arch):
            raise check.error(f"{key}.pathway_dropout", f"the {arch} model has no attention; use mmt or hierarchical")
        check.call(f"{key}.pathway_dropout", parse_pathway_dropout, dropout)
    name = check.string(f"{key}.name", table.get("name", arch))
    return ModelRuns(name=name, arch=arch, specs=tuple((d, spec.to_dict()) for d, spec in specs.items()),
                     modalities=tuple(modalities) if modalities else None, data=tuple(s.name for s in chosen),
                     pathway_dropout=dropout, config=config)


def _check_trust(check: "_Checker", tables, trust_code: bool) -> None:
    """A recipe that names code to import is refused without --trust-code: importing runs that code, and
    a recipe is a file one downloads and shares (as transformers asks for trust_remote_code)."""
    if trust_code or not isinstance(tables, list):
        return
    for index, table in enumerate(tables):
        if isinstance(table, dict) and "model" in table:
            raise check.error(f"models[{index}].model", f"names code to import ({table['model']!r}), which runs it; "
                              "pass --trust-code if you trust that code")


def _foreign_model(check: "_Checker", key: str, table: dict, sources: tuple[DataSource, ...]) -> ModelRuns:
    """A [[models]] table naming a function that returns isoprobe.hook(...)'s model: imported here (the
    recipe was trusted), so a wrong name fails before any data are read."""
    from isoprobe.analysis import model_function
    from isoprobe.data.datasets import dataset_spec
    from isoprobe.data.modalities import check_sources

    unknown = sorted(set(table) - FOREIGN_MODEL_KEYS)
    if unknown:
        raise check.error(f"{key}.{unknown[0]}", f"a table with model = … takes only {', '.join(sorted(FOREIGN_MODEL_KEYS))} "
                          "(the model is trained already)")
    function = check.string(f"{key}.model", table["model"])
    code_path = str(check.path.parent.resolve())
    check.call(f"{key}.model", model_function, function, code_path)
    chosen = _named_data(check, key, table["data"], sources) if "data" in table else list(sources)
    modalities = _modalities(check, key, table.get("modalities"))
    for dataset in {s.dataset for s in chosen}:
        for value in modalities or ():
            check.call(f"{key}.modalities", check_sources, value, dataset_spec(dataset).modalities)
    return ModelRuns(name=check.string(f"{key}.name", table.get("name", function.rsplit(":", 1)[-1])), arch=FOREIGN,
                     specs=(), modalities=tuple(modalities) if modalities else None, data=tuple(s.name for s in chosen),
                     function=function, code_path=code_path)


def _named_data(check: "_Checker", key: str, names, sources: tuple[DataSource, ...]) -> list[DataSource]:
    """A [[models]] table's `data`: one name or a list of names of [data] tables."""
    names = [names] if isinstance(names, str) else names
    known = {s.name: s for s in sources}
    unknown = [n for n in names if n not in known] if isinstance(names, list) else [names]
    if unknown or not names:
        raise check.error(f"{key}.data", f"got {unknown or names}; name [data] tables: {', '.join(known)}")
    return [known[n] for n in names]


def _modalities(check: "_Checker", key: str, modalities) -> list[str] | None:
    """A [[models]] table's `modalities`: one configuration or a list of them (None: the data set's)."""
    if isinstance(modalities, str):
        modalities = [modalities]
    if modalities is not None and (not isinstance(modalities, list) or not modalities
                                   or not all(isinstance(m, str) for m in modalities)):
        raise check.error(f"{key}.modalities", "a list of modality configurations, e.g. [\"emg,acc\", \"emg\"]")
    return modalities


def _check_analyses(check: "_Checker", recipe: Recipe) -> None:
    """Build each analysis's configuration once, so a bad value fails here, before any training."""
    configs = {}
    for key in ANALYSES:
        table = getattr(recipe, key)
        if table is not None:
            configs[key] = check.call(key, analysis(key)[0], **{name: value for name, value in table.items()})
    if not configs:
        return
    # Layers, heads and pathway names against each model that will be analysed, built for the data
    # set's recordings without reading data (isoprobe.training.runspec).
    from isoprobe.models import build_model

    checked = set()
    for model in recipe.models:
        for source in recipe.data:
            if source.name not in model.data or model.foreign or not has_attention(model.arch):
                # a foreign model is built from each subject's data: its layers are checked when it runs
                continue
            for modalities in model.modalities_for(source.dataset):
                if _groups(modalities) < 2 or (model.name, source.dataset, modalities) in checked:
                    continue
                checked.add((model.name, source.dataset, modalities))
                built = build_model(model.model_spec(source.dataset, modalities).reference_config())
                for key, config in configs.items():
                    check.call(key, check_against, key, built, config)


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
            raise self.error(name, f"{error.got}; {error.allowed}") from None
        except TypeError as error:  # an unexpected keyword of a configuration class
            raise self.error(key, str(error)) from None
