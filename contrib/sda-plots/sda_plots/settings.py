"""The ``[plugins.plots]`` settings, read through :func:`sda_core.plugin_settings`: an unknown key
or a bad value raises ConfigError naming it, as for every plugin."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from sda_core import TrainingConfig, plugin_settings
from sda_core import validators as v

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
        min_seconds: the least time between two loss plots (default 10): an epoch that ends
            sooner after the last plot is left to a later one (a plot takes about 0.2 s, which is
            5 % of a default epoch of the 36 real sounds on 2 cores); 0 draws by ``every`` alone.
    """

    dpi: float = attrs.field(default=100, validator=v.number(MIN_DPI, MAX_DPI))
    every: int = attrs.field(default=1, validator=v.integer(1))
    spectrograms: bool = attrs.field(default=True, validator=v.instance_of(bool, "true or false"))
    min_seconds: float = attrs.field(default=10.0, validator=v.number(0, 86400))

    @classmethod
    def from_config(cls, config: TrainingConfig | Mapping[str, Any]) -> PlotSettings:
        """The settings of a TrainingConfig, or of a config dict (``TrainingStartEvent.config``)."""
        if not isinstance(config, TrainingConfig):
            config = TrainingConfig.from_dict(config or {})
        return plugin_settings(config, PLUGIN_NAME, cls)
