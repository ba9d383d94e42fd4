"""The reference plugins of sda, imported as ``sda_plugins``.

Each module is registered through the ``sda`` entry-point group exactly like a third-party
plugin, so any of them can be disabled (``--disable-plugin NAME``) or replaced by a plugin that
answers the same hook.
"""

from sda_core.config import get_effective_preview_interval
from sda_plugins.adaptive_presets import DatasetSizeWarning, get_adaptive_config

__all__ = ["DatasetSizeWarning", "get_adaptive_config", "get_effective_preview_interval"]
