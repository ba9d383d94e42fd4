"""Fixtures shared by the sda-metrics-log tests (the sda kit's fixtures, sda_engine and
sda_audio_folder, come from sda_core.testing, a pytest11 plugin installed with sda)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def data_dir(sda_audio_folder) -> Path:
    """Six synthesised sounds at 8 kHz."""
    return sda_audio_folder(sample_rates=[8000], name="sounds")


@pytest.fixture
def engine_with(sda_engine):
    """``engine_with(*plugins, previews=False, **kwargs)``: the reference plugins (without the
    progress display, and without the slow preview rendering unless asked) plus ``plugins``."""

    def make(*plugins, previews: bool = False, **kwargs):
        disable = ("progress",) if previews else ("progress", "previews")
        return sda_engine(*plugins, reference=True, disable=disable, **kwargs)

    return make
