"""Engines for tests: exactly the plugins a test names, a recorder attached, strict mode on."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from sda_core.testing.recorder import HookRecorder

if TYPE_CHECKING:
    from sda_core.engine import Engine

#: Distribution whose entry points are the reference plugins.
REFERENCE_DISTRIBUTION = "small-dataset-audio"


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
