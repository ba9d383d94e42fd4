"""Shared fast settings: the overrides that make a real training run take a second or two."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

#: Overrides that make a real training run take a second or two on a CPU: two epochs of two
#: optimiser steps on 8 kHz audio, no DataLoader worker processes, no evaluation at the end. Read
#: only; :func:`fast_settings` gives a copy to change, :func:`set_options` the ``--set`` options.
FAST_SETTINGS: Mapping[str, Any] = MappingProxyType(
    {
        "max_epochs": 2,
        "sample_rate": 8000,
        "batch_size": 4,
        "samples_per_epoch": 8,
        "num_workers": 0,
        "evaluation_sounds": 0,
    }
)


def fast_settings(**changes: Any) -> dict[str, Any]:
    """A fresh copy of :data:`FAST_SETTINGS` with ``changes`` merged in (``max_epochs=1``,
    ``plugins={"my_plugin": {...}}``); a change to None removes that setting."""
    from sda_core.config.overrides import merge_overrides

    merged = merge_overrides(copy.deepcopy(dict(FAST_SETTINGS)), changes)
    return {key: value for key, value in merged.items() if value is not None}


def set_options(settings: Mapping[str, Any] | None = None, **changes: Any) -> list[str]:
    """``--set`` options for ``sda train``/``sda scan``: ``["--set", "max_epochs=2", ...]``.

    ``settings`` defaults to :data:`FAST_SETTINGS`; ``changes`` are merged as in
    :func:`fast_settings`. Nested tables become dotted keys (``plugins.NAME.key=value``) and
    values are written as TOML values, the way ``--set`` reads them.
    """
    from sda_core.config.overrides import merge_overrides

    merged = merge_overrides(dict(FAST_SETTINGS if settings is None else settings), changes)
    options: list[str] = []
    for key, value in _flatten(merged):
        if value is not None:
            options += ["--set", f"{key}={_toml_value(value)}"]
    return options


def _flatten(table: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    items: list[tuple[str, Any]] = []
    for key, value in table.items():
        if isinstance(value, Mapping) and value:
            items += _flatten(value, f"{prefix}{key}.")
        else:
            items.append((f"{prefix}{key}", value))
    return items


def _toml_value(value: Any) -> str:
    """``value`` as a TOML value (what ``--set`` parses back into the same value)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{key} = {_toml_value(item)}" for key, item in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    raise TypeError(f"{value!r} has no TOML form for --set")
