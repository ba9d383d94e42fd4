"""How much MetricsLog adds per training step.

    python contrib/sda-metrics-log/benchmarks/step_cost.py

Prints, in microseconds per step (medians over the epochs):

* ``call``: one ``sda_on_step`` call, which is what the training loop waits for (the event is
  appended to a buffer; nothing is serialised or written);
* ``deferred``: writing the buffered steps out at the end of the epoch (serialising each to a JSON
  line, writing and flushing), spread over the steps;
* ``engine.emit``: a whole ``engine.emit(step)`` with MetricsLog as the only plugin, the engine's
  own dispatch included, for comparison with ``call``.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from sda_metrics_log import MetricsLog
from sda_metrics_log import plugin as plugin_module

from sda_core import Engine, EpochMetrics, MetricsHistory, StepMetrics, TrainingStartEvent

STEPS = plugin_module.MAX_BUFFERED_EVENTS - 2  # one epoch's steps stay buffered until its end
EPOCHS = 20


def _steps(epoch: int) -> list[StepMetrics]:
    base = (epoch - 1) * STEPS
    return [
        StepMetrics(
            epoch=epoch,
            step=base + i,
            epoch_step=i,
            steps_per_epoch=STEPS,
            loss=0.5,
            losses={"loss": 0.5, "objective": 0.5, "recon": 0.4, "kl": 0.1, "kl_nats": 3.0},
            learning_rate=1e-3,
            items_per_second=100.0,
            duration=0.01,
            data_wait=0.001,
        )
        for i in range(1, STEPS + 1)
    ]


def measure(steps_setting: bool = True) -> dict[str, float]:
    """Microseconds per step: ``call``, ``deferred`` and ``emit``."""
    results: dict[str, list[float]] = {"call": [], "deferred": [], "emit": []}
    for through_engine in (False, True):
        with tempfile.TemporaryDirectory() as folder:
            plugin = MetricsLog(steps=steps_setting)
            engine = Engine([plugin], load_entrypoints=False, environ={}) if through_engine else None
            start = TrainingStartEvent(run_dir=folder, max_epochs=EPOCHS, steps_per_epoch=STEPS)
            engine.emit(start) if engine else plugin.sda_on_train_start(start)
            history = MetricsHistory()
            for epoch in range(1, EPOCHS + 1):
                events = _steps(epoch)
                epoch_event = EpochMetrics(epoch=epoch, step=epoch * STEPS, train_loss=0.5, val_loss=0.6)
                history.record_epoch(epoch_event)
                if engine is not None:
                    emit = engine.emit
                    started = time.perf_counter()
                    for event in events:
                        emit(event)
                    results["emit"].append((time.perf_counter() - started) / STEPS * 1e6)
                    engine.emit(epoch_event, history=history)
                    continue
                on_step = plugin.sda_on_step
                started = time.perf_counter()
                for event in events:
                    on_step(event)
                called = time.perf_counter()
                plugin._write_events()  # what sda_on_epoch does first: write the buffered steps
                written = time.perf_counter()
                plugin.sda_on_epoch(epoch_event, history)
                results["call"].append((called - started) / STEPS * 1e6)
                results["deferred"].append((written - called) / STEPS * 1e6)
            plugin.close()
            assert Path(folder, "events.jsonl").stat().st_size > 0
    return {key: statistics.median(values) for key, values in results.items()}


if __name__ == "__main__":
    print(f"{STEPS} steps per epoch, {EPOCHS} epochs; microseconds per step (medians)")
    for setting in (True, False):
        result = measure(setting)
        print(
            f"steps={str(setting).lower():5}  call {result['call']:6.3f}   deferred {result['deferred']:6.2f}"
            f"   engine.emit {result['emit']:6.2f}"
        )
