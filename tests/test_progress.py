"""The progress display plugin: live bars on a terminal, throttled plain log lines elsewhere."""

from __future__ import annotations

import importlib.metadata
import io
import re
import threading
import time

import pytest
from rich.console import Console

from sda_core import ConfigError, TrainingConfig, hookimpl
from sda_core.config.events import (
    EpochMetrics,
    EvaluationEvent,
    OverfittingWarning,
    PreviewEvent,
    StepMetrics,
    TrainingCompleteEvent,
    TrainingStartEvent,
)
from sda_core.config.history import MetricsHistory
from sda_core.engine import Engine
from sda_plugins.progress import ProgressDisplay, format_loss

ESCAPE = "\x1b"
VAL_LOSSES = (1.1, 0.9, 1.2)  # epoch 2 is the best; epoch 3 overfits


def make_console(terminal: bool) -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, force_terminal=terminal, width=120), buffer


def make_engine(*plugins: object) -> Engine:
    """The last plugin given is called first (pluggy calls later registrations first)."""
    # strict: a fault in the display raises here instead of being isolated and warned about
    return Engine(plugins=list(plugins), load_entrypoints=False, strict=True)


def feed_run(
    engine: Engine,
    *,
    t0: float = 1_000_000.0,
    epochs: int = 3,
    steps_per_epoch: int = 40,
    step_seconds: float = 1.0,
    max_epochs: int = 10,
    config: dict | None = None,
    start_epoch: int = 1,
    history: MetricsHistory | None = None,
    end: bool = True,
) -> MetricsHistory:
    """A realistic event sequence, as the training loop emits it, with controlled timestamps."""
    history = history if history is not None else MetricsHistory()
    engine.emit(
        TrainingStartEvent(
            run_dir="runs/demo",
            config={"overfitting_threshold": 0.2, **(config or {})},
            train_files=8,
            validation_files=2,
            start_epoch=start_epoch,
            max_epochs=max_epochs,
            steps_per_epoch=steps_per_epoch,
            resumed=start_epoch > 1,
            timestamp=t0,
        )
    )
    now, step, ran = t0, (start_epoch - 1) * steps_per_epoch, 0
    epoch_seconds = steps_per_epoch * step_seconds + 2.0
    for epoch in range(start_epoch, start_epoch + epochs):
        for epoch_step in range(1, steps_per_epoch + 1):
            step, ran = step + 1, ran + 1
            now = t0 + ran * step_seconds + 2.0 * (epoch - start_epoch)  # no drift from summing
            metrics = StepMetrics(
                epoch=epoch,
                step=step,
                epoch_step=epoch_step,
                steps_per_epoch=steps_per_epoch,
                loss=1.0 / epoch + 0.001 * epoch_step,
                losses={"reconstruction": 0.8, "kl": 0.2},
                learning_rate=1e-3,
                items_per_second=32 / step_seconds,
                duration=step_seconds,
                timestamp=now,
            )
            history.record_step(metrics)
            engine.emit(metrics)
        now += 2.0
        index = (epoch - start_epoch) % len(VAL_LOSSES)
        epoch_metrics = EpochMetrics(
            epoch=epoch,
            step=step,
            train_loss=1.0 / epoch,
            val_loss=VAL_LOSSES[index],
            duration=epoch_seconds,
            train_duration=epoch_seconds - 2.0,
            val_duration=2.0,
            eta_seconds=(max_epochs - epoch) * epoch_seconds,
            timestamp=now,
        )
        history.record_epoch(epoch_metrics)
        engine.emit(epoch_metrics, history=history)
        if index == 1:
            engine.emit(
                PreviewEvent(
                    epoch=epoch,
                    directory=f"runs/demo/previews/epoch_{epoch:04d}",
                    files=["s0.wav", "s1.wav", "r0.wav"],
                    kinds=["sample", "sample", "reconstruction"],
                    render_seconds=1.5,
                    timestamp=now,
                )
            )
        if index == 2:
            engine.emit(
                OverfittingWarning(
                    epoch=epoch,
                    gap=0.6,
                    threshold=0.2,
                    consecutive_epochs=2,
                    train_loss=0.75,
                    val_loss=1.2,
                    message="Add data or raise the augmentation strength.",
                    timestamp=now,
                )
            )
    if end:
        last = start_epoch + epochs - 1
        engine.emit(
            TrainingCompleteEvent(
                reason="max_epochs",
                epochs_completed=last,
                steps=step,
                best_epoch=history.best_epoch,
                best_val_loss=history.best_val_loss,
                final_train_loss=1.0 / last,
                final_val_loss=history.val_losses[-1],
                run_dir="runs/demo",
                checkpoints={"last": "runs/demo/checkpoints/last.pt", "best": "runs/demo/checkpoints/best.pt"},
                duration=now - t0,
                timestamp=now,
            )
        )
    return history


def strip_ansi(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)


def step_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if re.match(r"epoch \d+/\d+ step ", line)]


def epoch_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if re.match(r"epoch +\d+/\d+ \| train", line)]


# -- plain mode -------------------------------------------------------------------------------


def test_plain_mode_writes_the_expected_log_lines():
    console, buffer = make_console(terminal=False)
    engine = make_engine(ProgressDisplay(console=console))
    feed_run(engine)
    text = buffer.getvalue()
    lines = text.splitlines()

    assert ESCAPE not in text and "\r" not in text
    assert lines[0] == ("training runs/demo: epochs 1-10 on cpu, 8 training / 2 validation files, 40 steps per epoch")
    assert epoch_lines(text) == [
        "epoch  1/10 | train 1.0000 | val 1.1000 | gap +10.0% | 42.0s | ETA 6m 18.0s | * best",
        "epoch  2/10 | train 0.5000 | val 0.9000 | gap +80.0% | 42.0s | ETA 5m 36.0s | * best",
        "epoch  3/10 | train 0.3333 | val 1.2000 | gap +260.0% | 42.0s | ETA 4m 54.0s",
    ]
    assert "previews for epoch 2: 2 samples, 1 reconstruction in runs/demo/previews/epoch_0002 (1.5s)" in lines
    assert "warning: overfitting at epoch 3: Add data or raise the augmentation strength." in lines
    summary = lines[lines.index("training ended (max_epochs)") :]
    assert summary == [
        "training ended (max_epochs)",
        "  epochs: 3 (120 steps) in 2m 06.0s",
        "  best: epoch 2, validation loss 0.9000",
        "  final: train 0.3333, validation 1.2000",
        "  last checkpoint: runs/demo/checkpoints/last.pt",
        "  best checkpoint: runs/demo/checkpoints/best.pt",
        "  run: runs/demo",
    ]
    # the order of a run: start, steps and epochs interleaved, the end last
    assert text.index("epoch 1/10 step") < text.index("epoch  1/10 |") < text.index("epoch 2/10 step")


EVALUATION = EvaluationEvent(
    run_dir="runs/demo",
    epoch=2,
    checkpoint="runs/demo/checkpoints/best.pt",
    count=32,
    resemblance=0.587,
    copying=1.96,
    diversity=0.27,
    nn_accuracy=1.0,
    validation_nn_accuracy=1.0,
    reconstruction=4.02,
    metrics={"fad": 3.25},
    duration=6.5,
    path="runs/demo/evaluation.json",
)


@pytest.mark.parametrize("terminal", [False, True])
def test_the_end_of_run_evaluation_is_shown_in_two_summary_lines(terminal):
    console, buffer = make_console(terminal=terminal)
    engine = make_engine(ProgressDisplay(console=console))
    feed_run(engine, end=False)
    engine.emit(EVALUATION)
    engine.emit(TrainingCompleteEvent(reason="max_epochs", epochs_completed=3, run_dir="runs/demo"))
    plain = strip_ansi(buffer.getvalue())
    figures = "resemblance 0.59, 1-NN accuracy 1.00, copying 1.96, diversity 0.27, reconstruction 4.02, fad 3.25"
    where = "32 sounds from epoch 2 vs the training chunks, in 6.5s; runs/demo/evaluation.json"
    if terminal:
        words = " ".join(plain.split())  # the grid may wrap a long row
        assert f"evaluation {figures}" in words and f"evaluated {where}" in words
    else:
        lines = plain.splitlines()
        assert lines[-2:] == [f"  evaluation: {figures}", f"  evaluated: {where}"]
    # the next run on the same display does not repeat it
    buffer.truncate(0)
    feed_run(engine, epochs=1)
    assert "resemblance" not in buffer.getvalue()


def test_an_overfitting_warning_without_a_message_is_described():
    console, buffer = make_console(terminal=False)
    make_engine(ProgressDisplay(console=console)).emit(
        OverfittingWarning(epoch=7, gap=0.25, threshold=0.2, consecutive_epochs=3)
    )
    assert buffer.getvalue() == (
        "warning: overfitting at epoch 7: validation loss 25.0% above training loss (threshold 20%) for 3 epochs\n"
    )


def test_plain_step_lines_carry_loss_throughput_and_a_step_refined_eta():
    console, buffer = make_console(terminal=False)
    feed_run(make_engine(ProgressDisplay(console=console)))
    lines = step_lines(buffer.getvalue())
    # 1 s steps, 40 per epoch: a line at each quarter (10 s apart); never at the last step
    assert [line.split(" | ")[0] for line in lines] == [
        f"epoch {epoch}/10 step {step}/40 ({step * 100 // 40}%)" for epoch in (1, 2, 3) for step in (10, 20, 30)
    ]
    # epoch 1: 30 steps of 1 s left, 9 more epochs of 40 s (no validation timed yet)
    assert lines[0] == "epoch 1/10 step 10/40 (25%) | loss 1.0100 | 32.0 items/s | ETA 6m 30.0s"
    # epoch 2: 30 s + 2 s validation left, then 8 epochs at the engine's 378 s / 9 = 42 s
    assert lines[3] == "epoch 2/10 step 10/40 (25%) | loss 0.5100 | 32.0 items/s | ETA 6m 08.0s"


def test_plain_step_lines_are_throttled():
    # short epochs (40 steps of 10 ms): the epoch lines say enough, no step line at all
    console, buffer = make_console(terminal=False)
    feed_run(make_engine(ProgressDisplay(console=console)), step_seconds=0.01)
    assert step_lines(buffer.getvalue()) == []
    assert len(epoch_lines(buffer.getvalue())) == 3

    # one long epoch (2000 steps of 0.1 s = 200 s): quarters are 50 s apart, so a line every
    # quarter, and never two within 10 s
    console, buffer = make_console(terminal=False)
    feed_run(make_engine(ProgressDisplay(console=console)), epochs=1, steps_per_epoch=2000, step_seconds=0.1)
    steps = [int(re.search(r"step (\d+)/", line).group(1)) for line in step_lines(buffer.getvalue())]
    assert steps == [500, 1000, 1500]

    # a very long epoch (3000 steps of 1 s): a heartbeat every 60 s between quarters
    console, buffer = make_console(terminal=False)
    feed_run(make_engine(ProgressDisplay(console=console)), epochs=1, steps_per_epoch=3000, step_seconds=1.0)
    steps = [int(re.search(r"step (\d+)/", line).group(1)) for line in step_lines(buffer.getvalue())]
    assert len(steps) < 3000 / 10
    assert all(later - earlier >= 10 for earlier, later in zip([0, *steps], steps))
    assert max(later - earlier for earlier, later in zip([0, *steps], steps)) <= 60
    assert {750, 1500, 2250} <= set(steps)


def test_the_log_interval_setting_changes_the_throttle():
    console, buffer = make_console(terminal=False)
    engine = make_engine(ProgressDisplay(console=console))
    feed_run(
        engine,
        epochs=1,
        steps_per_epoch=2000,
        step_seconds=0.1,
        config={"plugins": {"progress": {"log_interval": 100}}},
    )
    steps = [int(re.search(r"step (\d+)/", line).group(1)) for line in step_lines(buffer.getvalue())]
    assert steps == [1000]  # 100 s apart at least: the 50 % quarter only


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"mode": "fancy"}, "plugins.progress.mode: 'fancy' is not allowed; expected one of auto, rich, plain, off"),
        ({"log_interval": -1.5}, "plugins.progress.log_interval: -1.5 is not allowed; expected a finite number > 0"),
        (
            {"log_intervall": 5},
            "unknown key 'log_intervall' in the [plugins.progress] table (did you mean 'log_interval'?)",
        ),
    ],
)
def test_a_bad_setting_vetoes_the_run(table, message):
    """A bad [plugins.progress] value is a ConfigError from sda_check_config, not a warning."""
    console, buffer = make_console(terminal=False)
    display = ProgressDisplay(console=console)
    with pytest.raises(ConfigError) as caught:
        display.sda_check_config(TrainingConfig(plugins={"progress": table}))
    assert message in str(caught.value)
    with pytest.raises(ConfigError):  # and at a start, where it vetoes the run too
        feed_run(make_engine(display), config={"plugins": {"progress": table}})
    assert buffer.getvalue() == ""


def test_the_constructor_rejects_an_unknown_mode():
    with pytest.raises(ValueError, match="progress mode"):
        ProgressDisplay(console=make_console(False)[0], mode="fancy")


# -- modes ------------------------------------------------------------------------------------


@pytest.mark.parametrize("terminal", [False, True])
def test_mode_off_prints_nothing(terminal):
    console, buffer = make_console(terminal)
    feed_run(make_engine(ProgressDisplay(console=console, mode="off")))
    assert buffer.getvalue() == ""

    console, buffer = make_console(terminal)
    display = ProgressDisplay(console=console)
    feed_run(make_engine(display), config={"plugins": {"progress": {"mode": "off"}}})
    assert buffer.getvalue() == ""
    assert not display.live


def test_config_mode_plain_overrides_a_terminal():
    console, buffer = make_console(terminal=True)
    display = ProgressDisplay(console=console, mode="rich")
    feed_run(make_engine(display), config={"plugins": {"progress": {"mode": "plain"}}})
    text = buffer.getvalue()
    assert ESCAPE not in text and "\r" not in text
    assert len(epoch_lines(text)) == 3


class LiveWatcher:
    """A second consumer that records what the display is doing while the run goes on."""

    def __init__(self, display: ProgressDisplay, buffer: io.StringIO, block_seconds: float = 0.0) -> None:
        self.display, self.buffer, self.block_seconds = display, buffer, block_seconds
        self.progresses: list = []
        self.live_during_steps: list[bool] = []
        self.grew_while_blocked: bool | None = None

    @hookimpl
    def sda_on_train_start(self, event):
        self.progresses.append(self.display._progress)

    @hookimpl
    def sda_on_step(self, event):
        self.live_during_steps.append(self.display.live)
        if self.block_seconds and event.epoch_step == 5 and self.grew_while_blocked is None:
            before = len(self.buffer.getvalue())
            time.sleep(self.block_seconds)  # a slow consumer: the display must not freeze
            self.grew_while_blocked = len(self.buffer.getvalue()) > before


@pytest.mark.parametrize("mode", ["rich", "auto"])
def test_rich_mode_runs_and_stops_its_live_display(mode):
    console, buffer = make_console(terminal=True)
    display = ProgressDisplay(console=console, mode=mode)
    watcher = LiveWatcher(display, buffer)
    engine = make_engine(watcher, display)
    threads_before = set(threading.enumerate())
    feed_run(engine)

    (progress,) = watcher.progresses
    assert progress is not None and all(watcher.live_during_steps)
    assert not display.live and not progress.live.is_started
    for thread in set(threading.enumerate()) - threads_before:  # rich signals its thread to end
        thread.join(timeout=5)
        assert not thread.is_alive()
    text = buffer.getvalue()
    plain = strip_ansi(text)
    assert "training runs/demo" in plain
    assert "train 0.5000  val 0.9000  gap +80.0%" in plain
    assert "warning: overfitting at epoch 3" in plain
    assert "runs/demo/previews/epoch_0002" in plain
    assert "training ended (max_epochs)" in plain and "runs/demo/checkpoints/best.pt" in plain
    assert plain.count("best") >= 2
    assert "\x1b[?25h" in text  # the cursor is shown again


def test_auto_mode_is_plain_when_not_a_terminal():
    console, buffer = make_console(terminal=False)
    display = ProgressDisplay(console=console)
    watcher = LiveWatcher(display, buffer)
    feed_run(make_engine(watcher, display))
    assert watcher.progresses == [None] and not any(watcher.live_during_steps)


def test_the_live_display_refreshes_while_another_consumer_blocks():
    console, buffer = make_console(terminal=True)
    display = ProgressDisplay(console=console)
    watcher = LiveWatcher(display, buffer, block_seconds=1.0)
    feed_run(make_engine(watcher, display), epochs=1)
    assert watcher.grew_while_blocked is True
    assert not display.live


def test_train_end_stops_the_display_when_the_run_fails():
    """The training loop emits the end event from its ``finally``; that is what stops the bars."""
    console, buffer = make_console(terminal=True)
    display = ProgressDisplay(console=console)
    engine = make_engine(display)

    def train():
        try:
            engine.emit(TrainingStartEvent(run_dir="runs/x", max_epochs=5, steps_per_epoch=10))
            engine.emit(StepMetrics(epoch=1, step=1, epoch_step=1, steps_per_epoch=10, loss=0.5))
            raise RuntimeError("CUDA out of memory")
        finally:
            engine.emit(TrainingCompleteEvent(reason="interrupted", epochs_completed=0, steps=1))

    with pytest.raises(RuntimeError):
        train()
    assert not display.live
    assert "training ended (interrupted)" in strip_ansi(buffer.getvalue())


def test_a_new_start_replaces_a_display_left_running():
    console, _buffer = make_console(terminal=True)
    display = ProgressDisplay(console=console)
    watcher = LiveWatcher(display, _buffer)
    engine = make_engine(watcher, display)
    feed_run(engine, epochs=1, end=False)  # the run vanished without its end event
    first = display._progress
    assert display.live
    feed_run(engine, epochs=1)
    assert watcher.progresses[0] is first and watcher.progresses[1] is not first
    assert not first.live.is_started and not display.live


def test_close_stops_the_live_display():
    console, _buffer = make_console(terminal=True)
    display = ProgressDisplay(console=console)
    feed_run(make_engine(display), epochs=1, end=False)
    assert display.live
    display.close()
    display.close()
    assert not display.live


# -- runs in a row, resume, lone events -------------------------------------------------------


@pytest.mark.parametrize("terminal", [False, True])
def test_two_consecutive_runs_on_one_instance(terminal):
    console, buffer = make_console(terminal)
    display = ProgressDisplay(console=console)
    watcher = LiveWatcher(display, buffer)
    engine = make_engine(watcher, display)
    feed_run(engine, t0=1_000_000.0)
    first = buffer.getvalue()
    feed_run(engine, t0=2_000_000.0)
    second = buffer.getvalue()[len(first) :]
    for text in (strip_ansi(first), strip_ansi(second)):
        assert text.count("training runs/demo") == 1
        assert text.count("training ended (max_epochs)") == 1
        assert text.count("best checkpoint") == 1
    # per-run state was reset: the first epoch of the second run is a new best again
    best = "| * best" if not terminal else "best"
    assert any(line.startswith("epoch  1/10") and best in line for line in strip_ansi(second).splitlines())
    if not terminal:
        assert step_lines(first) == step_lines(second)
    else:
        assert len(watcher.progresses) == 2 and watcher.progresses[0] is not watcher.progresses[1]
    assert not display.live


def test_a_resumed_run_counts_earlier_epochs_for_the_best_marker():
    history = MetricsHistory(
        epochs=[
            EpochMetrics(epoch=1, train_loss=1.0, val_loss=1.0),
            EpochMetrics(epoch=2, train_loss=0.8, val_loss=0.5),
        ]
    )
    console, buffer = make_console(terminal=False)
    feed_run(make_engine(ProgressDisplay(console=console)), start_epoch=3, history=history)
    text = buffer.getvalue()
    assert text.splitlines()[0].startswith("resuming runs/demo at epoch 3 of 10")
    assert [line.endswith("* best") for line in epoch_lines(text)] == [False, False, False]
    assert epoch_lines(text)[0].startswith("epoch  3/10 |")


def test_lone_events_without_a_start_do_not_fail():
    """A host may emit single events (the engine is strict here, so any fault would raise)."""
    for terminal in (False, True):
        console, buffer = make_console(terminal)
        engine = make_engine(ProgressDisplay(console=console))
        engine.emit(StepMetrics(epoch=1, step=1, epoch_step=1, steps_per_epoch=1, loss=0.5))
        engine.emit(EpochMetrics(epoch=1, train_loss=0.5, val_loss=0.6))
        engine.emit(PreviewEvent(epoch=1, directory="p"))
        engine.emit(TrainingCompleteEvent(reason="done", epochs_completed=1))
        assert "training ended (done)" in strip_ansi(buffer.getvalue())


def test_format_loss():
    assert format_loss(0.41234) == "0.4123"
    assert format_loss(123.456) == "123.4560"
    assert format_loss(1.5e-5) == "1.500e-05"
    assert format_loss(None) == "-"
    assert format_loss(float("nan")) == "nan"


def test_the_entry_point_names_the_class_and_it_builds_without_arguments():
    (entry_point,) = [ep for ep in importlib.metadata.entry_points(group="sda") if ep.name == "progress"]
    assert entry_point.load() is ProgressDisplay
    display = ProgressDisplay()
    assert display.console.stderr and display.mode == "auto" and display.name == "progress"


def test_each_engine_loading_the_entry_point_gets_its_own_instance():
    engines = [Engine(environ={"SDA_LOAD_PLUGINS": "progress"}) for _ in range(2)]
    first, second = (engine.pm.get_plugin("progress") for engine in engines)
    assert isinstance(first, ProgressDisplay) and isinstance(second, ProgressDisplay)
    assert first is not second
    assert [info.name for info in engines[0].plugin_infos() if info.status == "loaded"] == ["progress"]


def test_it_can_be_disabled_by_name():
    engine = Engine(environ={"SDA_LOAD_PLUGINS": "progress"}, disable=["progress"])
    assert engine.pm.get_plugin("progress") is None


# -- cost per step ----------------------------------------------------------------------------


@pytest.mark.parametrize("mode,terminal", [("rich", True), ("plain", False), ("off", False)])
def test_measure_the_cost_of_sda_on_step(mode, terminal, record_property):
    """Measures (does not assert) the per-step cost; run with ``-s`` to see the numbers."""
    count = 20_000
    console, _buffer = make_console(terminal)
    display = ProgressDisplay(console=console, mode=mode)
    engine = make_engine(display)
    engine.emit(TrainingStartEvent(run_dir="runs/bench", max_epochs=10, steps_per_epoch=count))
    now = time.time()
    events = [
        StepMetrics(
            epoch=1,
            step=i,
            epoch_step=i,
            steps_per_epoch=count,
            loss=0.5,
            items_per_second=100.0,
            duration=1e-3,
            timestamp=now + i * 1e-6,
        )
        for i in range(1, count + 1)
    ]
    started = time.perf_counter()
    for event in events:
        display.sda_on_step(event)
    per_call = (time.perf_counter() - started) / count
    engine.emit(TrainingCompleteEvent(reason="max_epochs", epochs_completed=1, steps=count))
    assert not display.live and per_call > 0
    record_property(f"sda_on_step_{mode}_us", round(per_call * 1e6, 3))
    print(f"\nProgressDisplay.sda_on_step ({mode}): {per_call * 1e6:.2f} us per call")


def test_too_few_validation_chunks_are_named_at_the_start_and_mark_no_best():
    console, buffer = make_console(terminal=False)
    engine = make_engine(ProgressDisplay(console=console))
    engine.emit(
        TrainingStartEvent(
            run_dir="runs/demo",
            config={"min_validation_chunks": 8},
            train_files=8,
            validation_files=2,
            validation_chunks=3,
            max_epochs=10,
            steps_per_epoch=4,
        )
    )
    history = MetricsHistory(validation_chunks=3)
    for epoch, val in ((1, 1.0), (2, 0.5)):
        history.record_epoch(EpochMetrics(epoch=epoch, train_loss=1.0, val_loss=val))
        engine.emit(history.epochs[-1], history=history)
    text = strip_ansi(buffer.getvalue())
    assert "note: 3 validation chunk(s) are too few to choose a checkpoint by (8 needed" in text
    assert not any(line.endswith("* best") for line in epoch_lines(text))
