"""Testing kit for sda plugins: a pytest plugin (entry point ``pytest11``: ``sda``).

Installed with sda, it gives every test suite these fixtures, with no import and no conftest.py:

``sda_engine``
    ``sda_engine(*plugins, reference=False, strict=True, **engine_kwargs) -> Engine``: an Engine
    with exactly the given plugins (no entry points are loaded), a :class:`HookRecorder` attached
    as ``engine.recorder``, and strict mode on so a failing consumer fails the test instead of
    being isolated. Its runs end without the automatic evaluation (``evaluation=True`` to keep
    it). Pass ``reference=True`` to add sda's reference plugins (the ones registered under the
    ``sda`` entry points of small-dataset-audio itself), except the progress display.

``sda_audio_folder``
    ``sda_audio_folder(count=6, durations=..., sample_rates=..., channels=..., formats=...,
    name=None) -> Path``: a folder of synthesised sounds under ``tmp_path`` (deterministic
    decaying harmonic tones with a little noise).

``sda_recorder``
    A fresh :class:`HookRecorder`, to attach to an Engine you build yourself.

``sda_fast_settings``
    A fresh copy of :data:`FAST_SETTINGS`, the overrides that make a real training run take a
    second or two on a CPU (two epochs of two steps at 8 kHz, no worker processes, no evaluation).

``sda_cli``
    ``sda_cli(*args, env=None, cwd=None, in_subprocess=False) -> CliResult``: runs ``sda ARGS``
    in a folder of the test's own (``sda_cli.cwd``), with the developer's plugin-policy variables
    removed and the progress display off; the result has ``exit_code``, ``stdout``, ``stderr``,
    ``warnings``, ``error``, ``json()``, ``assert_ok()`` and the run folder the command wrote,
    ``run_dir`` and ``run`` (a :class:`RunFolder`: ``config``, ``history``, ``checkpoints`` ...).

And these functions, to import (``from sda_core.testing import ...``):

``check_model(model, config)``, ``check_transform(transform)``, ``check_dataset(dataset, config)``
    conformance checks of what a plugin makes; each raises one
    :class:`~sda_core.errors.ConformanceError` listing every problem it found.
``check_entry_point(name, distribution=None, hooks=())``
    the installed distribution's entry point loads and registers without a problem.
``fast_settings(**changes)``, ``set_options(settings=None, **changes)``
    :data:`FAST_SETTINGS` as a dict to change, or as ``--set`` options for ``sda_cli``.
``make_engine(...)``, ``write_audio_folder(folder, ...)``, ``reference_plugins()``
    what the fixtures use, without pytest.

What the recorder holds for each kind of hook (``recorder.getcall(name).result``): a provider's
winning answer (None when nobody answered); for ``sda_augmentations``, the transforms of every
plugin as ``(plugin name, transform)`` pairs in call order; for ``sda_evaluate_metrics``, each
plugin's dict as ``(plugin name, dict)`` pairs; None for consumers (``sda_on_*``, whose event is
in ``kwargs["event"]``) and for ``sda_check_config``.

Example::

    def test_my_plugin_sees_every_epoch(sda_engine, sda_audio_folder, sda_fast_settings, tmp_path):
        engine = sda_engine(MyPlugin(), reference=True)
        engine.train(sda_audio_folder(sample_rates=[8000]), tmp_path / "run", sda_fast_settings)
        assert len(engine.recorder.events("epoch")) == 2
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from sda_core.testing.audio import write_audio_folder
from sda_core.testing.checks import check_dataset, check_entry_point, check_model, check_transform
from sda_core.testing.engines import REFERENCE_DISTRIBUTION, make_engine, reference_plugins
from sda_core.testing.recorder import HookCall, HookRecorder
from sda_core.testing.runner import CliResult, RunFolder, SdaCli
from sda_core.testing.settings import FAST_SETTINGS, fast_settings, set_options

if TYPE_CHECKING:
    from sda_core.engine import Engine

# Loaded into every pytest session of every project that has sda installed: nothing heavy at
# import time (no numpy, soundfile, torch, nor the Engine); each helper imports what it needs.

__all__ = [
    "FAST_SETTINGS",
    "REFERENCE_DISTRIBUTION",
    "CliResult",
    "HookCall",
    "HookRecorder",
    "RunFolder",
    "SdaCli",
    "check_dataset",
    "check_entry_point",
    "check_model",
    "check_transform",
    "fast_settings",
    "make_engine",
    "reference_plugins",
    "set_options",
    "write_audio_folder",
]


@pytest.fixture
def sda_recorder() -> HookRecorder:
    """A fresh HookRecorder; attach it with ``recorder.attach(engine)``."""
    return HookRecorder()


@pytest.fixture
def sda_engine() -> Iterator[Callable[..., Engine]]:
    """``sda_engine(*plugins, reference=False, strict=True)``: an Engine with exactly those plugins."""
    engines: list[Engine] = []

    def factory(*plugins: object, **kwargs: Any) -> Engine:
        engine = make_engine(*plugins, **kwargs)
        engines.append(engine)
        return engine

    yield factory
    for engine in engines:
        engine.recorder.detach()


@pytest.fixture
def sda_audio_folder(tmp_path: Path) -> Callable[..., Path]:
    """``sda_audio_folder(count=6, ..., name="sounds")``: a folder of synthesised sounds."""
    made = itertools.count()

    def factory(name: str | None = None, **spec: Any) -> Path:
        return write_audio_folder(tmp_path / (name or f"sounds_{next(made)}"), **spec)

    return factory


@pytest.fixture
def sda_fast_settings() -> dict[str, Any]:
    """A fresh copy of :data:`FAST_SETTINGS` (change it freely: each test gets its own)."""
    return fast_settings()


@pytest.fixture
def sda_cli(tmp_path: Path) -> SdaCli:
    """``sda_cli(*args, env=None, cwd=None, in_subprocess=False) -> CliResult``: ``sda ARGS`` run in
    ``tmp_path / "cli"`` (``sda_cli.cwd``), in this process by default."""
    return SdaCli(tmp_path / "cli")
