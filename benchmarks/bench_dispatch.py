"""Event dispatch: the engine's isolated consumer calls versus a bare pluggy hook call.

One :class:`~sda_core.config.events.StepMetrics` event goes to 10 consumer plugins, each with an
``sda_on_step(event)`` hook implementation.

* measured: ``Engine(plugins=[...], load_entrypoints=False).emit(event)``, which goes through
  ``PluginHost.notify`` (one implementation at a time, each in its own ``try``).
* baseline: ``pluggy.PluginManager("sda")`` with :mod:`sda_core.hooks.specs` added and the same 10
  plugin objects registered, called as ``pm.hook.sda_on_step(event=event)``.

Target: the engine costs at most 2x the bare pluggy call. ``sda_on_step`` runs after every training
step, so this is the per-step price of failure isolation.
"""

from __future__ import annotations

import pluggy

from benchmarks.timing import Result, compare, describe
from sda_core import hookimpl
from sda_core.config.events import StepMetrics
from sda_core.engine import Engine
from sda_core.hooks import specs as hookspecs

NAME = "dispatch"
TARGET = 2.0
CONSUMERS = 10
CALLS_PER_SAMPLE = 2000


class StepCounter:
    """A consumer plugin doing the least a real one does: look at the event, keep a number."""

    def __init__(self, index: int) -> None:
        self.name = f"consumer-{index}"
        self.calls = 0
        self.last_loss = 0.0

    @hookimpl
    def sda_on_step(self, event: StepMetrics) -> None:
        self.calls += 1
        self.last_loss = event.loss


def make_event() -> StepMetrics:
    return StepMetrics(
        epoch=1,
        step=1,
        epoch_step=1,
        steps_per_epoch=100,
        loss=0.5,
        losses={"reconstruction": 0.4, "kl": 0.1},
        learning_rate=1e-3,
        items_per_second=250.0,
        duration=0.02,
        data_wait=0.001,
    )


def make_variants(calls: int = CALLS_PER_SAMPLE):
    """The two callables timed, plus the plugins of each (to check every call was delivered)."""
    event = make_event()

    engine_plugins = [StepCounter(i) for i in range(CONSUMERS)]
    engine = Engine(plugins=engine_plugins, load_entrypoints=False, strict=False, trace=False, environ={})
    emit = engine.emit

    pluggy_plugins = [StepCounter(i) for i in range(CONSUMERS)]
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    for plugin in pluggy_plugins:
        pm.register(plugin, name=plugin.name)
    hook = pm.hook.sda_on_step

    def engine_emit() -> None:
        for _ in range(calls):
            emit(event)

    def pluggy_hook() -> None:
        for _ in range(calls):
            hook(event=event)

    return {"engine.emit": engine_emit, "pluggy hook": pluggy_hook}, engine_plugins, pluggy_plugins


def run(quick: bool = False) -> list[Result]:
    variants, engine_plugins, pluggy_plugins = make_variants()
    repeats = 9 if quick else 81
    comparison = compare(variants, repeats=repeats, warmup=2)
    expected = (repeats + 2) * CALLS_PER_SAMPLE
    for plugin in engine_plugins + pluggy_plugins:
        if plugin.calls != expected:
            raise AssertionError(f"{plugin.name} received {plugin.calls} events, expected {expected}")
    ratio = comparison.ratio("engine.emit", "pluggy hook")
    detail = describe(comparison, "engine.emit", "pluggy hook", per=CALLS_PER_SAMPLE, unit="event")
    return [Result(f"dispatch: 1 StepMetrics -> {CONSUMERS} consumers", ratio, TARGET, detail)]


if __name__ == "__main__":  # pragma: no cover - manual use
    for row in run():
        print(row)
