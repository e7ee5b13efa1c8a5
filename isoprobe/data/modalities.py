"""Modality configurations: which channel groups become token modalities (DESIGN §2.4).

Syntax: comma-separated groups, each a source modality with an optional channel selector:
`emg,acc`, `emg[0:6],emg[6:12]`, `hdsemg[::4],force`, `acc[0,3,6]`. Selectors use Python slice
syntax or a list of indices. Each group's name is its text (`emg[0:6]`); names must be unique.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from isoprobe.errors import ConfigError

_GROUP = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:\[([^\[\]]*)\])?\s*$")


@dataclass(frozen=True)
class ModalityGroup:
    name: str  # as written in the configuration, e.g. "emg[0:6]"
    source: str  # the recording's modality, e.g. "emg"
    channels: tuple[int, ...]  # indices into the source modality's channels


def split_groups(spec: str) -> list[str]:
    """Split at commas outside brackets."""
    groups, depth, current = [], 0, ""
    for char in spec:
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == "," and depth == 0:
            groups.append(current)
            current = ""
        else:
            current += char
    groups.append(current)
    return [g.strip() for g in groups]


def _select(selector: str, n_channels: int, group: str) -> tuple[int, ...]:
    option = "modalities"
    try:
        if ":" in selector:
            parts = [int(p) if p.strip() else None for p in selector.split(":")]
            if len(parts) > 3:
                raise ValueError
            picked = tuple(range(n_channels))[slice(*parts)]
        else:
            picked = tuple(int(p) for p in selector.split(","))
            for index in picked:
                if not -n_channels <= index < n_channels:
                    raise ConfigError(option, group, f"channel {index} is out of range (0–{n_channels - 1})")
            picked = tuple(i % n_channels for i in picked)
    except ConfigError:
        raise
    except ValueError:
        raise ConfigError(option, group, "a selector is a slice like [0:6] or [::4], or indices like [0,3,5]") from None
    if not picked:
        raise ConfigError(option, group, f"selects no channels (the source has {n_channels})")
    if len(set(picked)) != len(picked):
        raise ConfigError(option, group, "selects a channel twice")
    return picked


def _parse_group(text: str, spec: str) -> tuple[str, str | None]:
    match = _GROUP.match(text)
    if not text or match is None:
        raise ConfigError("modalities", spec, f"cannot read group {text!r}; write e.g. emg,acc or emg[0:6],emg[6:12]")
    return match.group(1), match.group(2)


def check_sources(spec: str, names: tuple[str, ...]) -> None:
    """Fail early on an unknown source modality, before any data is loaded."""
    for text in split_groups(spec):
        source, _ = _parse_group(text, spec)
        if source not in names:
            raise ConfigError("modalities", source, f"unknown modality; this data set has {', '.join(names)}")


def parse_modalities(spec: str, available: dict[str, int]) -> tuple[ModalityGroup, ...]:
    """Parse a modality configuration against the source modalities and their channel counts."""
    check_sources(spec, tuple(available))
    groups = []
    for text in split_groups(spec):
        source, selector = _parse_group(text, spec)
        channels = tuple(range(available[source])) if selector is None else _select(selector, available[source], text)
        groups.append(ModalityGroup(text.replace(" ", ""), source, channels))
    names = [g.name for g in groups]
    if len(set(names)) != len(names):
        raise ConfigError("modalities", spec, "a group appears twice")
    return tuple(groups)
