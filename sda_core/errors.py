"""Exceptions raised by sda; each message is one sentence a user can act on."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class SdaError(Exception):
    """Base class of every error sda raises on purpose."""


class ConfigError(SdaError, ValueError):
    """An invalid setting: the message names the field, the value and what is allowed."""

    def __init__(self, field: str, value: object, allowed: str) -> None:
        self.field = field
        self.value = value
        self.allowed = allowed
        super().__init__(f"{field}: {value!r} is not allowed; expected {allowed}")

    @classmethod
    def unknown_key(cls, key: str, known: Iterable[str], owner: str = "settings") -> "ConfigError":
        names = sorted(known)
        close = difflib.get_close_matches(key, names, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        error = cls(key, key, "one of " + ", ".join(names))
        error.args = (f"unknown key {key!r} in {owner}{hint}; allowed keys: {', '.join(names)}",)
        return error


class PluginError(SdaError):
    """A plugin failed to load, was invalid, or a provider hook raised or answered wrongly."""

    def __init__(self, plugin: str, message: str) -> None:
        self.plugin = plugin
        super().__init__(message)


class DatasetError(SdaError):
    """A folder cannot be used as a dataset (missing, empty, or holding no usable audio)."""
