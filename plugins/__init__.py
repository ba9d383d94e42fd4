"""The reference plugins of sda, imported as ``sda_plugins``.

Each module is registered through the ``sda`` entry-point group exactly like a third-party
plugin, so any of them can be disabled (``--disable-plugin NAME``) or replaced by a plugin that
answers the same hook. Importing this package stays light: the torch-based dataset is imported
on first use.
"""

from typing import Any

from sda_core.config import get_effective_preview_interval
from sda_plugins.adaptive_presets import DatasetSizeWarning, get_adaptive_config

__all__ = ["AudioTrainingDataset", "DatasetSizeWarning", "get_adaptive_config", "get_effective_preview_interval"]


def __getattr__(name: str) -> Any:
    if name == "AudioTrainingDataset":
        from sda_plugins.chunk_dataset import AudioTrainingDataset

        return AudioTrainingDataset
    raise AttributeError(f"module 'sda_plugins' has no attribute {name!r}")
