"""Model configurations sized to a prepared data set."""

from __future__ import annotations

import numpy as np

from isoprobe.data.modalities import ModalityGroup
from isoprobe.data.pipeline import PreparedData
from isoprobe.data.recording import Grid
from isoprobe.data.tokens import TokenConfig, patchify
from isoprobe.models.config import GroupSpec, ModelConfig, config_class


def group_specs(data: PreparedData, token: TokenConfig) -> tuple[GroupSpec, ...]:
    """Token count and size of each modality group of a prepared data set."""
    window = data.splits["train"].x[data.groups[0].name].shape[1]
    return sized_group_specs(data.groups, window, data.sampling_rate, token, data.grids)


def sized_group_specs(groups: tuple[ModalityGroup, ...], window: int, sampling_rate: float, token: TokenConfig,
                      grids: dict[str, tuple[Grid, ...]]) -> tuple[GroupSpec, ...]:
    """Token count and size of each group for windows of `window` samples, found by patchifying a zero
    window [1, window, channel] (so a model can be sized without reading data). grids: {source: grids}."""
    specs = []
    for group in groups:
        source_grids = grids.get(group.source, ())
        tokens = patchify(np.zeros((1, window, len(group.channels)), dtype=np.float32), group, token, sampling_rate, source_grids)
        specs.append(GroupSpec(group.name, group.source, group.channels, window, tokens.shape[1], tokens.shape[2], source_grids))
    return tuple(specs)


def model_config_for(data: PreparedData, arch: str, token: TokenConfig | None = None, **options) -> ModelConfig:
    """The configuration of architecture `arch` for `data` (options override the defaults)."""
    token = token or TokenConfig()
    return config_class(arch)(groups=group_specs(data, token), n_classes=data.n_classes, sampling_rate=data.sampling_rate,
                         token=token, **options)
