"""sda-tensorboard: TensorBoard logging for small-dataset-audio runs.

Installed, it registers :class:`TensorBoardLogger` in sda's ``sda`` entry-point group under the
name ``tensorboard``; every ``sda train`` then writes TensorBoard event files to
``runs/NAME/tensorboard``. View them with ``tensorboard --logdir runs/NAME/tensorboard``.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from sda_tensorboard.logger import (
    PLUGIN_NAME,
    SETTING_KEYS,
    Settings,
    TensorBoardLogger,
    settings_from_config,
)


def __getattr__(name: str) -> Any:
    # mel_image needs torch: imported on first use, so that loading the plugin stays light
    if name == "mel_image":
        from sda_tensorboard.spectrogram import mel_image

        return mel_image
    raise AttributeError(f"module 'sda_tensorboard' has no attribute {name!r}")


try:
    __version__ = version("sda-tensorboard")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0.0.0"

__all__ = [
    "PLUGIN_NAME",
    "SETTING_KEYS",
    "Settings",
    "TensorBoardLogger",
    "__version__",
    "mel_image",
    "settings_from_config",
]
