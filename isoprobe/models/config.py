"""One configuration dataclass per architecture, validated on creation and serialisable to plain dicts."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields
from typing import ClassVar

from isoprobe.data.modalities import ModalityGroup
from isoprobe.data.recording import Grid
from isoprobe.data.tokens import TokenConfig
from isoprobe.errors import ConfigError

MLP_FEATURES = ("patches", "classic")


@dataclass(frozen=True)
class GroupSpec:
    """One token modality as the model sees it: windows [batch, window, n_channels] -> n_tokens × d_token."""

    name: str
    source: str
    channels: tuple[int, ...]
    window: int
    n_tokens: int
    d_token: int
    grids: tuple[Grid, ...] = ()

    @property
    def group(self) -> ModalityGroup:
        return ModalityGroup(self.name, self.source, self.channels)

    @property
    def module_name(self) -> str:
        """A name usable as a submodule key (`emg[0:6]` -> `emg_0_6`)."""
        return re.sub(r"\W+", "_", self.name).strip("_") or "group"


@dataclass(frozen=True)
class ModelConfig:
    groups: tuple[GroupSpec, ...]
    n_classes: int
    sampling_rate: float
    token: TokenConfig = field(default_factory=TokenConfig)
    d_model: int = 64
    n_heads: int = 4
    d_mlp: int = 128
    dropout: float = 0.1
    patch_energy: bool = True  # feed each token's per-channel log power to the embedding (see TokenEmbed)

    arch = "base"
    has_attention: ClassVar[bool] = True  # attention to intervene on (hook_attn_scores): what the engine needs
    # Fields that checkpoints written before they existed lack, with the value that reproduces
    # those models: earlier models embedded raw patches only.
    legacy_defaults: ClassVar[dict] = {"patch_energy": False}

    def __post_init__(self) -> None:
        if not self.groups:
            raise ConfigError("modalities", "", "give at least one modality group")
        names = [g.module_name for g in self.groups]
        if len(set(names)) != len(names):
            raise ConfigError("modalities", [g.name for g in self.groups], "group names must stay distinct as module names")
        if self.n_classes < 2:
            raise ConfigError("n_classes", self.n_classes, "a classifier needs at least two classes")
        for option, value in (("d_model", self.d_model), ("n_heads", self.n_heads), ("d_mlp", self.d_mlp)):
            if value < 1:
                raise ConfigError(option, value, "must be a positive integer")
        if self.d_model % self.n_heads:
            raise ConfigError("n_heads", self.n_heads, f"must divide d_model ({self.d_model})")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError("dropout", self.dropout, "must lie in [0, 1)")

    def to_dict(self) -> dict:
        return {"arch": self.arch, **asdict(self)}

    @staticmethod
    def from_dict(data: dict) -> "ModelConfig":
        values = dict(data)
        arch = values.pop("arch", None)
        cls = config_class(arch)
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ConfigError("model config", sorted(unknown), f"unknown fields for {arch}")
        values = {**cls.legacy_defaults, **values}
        values["groups"] = tuple(
            GroupSpec(**{**g, "channels": tuple(g["channels"]),
                         "grids": tuple(Grid(x["name"], tuple(x["shape"]), tuple(x["channels"])) for x in g.get("grids", ()))})
            for g in values["groups"]
        )
        token = dict(values.get("token", {}))
        if "tile" in token:
            token["tile"] = tuple(token["tile"])
        values["token"] = TokenConfig(**token)
        for key in ("hidden", "removed_pathways"):
            if key in values:
                values[key] = tuple(values[key])
        return cls(**values)


def check_removed_pathways(config: ModelConfig) -> None:
    """Pathways removed from the shared layers must be ones the engine names for these modalities."""
    from isoprobe.models.pathways import parse_pathway  # imports torch: configurations stay readable without it

    names = tuple(g.name for g in config.groups)
    for pathway in config.removed_pathways:
        try:
            parse_pathway(pathway, names)
        except ConfigError as error:
            raise ConfigError("removed_pathways", pathway, error.allowed) from None


@dataclass(frozen=True)
class HierarchicalConfig(ModelConfig):
    """Modality-specific encoders, then a shared stage over all tokens plus CLS (L1–L5) with dual heads.
    removed_pathways: attention edges that never exist in the shared layers (pathway dropout p = 1)."""

    n_encoder_layers: int = 1
    n_layers: int = 5
    removed_pathways: tuple[str, ...] = ()
    arch = "hierarchical"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_removed_pathways(self)
        if self.n_layers < 1:
            raise ConfigError("n_layers", self.n_layers, "the shared stage needs at least one layer")
        if self.n_encoder_layers < 0:
            raise ConfigError("n_encoder_layers", self.n_encoder_layers, "must be 0 (no modality encoders) or more")


@dataclass(frozen=True)
class MMTConfig(ModelConfig):
    """One transformer encoder per modality (no cross-modal attention), pooled per modality, concatenated."""

    n_layers: int = 3
    fusion_hidden: int = 128  # hidden width of the head on the concatenated modality vectors; 0: a linear head
    removed_pathways: tuple[str, ...] = ()  # attention edges that never exist (pathway dropout p = 1)
    arch = "mmt"
    legacy_defaults: ClassVar[dict] = {**ModelConfig.legacy_defaults, "fusion_hidden": 0}  # earlier: a linear head

    def __post_init__(self) -> None:
        super().__post_init__()
        check_removed_pathways(self)
        if self.n_layers < 1:
            raise ConfigError("n_layers", self.n_layers, "needs at least one layer")
        if self.fusion_hidden < 0:
            raise ConfigError("fusion_hidden", self.fusion_hidden, "a width ≥ 0 (0: a linear head)")


@dataclass(frozen=True)
class MLPConfig(ModelConfig):
    """Per-modality features, concatenated (linear fusion), then an MLP."""

    features: str = "patches"
    hidden: tuple[int, ...] = (256, 128)
    arch = "mlp"
    has_attention: ClassVar[bool] = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.features not in MLP_FEATURES:
            raise ConfigError("features", self.features, f"choose one of {', '.join(MLP_FEATURES)}")


CONFIGS: dict[str, type[ModelConfig]] = {"mlp": MLPConfig, "mmt": MMTConfig, "hierarchical": HierarchicalConfig}
ARCHITECTURES = tuple(CONFIGS)


def has_attention(arch: str) -> bool:
    """Whether architecture `arch` has attention to intervene on (pathway dropout, ablate, shift, …)."""
    return config_class(arch).has_attention


def config_class(arch: str) -> type[ModelConfig]:
    """The configuration class of architecture `arch`; an unknown name is refused listing the valid ones."""
    if arch not in CONFIGS:
        raise ConfigError("arch", arch, f"choose one of {', '.join(ARCHITECTURES)}")
    return CONFIGS[arch]
