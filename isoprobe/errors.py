"""Errors that reach the user: each names the file, field or option at fault."""

from __future__ import annotations

from pathlib import Path


class IsoprobeError(Exception):
    """Base class for problems caused by user input; the CLI prints them without a traceback."""


class DataFormatError(IsoprobeError):
    """A data file does not have the variables, shapes or values its layout requires."""

    def __init__(self, path: str | Path, message: str, field: str | None = None):
        self.path = Path(path)
        self.field = field
        where = f"{self.path}" + (f", field '{field}'" if field else "")
        super().__init__(f"{where}: {message}")


class ConfigError(IsoprobeError, ValueError):
    """An option or configuration value is not one of the accepted values."""

    def __init__(self, option: str, value: object, allowed: str):
        self.option, self.value, self.allowed = option, value, allowed
        super().__init__(f"{option}: {self.got}; {allowed}")

    @property
    def got(self) -> str:
        """What was given, for a message: `got 'foo'`, or `missing` for None (nothing was given)."""
        return "missing" if self.value is None else f"got {self.value!r}"

    def naming(self, option: str) -> "ConfigError":
        """The same error naming `option` instead (a library field as the command-line flag that sets it)."""
        return ConfigError(option, self.value, self.allowed)
