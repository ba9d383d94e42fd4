"""One way for every plugin to read its own ``[plugins.NAME]`` settings table, and the check that
every such table belongs to an installed plugin."""

from __future__ import annotations

import difflib
from collections.abc import Collection
from typing import Any, TypeVar

from sda_core.config.training_config import TrainingConfig
from sda_core.errors import ConfigError
from sda_core.serialization import from_jsonable

SettingsT = TypeVar("SettingsT")


def plugin_settings(config: TrainingConfig, name: str, settings_class: type[SettingsT]) -> SettingsT:
    """The ``[plugins.NAME]`` table of ``config`` as an instance of ``settings_class``.

    ``settings_class`` is an attrs class whose fields all have defaults and whose validators
    raise :class:`~sda_core.errors.ConfigError`. An unknown key raises ``ConfigError`` ("unknown key
    'x' in the [plugins.NAME] table ... did you mean ...") and a bad value raises ``ConfigError``
    naming ``plugins.NAME.key``: the same errors for every plugin. Call it from your
    ``sda_check_config`` hook so a bad setting stops the run before anything runs.
    """
    table: Any = config.plugin_settings(name)
    return from_jsonable(settings_class, table, f"plugins.{name}")


#: Where the tables of a new run's config come from, as :func:`check_plugin_tables` words it.
NEW_RUN_TABLES = "in sda.toml, or --set plugins.{name}.KEY=VALUE"


def check_plugin_tables(
    config: TrainingConfig, installed: Collection[str], loaded: Collection[str], origin: str = NEW_RUN_TABLES
) -> None:
    """Refuse a ``[plugins.NAME]`` table (from sda.toml, ``--set`` or the Python API) whose NAME is
    not in ``installed``: its settings would be ignored. The :class:`ConfigError` names the table,
    where it came from (``origin``, formatted with ``name``; a resumed run passes its saved
    config), the closest of the ``loaded`` plugin names ("did you mean ...", difflib) and lists them."""
    for name in config.plugins:
        if name in installed:
            continue
        names = sorted(loaded)
        close = difflib.get_close_matches(name, names, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        error = ConfigError(f"plugins.{name}", config.plugins[name], "the name of an installed plugin")
        error.args = (
            f"[plugins.{name}] ({origin.format(name=name)}) holds settings for a plugin "
            f"named {name!r}, but no plugin of that name is installed{hint}; the loaded plugins are "
            f"{', '.join(names) or 'none'}",
        )
        raise error
