"""User overrides from three sources, merged with a fixed precedence.

Sources, lowest to highest precedence: ``sda.toml`` in the data folder, a dict from the Python
API (a host application's explicit choice, like ``--set``), and ``--set key=value`` on the command
line (the CLI wins). Everything is parsed as data with :mod:`tomllib`; nothing a user writes is
ever evaluated as code.
"""

from __future__ import annotations

import copy
import datetime
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from sda_core.errors import ConfigError

SETTINGS_FILENAME = "sda.toml"


def parse_set_options(options: Iterable[str]) -> dict[str, Any]:
    """Parse ``--set`` options such as ``max_epochs=20`` or ``plugins.plots.dpi=150``.

    The value is read as a TOML value (numbers, booleans, quoted strings, arrays, inline
    tables); anything that is not valid TOML is taken as a plain string, so
    ``--set preset=aggressive`` works without quotes. A value that starts like a quoted string,
    an array or an inline table but does not parse is an error rather than a surprising string.
    TOML dates and times are kept as the text the user wrote, so configs stay JSON.
    """
    result: dict[str, Any] = {}
    for option in options:
        key, sep, raw = option.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError("--set", option, "KEY=VALUE, for example max_epochs=20")
        parts = key.split(".")
        if any(not part.strip() for part in parts):
            raise ConfigError("--set", option, "a dotted key without empty parts, e.g. plugins.NAME.key")
        _set_nested(result, [part.strip() for part in parts], _parse_value(option, raw.strip()))
    return result


def load_settings_file(folder: str | Path) -> dict[str, Any]:
    """Read ``sda.toml`` from ``folder``; an absent file gives ``{}``, a broken one an error.

    TOML dates and times become ISO 8601 strings, so every value is JSON-compatible.
    """
    path = Path(folder) / SETTINGS_FILENAME
    if not path.is_file():
        return {}
    try:
        with path.open("rb") as handle:
            return _plain(tomllib.load(handle))
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(str(path), "(file contents)", f"valid TOML ({error})") from None
    except UnicodeDecodeError as error:
        raise ConfigError(
            str(path), "(file contents)", f"UTF-8 encoded TOML ({error.reason} at byte {error.start})"
        ) from None
    except OSError as error:
        raise ConfigError(str(path), "(file)", f"a readable settings file ({error.strerror or error})") from None


def merge_overrides(*layers: Mapping[str, Any] | None) -> dict[str, Any]:
    """Deep-merge override layers; a later layer wins key by key, tables merge recursively."""
    merged: dict[str, Any] = {}
    for layer in layers:
        if layer:
            _deep_update(merged, layer)
    return merged


_STRUCTURED_STARTS = ('"', "'", "[", "{")


def collect_overrides(
    data_dir: str | Path | None,
    api: Mapping[str, Any] | None = None,
    cli: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Merge overrides: ``sda.toml`` in ``data_dir`` < the Python API dict < ``--set``.

    The API dict is what a host application passes to ``Engine.train``: like ``--set``, it wins
    over the folder's ``sda.toml``, so a setup screen that previews a config with this function
    shows the config that ``Engine.train`` then trains with.
    """
    settings = load_settings_file(data_dir) if data_dir is not None else {}
    return merge_overrides(settings, api, cli)


def _parse_value(option: str, raw: str) -> Any:
    try:
        value = tomllib.loads(f"value = {raw}")["value"]
    except tomllib.TOMLDecodeError as error:
        if raw.startswith(_STRUCTURED_STARTS):
            raise ConfigError("--set", option, f"KEY=VALUE with a well-formed TOML value ({error})") from None
        return raw
    if isinstance(value, (datetime.date, datetime.time)):  # datetime is a date
        return raw
    return _plain(value)


def _plain(value: Any) -> Any:
    """TOML data with dates and times replaced by ISO 8601 strings."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    return value


def _set_nested(target: dict[str, Any], parts: list[str], value: Any) -> None:
    for part in parts[:-1]:
        child = target.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(".".join(parts), value, f"a key under a table, but {part!r} is a value")
        target = child
    target[parts[-1]] = value


def _deep_update(target: dict[str, Any], source: Mapping[str, Any]) -> None:
    for key, value in source.items():
        if isinstance(value, Mapping) and isinstance(target.get(key), dict):
            _deep_update(target[key], value)
        else:
            target[key] = copy.deepcopy(dict(value)) if isinstance(value, Mapping) else copy.deepcopy(value)
