"""What configuration dataclasses share: closed options typed as `Literal`s and checked by field name."""

from __future__ import annotations

import dataclasses
import typing

from isoprobe.errors import ConfigError


def check_choices(config: object) -> None:
    """Refuse a value outside its field's `Literal[...]` type, naming the field and the valid values."""
    hints = typing.get_type_hints(type(config))
    for field in dataclasses.fields(config):
        hint = hints[field.name]
        if typing.get_origin(hint) is typing.Literal:
            allowed = typing.get_args(hint)
            value = getattr(config, field.name)
            if value not in allowed:
                raise ConfigError(field.name, value, f"choose one of {', '.join(map(str, allowed))}")


def check_counts(config: object, minimum: dict[str, int]) -> None:
    """Refuse an integer field below its minimum: {field name: smallest valid value}."""
    for name, smallest in minimum.items():
        value = getattr(config, name)
        if not isinstance(value, int) or value < smallest:
            raise ConfigError(name, value, f"must be an integer ≥ {smallest}")


def check_level(config: object) -> None:
    """A confidence level strictly between 0 and 1 in the field `level`."""
    if not 0 < config.level < 1:
        raise ConfigError("level", config.level, "a confidence level between 0 and 1, e.g. 0.95")


class Options:
    """A configuration dataclass as plain values and back: `to_dict`, and `from_dict` refusing fields
    it does not know (a newer or another tool's file) with their names."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict):
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(cls.__name__, unknown, f"unknown fields; known: {', '.join(sorted(known))}")
        return cls(**values)
