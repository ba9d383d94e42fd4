"""Reference consumer plugin: the training progress display of ``sda train``.

On a terminal it shows a live rich display (an epoch bar with the whole-run ETA and a step bar
for the epoch in progress) with one line per finished epoch printed above it; anywhere else (a
pipe, a log file, CI) it writes plain, throttled log lines. See :class:`ProgressDisplay`.
"""

from __future__ import annotations

import atexit
import functools
import math
import time
from typing import TYPE_CHECKING, Any

import attrs
from rich.console import Console
from rich.table import Column, Table
from rich.text import Text

from sda_core import TrainingConfig, hookimpl, plugin_settings
from sda_core import validators as v
from sda_core.config import format_duration
from sda_core.config.events import (
    EpochMetrics,
    EvaluationEvent,
    OverfittingWarning,
    PreviewEvent,
    StepMetrics,
    TrainingCompleteEvent,
    TrainingStartEvent,
)
from sda_core.config.history import MIN_VALIDATION_CHUNKS

if TYPE_CHECKING:
    from rich.progress import Progress, Task

    from sda_core.config.history import MIN_VALIDATION_CHUNKS, MetricsHistory

#: The name this plugin registers under (and reads its ``[plugins.progress]`` settings from).
PLUGIN_NAME = "progress"
MODES = ("auto", "rich", "plain", "off")
#: Default seconds between two plain step lines (``plugins.progress.log_interval``).
DEFAULT_LOG_INTERVAL = 10.0
#: A plain step line is also written after this many log intervals without a quarter crossed.
HEARTBEAT_INTERVALS = 6
#: Refreshes per second of the live display (on rich's own thread, never per step).
REFRESH_PER_SECOND = 4
#: Characters of each bar.
BAR_WIDTH = 24

_RICH, _PLAIN, _OFF = "rich", "plain", "off"


@attrs.frozen(kw_only=True)
class ProgressSettings:
    """The ``[plugins.progress]`` settings.

    Attributes:
        mode: ``"auto"``, ``"rich"``, ``"plain"`` or ``"off"``; None: the display's own mode.
        log_interval: seconds between two plain step lines, at least.
    """

    mode: str | None = attrs.field(default=None, validator=attrs.validators.optional(v.one_of(MODES)))
    log_interval: float = attrs.field(default=DEFAULT_LOG_INTERVAL, validator=v.number(0, exclusive_minimum=True))


def read_settings(config: TrainingConfig | dict[str, Any]) -> ProgressSettings:
    """The ``[plugins.progress]`` table of a config (or of ``TrainingStartEvent.config``), through
    :func:`sda_core.plugin_settings`: an unknown key or a bad value raises ConfigError naming it."""
    if not isinstance(config, TrainingConfig):
        config = TrainingConfig.from_dict(config)
    return plugin_settings(config, PLUGIN_NAME, ProgressSettings)


def format_loss(value: float | None) -> str:
    """A loss with four decimals, or in scientific notation when very small or very large."""
    if value is None:
        return "-"
    if not math.isfinite(value):
        return str(value)
    magnitude = abs(value)
    if magnitude != 0 and (magnitude < 1e-3 or magnitude >= 1e5):
        return f"{value:.3e}"
    return f"{value:.4f}"


def _format_eta(seconds: float | None) -> str:
    return "?" if seconds is None else format_duration(max(seconds, 0.0))


@functools.cache
def _info_column_class() -> type:
    """The column class of the text right of each bar (rich.progress loads with the first live
    display, not with the plugin: `sda plugins` and `sda scan` never draw one)."""
    from rich.progress import ProgressColumn

    class _InfoColumn(ProgressColumn):
        """The text right of each bar, built from the display's state at render time.

        Rendering happens on rich's refresh thread, so the training thread pays nothing for it.
        """

        def __init__(self, display: ProgressDisplay) -> None:
            super().__init__(table_column=Column(no_wrap=True, overflow="ellipsis"))
            self.display = display

        def render(self, task: Task) -> Text:
            try:
                return self.display._render_info(task)
            except Exception:  # noqa: BLE001 - a rendering fault must never kill the refresh thread
                return Text("")

    return _InfoColumn


class ProgressDisplay:
    """Shows a training run as it happens: live bars on a terminal, log lines elsewhere.

    A consumer plugin (every hook is a plain ``@hookimpl``); it keeps all per-run state on the
    instance, so each Engine gets its own and one instance may show several runs in a row.

    Args:
        console: where to write (default: a rich Console on stderr).
        mode: the default mode, used unless the run's config sets ``plugins.progress.mode``.

    Modes:

    * ``"auto"`` (default): ``"rich"`` when the console is an interactive terminal, else
      ``"plain"``.
    * ``"rich"``: a live rich display refreshed on its own thread (4 times a second, so a consumer
      that blocks for seconds does not freeze it): an overall bar (epoch N/max, elapsed time,
      whole-run ETA from ``EpochMetrics.eta_seconds`` refined from the steps of the epoch in
      progress, best validation loss) and a bar for the epoch in progress (steps done of
      ``steps_per_epoch``, items per second, the current loss). Above the bars: a start line, one
      line per finished epoch (train loss, validation loss, gap %, a best marker, epoch duration,
      ETA), overfitting warnings in yellow and a line per preview round with its folder. At the
      end the live display is stopped and a summary printed (why it ended, epochs and steps,
      best epoch and validation loss, final losses, checkpoints, duration). ``sda_on_train_end``
      is what stops the display (the engine emits it however the run ends, an exception
      included); a new ``sda_on_train_start`` stops a display left running and starts a new one.
    * ``"plain"``: log lines with no ANSI codes and no carriage returns: one at the start, one
      per epoch, throttled step lines, warnings, previews and the summary. A step line is written
      when at least ``log_interval`` seconds (by the events' timestamps) have passed since the
      last line *and* either another quarter of the epoch is done or ``6 x log_interval`` seconds
      have passed; short epochs thus log only their epoch line.
    * ``"off"``: prints nothing.

    Settings (``[plugins.progress]`` in sda.toml, ``--set plugins.progress.KEY=VALUE``, checked in
    ``sda_check_config``, so a bad value stops the run before anything runs, and read from
    ``TrainingStartEvent.config`` at each start):

    * ``mode``: ``"auto"``, ``"rich"``, ``"plain"`` or ``"off"``; overrides the constructor's.
    * ``log_interval``: seconds between plain step lines, at least (default 10).

    Per step, rich mode stores the event and updates one task (rendering is left to the refresh
    thread); plain mode compares two timestamps. Both cost a few microseconds.
    """

    name = PLUGIN_NAME

    def __init__(self, console: Console | None = None, mode: str = "auto") -> None:
        if mode not in MODES:
            raise ValueError(f"progress mode must be one of {', '.join(MODES)}, got {mode!r}")
        self.console = console if console is not None else Console(stderr=True)
        self.mode = mode
        self._progress: Progress | None = None
        self._reset_run_state()
        self._active_mode = self._resolve(mode)

    # -- hooks -----------------------------------------------------------------------------

    @hookimpl
    def sda_check_config(self, config: TrainingConfig) -> None:
        """Veto a bad ``[plugins.progress]`` table before anything runs."""
        read_settings(config)

    @hookimpl
    def sda_on_train_start(self, event: TrainingStartEvent) -> None:
        self._stop_live()  # a display left running by a run that never ended
        self._reset_run_state()
        settings = read_settings(event.config)  # checked already by sda_check_config
        mode = self._resolve(settings.mode or self.mode)
        self._active_mode = mode
        if mode == _OFF:
            self._on_step = self._ignore
            return
        self._max_epochs = event.max_epochs
        self._steps_per_epoch = event.steps_per_epoch
        self._epoch_started_at = event.timestamp
        self._last_line_at = event.timestamp
        self._run_started = time.monotonic()
        self._threshold = _float_or(event.config.get("overfitting_threshold"), 0.20)
        self._log_interval = float(settings.log_interval)
        self._heartbeat = HEARTBEAT_INTERVALS * self._log_interval

        files = f"{event.train_files} training / {event.validation_files} validation files"
        if event.resumed:
            what = f"resuming {event.run_dir} at epoch {event.start_epoch} of {event.max_epochs}"
        else:
            what = f"training {event.run_dir}: epochs {event.start_epoch}-{event.max_epochs}"
        line = f"{what} on {event.device}, {files}, {event.steps_per_epoch} steps per epoch"
        chunks = event.validation_chunks
        needed = event.config.get("min_validation_chunks", MIN_VALIDATION_CHUNKS)
        if chunks is not None and isinstance(needed, int) and 0 < chunks < needed:
            line += (
                f"\nnote: {chunks} validation chunk(s) are too few to choose a checkpoint by ({needed} needed, "
                "min_validation_chunks): best.pt follows the latest epoch and nothing stops early"
            )
        if mode == _PLAIN:
            self._on_step = self._plain_step
            self._plain(line)
            return
        self._on_step = self._rich_step
        self.console.print(Text(line, style="bold"))
        self._start_live(event)

    @hookimpl
    def sda_on_step(self, event: StepMetrics) -> None:
        self._on_step(event)

    @hookimpl
    def sda_on_epoch(self, event: EpochMetrics, history: MetricsHistory) -> None:
        mode = self._active_mode
        if mode == _OFF:
            return
        is_best = self._is_best(event, history)
        self._last_epoch = event
        self._epoch_started_at = event.timestamp
        self._last_line_at = event.timestamp
        self._quarter = 0
        if event.duration > 0:
            alpha = 0.3
            previous = self._epoch_duration
            self._epoch_duration = (
                event.duration if previous is None else previous + alpha * (event.duration - previous)
            )
        self._val_duration = event.val_duration
        if event.eta_seconds is not None and self._max_epochs > event.epoch:
            self._epoch_duration = event.eta_seconds / (self._max_epochs - event.epoch)

        max_epochs = self._max_epochs or event.epoch
        gap = event.overfitting_gap
        parts = [f"epoch {event.epoch:>{len(str(max_epochs))}}/{max_epochs}", f"train {format_loss(event.train_loss)}"]
        if event.val_loss is not None:
            parts.append(f"val {format_loss(event.val_loss)}")
        if gap is not None:
            parts.append(f"gap {gap * 100:+.1f}%")
        parts.append(format_duration(event.duration))
        if event.eta_seconds is not None and event.epoch < max_epochs:
            parts.append(f"ETA {_format_eta(event.eta_seconds)}")
        if mode == _PLAIN:
            self._plain(" | ".join(parts) + (" | * best" if is_best else ""))
            return
        if self._progress is not None:
            self._progress.update(self._epoch_task, completed=min(event.epoch, max_epochs))
            if event.epoch < max_epochs:  # the next epoch's bar starts empty
                self._progress.reset(
                    self._step_task, total=self._steps_per_epoch or None, description=f"epoch {event.epoch + 1}"
                )
        text = Text()
        for index, part in enumerate(parts):
            if index:
                text.append("  ")
            style = ""
            if part.startswith("gap") and gap is not None and gap > self._threshold:
                style = "yellow"
            elif part.startswith("epoch"):
                style = "bold"
            text.append(part, style=style)
        if is_best:
            text.append("  " + self._star() + " best", style="bold green")
        self.console.print(text)

    @hookimpl
    def sda_on_overfitting(self, event: OverfittingWarning) -> None:
        if self._active_mode == _OFF:
            return
        if event.message:  # the detector's own sentence says what happened and what to do
            line = f"overfitting at epoch {event.epoch}: {event.message}"
        else:
            line = (
                f"overfitting at epoch {event.epoch}: validation loss {event.gap * 100:.1f}% above "
                f"training loss (threshold {event.threshold * 100:.0f}%) for {event.consecutive_epochs} "
                f"epoch{'s' if event.consecutive_epochs != 1 else ''}"
            )
        if self._active_mode == _PLAIN:
            self._plain("warning: " + line)
        else:
            self.console.print(Text("warning: " + line, style="yellow"))

    @hookimpl
    def sda_on_preview(self, event: PreviewEvent) -> None:
        if self._active_mode == _OFF:
            return
        counts = [
            f"{event.kinds.count(kind)} {kind}{'s' if event.kinds.count(kind) != 1 else ''}"
            for kind in dict.fromkeys(event.kinds)
        ]
        what = ", ".join(counts) if counts else f"{len(event.files)} files"
        line = f"previews for epoch {event.epoch}: {what} in {event.directory}"
        if event.render_seconds > 0:
            line += f" ({format_duration(event.render_seconds)})"
        if self._active_mode == _PLAIN:
            self._plain(line)
        else:
            self.console.print(Text(line, style="cyan"))

    @hookimpl
    def sda_on_evaluation(self, event: EvaluationEvent) -> None:
        """Kept for the end-of-run summary, which shows it in two lines."""
        self._evaluation = event

    @hookimpl
    def sda_on_train_end(self, event: TrainingCompleteEvent) -> None:
        self._stop_live()
        mode = self._active_mode
        self._on_step = self._ignore
        if mode == _OFF:
            return
        rows = [("epochs", f"{event.epochs_completed} ({event.steps} steps) in {format_duration(event.duration)}")]
        if event.best_epoch is not None:
            rows.append(("best", f"epoch {event.best_epoch}, validation loss {format_loss(event.best_val_loss)}"))
        if event.final_train_loss is not None or event.final_val_loss is not None:
            final = f"train {format_loss(event.final_train_loss)}, validation {format_loss(event.final_val_loss)}"
            rows.append(("final", final))
        for name, path in event.checkpoints.items():
            rows.append((f"{name} checkpoint", path))
        if event.run_dir:
            rows.append(("run", event.run_dir))
        evaluation, self._evaluation = self._evaluation, None
        if evaluation is not None:
            rows += evaluation_rows(evaluation)
        if mode == _PLAIN:
            self._plain(f"training ended ({event.reason})")
            for key, value in rows:
                self._plain(f"  {key}: {value}")
            return
        calm = event.reason == "max_epochs" or event.reason.startswith("early_stop")
        title = Text("training ended ", style="bold")
        title.append(f"({event.reason})", style="green" if calm else "yellow")
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold")
        grid.add_column()
        for key, value in rows:
            grid.add_row(key, Text(value))
        self.console.print(title)
        self.console.print(grid)

    # -- public helpers --------------------------------------------------------------------

    @property
    def live(self) -> bool:
        """Whether a live display is running now."""
        return self._progress is not None

    def close(self) -> None:
        """Stop the live display if one is running (``sda_on_train_end`` does this)."""
        self._stop_live()

    # -- per step --------------------------------------------------------------------------

    def _ignore(self, event: StepMetrics) -> None:
        pass

    def _rich_step(self, event: StepMetrics) -> None:
        self._step = event  # read by the columns on the refresh thread
        if self._progress is not None:
            self._progress.update(self._step_task, total=event.steps_per_epoch, completed=event.epoch_step)

    def _plain_step(self, event: StepMetrics) -> None:
        if event.timestamp - self._last_line_at < self._log_interval:
            return
        self._step = event
        quarter = (4 * event.epoch_step) // event.steps_per_epoch
        if event.epoch_step < event.steps_per_epoch and (
            quarter > self._quarter or event.timestamp - self._last_line_at >= self._heartbeat
        ):
            self._quarter = quarter
            self._last_line_at = event.timestamp
            self._plain(self._step_line(event))

    def _step_line(self, event: StepMetrics) -> str:
        max_epochs = self._max_epochs or event.epoch
        percent = 100 * event.epoch_step / event.steps_per_epoch
        parts = [
            f"epoch {event.epoch}/{max_epochs} step {event.epoch_step}/{event.steps_per_epoch} ({percent:.0f}%)",
            f"loss {format_loss(event.loss)}",
        ]
        if event.items_per_second > 0:
            parts.append(f"{event.items_per_second:.1f} items/s")
        eta = self._eta(event.timestamp)
        if eta is not None:
            parts.append(f"ETA {_format_eta(eta)}")
        return " | ".join(parts)

    # -- live display ----------------------------------------------------------------------

    def _start_live(self, event: TrainingStartEvent) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        progress = Progress(
            TextColumn("{task.description}", style="bold"),
            BarColumn(bar_width=BAR_WIDTH),
            MofNCompleteColumn(),
            _info_column_class()(self),
            console=self.console,
            transient=True,
            refresh_per_second=REFRESH_PER_SECOND,
        )
        self._epoch_task = progress.add_task(
            "epochs", total=event.max_epochs, completed=min(event.start_epoch - 1, event.max_epochs)
        )
        self._step_task = progress.add_task(f"epoch {event.start_epoch}", total=event.steps_per_epoch or None)
        progress.start()
        self._progress = progress
        atexit.register(self._stop_live)  # restore the cursor even if the run never ends

    def _stop_live(self) -> None:
        progress, self._progress = self._progress, None
        if progress is None:
            return
        atexit.unregister(self._stop_live)
        progress.stop()

    def _render_info(self, task: Task) -> Text:
        if task.id == self._epoch_task:
            parts = [
                f"ETA {_format_eta(self._eta(time.time()))}",
                f"elapsed {format_duration(time.monotonic() - self._run_started)}",
            ]
            if self._best_val is not None:
                parts.append(f"best {format_loss(self._best_val)} (epoch {self._best_epoch})")
            return Text("  ".join(parts), no_wrap=True, overflow="ellipsis")
        step = self._step
        last = self._last_epoch
        if last is not None and self._max_epochs and last.epoch >= self._max_epochs:
            return Text("finishing", style="dim")
        if step is None or (last is not None and step.epoch <= last.epoch):
            return Text("starting", style="dim")
        if task.total is not None and task.completed >= task.total:
            return Text(f"validating   loss {format_loss(step.loss)}", style="dim")
        return Text(f"{step.items_per_second:,.1f} items/s  loss {format_loss(step.loss)}")

    # -- estimates and state ---------------------------------------------------------------

    def _eta(self, now: float) -> float | None:
        """Seconds until the last epoch ends: the epoch events' ETA refined by the current steps."""
        step, last, max_epochs = self._step, self._last_epoch, self._max_epochs
        if step is None or (last is not None and step.epoch <= last.epoch):
            if last is None or last.eta_seconds is None:
                return None
            return max(last.eta_seconds - max(now - last.timestamp, 0.0), 0.0)
        step_time = max(step.timestamp - self._epoch_started_at, 0.0) / step.epoch_step
        if step_time <= 0:
            step_time = step.duration
        left = (step.steps_per_epoch - step.epoch_step) * step_time + self._val_duration
        per_epoch = self._epoch_duration
        if per_epoch is None:
            per_epoch = step.steps_per_epoch * step_time + self._val_duration
        remaining = left + max((max_epochs or step.epoch) - step.epoch, 0) * per_epoch
        return max(remaining - max(now - step.timestamp, 0.0), 0.0)

    def _is_best(self, event: EpochMetrics, history: MetricsHistory | None) -> bool:
        if self._best_val is None and history is not None:  # a resumed run: earlier epochs count
            for earlier in history.epochs:
                if (
                    earlier.epoch < event.epoch
                    and earlier.val_loss is not None
                    and (self._best_val is None or earlier.val_loss < self._best_val)
                ):
                    self._best_val, self._best_epoch = earlier.val_loss, earlier.epoch
        if event.val_loss is None or (self._best_val is not None and event.val_loss >= self._best_val):
            return False
        self._best_val, self._best_epoch = event.val_loss, event.epoch
        # too few validation chunks to choose by: best.pt follows every epoch, so no marker
        return history is None or history.validation_selects

    def _reset_run_state(self) -> None:
        self._on_step = self._ignore
        self._step: StepMetrics | None = None
        self._last_epoch: EpochMetrics | None = None
        self._max_epochs = 0
        self._steps_per_epoch = 0
        self._epoch_started_at = time.time()
        self._last_line_at = -math.inf
        self._run_started = time.monotonic()
        self._log_interval = DEFAULT_LOG_INTERVAL
        self._heartbeat = HEARTBEAT_INTERVALS * DEFAULT_LOG_INTERVAL
        self._quarter = 0
        self._epoch_duration: float | None = None
        self._val_duration = 0.0
        self._best_val: float | None = None
        self._best_epoch: int | None = None
        self._threshold = 0.20
        self._epoch_task = self._step_task = None
        self._evaluation: EvaluationEvent | None = None

    def _resolve(self, mode: str) -> str:
        if mode == "auto":
            terminal = self.console.is_terminal and not self.console.is_dumb_terminal
            return _RICH if terminal or self.console.is_jupyter else _PLAIN
        return mode

    def _plain(self, line: str) -> None:
        """One log line, with no markup, highlighting, styles or wrapping."""
        self.console.print(line, markup=False, highlight=False, emoji=False, soft_wrap=True)

    def _star(self) -> str:
        return "\u2605" if (self.console.encoding or "").lower().startswith("utf") else "*"


def evaluation_rows(event: EvaluationEvent) -> list[tuple[str, str]]:
    """The end-of-run evaluation in two summary rows: the figures, then where they came from."""

    def figure(value: float | None, digits: int = 2) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    figures = (
        f"resemblance {figure(event.resemblance)}, 1-NN accuracy "
        f"{figure(event.nn_accuracy)}, copying {figure(event.copying)}, diversity {figure(event.diversity)}, "
        f"reconstruction {figure(event.reconstruction)}"
    )
    if event.reconstruction_fitted is not None:
        figures += f" (fitted codes {figure(event.reconstruction_fitted)})"
    figures += "".join(f", {name} {value:.4g}" for name, value in event.metrics.items())
    source = f"{event.count} sounds from epoch {event.epoch}" if event.epoch is not None else f"{event.count} sounds"
    where = f"{source} vs the training chunks, in {format_duration(event.duration)}"
    if event.path:
        where += f"; {event.path}"
    return [("evaluation", figures), ("evaluated", where)]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _float_or(value: Any, default: float) -> float:
    return float(value) if _is_number(value) and math.isfinite(value) else default
