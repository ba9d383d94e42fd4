"""The names of the original design stay importable from where its users imported them."""

from __future__ import annotations

import enum
import importlib

import attrs
import pytest

SDA_CORE_NAMES = [
    "TrainingConfig",
    "create_data_loaders",
    "OverfittingPreset",
    "RegularizationConfig",
    "MetricsHistory",
    "MetricsCallback",
    "StepMetrics",
    "EpochMetrics",
    "PreviewEvent",
    "TrainingCompleteEvent",
]
SDA_PLUGINS_NAMES = ["get_adaptive_config", "get_effective_preview_interval", "AudioTrainingDataset"]


def test_seed_names_import_from_sda_core():
    from sda_core import (  # noqa: F401
        EpochMetrics,
        MetricsCallback,
        MetricsHistory,
        OverfittingPreset,
        PreviewEvent,
        RegularizationConfig,
        StepMetrics,
        TrainingCompleteEvent,
        TrainingConfig,
    )


def test_seed_names_import_from_sda_plugins():
    from sda_plugins import get_adaptive_config, get_effective_preview_interval  # noqa: F401


def test_data_seed_names_import_on_first_use():
    from sda_core import create_data_loaders
    from sda_core.data.loaders import create_data_loaders as implementation
    from sda_plugins import AudioTrainingDataset
    from sda_plugins.chunk_dataset import AudioTrainingDataset as dataset_class

    assert create_data_loaders is implementation and AudioTrainingDataset is dataset_class


@pytest.mark.parametrize(
    ("module", "name"), [("sda_core", n) for n in SDA_CORE_NAMES] + [("sda_plugins", n) for n in SDA_PLUGINS_NAMES]
)
def test_seed_name_is_public(module, name):
    imported = importlib.import_module(module)
    assert name in imported.__all__
    assert getattr(imported, name) is not None


def test_seed_names_are_the_implementations():
    import sda_core
    import sda_plugins
    from sda_core import config
    from sda_core.config import events, history
    from sda_plugins import adaptive_presets

    assert sda_core.TrainingConfig is config.TrainingConfig
    assert sda_core.MetricsHistory is history.MetricsHistory
    assert sda_core.StepMetrics is events.StepMetrics
    assert sda_plugins.get_adaptive_config is adaptive_presets.get_adaptive_config
    assert sda_plugins.get_effective_preview_interval is sda_core.get_effective_preview_interval


def test_seed_types_have_the_expected_kinds():
    import sda_core

    assert issubclass(sda_core.OverfittingPreset, enum.Enum)
    for name in (
        "TrainingConfig",
        "RegularizationConfig",
        "StepMetrics",
        "EpochMetrics",
        "PreviewEvent",
        "TrainingCompleteEvent",
        "MetricsHistory",
    ):
        assert attrs.has(getattr(sda_core, name)), name
    from sda_plugins import get_adaptive_config, get_effective_preview_interval

    config = get_adaptive_config(10)
    assert isinstance(config, sda_core.TrainingConfig)
    assert get_effective_preview_interval(config) == 5


def test_seed_modules_do_not_import_torch():
    """Config, events, history and presets stay importable (and fast) without touching torch."""
    import subprocess
    import sys

    code = (
        "import sys; import sda_core.config, sda_core.config.events, sda_core.config.history, "
        "sda_core.config.overrides, sda_plugins.adaptive_presets; print('torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
