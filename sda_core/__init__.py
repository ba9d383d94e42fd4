"""small-dataset-audio: the engine.

Public names for plugin authors and host applications. Plugins implement the hooks of
:mod:`sda_core.hookspecs` with :data:`hookimpl`.
"""

from importlib.metadata import PackageNotFoundError, version

from sda_core.config import (
    OverfittingPreset,
    RegularizationConfig,
    TrainingConfig,
    apply_overrides,
    get_effective_preview_interval,
)
from sda_core.dataset_info import AudioFileInfo, DatasetSummary, FileSplit, SkippedFile, SkipReason
from sda_core.engine import CallbackPlugin, Engine
from sda_core.errors import ConfigError, DatasetError, PluginError, SdaError
from sda_core.events import (
    EpochMetrics,
    Event,
    MetricsCallback,
    OverfittingWarning,
    PreviewEvent,
    StepMetrics,
    TrainingCompleteEvent,
    TrainingStartEvent,
    event_from_dict,
    event_to_dict,
)
from sda_core.history import MetricsHistory
from sda_core.hookspecs import hookimpl, hookspec
from sda_core.plugin_host import PluginInfo, PluginLoadWarning, PluginRuntimeWarning

try:
    __version__ = version("small-dataset-audio")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "AudioFileInfo",
    "CallbackPlugin",
    "ConfigError",
    "DatasetError",
    "DatasetSummary",
    "Engine",
    "EpochMetrics",
    "Event",
    "FileSplit",
    "MetricsCallback",
    "MetricsHistory",
    "OverfittingPreset",
    "OverfittingWarning",
    "PluginError",
    "PluginInfo",
    "PluginLoadWarning",
    "PluginRuntimeWarning",
    "PreviewEvent",
    "RegularizationConfig",
    "SdaError",
    "SkipReason",
    "SkippedFile",
    "StepMetrics",
    "TrainingCompleteEvent",
    "TrainingConfig",
    "TrainingStartEvent",
    "__version__",
    "apply_overrides",
    "event_from_dict",
    "event_to_dict",
    "get_effective_preview_interval",
    "hookimpl",
    "hookspec",
]
