"""The ``plots`` consumer plugin: writes loss.png as epochs end and spectrograms.png per preview."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from sda_core import hookimpl
from sda_plots.settings import PLUGIN_NAME, PlotSettings

if TYPE_CHECKING:
    from sda_core import TrainingConfig
    from sda_core.config.events import (
        EpochMetrics,
        PreviewEvent,
        TrainingCompleteEvent,
        TrainingStartEvent,
    )
    from sda_core.config.history import MetricsHistory
    from sda_plots.spectrogram import MelAnalyzer

#: File name of the loss plot in the run folder.
LOSS_FILENAME = "loss.png"
#: File name of the spectrogram figure in each preview folder.
SPECTROGRAM_FILENAME = "spectrograms.png"


class Plots:
    """Draws a run as it trains: ``<run>/loss.png`` and ``<preview folder>/spectrograms.png``.

    A consumer plugin. sda's loader instantiates the class once per Engine (the entry point
    names the class), and all per-run state lives on the instance; a new ``sda_on_train_start``
    resets it, so one instance may draw several runs in a row.

    * ``sda_check_config`` validates ``[plugins.plots]`` through :func:`sda_core.plugin_settings`:
      an unknown key or a bad value raises :class:`~sda_core.errors.ConfigError`, which vetoes the
      run (fresh or resumed) before anything runs; ``sda_on_train_start`` reads the settings.
    * ``sda_on_epoch`` redraws ``loss.png`` from the whole history every ``every`` epochs, at most
      once in ``min_seconds``, and at the last epoch; ``sda_on_train_end`` draws it once more if
      the run ended (early stop, interruption) on an epoch not yet drawn.
    * ``sda_on_preview`` draws ``spectrograms.png`` in the preview folder, next to the WAVs.

    matplotlib (Agg only, no pyplot) is imported on first use, not when the plugin loads, so
    ``sda plugins`` and ``sda scan`` do not pay for it.

    Attributes:
        settings: the settings of the current run.
        loss_path: where the loss plot of the current run goes (None before a run starts).
        loss_seconds: seconds each loss plot of this instance took (draw and write).
        spectrogram_seconds: seconds each spectrogram figure took (read, analyse, draw, write).
        drawn_epochs: the epochs the last loss plot showed.
    """

    name = PLUGIN_NAME

    def __init__(self) -> None:
        self.settings = PlotSettings()
        self.loss_path: Path | None = None
        self.loss_seconds: list[float] = []
        self.spectrogram_seconds: list[float] = []
        self.drawn_epochs: tuple[int, ...] = ()
        self._analyzer: MelAnalyzer | None = None
        self._reset()

    def _reset(self) -> None:
        self._active = False
        self._title = ""
        self._max_epochs = 0
        self._history: MetricsHistory | None = None
        self._drawn_epoch = 0
        self._drawn_at: float | None = None
        self._step_points = None

    # -- hooks -----------------------------------------------------------------------------

    @hookimpl
    def sda_check_config(self, config: TrainingConfig) -> None:
        """Veto a bad ``[plugins.plots]`` table before anything runs."""
        PlotSettings.from_config(config)

    @hookimpl
    def sda_on_train_start(self, event: TrainingStartEvent) -> None:
        self._reset()
        self.loss_path = None
        self.settings = PlotSettings.from_config(event.config)  # checked already by sda_check_config
        self.loss_path = Path(event.run_dir) / LOSS_FILENAME
        self._title = Path(event.run_dir).name
        self._max_epochs = event.max_epochs
        self._active = True

    @hookimpl
    def sda_on_epoch(self, event: EpochMetrics, history: MetricsHistory) -> None:
        if not self._active:
            return
        self._history = history
        rested = self._drawn_at is None or time.monotonic() - self._drawn_at >= self.settings.min_seconds
        if (event.epoch % self.settings.every == 0 and rested) or event.epoch >= self._max_epochs:
            self._draw_loss(history)

    @hookimpl
    def sda_on_train_end(self, event: TrainingCompleteEvent) -> None:
        if not self._active:
            return
        history = self._history
        if history is not None and history.last_epoch and history.last_epoch != self._drawn_epoch:
            self._draw_loss(history)
        self._active = False

    @hookimpl
    def sda_on_preview(self, event: PreviewEvent) -> None:
        if not self._active or not self.settings.spectrograms or not event.files:
            return
        from sda_plots.spectrogram import MelAnalyzer, write_spectrograms

        if self._analyzer is None:
            self._analyzer = MelAnalyzer()
        started = time.perf_counter()
        write_spectrograms(
            event.files,
            event.kinds,
            Path(event.directory) / SPECTROGRAM_FILENAME,
            dpi=self.settings.dpi,
            title=f"{self._title}: previews of epoch {event.epoch}",
            analyzer=self._analyzer,
        )
        self.spectrogram_seconds.append(time.perf_counter() - started)

    # -- internals -------------------------------------------------------------------------

    def _draw_loss(self, history: MetricsHistory) -> None:
        from sda_plots.loss import StepPoints, write_loss_plot

        assert self.loss_path is not None
        if self._step_points is None:
            self._step_points = StepPoints()
        started = time.perf_counter()
        last = history.last_epoch
        title = f"{self._title}: epoch {last}" + (f" of {self._max_epochs}" if self._max_epochs else "")
        write_loss_plot(history, self.loss_path, dpi=self.settings.dpi, title=title, step_points=self._step_points)
        self.loss_seconds.append(time.perf_counter() - started)
        self.drawn_epochs = tuple(history.epoch_numbers)
        self._drawn_epoch = last
        self._drawn_at = time.monotonic()

    def __repr__(self) -> str:
        return f"Plots(settings={self.settings!r}, loss_path={self.loss_path!r})"
