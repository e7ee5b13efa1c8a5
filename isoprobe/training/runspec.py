"""Model configuration files (`models/*.toml`): one architecture with its tokens, windows and training
schedule for one data set, read into a `ModelSpec` that `isoprobe train --model-config` and study
recipes turn into the arguments of `isoprobe.training.run.fit` — one code path for both.

    dataset = "ninapro-db2"        # required: ninapro-db2 or hdsemg65
    modalities = "emg,acc"         # default: the data set's modalities
    description = "..."            # optional, free text
    [model]     arch = "hierarchical", then fields of its configuration class (d_model, n_heads, n_layers, …)
    [tokens]    patch, patch_ms, tile                                      (TokenConfig)
    [windows]   window_ms, stride_ms, keep_rest                            (WindowConfig)
    [training]  epochs, batch_size, lr, weight_decay, warmup_fraction, head_switch, gain_jitter  (TrainConfig)

Keys are the configuration classes' field names, so those classes stay the one source of truth for
what is valid; `head_switch` is TrainConfig's `head_switch_fraction`, named as `isoprobe train` names
it. Unknown sections and keys are refused, naming the file and the key.
"""

from __future__ import annotations

import dataclasses
import tomllib
import typing
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from isoprobe.data.datasets import dataset_spec
from isoprobe.data.modalities import check_sources, parse_modalities
from isoprobe.data.pipeline import DataConfig
from isoprobe.data.tokens import TokenConfig
from isoprobe.data.windows import WindowConfig
from isoprobe.errors import ConfigError, DataFormatError
from isoprobe.models.config import CONFIGS, ModelConfig, config_class
from isoprobe.models.sizing import sized_group_specs
from isoprobe.training.trainer import TrainConfig

TOP_KEYS = ("dataset", "modalities", "description")
SECTIONS = ("model", "tokens", "windows", "training")
# Model fields that the data decide (groups, classes, sampling rate) or that other keys and options set
# ([tokens]; removed pathways come from --pathway-dropout …:1) are not [model] keys.
DATA_FIELDS = frozenset({"groups", "n_classes", "sampling_rate", "token", "removed_pathways"})
# TrainConfig fields that belong to one run rather than to a model's schedule: the caller gives them.
RUN_FIELDS = frozenset({"seed", "device", "bf16", "save_every", "pathway_dropout"})
TRAINING_KEYS = {"head_switch": "head_switch_fraction"}  # file key -> TrainConfig field, where they differ


def model_keys(arch: str) -> tuple[str, ...]:
    """The [model] keys of architecture `arch`: `arch` and its configuration fields the data do not decide."""
    return ("arch", *(f.name for f in dataclasses.fields(config_class(arch)) if f.name not in DATA_FIELDS))


def _section_keys() -> dict[str, tuple[str, ...]]:
    field_of = {v: k for k, v in TRAINING_KEYS.items()}
    return {
        "tokens": tuple(f.name for f in dataclasses.fields(TokenConfig)),
        "windows": tuple(f.name for f in dataclasses.fields(WindowConfig)),
        "training": tuple(field_of.get(f.name, f.name) for f in dataclasses.fields(TrainConfig) if f.name not in RUN_FIELDS),
    }


def _key_sections() -> dict[str, str | None]:
    """{key: its section} over every key a file may hold (None: top level)."""
    located: dict[str, str | None] = {key: None for key in TOP_KEYS}
    for arch in CONFIGS:
        located.update({key: "model" for key in model_keys(arch)})
    for section, keys in _section_keys().items():
        located.update({key: section for key in keys})
    return located


@dataclass(frozen=True)
class ModelSpec:
    """One architecture for one data set: model options, tokens, windows and the training schedule.

    `model` holds the [model] keys given (the architecture's defaults fill the rest, see
    `reference_config`); `training` holds the schedule, its run fields (seed, device, …) at their
    defaults until `train_config` sets them."""

    dataset: str
    arch: str
    model: tuple[tuple[str, Any], ...] = ()
    modalities: str | None = None  # None: the data set's modalities
    token: TokenConfig = field(default_factory=TokenConfig)
    window: WindowConfig = field(default_factory=WindowConfig)
    training: TrainConfig = field(default_factory=TrainConfig)
    description: str = ""
    source: str = field(default="", compare=False)  # the file read, for messages and provenance

    # --- what `fit` takes -----------------------------------------------------------------------

    def model_options(self) -> dict:
        """The [model] keys given, as `fit`'s model options (a fresh dict)."""
        return dict(self.model)

    def train_config(self, **run) -> TrainConfig:
        """The training schedule with this run's fields (seed, device, bf16, save_every, pathway_dropout)."""
        unknown = sorted(set(run) - RUN_FIELDS)
        if unknown:
            raise TypeError(f"train_config() sets run fields only ({', '.join(sorted(RUN_FIELDS))}), not {', '.join(unknown)}")
        return replace(self.training, **run)

    def data_config(self, root: str | Path, subject: int = 1, **options) -> DataConfig:
        """The data configuration for subject `subject` of the data in `root` (options: other DataConfig fields)."""
        return DataConfig(root=str(root), dataset=self.dataset, subject=subject, modalities=self.resolved_modalities,
                          window=self.window, **options)

    @property
    def resolved_modalities(self) -> str:
        return self.modalities or ",".join(dataset_spec(self.dataset).modalities)

    def reference_config(self) -> ModelConfig:
        """The model configuration for the data set's real recordings (channel counts, sampling rate and
        gesture classes of its DatasetSpec), built without reading data: what the model cards count."""
        recordings = dataset_spec(self.dataset)
        groups = parse_modalities(self.resolved_modalities, recordings.channels)
        window = self.window.samples(recordings.sampling_rate)[0]
        specs = sized_group_specs(groups, window, recordings.sampling_rate, self.token, recordings.grids)
        n_classes = recordings.n_gestures + (1 if self.window.keep_rest else 0)
        return config_class(self.arch)(groups=specs, n_classes=n_classes, sampling_rate=recordings.sampling_rate,
                                       token=self.token, **self.model_options())

    # --- plain values -----------------------------------------------------------------------------

    def to_dict(self) -> dict:
        """The configuration in the file's layout (a fresh nested dict): top-level keys, then one dict per
        section; [model] holds the keys given, the other sections every key."""
        training = dataclasses.asdict(self.training)
        field_of = {v: k for k, v in TRAINING_KEYS.items()}
        top = {"dataset": self.dataset, "modalities": self.modalities, "description": self.description or None}
        return {
            **{k: v for k, v in top.items() if v is not None},
            "model": {"arch": self.arch, **self.model_options()},
            "tokens": dataclasses.asdict(self.token),
            "windows": dataclasses.asdict(self.window),
            "training": {field_of.get(k, k): v for k, v in training.items() if k not in RUN_FIELDS},
        }

    @classmethod
    def from_dict(cls, values: dict, source: str | Path | None = None) -> "ModelSpec":
        """A spec from the file's layout (TOML as read, or `to_dict`'s output); errors name `source` and the key."""
        return _build(values, str(source) if source is not None else None)

    def with_overrides(self, **values) -> "ModelSpec":
        """This spec with some keys replaced (any key of any section, e.g. epochs=5, d_model=32, patch="channel").
        Errors name the key alone: an override is an option, not a line of the file."""
        located = _key_sections()
        tree = self.to_dict()
        for key, value in values.items():
            if key not in located:
                raise ConfigError(key, value, f"not a model configuration key; valid keys: {', '.join(sorted(located))}")
            section = located[key]
            (tree if section is None else tree[section])[key] = value
        new_arch = tree["model"]["arch"]
        if new_arch != self.arch and new_arch in CONFIGS:
            stray = sorted(k for k in tree["model"] if k not in model_keys(new_arch) and k not in values)
            if stray:
                raise ConfigError("arch", new_arch, f"{self.source or 'the model configuration'} sets [model] "
                                  f"{', '.join(stray)}, which {new_arch} does not have")
        return replace(_build(tree, None, reference=False), source=self.source)


def default_model_spec(dataset: str = "ninapro-db2", arch: str = "hierarchical") -> ModelSpec:
    """Every configuration class's defaults for `arch` on `dataset` (no file)."""
    return _build({"dataset": dataset, "model": {"arch": arch}}, None, reference=False)


def load_model_config(path: str | Path) -> ModelSpec:
    """Read and validate a model configuration file (TOML, see the module docstring).

    Raises DataFormatError for a missing or unreadable file, ConfigError naming the file and the key
    for an unknown section or key, a value of the wrong type or one its configuration class refuses."""
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(path, "model configuration file not found")
    try:
        values = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise DataFormatError(path, f"is not valid TOML ({exc})") from None
    return _build(values, str(path))


# --- reading and validation ------------------------------------------------------------------------


def _where(source: str | None, key: str, section: str | None) -> str:
    """How an error names a key: `file: [section] key` for a file, the key alone for an override."""
    if source is None:
        return key
    return f"{source}: " + (f"[{section}] {key}" if section else key)


def _relocated(error: ConfigError, source: str | None) -> ConfigError:
    """A configuration class's error (naming a field or a command-line flag) as the file key it came from."""
    name = str(error.option).lstrip("-").replace("-", "_")
    name = {v: k for k, v in TRAINING_KEYS.items()}.get(name, name)
    located = _key_sections()
    if name not in located:
        return error if source is None else ConfigError(f"{source}: {error.option}", error.value, error.allowed)
    return ConfigError(_where(source, name, located[name]), error.value, error.allowed)


def _describe(hint) -> str:
    if typing.get_origin(hint) is tuple:
        args = typing.get_args(hint)
        elements = {bool: "booleans", int: "integers", float: "numbers", str: "strings"}[args[0]]
        return f"a list of {elements}" if args[-1] is Ellipsis else f"a list of {len(args)} {elements}"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}[hint]


def _typed(value: Any, hint, where: str) -> Any:
    """`value` as read from TOML, checked against a dataclass field's type (lists become tuples)."""
    if typing.get_origin(hint) is tuple:
        args = typing.get_args(hint)
        element = args[0]
        fits = isinstance(value, (list, tuple)) and (args[-1] is Ellipsis or len(value) == len(args))
        if fits:
            try:
                return tuple(_typed(v, element, where) for v in value)
            except ConfigError:
                pass
    elif hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif hint is str:
        if isinstance(value, str):
            return value
    else:  # a field type files cannot express: a programming error, not the user's
        raise TypeError(f"no TOML reading for {where} of type {hint}")
    raise ConfigError(where, value, f"must be {_describe(hint)}")


def _section(values: dict, name: str, keys: tuple[str, ...], hints: dict, source: str | None, context: str = "") -> dict:
    """The keys of one section, checked against `keys` and typed by `hints` ({key: field type})."""
    section = values.get(name, {})
    if not isinstance(section, dict):
        raise ConfigError(_where(source, name, None), section, f"[{name}] must be a table of keys")
    unknown = sorted(set(section) - set(keys))
    if unknown:
        raise ConfigError(_where(source, unknown[0], name), section[unknown[0]],
                          f"not a key of [{name}]{context}; valid keys: {', '.join(keys)}")
    return {key: _typed(value, hints[key], _where(source, key, name)) for key, value in section.items()}


def _build(values: dict, source: str | None, reference: bool = True) -> ModelSpec:
    """Validate a file's contents: every key known and typed, every configuration class built, and (with
    `reference`) the model built for the data set's real recordings, so a bad combination fails at load."""
    unknown = sorted(set(values) - set(TOP_KEYS) - set(SECTIONS))
    if unknown:
        raise ConfigError(_where(source, unknown[0], None), values[unknown[0]],
                          f"unknown key; valid: top-level keys {', '.join(TOP_KEYS)} and sections "
                          f"{', '.join(f'[{s}]' for s in SECTIONS)}")
    top = {key: _typed(values[key], str, _where(source, key, None)) for key in TOP_KEYS if key in values}
    if "dataset" not in top:
        raise ConfigError(_where(source, "dataset", None), None, "required: ninapro-db2 or hdsemg65")
    model = values.get("model", {})
    if not isinstance(model, dict):
        raise ConfigError(_where(source, "model", None), model, "[model] must be a table of keys")
    if "arch" not in model:
        raise ConfigError(_where(source, "arch", "model"), None, f"required: one of {', '.join(CONFIGS)}")
    try:
        spec = dataset_spec(top["dataset"])
        if "modalities" in top:
            check_sources(top["modalities"], spec.modalities)
        arch = _typed(model["arch"], str, _where(source, "arch", "model"))
        cls = config_class(arch)
        model_hints = typing.get_type_hints(cls)
        options = _section(values, "model", model_keys(arch), {"arch": str, **model_hints}, source, f" for {arch}")
        options.pop("arch")
        keys = _section_keys()
        tokens = _section(values, "tokens", keys["tokens"], typing.get_type_hints(TokenConfig), source)
        windows = _section(values, "windows", keys["windows"], typing.get_type_hints(WindowConfig), source)
        train_hints = typing.get_type_hints(TrainConfig)
        training = _section(values, "training", keys["training"],
                            {k: train_hints[TRAINING_KEYS.get(k, k)] for k in keys["training"]}, source)
        result = ModelSpec(
            dataset=top["dataset"], arch=arch, model=tuple(sorted(options.items())), modalities=top.get("modalities"),
            token=TokenConfig(**tokens), window=WindowConfig(**windows),
            training=TrainConfig(**{TRAINING_KEYS.get(k, k): v for k, v in training.items()}),
            description=top.get("description", ""), source=source or "",
        )
        if reference:
            result.reference_config()
    except ConfigError as error:
        if source is not None and str(error.option).startswith(f"{source}: "):
            raise  # already names the file and the key
        raise _relocated(error, source) from None
    return result
