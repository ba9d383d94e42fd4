"""small-dataset-audio: the engine.

Public names for plugin authors and host applications. Plugins implement the hooks of
:mod:`sda_core.hooks.specs` with :data:`hookimpl`.
"""

from importlib.metadata import PackageNotFoundError, version

from sda_core.atomic import write_atomic, write_text_atomic
from sda_core.config import (
    OverfittingPreset,
    RegularizationConfig,
    TrainingConfig,
    apply_overrides,
    get_effective_preview_interval,
    plugin_settings,
)
from sda_core.config.commands import CliCommand
from sda_core.config.dataset import AudioFileInfo, DatasetSummary, FileSplit, SkippedFile, SkipReason
from sda_core.config.events import (
    EpochMetrics,
    EvaluationEvent,
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
from sda_core.config.history import MetricsHistory
from sda_core.errors import (
    AudioReadError,
    CheckpointError,
    ConfigError,
    ConformanceError,
    DatasetError,
    PeerStopped,
    PluginError,
    PluginLoadWarning,
    PluginRuntimeWarning,
    RunDataError,
    RunExistsError,
    RunFolderBusyError,
    SdaError,
    TrainingError,
)
from sda_core.hooks.host import PluginInfo
from sda_core.hooks.specs import hookimpl, hookspec

_LAZY = {
    "CallbackPlugin": "sda_core.engine",
    "Engine": "sda_core.engine",
    "PluginInfo": "sda_core.hooks.host",
    "AugmentationPipeline": "sda_core.data.augmentation",
    "TrainingResult": "sda_core.training.trainer",
    "create_data_loaders": "sda_core.data.loaders",
    "generate_files": "sda_core.training.generation",
    "RunLock": "sda_core.training.run_folder",
    "RunPaths": "sda_core.training.run_folder",
}


def __getattr__(name: str) -> object:
    # the engine and the torch-based names load on first use, so that importing sda_core (as the
    # pytest11 testing kit does in every test session) stays light
    import importlib

    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if not name.startswith("_"):
        try:
            return importlib.import_module(f"sda_core.{name}")
        except ModuleNotFoundError as error:
            if error.name != f"sda_core.{name}":
                raise
    raise AttributeError(f"module 'sda_core' has no attribute {name!r}")


try:
    __version__ = version("small-dataset-audio")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "AudioFileInfo",
    "AudioReadError",
    "AugmentationPipeline",
    "CheckpointError",
    "CliCommand",
    "CallbackPlugin",
    "ConfigError",
    "ConformanceError",
    "DatasetError",
    "DatasetSummary",
    "Engine",
    "EpochMetrics",
    "EvaluationEvent",
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
    "RunDataError",
    "RunExistsError",
    "PeerStopped",
    "RunFolderBusyError",
    "RunLock",
    "RunPaths",
    "SdaError",
    "SkipReason",
    "SkippedFile",
    "StepMetrics",
    "TrainingCompleteEvent",
    "TrainingConfig",
    "TrainingError",
    "TrainingResult",
    "TrainingStartEvent",
    "__version__",
    "apply_overrides",
    "create_data_loaders",
    "event_from_dict",
    "event_to_dict",
    "generate_files",
    "get_effective_preview_interval",
    "hookimpl",
    "plugin_settings",
    "hookspec",
    "write_atomic",
    "write_text_atomic",
]
