"""The ``[plugins.plots]`` settings, validated: unknown keys and bad values raise ConfigError."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import attrs

from sda_core.errors import ConfigError

#: The name the plugin registers under and reads its ``[plugins.NAME]`` table from.
PLUGIN_NAME = "plots"
#: Resolution bounds (dots per inch) accepted for ``dpi``.
MIN_DPI, MAX_DPI = 20, 600


@attrs.frozen(kw_only=True)
class PlotSettings:
    """What the plots plugin draws, and how often.

    Attributes:
        dpi: resolution of every PNG (default 100: an 800 x 450 pixel loss plot).
        every: epochs between two loss plots (default 1: every epoch). The last epoch of a run
            is always drawn, whatever this says.
        spectrograms: draw ``spectrograms.png`` for each preview round (default True).
    """

    dpi: float = 100
    every: int = 1
    spectrograms: bool = True

    @classmethod
    def from_table(cls, table: Mapping[str, Any] | None) -> PlotSettings:
        """Validate a ``[plugins.plots]`` table; raises ConfigError naming the bad key."""
        table = dict(table or {})
        known = [field.name for field in attrs.fields(cls)]
        for key in table:
            if key not in known:
                raise ConfigError.unknown_key(str(key), known, owner=f"[plugins.{PLUGIN_NAME}]")
        changes: dict[str, Any] = {}
        if "dpi" in table:
            dpi = table["dpi"]
            if (isinstance(dpi, bool) or not isinstance(dpi, (int, float)) or not math.isfinite(dpi)
                    or not MIN_DPI <= dpi <= MAX_DPI):
                raise ConfigError(f"plugins.{PLUGIN_NAME}.dpi", dpi, f"a number from {MIN_DPI} to {MAX_DPI}")
            changes["dpi"] = dpi
        if "every" in table:
            every = table["every"]
            if isinstance(every, bool) or not isinstance(every, int) or every < 1:
                raise ConfigError(f"plugins.{PLUGIN_NAME}.every", every, "a whole number of epochs, at least 1")
            changes["every"] = every
        if "spectrograms" in table:
            spectrograms = table["spectrograms"]
            if not isinstance(spectrograms, bool):
                raise ConfigError(f"plugins.{PLUGIN_NAME}.spectrograms", spectrograms, "true or false")
            changes["spectrograms"] = spectrograms
        return cls(**changes)

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | Any) -> PlotSettings:
        """The settings from a config dict (``TrainingStartEvent.config``) or a TrainingConfig."""
        if hasattr(config, "plugin_settings"):
            return cls.from_table(config.plugin_settings(PLUGIN_NAME))
        plugins = (config or {}).get("plugins") or {}
        return cls.from_table(plugins.get(PLUGIN_NAME))
