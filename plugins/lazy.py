"""The entry points of the torch-based reference plugins, light until their hook runs.

Loading the ``sda`` entry points must not import torch: ``sda scan``, ``sda plugins`` and
``sda --version`` stay fast and small. So the entry points of the dataset, model and preview
plugins name these small classes; each hook imports its plugin module (and torch) only when it is
called, the way pytest plugins defer heavy imports. The modules themselves
(``sda_plugins.chunk_dataset``, ``sda_plugins.mel_vae``, ``sda_plugins.wave_vae``,
``sda_plugins.previews``) stay plugins a
host can register directly.
"""

from __future__ import annotations

import importlib
from typing import Any

from sda_core import TrainingConfig, hookimpl


def _module(name: str) -> Any:
    return importlib.import_module(f"sda_plugins.{name}")


class _LazyPlugin:
    module = ""

    @hookimpl
    def sda_check_config(self, config: TrainingConfig) -> None:
        """Check the ``[plugins.NAME]`` table; the plugin module loads only when there is one."""
        if config.plugin_settings(self.module):
            _module(self.module).sda_check_config(config)


class ChunkDatasetPlugin(_LazyPlugin):
    """``chunk_dataset``: lazy fixed-length chunks (:mod:`sda_plugins.chunk_dataset`)."""

    module = "chunk_dataset"

    @hookimpl(trylast=True)
    def sda_make_dataset(self, files: tuple, config: TrainingConfig, role: str, augment: Any, root: str) -> Any:
        return _module(self.module).sda_make_dataset(files, config, role, augment, root)


class MelVAEPlugin(_LazyPlugin):
    """``mel_vae``: the reference model (:mod:`sda_plugins.mel_vae`)."""

    module = "mel_vae"

    @hookimpl(trylast=True)
    def sda_make_model(self, config: TrainingConfig) -> Any:
        return _module(self.module).sda_make_model(config)


class WaveVAEPlugin(_LazyPlugin):
    """``wave_vae``: the default reference model (:mod:`sda_plugins.wave_vae`)."""

    module = "wave_vae"

    @hookimpl(trylast=True)
    def sda_make_model(self, config: TrainingConfig) -> Any:
        return _module(self.module).sda_make_model(config)


class PreviewsPlugin(_LazyPlugin):
    """``previews``: samples and reconstructions as WAV files (:mod:`sda_plugins.previews`)."""

    module = "previews"

    @hookimpl(trylast=True)
    def sda_render_previews(
        self, model: Any, config: TrainingConfig, epoch: int, directory: str, references: Any
    ) -> Any:
        return _module(self.module).sda_render_previews(model, config, epoch, directory, references)
