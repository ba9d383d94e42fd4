"""Values: the attrs types of a run (config, dataset summary, events, history) and their JSON round trip.

Nothing here knows about plugins, audio decoding or torch.
"""

from sda_core.config.training_config import (
    DEVICES,
    OverfittingPreset,
    RegularizationConfig,
    TrainingConfig,
    apply_overrides,
    get_effective_preview_interval,
    setting_names,
)
from sda_core.config.plugin_settings import plugin_settings

__all__ = [
    "DEVICES",
    "OverfittingPreset",
    "RegularizationConfig",
    "TrainingConfig",
    "apply_overrides",
    "get_effective_preview_interval",
    "plugin_settings",
    "setting_names",
]
