"""Fixtures shared by the sda-tensorboard tests.

The sda kit's fixtures (``sda_engine``, ``sda_audio_folder``, ``sda_recorder``) come from
sda_core.testing, a pytest11 plugin installed with sda.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from sda_core.testing import fast_settings


def read_events(log_dir: str | Path, purge: bool = True) -> EventAccumulator:
    """Every event under ``log_dir`` as TensorBoard reads it (``purge=False``: without honouring
    restart markers, i.e. everything ever written)."""
    keep_all = {"scalars": 0, "images": 0, "audio": 0, "tensors": 0, "histograms": 0, "compressedHistograms": 0}
    accumulator = EventAccumulator(str(log_dir), size_guidance=keep_all, purge_orphaned_data=purge)
    return accumulator.Reload()


@pytest.fixture
def tb_events():
    """``tb_events(log_dir, purge=True) -> EventAccumulator``, already loaded."""
    return read_events


@pytest.fixture
def data_dir(sda_audio_folder) -> Path:
    """Six synthesised sounds at 8 kHz."""
    return sda_audio_folder(sample_rates=[8000], name="sounds")


@pytest.fixture
def fast():
    """A fresh copy of the kit's fast training settings (two steps per epoch at 8 kHz) with a small model."""
    return fast_settings(plugins={"mel_vae": {"hidden_channels": 16, "griffin_lim_iters": 4}})
