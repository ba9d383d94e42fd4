"""Testing kit for sda plugins: a pytest plugin (entry point ``pytest11``: ``sda``).

Installed with sda, it gives every test suite these fixtures:

``sda_engine``
    ``sda_engine(*plugins, strict=True, **engine_kwargs) -> Engine``: an Engine with exactly the
    given plugins (no entry points are loaded), a :class:`HookRecorder` attached as
    ``engine.recorder``, and strict mode on so a failing consumer fails the test instead of being
    isolated. Its runs end without the automatic evaluation (``evaluation=True`` to keep it). Pass ``reference=True`` to add sda's reference plugins (the ones registered under
    the ``sda`` entry points of small-dataset-audio itself).

``sda_audio_folder``
    ``sda_audio_folder(count=6, durations=..., sample_rates=..., channels=..., formats=...,
    name="sounds") -> Path``: a folder of synthesised sounds under ``tmp_path`` (deterministic
    decaying harmonic tones with a little noise).

``sda_recorder``
    A fresh :class:`HookRecorder`, to attach to an Engine you build yourself.

Example::

    def test_my_plugin_sees_every_epoch(sda_engine, sda_audio_folder, tmp_path):
        engine = sda_engine(MyPlugin(), reference=True)
        engine.train(sda_audio_folder(), tmp_path / "run", {"max_epochs": 2})
        assert len(engine.recorder.events("epoch")) == 2
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import attrs
import pytest

if TYPE_CHECKING:
    from sda_core.engine import Engine

# Loaded into every pytest session of every project that has sda installed: nothing heavy at
# import time (no numpy, soundfile, torch, nor the Engine); each helper imports what it needs.
#: Distribution whose entry points are the reference plugins.
REFERENCE_DISTRIBUTION = "small-dataset-audio"
_BLOCK = 16384  # libsndfile 1.2.2 can crash on one large Ogg write: write in blocks

#: Overrides that make a real training run take a second or two on a CPU: two epochs of two
#: optimiser steps on 8 kHz audio, no DataLoader worker processes, no evaluation at the end. Read
#: only; :func:`fast_settings` gives a copy to change, :func:`set_options` the ``--set`` options.
FAST_SETTINGS: Mapping[str, Any] = MappingProxyType(
    {
        "max_epochs": 2,
        "sample_rate": 8000,
        "batch_size": 4,
        "samples_per_epoch": 8,
        "num_workers": 0,
        "evaluation_sounds": 0,
    }
)


@attrs.frozen
class HookCall:
    """One recorded hook call: its name, keyword arguments and result (None for consumers)."""

    name: str
    kwargs: dict[str, Any]
    result: Any = None

    def __getattr__(self, key: str) -> Any:
        try:
            return self.kwargs[key]
        except KeyError:
            raise AttributeError(key) from None


class HookRecorder:
    """Records every hook call an Engine makes (in the spirit of pytest's HookRecorder).

    Attach it with :meth:`attach`; it sees provider, collector and consumer calls alike, in
    order, including the events delivered to consumers.
    """

    def __init__(self) -> None:
        self.calls: list[HookCall] = []
        self._detach: Callable[[], None] | None = None

    def attach(self, engine: Engine) -> "HookRecorder":
        self._detach = engine.host.observe(self._record)
        return self

    def detach(self) -> None:
        if self._detach is not None:
            self._detach()
            self._detach = None

    def _record(self, name: str, kwargs: dict[str, Any], result: Any) -> None:
        self.calls.append(HookCall(name, dict(kwargs), result))

    def getcalls(self, names: str | Iterable[str]) -> list[HookCall]:
        """Calls of the given hooks (a space-separated string or a list), in order."""
        wanted = set(names.split() if isinstance(names, str) else names)
        return [call for call in self.calls if call.name in wanted]

    def getcall(self, name: str) -> HookCall:
        """The only call of one hook; fails the test when there were none or several."""
        calls = self.getcalls(name)
        if len(calls) != 1:
            pytest.fail(f"expected one call of {name}, got {len(calls)}")
        return calls[0]

    def events(self, kind: str | None = None) -> list[Any]:
        """Events delivered to consumers (optionally of one kind: "step", "epoch" ...)."""
        delivered = [call.kwargs["event"] for call in self.calls if call.name.startswith("sda_on_")]
        return [event for event in delivered if kind is None or event.kind == kind]

    def clear(self) -> None:
        self.calls.clear()


def reference_plugins() -> list[tuple[str, object]]:
    """(name, plugin) of every reference plugin, loaded from sda's own entry points."""
    from sda_core.hooks.host import reference_entry_points

    plugins = []
    for entry_point in reference_entry_points():
        plugin = entry_point.load()
        plugins.append((entry_point.name, plugin() if isinstance(plugin, type) else plugin))
    return sorted(plugins, key=lambda item: item[0])


def make_engine(
    *plugins: object,
    reference: bool = False,
    strict: bool = True,
    disable: Sequence[str] = ("progress",),
    evaluation: bool = False,
    **kwargs: Any,
) -> Engine:
    """An Engine with exactly ``plugins`` (plus the reference ones when asked) and a recorder.

    Its runs end without the automatic evaluation (``evaluation_sounds = 0`` beneath the
    overrides passed to ``engine.train``), so tests stay fast and see only the hook calls of
    training; pass ``evaluation=True``, or ``evaluation_sounds`` in the overrides, to have it.
    """
    from sda_core.engine import Engine

    engine = Engine(load_entrypoints=False, strict=strict, environ={}, **kwargs)
    if not evaluation:
        engine.train = _without_evaluation(engine.train)
    if reference:
        for name, plugin in reference_plugins():
            if name not in disable:
                engine.register(plugin, name=name)
    for plugin in plugins:
        engine.register(plugin)
    engine.recorder = HookRecorder().attach(engine)
    return engine


def _without_evaluation(train: Callable[..., Any]) -> Callable[..., Any]:
    """``engine.train`` with ``evaluation_sounds = 0`` unless the overrides say otherwise."""

    def train_without_evaluation(
        data_dir: Any, out_dir: Any = None, overrides: Any = None, *args: Any, **kwargs: Any
    ) -> Any:
        return train(data_dir, out_dir, {"evaluation_sounds": 0, **dict(overrides or {})}, *args, **kwargs)

    train_without_evaluation.__doc__ = train.__doc__
    return train_without_evaluation


def fast_settings(**changes: Any) -> dict[str, Any]:
    """A fresh copy of :data:`FAST_SETTINGS` with ``changes`` merged in (``max_epochs=1``,
    ``plugins={"my_plugin": {...}}``); a change to None removes that setting."""
    from sda_core.config.overrides import merge_overrides

    merged = merge_overrides(copy.deepcopy(dict(FAST_SETTINGS)), changes)
    return {key: value for key, value in merged.items() if value is not None}


def set_options(settings: Mapping[str, Any] | None = None, **changes: Any) -> list[str]:
    """``--set`` options for ``sda train``/``sda scan``: ``["--set", "max_epochs=2", ...]``.

    ``settings`` defaults to :data:`FAST_SETTINGS`; ``changes`` are merged as in
    :func:`fast_settings`. Nested tables become dotted keys (``plugins.NAME.key=value``) and
    values are written as TOML values, the way ``--set`` reads them.
    """
    from sda_core.config.overrides import merge_overrides

    merged = merge_overrides(dict(FAST_SETTINGS if settings is None else settings), changes)
    options: list[str] = []
    for key, value in _flatten(merged):
        if value is not None:
            options += ["--set", f"{key}={_toml_value(value)}"]
    return options


def _flatten(table: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    items: list[tuple[str, Any]] = []
    for key, value in table.items():
        if isinstance(value, Mapping) and value:
            items += _flatten(value, f"{prefix}{key}.")
        else:
            items.append((f"{prefix}{key}", value))
    return items


def _toml_value(value: Any) -> str:
    """``value`` as a TOML value (what ``--set`` parses back into the same value)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{key} = {_toml_value(item)}" for key, item in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    raise TypeError(f"{value!r} has no TOML form for --set")


def write_audio_folder(
    folder: str | Path,
    *,
    count: int = 6,
    durations: Sequence[float] = (0.5, 1.2, 2.0, 0.8, 1.6, 3.0),
    sample_rates: Sequence[int] = (22050,),
    channels: Sequence[int] = (1,),
    formats: Sequence[str] = ("wav",),
    seed: int = 0,
) -> Path:
    """Write ``count`` synthesised sounds, cycling through the given lengths, rates, channel
    counts and formats ("wav", "flac", "ogg", "aiff"). Deterministic for the same arguments."""
    import numpy as np
    import soundfile

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    specs = itertools.islice(
        zip(
            itertools.cycle(durations),
            itertools.cycle(sample_rates),
            itertools.cycle(channels),
            itertools.cycle(formats),
        ),
        count,
    )
    for index, (seconds, rate, chans, fmt) in enumerate(specs):
        frames = max(1, int(round(seconds * rate)))
        t = np.arange(frames) / rate
        pitch = float(rng.choice([110.0, 165.0, 220.0, 330.0]))
        tone = sum(np.sin(2 * np.pi * pitch * k * t) / k for k in (1, 2, 3)) * np.exp(-t * 2.0)
        mono = 0.3 * tone / max(np.abs(tone).max(), 1e-9) + 0.005 * rng.standard_normal(frames)
        data = np.stack([mono * (1 - 0.1 * c) for c in range(chans)], axis=1).astype(np.float32)
        path = folder / f"sound_{index:03d}.{fmt}"
        with soundfile.SoundFile(path, "w", rate, chans, format=fmt.upper()) as out:
            for start in range(0, frames, _BLOCK):
                out.write(data[start : start + _BLOCK])
    return folder


@pytest.fixture
def sda_recorder() -> HookRecorder:
    """A fresh HookRecorder; attach it with ``recorder.attach(engine)``."""
    return HookRecorder()


@pytest.fixture
def sda_engine() -> Callable[..., Engine]:
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
