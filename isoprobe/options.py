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
