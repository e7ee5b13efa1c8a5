"""Model configurations sized to a prepared data set."""

from __future__ import annotations

import numpy as np

from isoprobe.data.pipeline import PreparedData
from isoprobe.data.tokens import TokenConfig, patchify
from isoprobe.models.config import GroupSpec, ModelConfig, config_class


def group_specs(data: PreparedData, token: TokenConfig) -> tuple[GroupSpec, ...]:
    """Token count and size of each modality group, found by patchifying one window."""
    specs = []
    for group in data.groups:
        window = data.splits["train"].x[group.name][:1]
        grids = data.grids.get(group.source, ())
        tokens = patchify(np.asarray(window), group, token, data.sampling_rate, grids)
        specs.append(GroupSpec(group.name, group.source, group.channels, window.shape[1], tokens.shape[1], tokens.shape[2], grids))
    return tuple(specs)


def model_config_for(data: PreparedData, arch: str, token: TokenConfig | None = None, **options) -> ModelConfig:
    """The configuration of architecture `arch` for `data` (options override the defaults)."""
    token = token or TokenConfig()
    return config_class(arch)(groups=group_specs(data, token), n_classes=data.n_classes, sampling_rate=data.sampling_rate,
                         token=token, **options)
