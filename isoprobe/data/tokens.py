"""Cutting each modality group's windows into tokens, each tagged with a modality id (DESIGN §2.4).

Token ids: 0 is the CLS token, group i (in configuration order) has id i + 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from einops import pack, rearrange

from isoprobe.data.modalities import ModalityGroup
from isoprobe.data.recording import Grid
from isoprobe.errors import ConfigError

PATCH_KINDS = ("time", "channel", "grid")


@dataclass(frozen=True)
class TokenConfig:
    patch: str = "time"  # time patches (default), one token per channel, or tiles of an electrode grid
    patch_ms: float = 20.0  # time patches: length of each patch
    tile: tuple[int, int] = (4, 4)  # grid patches: rows × columns of each tile

    def __post_init__(self) -> None:
        if self.patch not in PATCH_KINDS:
            raise ConfigError("patch", self.patch, f"choose one of {', '.join(PATCH_KINDS)}")
        if self.patch_ms <= 0:
            raise ConfigError("patch_ms", self.patch_ms, "must be positive")


def _grids_of(group: ModalityGroup, grids: tuple[Grid, ...]) -> list[tuple[Grid, tuple[int, ...]]]:
    """Positions, within the group's channels, of each whole grid the group holds (grid patches need whole grids)."""
    position = {channel: i for i, channel in enumerate(group.channels)}
    covered = []
    for grid in grids:
        if all(c in position for c in grid.channels):
            covered.append((grid, tuple(position[c] for c in grid.channels)))
    if sum(len(c) for _, c in covered) != len(group.channels):
        raise ConfigError("patch", "grid", f"group {group.name!r} does not consist of whole electrode grids")
    return covered


def patchify(
    windows: np.ndarray,
    group: ModalityGroup,
    config: TokenConfig,
    sampling_rate: float,
    grids: tuple[Grid, ...] = (),
) -> np.ndarray:
    """Tokens of one group: windows [batch, time, channel] -> [batch, pos, d_token].

    Works on numpy arrays and torch tensors alike (einops)."""
    if config.patch == "time":
        patch = max(1, int(round(config.patch_ms * sampling_rate / 1000)))
        n_time = windows.shape[1]
        if n_time % patch:
            raise ConfigError("patch_ms", config.patch_ms, f"must divide the window ({n_time} samples) into whole patches of {patch}")
        return rearrange(windows, "batch (pos time) channel -> batch pos (time channel)", time=patch)
    if config.patch == "channel":
        return rearrange(windows, "batch time channel -> batch channel time")
    if config.patch == "grid":
        if not grids:
            raise ConfigError("patch", "grid", f"group {group.name!r} has no electrode grid; use time or channel patches")
        rows, cols = config.tile
        tiles = []
        for grid_spec, positions in _grids_of(group, grids):
            grid = windows[:, :, list(positions)]
            side_r, side_c = grid_spec.shape
            if side_r % rows or side_c % cols:
                raise ConfigError("tile", config.tile, f"must divide the {side_r}×{side_c} grid")
            tiles.append(rearrange(grid, "batch time (gr r gc c) -> batch (gr gc) (time r c)", r=rows, c=cols, gc=side_c // cols))
        return pack(tiles, "batch * d_token")[0]
    raise ConfigError("patch", config.patch, f"choose one of {', '.join(PATCH_KINDS)}")


def channels_per_token(config: TokenConfig, n_channels: int) -> int:
    """How many electrodes one token holds; in every layout the channel is the fastest axis of a token
    (time patches: all channels at each time step; channel patches: one; grid tiles: rows × columns)."""
    if config.patch == "time":
        return n_channels
    if config.patch == "channel":
        return 1
    if config.patch == "grid":
        return config.tile[0] * config.tile[1]
    raise ConfigError("patch", config.patch, f"choose one of {', '.join(PATCH_KINDS)}")


def token_modalities(tokens_per_group: list[int]) -> np.ndarray:
    """Modality id of every token, CLS first: [pos] int64 (0 = CLS, group i -> i + 1)."""
    ids = [np.zeros(1, dtype=np.int64)]
    ids += [np.full(count, index + 1, dtype=np.int64) for index, count in enumerate(tokens_per_group)]
    return np.concatenate(ids)
