"""One way for every plugin to read its own ``[plugins.NAME]`` settings table."""

from __future__ import annotations

from typing import Any, TypeVar

from sda_core.config.training_config import TrainingConfig
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
