"""Values: the attrs types of a run (config, dataset summary, events, history) and their JSON round trip.

Nothing here knows about plugins, audio decoding or torch.
"""

from sda_core.config.history import format_duration
from sda_core.config.plugin_settings import plugin_settings
from sda_core.config.training_config import (
    DEVICES,
    OverfittingPreset,
    RegularizationConfig,
    TrainingConfig,
    apply_overrides,
    get_effective_preview_interval,
    setting_names,
)

__all__ = [
    "DEVICES",
    "OverfittingPreset",
    "RegularizationConfig",
    "TrainingConfig",
    "apply_overrides",
    "format_duration",
    "get_effective_preview_interval",
    "plugin_settings",
    "setting_names",
]
